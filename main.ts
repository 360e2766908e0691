/**
 * edge-time command line: parses argv, loads config, runs a subcommand.
 * Every failure ends as one line on stderr and a non-zero exit code;
 * no stack trace reaches the user.
 */
import { parseArgs } from "cli";
import { type Config, defaultConfig, loadConfig } from "./lib/config/mod.ts";
import { splitHostPort } from "./lib/config/socket_address.ts";
import { queryServer } from "./lib/io/query_client.ts";
import { runApp } from "./lib/app.ts";
import { VERSION } from "./lib/version.ts";

/** A failure the user caused or must fix: printed as one line, exit 2. */
class UsageError extends Error {}

const HELP: Record<string, string> = {
  main: `edge-time ${VERSION}: NTP server, peer engine and anycast helper

Usage: edge-time <command> [options]

Commands:
  run [--config FILE]        serve NTP (embedded default config when omitted)
  check-config FILE          validate a config file; one line per error
  query HOST[:PORT]          one-shot query: offset, delay, stratum, refid, leap
  version                    print version, Deno version and target

Run 'edge-time <command> --help' for a command's options.`,
  run: `Usage: edge-time run [--config FILE]

Serves NTP with the configuration in FILE, or the embedded default
configuration when --config is omitted. SIGTERM or SIGINT stops it.`,
  "check-config": `Usage: edge-time check-config FILE

Validates FILE and prints every error as FILE:LINE: key: message.
Exit status 0 when valid, 2 otherwise.`,
  query: `Usage: edge-time query [--json] [--timeout MS] HOST[:PORT]

Sends one NTP client request (like sntp) and prints the server's offset,
round-trip delay, stratum, refid and leap indicator. PORT defaults to 123;
an IPv6 address with a port is written [ADDR]:PORT.`,
  version: `Usage: edge-time version

Prints the edge-time version, the Deno version and the build target.`,
};

function readConfig(path: string): { config: Config } | { errors: string[] } {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (e) {
    const reason = e instanceof Deno.errors.NotFound
      ? "no such file"
      : e instanceof Error
      ? e.message
      : String(e);
    return { errors: [`${path}: cannot read: ${reason}`] };
  }
  const r = loadConfig(text, path);
  return r.ok ? { config: r.config } : { errors: r.errors };
}

function parse(
  args: string[],
  options: Record<string, { type: "string" | "boolean"; short?: string }>,
) {
  try {
    return parseArgs({
      args,
      options: { help: { type: "boolean", short: "h" }, ...options },
      allowPositionals: true,
    });
  } catch (e) {
    throw new UsageError(e instanceof Error ? e.message : String(e));
  }
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === "--help" || command === "-h" || command === "help") {
    console.log(HELP.main);
    return command === undefined ? 2 : 0;
  }
  if (!(command in HELP)) {
    throw new UsageError(`unknown command "${command}"; see 'edge-time --help'`);
  }
  switch (command) {
    case "run": {
      const { values } = parse(rest, { config: { type: "string", short: "c" } });
      if (values.help) return console.log(HELP.run), 0;
      if (values.config === undefined) return runApp(defaultConfig(), null);
      const r = readConfig(values.config);
      if ("errors" in r) {
        for (const e of r.errors) console.error(e);
        return 2;
      }
      return runApp(r.config, values.config);
    }
    case "check-config": {
      const { values, positionals } = parse(rest, {});
      if (values.help) return console.log(HELP["check-config"]), 0;
      if (positionals.length !== 1) throw new UsageError("check-config takes one FILE");
      const r = readConfig(positionals[0]!);
      if ("errors" in r) {
        for (const e of r.errors) console.error(e);
        return 2;
      }
      console.log(`${positionals[0]}: ok`);
      return 0;
    }
    case "query": {
      const { values, positionals } = parse(rest, {
        json: { type: "boolean" },
        timeout: { type: "string" },
      });
      if (values.help) return console.log(HELP.query), 0;
      if (positionals.length !== 1) throw new UsageError("query takes one HOST[:PORT]");
      const { host, port } = splitHostPort(positionals[0]!, 123);
      if (!Number.isInteger(port) || port < 1 || port > 65535) {
        throw new UsageError(`"${positionals[0]}": port must be 1..65535`);
      }
      const timeoutMs = values.timeout === undefined ? 1000 : Number(values.timeout);
      const r = await queryServer(host, port, { timeoutMs });
      if (values.json) {
        console.log(JSON.stringify({ server: `${host}:${port}`, ...r }));
      } else {
        const sign = r.offset >= 0 ? "+" : "";
        console.log(
          `${host}:${port} stratum ${r.stratum} refid ${
            r.kiss ? `${r.kiss} (kiss-o'-death)` : r.refid
          } leap ${r.leap}` +
            ` offset ${sign}${r.offset.toFixed(6)} s delay ${r.delay.toFixed(6)} s` +
            ` root delay ${(r.rootDelay * 1e3).toFixed(3)} ms root dispersion ${
              (r.rootDisp * 1e3).toFixed(3)
            } ms`,
        );
      }
      return 0;
    }
    case "version": {
      const { values } = parse(rest, {});
      if (values.help) return console.log(HELP.version), 0;
      console.log(`edge-time ${VERSION} (deno ${Deno.version.deno}, ${Deno.build.target})`);
      return 0;
    }
  }
  return 2;
}

if (import.meta.main) {
  let code: number;
  try {
    code = await main(Deno.args);
  } catch (e) {
    console.error(`edge-time: ${e instanceof Error ? e.message : String(e)}`);
    code = e instanceof UsageError ? 2 : 1;
  }
  Deno.exit(code);
}
