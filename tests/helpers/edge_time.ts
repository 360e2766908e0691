/**
 * Starts a real edge-time process (`deno run main.ts run`) for integration
 * tests, waits until it serves, and stops it. Every process is bounded by
 * the test that started it; `stop()` always reaps it.
 */
import dgram from "node:dgram";

const ROOT = new URL("../../", import.meta.url);
/** Absolute path of `ip`, so a test may run edge-time with a PATH that lacks it. */
const IP = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"].find((p) => {
  try {
    return Deno.statSync(p).isFile;
  } catch {
    return false;
  }
}) ?? "ip";

export interface EdgeTimeProcess {
  child: Deno.ChildProcess;
  /** Directory holding the config and anything the test wants to keep. */
  dir: string;
  configPath: string;
  /** stderr lines so far. */
  logs(): string[];
  /** Resolves with the first log line matching `re`, or rejects after `timeoutMs`. */
  waitForLog(re: RegExp, timeoutMs?: number): Promise<string>;
  /** Sends `signal` (default SIGTERM) and resolves with the exit code. */
  stop(signal?: Deno.Signal): Promise<number>;
}

/**
 * The smallest config that serves: local stratum 8 on 127.0.0.1:`port`, the
 * clock left alone, no drift file, status on 127.0.0.1:`statusPort` (0 =
 * off). `server` adds lines to [server] (e.g. `driver = "ffi"`).
 */
export function localServerToml(port: number, statusPort: number, server = ""): string {
  return `[server]
listen = ["127.0.0.1:${port}"]
local_stratum = 8
${server}
[clock]
control = false
driftfile = ""
[status]
listen = "${statusPort ? `127.0.0.1:${statusPort}` : ""}"
`;
}

/** A UDP port that was free a moment ago (bind 0, read, close). */
export async function freeUdpPort(): Promise<number> {
  const s = dgram.createSocket("udp4");
  await new Promise<void>((r) => s.bind(0, "127.0.0.1", () => r()));
  const port = s.address().port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** A TCP port that was free a moment ago. */
export function freeTcpPort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

export interface StartOptions {
  /** Extra argv before "run" options, e.g. a different subcommand. */
  args?: string[];
  /** Log line that means "ready"; default: serving NTP. */
  readyPattern?: RegExp;
  /** Run a compiled binary instead of `deno run main.ts`. */
  binary?: string;
  /** Run `deno run main.ts` with this deno executable instead of the one running the tests. */
  deno?: string;
  env?: Record<string, string>;
  /** Run the process inside this network namespace (`ip netns exec NS …`). */
  netns?: string;
  /** Run the process under this command, e.g. `["nice", "-n", "5"]` (after `netns`). */
  prefix?: string[];
}

/** argv that runs main.ts of this checkout with `args`: `deno run --allow-all … main.ts ARGS`. */
export function mainArgv(...args: string[]): string[] {
  return [
    Deno.execPath(),
    "run",
    "--allow-all",
    "--config",
    new URL("deno.json", ROOT).pathname,
    new URL("main.ts", ROOT).pathname,
    ...args,
  ];
}

/** Writes `toml` to a temp config and runs `edge-time run --config` on it. */
export async function startEdgeTime(
  toml: string,
  opts: StartOptions = {},
): Promise<EdgeTimeProcess> {
  const dir = await Deno.makeTempDir({ prefix: "edge-time-test-" });
  const configPath = `${dir}/edge.toml`;
  await Deno.writeTextFile(configPath, toml);
  const args = opts.args ?? ["run", "--config", configPath];
  // `ip netns exec` and `nice` exec the program in place, so signals reach it directly.
  const argvFull = [
    ...(opts.netns ? [IP, "netns", "exec", opts.netns] : []),
    ...(opts.prefix ?? []),
    ...(opts.binary
      ? [opts.binary, ...args]
      : opts.deno
      ? [opts.deno, ...mainArgv(...args).slice(1)]
      : mainArgv(...args)),
  ];
  const [program, ...argv] = argvFull as [string, ...string[]];
  const cmd = new Deno.Command(program, {
    args: argv,
    stderr: "piped",
    stdout: "piped",
    stdin: "null",
    env: opts.env ?? {},
  });
  const child = cmd.spawn();
  const lines: string[] = [];
  const waiters: { re: RegExp; resolve: (l: string) => void }[] = [];
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    let buf = "";
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      buf += chunk;
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        lines.push(line);
        for (const w of waiters.filter((w) => w.re.test(line))) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(line);
        }
      }
    }
    if (buf) lines.push(buf);
  };
  const pumps = Promise.all([pump(child.stderr), pump(child.stdout)]);
  let exited: number | null = null;
  const status = child.status.then((s) => exited = s.code);
  const proc: EdgeTimeProcess = {
    child,
    dir,
    configPath,
    logs: () => [...lines],
    waitForLog(re, timeoutMs = 15_000) {
      const hit = lines.find((l) => re.test(l));
      if (hit) return Promise.resolve(hit);
      return new Promise((resolve, reject) => {
        const w = { re, resolve: (l: string) => (clearTimeout(t), resolve(l)) };
        const t = setTimeout(() => {
          waiters.splice(waiters.indexOf(w), 1);
          reject(
            new Error(
              `No log line matching ${re} within ${timeoutMs} ms; exit ${exited}; log:\n${
                lines.join("\n")
              }`,
            ),
          );
        }, timeoutMs);
        waiters.push(w);
        status.then(() =>
          setTimeout(() => {
            if (waiters.includes(w)) {
              clearTimeout(t);
              waiters.splice(waiters.indexOf(w), 1);
              reject(
                new Error(
                  `edge-time exited (${exited}) before logging ${re}; log:\n${lines.join("\n")}`,
                ),
              );
            }
          }, 50)
        );
      });
    },
    async stop(signal: Deno.Signal = "SIGTERM") {
      if (exited === null) {
        try {
          child.kill(signal);
        } catch { /* already gone */ }
        const killer = setTimeout(() => {
          try {
            child.kill("SIGKILL");
          } catch { /* gone */ }
        }, 5000);
        await status;
        clearTimeout(killer);
      }
      await pumps;
      await Deno.remove(dir, { recursive: true }).catch(() => {});
      return exited ?? -1;
    },
  };
  if (opts.readyPattern !== null) {
    try {
      await proc.waitForLog(opts.readyPattern ?? /Serving NTP on/);
    } catch (e) {
      await proc.stop("SIGKILL");
      throw e;
    }
  }
  return proc;
}
