/**
 * NTP serving load benchmark: edge-time against chronyd on loopback, in
 * one run, with the neutral load generator `shared/bench/ntpload.c`.
 *
 * For each server: a short warm-up, `ntpload --ramp` (highest rate
 * answered at >= 99 %), then a fixed-rate step (default 40 000 req/s)
 * for the median and p99 |offset| (the same kernel clock on both ends, so
 * any offset is the server's timestamping error under load), sampling the
 * server's RSS (/proc/PID/status VmRSS) while it is loaded.
 *
 *   deno task bench [--workers N] [--rate R] [--seconds S] [--json]
 *
 * Needs cc and chronyd; chronyd runs with -x (never touches the clock).
 */
import { parseArgs } from "cli";
import { freeTcpPort, freeUdpPort, startEdgeTime } from "../tests/helpers/edge_time.ts";
import { buildNtpload } from "../tests/helpers/ntpload.ts";

const HELP = `Usage: deno task bench [--workers N] [--rate R] [--seconds S] [--json]

Benchmarks edge-time against chronyd (local stratum 8) on loopback.
  --workers N   edge-time server workers (default 1)
  --rate R      fixed-rate step, requests per second (default 40000)
  --seconds S   seconds per ntpload step (default 3)
  --json        print one JSON object instead of a table
Environment: NTPLOAD_SRC overrides the path of ntpload.c.`;

interface Step {
  rate: number;
  sent_per_s: number;
  answered_per_s: number;
  loss: number;
  offset_median_us: number;
  offset_p99_abs_us: number;
  rtt_median_us: number;
  rtt_p99_us: number;
}

interface ServerResult {
  max_rate: number;
  ramp: Step[];
  fixed: Step;
  rss_mb: number;
  /** Anonymous (heap, stacks) and file-backed (the executable's code) parts of rss_mb. */
  rss_anon_mb: number;
  rss_file_mb: number;
}

async function run(cmd: string, args: string[]): Promise<string> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  const text = new TextDecoder().decode(out.stdout);
  if (!out.success) {
    throw new Error(`${cmd} ${args.join(" ")} failed:\n${new TextDecoder().decode(out.stderr)}`);
  }
  return text;
}

function parseLines(text: string): Record<string, number>[] {
  return text.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));
}

async function ntpload(
  bin: string,
  port: number,
  args: string[],
): Promise<Record<string, number>[]> {
  // Exit code 1 means nothing was answered: that is a result too.
  const out = await new Deno.Command(bin, {
    args: ["-p", String(port), "--json", ...args, "127.0.0.1"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const lines = parseLines(new TextDecoder().decode(out.stdout));
  if (lines.length === 0) {
    throw new Error(`ntpload ${args.join(" ")}: ${new TextDecoder().decode(out.stderr).trim()}`);
  }
  return lines;
}

function rssMb(pid: number, field = "VmRSS"): number {
  try {
    const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(
      Deno.readTextFileSync(`/proc/${pid}/status`),
    );
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

/** Runs `fn` while sampling the peak RSS of `pid`. */
async function withRss<T>(
  pid: number,
  fn: () => Promise<T>,
): Promise<[T, { rss: number; anon: number; file: number }]> {
  const peak = { rss: 0, anon: 0, file: 0 };
  const sample = () => {
    const rss = rssMb(pid) || 0;
    if (rss < peak.rss) return;
    peak.rss = rss;
    peak.anon = rssMb(pid, "RssAnon") || 0;
    peak.file = rssMb(pid, "RssFile") || 0;
  };
  const t = setInterval(sample, 100);
  try {
    const r = await fn();
    sample();
    return [r, peak];
  } finally {
    clearInterval(t);
  }
}

async function measure(
  bin: string,
  port: number,
  pid: number,
  rate: number,
  seconds: number,
): Promise<ServerResult> {
  await ntpload(bin, port, ["-r", "20000", "-d", "1"]); // warm-up (JIT, caches)
  const ramp = await ntpload(bin, port, ["--ramp", "-r", "25000", "-d", String(seconds)]);
  const max = ramp.find((r) => "max_rate_answered" in r)?.max_rate_answered ?? 0;
  const [fixed, rss] = await withRss(
    pid,
    () => ntpload(bin, port, ["-r", String(rate), "-d", String(seconds + 2)]),
  );
  return {
    max_rate: max,
    ramp: ramp.filter((r) => "rate" in r) as unknown as Step[],
    fixed: fixed[0] as unknown as Step,
    rss_mb: rss.rss,
    rss_anon_mb: rss.anon,
    rss_file_mb: rss.file,
  };
}

async function benchEdgeTime(
  bin: string,
  workers: number,
  rate: number,
  seconds: number,
): Promise<ServerResult & { driver: string }> {
  const port = await freeUdpPort();
  const statusPort = freeTcpPort();
  const et = await startEdgeTime(
    `
[server]
listen = ["127.0.0.1:${port}"]
workers = ${workers}
local_stratum = 8
rate_limit = { interval_s = 0 }
[clock]
control = false
[status]
listen = "127.0.0.1:${statusPort}"
`,
    { readyPattern: /Serving NTP on/ },
  );
  try {
    const status = await (await fetch(`http://127.0.0.1:${statusPort}/status`)).json();
    const r = await measure(bin, port, et.child.pid, rate, seconds);
    return { ...r, driver: `${status.driver}, ${status.workers} worker(s)` };
  } finally {
    await et.stop();
  }
}

async function benchChrony(
  bin: string,
  rate: number,
  seconds: number,
): Promise<ServerResult & { version: string }> {
  const port = await freeUdpPort();
  const dir = await Deno.makeTempDir({ prefix: "bench-chrony-" });
  await Deno.writeTextFile(
    `${dir}/chrony.conf`,
    [
      "local stratum 8",
      "allow",
      `port ${port}`,
      "bindaddress 127.0.0.1",
      "cmdport 0",
      `pidfile ${dir}/chronyd.pid`,
      `dumpdir ${dir}`,
    ].join("\n") + "\n",
  );
  const version = (await run("chronyd", ["-v"])).trim().split(" ").slice(0, 4).join(" ");
  const child = new Deno.Command("chronyd", {
    args: ["-x", "-d", "-u", "root", "-f", `${dir}/chrony.conf`],
    stdout: "null",
    stderr: "null",
    stdin: "null",
  }).spawn();
  try {
    // Ready when it answers.
    for (let i = 0; i < 50; i++) {
      const r = await ntpload(bin, port, ["-r", "100", "-d", "0.1", "-s", "1"]).catch(() => []);
      if ((r[0]?.answered_per_s ?? 0) > 0) break;
      await new Promise((res) => setTimeout(res, 100));
    }
    return { ...(await measure(bin, port, child.pid, rate, seconds)), version };
  } finally {
    try {
      child.kill("SIGTERM");
    } catch { /* gone */ }
    await child.status;
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

function fmt(n: number, digits = 0): string {
  return Number.isFinite(n) ? n.toFixed(digits) : "-";
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      workers: { type: "string", default: "1" },
      rate: { type: "string", default: "40000" },
      seconds: { type: "string", default: "3" },
      json: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const workers = Number(values.workers), rate = Number(values.rate);
  const seconds = Number(values.seconds);
  if (!(workers >= 0 && workers <= 64 && rate > 0 && seconds > 0)) {
    console.error("bench: --workers must be 0..64, --rate and --seconds positive");
    return 2;
  }
  const log = (s: string) => values.json || console.error(s);
  log("building ntpload ...");
  const bin = await buildNtpload();
  log(`edge-time (${workers} worker(s)) ...`);
  const et = await benchEdgeTime(bin, workers, rate, seconds);
  log("chronyd ...");
  const ch = await benchChrony(bin, rate, seconds);

  const ratio = (a: number, b: number) => (b > 0 ? a / b : NaN);
  const result = {
    date: new Date().toISOString(),
    machine: `${navigator.hardwareConcurrency} cores, ${Deno.build.os}/${Deno.build.arch}`,
    command: `deno task bench ${Deno.args.join(" ")}`.trim(),
    workers,
    fixed_rate: rate,
    edge_time: et,
    chrony: ch,
    ratios: {
      throughput: ratio(et.max_rate, ch.max_rate),
      offset_p99: ratio(et.fixed.offset_p99_abs_us, ch.fixed.offset_p99_abs_us),
      rss: ratio(et.rss_mb, ch.rss_mb),
    },
    targets: {
      throughput_ge_1_5x: ratio(et.max_rate, ch.max_rate) >= 1.5,
      offset_p99_le_chrony: et.fixed.offset_p99_abs_us <= ch.fixed.offset_p99_abs_us,
      rss_lt_80mb: et.rss_mb < 80,
    },
  };
  if (values.json) {
    console.log(JSON.stringify(result));
    return 0;
  }
  const rows: [string, string, string, string][] = [
    [
      "max answered rate at >= 99 % (req/s)",
      fmt(et.max_rate),
      fmt(ch.max_rate),
      fmt(result.ratios.throughput, 2),
    ],
    [
      `answered at ${rate} req/s (req/s)`,
      fmt(et.fixed.answered_per_s),
      fmt(ch.fixed.answered_per_s),
      fmt(ratio(et.fixed.answered_per_s, ch.fixed.answered_per_s), 2),
    ],
    [
      `median offset at ${rate} req/s (µs)`,
      fmt(et.fixed.offset_median_us, 1),
      fmt(ch.fixed.offset_median_us, 1),
      fmt(ratio(Math.abs(et.fixed.offset_median_us), Math.abs(ch.fixed.offset_median_us)), 2),
    ],
    [
      `p99 |offset| at ${rate} req/s (µs)`,
      fmt(et.fixed.offset_p99_abs_us, 1),
      fmt(ch.fixed.offset_p99_abs_us, 1),
      fmt(result.ratios.offset_p99, 2),
    ],
    [
      `median RTT at ${rate} req/s (µs)`,
      fmt(et.fixed.rtt_median_us, 1),
      fmt(ch.fixed.rtt_median_us, 1),
      fmt(ratio(et.fixed.rtt_median_us, ch.fixed.rtt_median_us), 2),
    ],
    ["RSS under load (MB)", fmt(et.rss_mb, 1), fmt(ch.rss_mb, 1), fmt(result.ratios.rss, 2)],
    [
      "  of which anonymous / file-backed (MB)",
      `${fmt(et.rss_anon_mb, 1)} / ${fmt(et.rss_file_mb, 1)}`,
      `${fmt(ch.rss_anon_mb, 1)} / ${fmt(ch.rss_file_mb, 1)}`,
      "",
    ],
  ];
  const w0 = Math.max(...rows.map((r) => r[0].length));
  const line = (r: string[]) =>
    `| ${r[0]!.padEnd(w0)} | ${r[1]!.padStart(12)} | ${r[2]!.padStart(12)} | ${
      r[3]!.padStart(6)
    } |`;
  console.log(`${result.date}  ${result.machine}  edge-time: ${et.driver}  ${ch.version}`);
  console.log(line(["", "edge-time", "chrony", "ratio"]));
  console.log(`|${"-".repeat(w0 + 2)}|${"-".repeat(14)}|${"-".repeat(14)}|${"-".repeat(8)}|`);
  for (const r of rows) console.log(line(r));
  const t = result.targets;
  console.log(
    `targets: throughput >= 1.5x chrony: ${t.throughput_ge_1_5x ? "met" : "NOT met"}; ` +
      `p99 |offset| <= chrony: ${t.offset_p99_le_chrony ? "met" : "NOT met"}; ` +
      `RSS < 80 MB: ${t.rss_lt_80mb ? "met" : "NOT met"}`,
  );
  return 0;
}

try {
  Deno.exit(await main());
} catch (e) {
  console.error(`bench: ${e instanceof Error ? e.message : e}`);
  Deno.exit(1);
}
