/**
 * Builds and runs `ntpload` (bench/ntpload.c), the project's NTP load
 * generator, for tests and benchmarks. The binary goes to
 * bench/out/ntpload and is rebuilt only when the source is newer.
 */
import { localServerToml } from "./edge_time.ts";

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

/** Where ntpload.c lives: bench/ntpload.c, or $NTPLOAD_SRC (a generator with the same interface). */
export function ntploadSource(): string {
  return Deno.env.get("NTPLOAD_SRC") || new URL("bench/ntpload.c", ROOT).pathname;
}

/**
 * Builds bench/out/ntpload (cc -O2 … -lm -lcrypto) if missing or stale; returns its
 * path. A $NTPLOAD_SRC build goes to bench/out/ntpload-override instead, so
 * the two never stand in for each other.
 */
export function buildNtpload(): Promise<string> {
  const name = Deno.env.get("NTPLOAD_SRC") ? "ntpload-override" : "ntpload";
  return buildC(ntploadSource(), name, ["-lm", "-lcrypto"]);
}

/** Builds the C program `src` to bench/out/NAME (cc -O2) if missing or stale; returns its path. */
export async function buildC(src: string, name: string, libs: string[] = []): Promise<string> {
  const out = new URL(`bench/out/${name}`, ROOT).pathname;
  const srcStat = await Deno.stat(src).catch(() => null);
  if (!srcStat) throw new Error(`${name}: source not found at ${src}`);
  const outStat = await Deno.stat(out).catch(() => null);
  if (outStat && (outStat.mtime ?? 0) >= (srcStat.mtime ?? 0)) return out;
  await Deno.mkdir(new URL("bench/out/", ROOT), { recursive: true });
  // Build to a private name, then rename: parallel test files may build at once.
  const tmp = `${out}.${Deno.pid}.tmp`;
  const r = await new Deno.Command("cc", { args: ["-O2", "-o", tmp, src, ...libs] }).output();
  if (!r.success) {
    throw new Error(`${name}: cc failed: ${new TextDecoder().decode(r.stderr).split("\n")[0]}`);
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
 * `rateLimit` replaces the inside of the `rate_limit` table.
 */
export function loadTargetToml(
  port: number,
  statusPort: number,
  workers: number,
  rateLimit = "interval_s = 0",
): string {
  return localServerToml(port, statusPort, `workers = ${workers}\nrate_limit = { ${rateLimit} }`);
}

/**
 * The `rate_limit` of `deno task bench --rate-limit`: limiting on, with a
 * limit (10⁶ requests/s, bursts of 1024) above anything ntpload sends
 * from its one address, so every request goes through the whole check
 * (hash, set lock, lookup, GCRA update in the shared table) and is
 * answered: the serving rate then shows what the check costs.
 */
export const BENCH_RATE_LIMIT = "interval_s = 0.000001, burst = 1024, kod = true";

/** Runs ntpload with `args` (plus `--json`) and returns every JSON line it printed. */
export async function ntploadJson(
  bin: string,
  args: string[],
): Promise<Record<string, number>[]> {
  // Exit code 1 means nothing was answered: that is a result too.
  const out = await new Deno.Command(bin, {
    args: ["--json", ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const rows: Record<string, number>[] = [];
  for (const l of new TextDecoder().decode(out.stdout).split("\n")) {
    if (l.startsWith("{")) rows.push(JSON.parse(l));
  }
  if (rows.length === 0) {
    throw new Error(`ntpload ${args.join(" ")}: ${new TextDecoder().decode(out.stderr).trim()}`);
  }
  return rows;
}

export interface MaxRate {
  /** Highest rate answered at >= 99 % (answered per second). */
  max: number;
  /** Every step ntpload ran, the ramp's and the bisection's. */
  steps: NtploadStep[];
}

/**
 * The highest rate a server answers at >= 99 %, to about 1.5 %.
 * `ntpload --ramp` brackets it (its own bisection stops at steps of
 * 12.5 %: 225k, 250k, 275k …), then `bisections` fixed-rate steps halve the
 * bracket each. A step passes as ntpload's do: loss <= 1 % and at least
 * 95 % of the asked rate really sent.
 */
export async function findMaxRate(
  bin: string,
  port: number,
  opts: {
    seconds: number;
    sockets: number;
    bisections?: number;
    host?: string;
    /** More ntpload options, e.g. `["--template", FILE]`, or `["-k", "1:MD5:…"]` for MACs. */
    extra?: string[];
    /** Rate the ramp starts from (default 25000). */
    startRate?: number;
  },
): Promise<MaxRate> {
  const host = opts.host ?? "127.0.0.1";
  const common = [
    "-p",
    String(port),
    "-d",
    String(opts.seconds),
    "-s",
    String(opts.sockets),
    ...(opts.extra ?? []),
  ];
  const start = String(opts.startRate ?? 25000);
  const ramp = await ntploadJson(bin, [...common, "--ramp", "-r", start, host]);
  const steps = ramp.filter((r) => "rate" in r) as unknown as NtploadStep[];
  let max = ramp.find((r) => "max_rate_answered" in r)?.max_rate_answered ?? 0;
  // The ramp's first failing rate is at most 12.5 % above its best.
  let lo = max, hi = max * 1.125;
  for (let i = 0; i < (opts.bisections ?? 4) && lo > 0; i++) {
    const mid = Math.round((lo + hi) / 2);
    const [r] = await ntploadJson(bin, [...common, "-r", String(mid), host]) as unknown as [
      NtploadStep,
    ];
    steps.push(r);
    if (r.loss <= 0.01 && r.sent_per_s >= 0.95 * mid) {
      lo = mid;
      max = Math.max(max, r.answered_per_s);
    } else hi = mid;
  }
  return { max: Math.round(max), steps };
}
