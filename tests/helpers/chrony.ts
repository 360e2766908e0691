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

/** Starts `chronyd -x -d` with `lines` as its config (plus private paths). */
export async function startChronyd(lines: string[]): Promise<Chronyd> {
  const dir = await Deno.makeTempDir({ prefix: "chrony-test-" });
  const conf = [
    ...lines,
    `pidfile ${dir}/chronyd.pid`,
    `bindcmdaddress ${dir}/chronyd.sock`,
    `dumpdir ${dir}`,
  ];
  await Deno.writeTextFile(`${dir}/chrony.conf`, conf.join("\n") + "\n");
  const child = new Deno.Command("chronyd", {
    args: ["-x", "-d", "-f", `${dir}/chrony.conf`],
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

/**
 * `chronyd -Q` as a one-shot client: measures `server` and returns the
 * offset in seconds it printed (chronyd without touching the clock).
 */
export async function chronydMeasure(
  serverLine: string,
): Promise<{ offset: number; output: string }> {
  const out = await new Deno.Command("chronyd", {
    args: ["-Q", "-t", "10", serverLine],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  const m = /System clock wrong by (-?[0-9.]+) seconds/.exec(text);
  if (!m) throw new Error(`chronyd -Q printed no offset:\n${text}`);
  return { offset: Number(m[1]), output: text };
}
