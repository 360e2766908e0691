/**
 * edge-time command line: parses argv, loads config, runs a subcommand.
 * Every failure ends as one line on stderr and a non-zero exit code;
 * no stack trace reaches the user.
 */
import { parseArgs } from "cli";
import { type Config, defaultConfig, loadConfig } from "./lib/config/mod.ts";
import { splitHostPort } from "./lib/config/socket_address.ts";
import { formatServer, queryServer, ReplyRejected } from "./lib/io/query_client.ts";
import { runApp } from "./lib/app.ts";
import { readKeys } from "./lib/io/key_file.ts";
import { checkNtsFiles } from "./lib/io/nts_files.ts";
import type { AuthKeys } from "./lib/auth/keys.ts";
import { realAnycastIo } from "./lib/anycast/mod.ts";
import { formatAction } from "./lib/anycast/plan.ts";
import { applyActions, planOneShot, selfQueryPort } from "./lib/anycast/runtime.ts";
import { DEFAULT_STATUS_URL, fetchStatus } from "./lib/status/client.ts";
import { formatPeers, formatTracking } from "./lib/status/text.ts";
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
  peers [--url URL]          ntpq -p style table of a running appliance's sources
  tracking [--url URL]       chronyc tracking style block of a running appliance
  anycast plan|apply|withdraw [--config FILE]
                             show or run the anycast commands (BIRD, ip route)
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
an IPv6 address with a port is written [ADDR]:PORT.

A reply that is not usable time (kiss-o'-death, leap 3 or stratum 0/16,
zero timestamps, a mismatched origin, a delay more than 100 µs below 0)
is reported as one line, HOST:PORT: reason, with exit status 1. A delay
just below 0 is stamping noise on a path of a few µs and is shown as 0.`,
  peers: `Usage: edge-time peers [--url URL]

Prints the sources of a running appliance as an ntpq -p style table
(delay, offset and jitter in milliseconds), read from its status server.
URL defaults to http://127.0.0.1:8123 (the default status.listen).`,
  tracking: `Usage: edge-time tracking [--url URL]

Prints the system clock state of a running appliance as a chronyc tracking
style block, read from its status server. URL defaults to
http://127.0.0.1:8123 (the default status.listen).`,
  anycast: `Usage: edge-time anycast plan|apply|withdraw [--config FILE]

For [anycast] mode "node" or "router" in FILE (default: the embedded config):
  plan      print the commands 'apply' would run now (dry run), after one
            health check: the self-query (node) or a query of each node (router)
  apply     run them: node: hold the addresses, announce through BIRD when
            healthy; router: route the VIP to the nodes that answer well
  withdraw  node: announce nothing and remove the addresses; router: remove
            the route. Use as systemd ExecStopPost= so a crash withdraws too.`,
  version: `Usage: edge-time version

Prints the edge-time version, the Deno version and the build target.`,
};

/**
 * The config file at `path` and the keys it names, or every error (config,
 * key file, source keys, NTS files: lib/io/nts_files.ts). Warnings (a key
 * file others may read) go to stderr; `run` leaves the NTS ones to its own
 * log (the server reads the master key file again at start and warns there).
 */
async function readConfig(
  path: string,
  o: { ntsWarnings: boolean } = { ntsWarnings: true },
): Promise<{ config: Config; keys: AuthKeys } | { errors: string[] }> {
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
  if (!r.ok) return { errors: r.errors };
  const k = readKeys(r.config, text, path);
  if (k.warning) console.error(k.warning);
  const nts = await checkNtsFiles(r.config, text, path);
  for (const w of o.ntsWarnings ? nts.warnings : []) console.error(w);
  const errors = [...k.errors, ...nts.errors];
  return errors.length > 0 || !k.keys ? { errors } : { config: r.config, keys: k.keys };
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
      const r = await readConfig(values.config, { ntsWarnings: false });
      if ("errors" in r) {
        for (const e of r.errors) console.error(e);
        return 2;
      }
      return runApp(r.config, values.config, r.keys);
    }
    case "check-config": {
      const { values, positionals } = parse(rest, {});
      if (values.help) return console.log(HELP["check-config"]), 0;
      if (positionals.length !== 1) throw new UsageError("check-config takes one FILE");
      const r = await readConfig(positionals[0]!);
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
      if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
        throw new UsageError(`--timeout "${values.timeout}": expected milliseconds > 0`);
      }
      let r;
      try {
        r = await queryServer(host, port, { timeoutMs });
      } catch (e) {
        // A reply that is not time: `HOST:PORT: reason`, like a config error's `FILE:LINE: …`.
        if (!(e instanceof ReplyRejected)) throw e;
        console.error(e.message);
        return 1;
      }
      const server = formatServer(host, port);
      if (values.json) {
        console.log(JSON.stringify({ server, ...r }));
      } else {
        const sign = r.offset >= 0 ? "+" : "";
        console.log(
          `${server} stratum ${r.stratum} refid ${r.refid || "-"} leap ${r.leap}` +
            ` offset ${sign}${r.offset.toFixed(6)} s delay ${r.delay.toFixed(6)} s` +
            ` root delay ${(r.rootDelay * 1e3).toFixed(3)} ms root dispersion ${
              (r.rootDisp * 1e3).toFixed(3)
            } ms`,
        );
      }
      return 0;
    }
    case "peers":
    case "tracking": {
      const { values, positionals } = parse(rest, { url: { type: "string", short: "u" } });
      if (values.help) return console.log(HELP[command]), 0;
      if (positionals.length > 0) throw new UsageError(`${command} takes no arguments, only --url`);
      const snap = await fetchStatus(values.url ?? DEFAULT_STATUS_URL);
      console.log(
        (command === "peers" ? formatPeers(snap.sources, snap.system) : formatTracking(snap.system))
          .trimEnd(),
      );
      return 0;
    }
    case "anycast": {
      const { values, positionals } = parse(rest, { config: { type: "string", short: "c" } });
      if (values.help) return console.log(HELP.anycast), 0;
      const [action] = positionals;
      if (positionals.length !== 1 || !["plan", "apply", "withdraw"].includes(action!)) {
        throw new UsageError("anycast takes one of plan, apply, withdraw");
      }
      let config = defaultConfig();
      if (values.config !== undefined) {
        const r = await readConfig(values.config);
        if ("errors" in r) {
          for (const e of r.errors) console.error(e);
          return 2;
        }
        config = r.config;
      }
      const io = realAnycastIo();
      const plan = await planOneShot(config.anycast, io, {
        kind: action === "withdraw" ? "withdraw" : "apply",
        selfPort: selfQueryPort(config.server.listen),
      });
      if (typeof plan === "string") throw new Error(plan);
      for (const n of plan.notes) console.log(`# ${n}`);
      if (plan.actions.length === 0) console.log("# nothing to do");
      for (const a of plan.actions) console.log(formatAction(a));
      if (action === "plan") return 0;
      const r = await applyActions(io, plan.actions);
      for (const w of r.warnings) console.error(`edge-time: warning: ${w}`);
      if (r.error !== null) throw new Error(r.error);
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
