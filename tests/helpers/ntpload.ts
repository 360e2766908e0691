/**
 * Builds and runs `ntpload` (../shared/bench/ntpload.c), the neutral NTP
 * load generator, for tests and benchmarks. The binary goes to
 * bench/out/ntpload and is rebuilt only when the source is newer.
 */
const ROOT = new URL("../../", import.meta.url);

/** One step of ntpload's `--json` output. */
export interface NtploadStep {
  rate: number;
  sent_per_s: number;
  answered_per_s: number;
  /** Fraction of requests with neither an answer nor a KoD. */
  loss: number;
  kod: number;
  bad: number;
  rtt_median_us: number;
  rtt_p99_us: number;
  offset_median_us: number;
  offset_p99_abs_us: number;
  offset_max_abs_us: number;
}

/** Where ntpload.c lives: $NTPLOAD_SRC, else ../shared/bench/ntpload.c beside the repo. */
export function ntploadSource(): string {
  return Deno.env.get("NTPLOAD_SRC") ??
    new URL("../shared/bench/ntpload.c", ROOT).pathname;
}

/** Builds bench/out/ntpload (cc -O2 … -lm) if missing or stale; returns its path. */
export async function buildNtpload(): Promise<string> {
  const src = ntploadSource();
  const out = new URL("bench/out/ntpload", ROOT).pathname;
  const srcStat = await Deno.stat(src).catch(() => null);
  if (!srcStat) throw new Error(`ntpload: source not found at ${src} (set NTPLOAD_SRC)`);
  const outStat = await Deno.stat(out).catch(() => null);
  if (outStat && (outStat.mtime ?? 0) >= (srcStat.mtime ?? 0)) return out;
  await Deno.mkdir(new URL("bench/out/", ROOT), { recursive: true });
  // Build to a private name, then rename: parallel test files may build at once.
  const tmp = `${out}.${Deno.pid}.tmp`;
  const r = await new Deno.Command("cc", { args: ["-O2", "-o", tmp, src, "-lm"] }).output();
  if (!r.success) {
    throw new Error(`ntpload: cc failed: ${new TextDecoder().decode(r.stderr).split("\n")[0]}`);
  }
  await Deno.rename(tmp, out);
  return out;
}

/** Runs one fixed-rate ntpload step against host:port and returns its JSON line. */
export async function runNtpload(
  host: string,
  port: number,
  opts: { rate: number; seconds: number; sockets?: number },
): Promise<NtploadStep> {
  const bin = await buildNtpload();
  const args = ["-p", String(port), "-r", String(opts.rate), "-d", String(opts.seconds)];
  if (opts.sockets) args.push("-s", String(opts.sockets));
  const r = await new Deno.Command(bin, { args: [...args, "--json", host], stderr: "piped" })
    .output();
  const text = new TextDecoder().decode(r.stdout).trim().split("\n").pop() ?? "";
  try {
    return JSON.parse(text) as NtploadStep;
  } catch {
    throw new Error(
      `ntpload printed no JSON (exit ${r.code}): ${new TextDecoder().decode(r.stderr).trim()}`,
    );
  }
}

/**
 * Config of the edge-time that load benchmarks measure: local stratum 8
 * (no upstream needed), no rate limit (one client address sends
 * everything, and chrony has no limit by default), virtual clock.
 */
export function loadTargetToml(port: number, statusPort: number, workers: number): string {
  return `
[server]
listen = ["127.0.0.1:${port}"]
workers = ${workers}
local_stratum = 8
rate_limit = { interval_s = 0 }
[clock]
control = false
[status]
listen = "127.0.0.1:${statusPort}"
`;
}
