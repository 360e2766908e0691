/**
 * Real chronyd for integration tests, always with -x (never touches this
 * machine's clock), in the foreground, with its own pid file, command
 * socket and state in a temp dir.
 */

export interface Chronyd {
  dir: string;
  /** Runs chronyc against this chronyd; returns stdout. */
  chronyc(...args: string[]): Promise<string>;
  stop(): Promise<void>;
  logs(): string;
}

export function chronyAvailable(): string | null {
  try {
    new Deno.Command("chronyd", { args: ["-v"], stdout: "null", stderr: "null" }).outputSync();
    return null;
  } catch {
    return "chronyd is not installed (scripts/setup.sh test installs it)";
  }
}

/**
 * Starts `chronyd -x -d` with `lines` as its config (plus private paths),
 * inside network namespace `netns` when given (its command socket is a
 * file, so chronyc reaches it from anywhere).
 */
export async function startChronyd(lines: string[], netns?: string): Promise<Chronyd> {
  const dir = await Deno.makeTempDir({ prefix: "chrony-test-" });
  const conf = [
    ...lines,
    `pidfile ${dir}/chronyd.pid`,
    `bindcmdaddress ${dir}/chronyd.sock`,
    `dumpdir ${dir}`,
  ];
  await Deno.writeTextFile(`${dir}/chrony.conf`, conf.join("\n") + "\n");
  const argv = ["chronyd", "-x", "-d", "-f", `${dir}/chrony.conf`];
  const full = netns ? ["ip", "netns", "exec", netns, ...argv] : argv;
  const child = new Deno.Command(full[0]!, {
    args: full.slice(1),
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
  }).spawn();
  let log = "";
  const decoder = new TextDecoder();
  const pump = async (s: ReadableStream<Uint8Array>) => {
    for await (const c of s) log += decoder.decode(c);
  };
  const pumps = Promise.all([pump(child.stdout), pump(child.stderr)]);
  // Ready when the command socket exists.
  for (let i = 0; i < 100; i++) {
    try {
      await Deno.stat(`${dir}/chronyd.sock`);
      break;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return {
    dir,
    logs: () => log,
    async chronyc(...args: string[]) {
      const out = await new Deno.Command("chronyc", {
        args: ["-h", `${dir}/chronyd.sock`, ...args],
        stdout: "piped",
        stderr: "piped",
      }).output();
      return new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    },
    async stop() {
      try {
        child.kill("SIGTERM");
      } catch { /* gone */ }
      await child.status;
      await pumps;
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

/** One measurement chronyd took (its measurements.log): offset and round-trip delay, seconds. */
export interface ChronySample {
  offset: number;
  delay: number;
}

/**
 * `chronyd -Q` as a one-shot client: measures `server` and returns the
 * offset in seconds it printed (chronyd without touching the clock) and
 * every measurement it took on the way.
 */
export async function chronydMeasure(
  serverLine: string,
): Promise<{ offset: number; samples: ChronySample[]; output: string }> {
  const dir = await Deno.makeTempDir({ prefix: "chrony-q-" });
  try {
    await Deno.chmod(dir, 0o777); // chronyd writes its logs as its own user
    const out = await new Deno.Command("chronyd", {
      args: ["-Q", "-t", "10", serverLine, `logdir ${dir}`, "log measurements"],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    const m = /System clock wrong by (-?[0-9.]+) seconds/.exec(text);
    if (!m) throw new Error(`chronyd -Q printed no offset:\n${text}`);
    const log = await Deno.readTextFile(`${dir}/measurements.log`).catch(() => "");
    // "2026-11-29 09:27:06 127.0.0.1 N 8 111 111 1111 6 6 0.00 -3.326e-06 9.915e-06 …":
    // date, time, address, leap, stratum, tests, LP, RP, score, offset, delay, …
    const samples = log.split("\n").filter((l) => /^\d{4}-\d\d-\d\d /.test(l)).map((l) => {
      const f = l.trim().split(/\s+/);
      return { offset: Number(f[11]), delay: Number(f[12]) };
    });
    return { offset: Number(m[1]), samples, output: `${text}\n${log}` };
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}
