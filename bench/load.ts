/**
 * NTP serving load benchmark: edge-time against chronyd on loopback, in
 * one run, with the project's load generator `bench/ntpload.c`.
 *
 * Both servers run side by side and are loaded in turns: a warm-up, then
 * `ntpload --ramp` (highest rate answered at >= 99 %) `--ramps` times
 * each, best kept; then fixed-rate runs (default 40 000 req/s) `--runs`
 * times each for the median and p99 |offset| (the same kernel clock on
 * both ends, and ntpload -T takes t1 from the kernel's transmit stamp, so
 * any offset is the server's timestamping error under load); the table
 * shows the run with the median p99. RSS
 * (/proc/PID/status VmRSS, peak) is sampled all the while.
 *
 *   deno task bench [--workers N] [--rate R] [--rate-limit] [--json] ...
 *
 * `--rate-limit` adds a second edge-time with rate limiting on (a limit
 * above the load, so every request is checked and answered:
 * BENCH_RATE_LIMIT) to the same turns, and reports its serving rate
 * against the first one's (limiting off), target >= 90 %.
 *
 * `--auth` is a mode of its own: one edge-time with a key file, loaded in
 * turns with plain requests and with requests carrying an MD5, SHA1 and
 * AES128-CMAC MAC (ntpload -k): `--ramps` max-rate searches each, best
 * kept, then `--runs` fixed-rate runs each (`--rate`) for the median CPU
 * time per answered request, which a busy machine disturbs less than the
 * max rate. It reports both and their ratios to plain (docs/benchmarks/
 * serving.md). An authenticated request costs the server two digests: it
 * checks the request's MAC, and makes the reply's after the stamp.
 *
 * `--nts` adds an edge-time with NTS on (`[nts] master_key_file`), loaded
 * in the same turns with prepared NTS requests (bench/nts_requests.ts: a
 * cookie and an authenticator each, as a client with a full jar sends),
 * and reports its max rate against the first edge-time's with plain
 * requests: the cost of NTS per request on the serving path.
 *
 * Needs cc and chronyd; chronyd runs with -x (never touches the clock).
 */
import { parseArgs } from "cli";
import { freeTcpPort, freeUdpPort, startEdgeTime } from "../tests/helpers/edge_time.ts";
import { until } from "../tests/helpers/wait.ts";
import { replyCostNs } from "./auth_cost.ts";
import { writeNtsRequests } from "./nts_requests.ts";
import {
  BENCH_RATE_LIMIT,
  buildC,
  buildNtpload,
  findMaxRate,
  loadTargetToml,
  ntploadJson,
} from "../tests/helpers/ntpload.ts";

const HELP = `Usage: deno task bench [--workers N] [--rate R] [--json] [options]

Benchmarks edge-time against chronyd (local stratum 8) on loopback.
  --workers N   edge-time server workers (default 1; 0 = one per core)
  --rate R      fixed-rate step, requests per second (default 40000)
  --seconds S   seconds per ntpload step (default 2; fixed runs take S+1)
  --ramps N     max-rate searches per server, best kept (default 2)
  --runs N      fixed-rate runs per server, median shown (default 9)
  --sockets N   ntpload source sockets (default 16)
  --no-floor    skip the max rate of bench/floor.c, a minimal C server
  --rate-limit  also load an edge-time with rate limiting on, every request checked
                and none limited (rate_limit = { ${BENCH_RATE_LIMIT} }),
                in the same turns; report its rate against limiting off (target >= 90 %)
  --auth        instead: one edge-time with keys, max rate with plain requests and with
                MD5, SHA1 and AES128-CMAC MACs, in turns; ratios to plain
  --nts         also load an edge-time with NTS on with NTS requests (cookie + authenticator)
                in the same turns; report its max rate against plain requests
  --json        print one JSON object instead of a table
Environment: NTPLOAD_SRC overrides the path of ntpload.c.`;

interface Step {
  rate: number;
  sent_per_s: number;
  answered_per_s: number;
  loss: number;
  /**
   * KoD replies in the step. With --rate-limit 0 or next to it: with several workers a
   * worker that catches up a backlog of more than `burst` requests of ntpload's one
   * address checks them as one burst, and a few are limited.
   */
  kod: number;
  offset_median_us: number;
  offset_p99_abs_us: number;
  rtt_median_us: number;
  rtt_p99_us: number;
}

interface ServerResult {
  /** Best of the ramps: the highest rate answered at >= 99 %. */
  max_rate: number;
  max_rate_runs: number[];
  ramp: Step[];
  /** The fixed-rate run with the median p99 |offset|. */
  fixed: Step;
  fixed_runs: Step[];
  offset_p99_median_us: number;
  /** Median CPU time (user + system, incl. the kernel's send path) per answered request. */
  cpu_us_per_request: number;
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

/** ntpload against 127.0.0.1:port with `args`; every JSON line it printed. */
function ntpload(bin: string, port: number, args: string[]): Promise<Record<string, number>[]> {
  return ntploadJson(bin, ["-p", String(port), ...args, "127.0.0.1"]);
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

/** Peak RSS of a process, sampled every 100 ms while a benchmark loads it. */
class RssSampler {
  rss = 0;
  anon = 0;
  file = 0;
  #timer: ReturnType<typeof setInterval> | undefined;
  constructor(readonly pid: number) {}
  sample(): void {
    const rss = rssMb(this.pid) || 0;
    if (rss < this.rss) return;
    this.rss = rss;
    this.anon = rssMb(this.pid, "RssAnon") || 0;
    this.file = rssMb(this.pid, "RssFile") || 0;
  }
  start(): void {
    this.#timer = setInterval(() => this.sample(), 100);
  }
  stop(): void {
    this.sample();
    clearInterval(this.#timer);
  }
}

/** CPU seconds (user + system) a process has used so far. */
function cpuSeconds(pid: number): number {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) / 100; // utime, stime in USER_HZ (100)
  } catch {
    return NaN;
  }
}

interface Target {
  port: number;
  pid: number;
  /** More ntpload options (NTS: the prepared requests); such targets get max-rate searches only. */
  extra?: string[];
  /** CPU µs per answered request in each fixed-rate run. */
  cpuUs: number[];
  rss: RssSampler;
  ramps: { max: number; steps: Step[] }[];
  fixed: Step[];
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)]! : NaN;
}

/** The fixed-rate run with the median p99 |offset| (so its row is one real run). */
function medianRun(runs: Step[]): Step {
  const s = [...runs].sort((a, b) => a.offset_p99_abs_us - b.offset_p99_abs_us);
  return s[Math.floor(s.length / 2)]!;
}

function summary(t: Target): ServerResult {
  return {
    max_rate: Math.max(...t.ramps.map((r) => r.max)),
    max_rate_runs: t.ramps.map((r) => r.max),
    ramp: t.ramps.flatMap((r) => r.steps),
    fixed: medianRun(t.fixed),
    fixed_runs: t.fixed,
    offset_p99_median_us: median(t.fixed.map((f) => f.offset_p99_abs_us)),
    cpu_us_per_request: median(t.cpuUs),
    rss_mb: t.rss.rss,
    rss_anon_mb: t.rss.anon,
    rss_file_mb: t.rss.file,
  };
}

/**
 * Loads both servers in turns (A, B, A, B …), so that a slow moment of a
 * shared machine does not fall on one server only: capacity is the best
 * max-rate search of each, accuracy the median of its fixed-rate runs.
 * The C floor, if any, gets its max-rate searches in the same turns.
 */
async function measureBoth(
  bin: string,
  targets: Target[],
  o: {
    rate: number;
    seconds: number;
    ramps: number;
    fixedRuns: number;
    sockets: number;
    floor: { port: number; max: number[] } | null;
  },
  log: (s: string) => void,
): Promise<void> {
  const s = ["-s", String(o.sockets)];
  for (const t of targets) {
    await ntpload(bin, t.port, [
      "-r",
      t.extra ? "2000" : "20000",
      "-d",
      "1",
      ...s,
      ...t.extra ?? [],
    ]);
  } // warm-up
  for (const t of targets) t.rss.start();
  try {
    for (let i = 0; i < o.ramps; i++) {
      for (const t of targets) {
        log(`  max rate ${i + 1}/${o.ramps} on port ${t.port}${t.extra ? " (NTS)" : ""}`);
        t.ramps.push(
          await findMaxRate(bin, t.port, {
            seconds: o.seconds,
            sockets: o.sockets,
            ...(t.extra ? { extra: t.extra, startRate: 2000 } : {}),
          }),
        );
      }
      if (o.floor) {
        log(`  max rate ${i + 1}/${o.ramps} of the C floor on port ${o.floor.port}`);
        o.floor.max.push(
          (await findMaxRate(bin, o.floor.port, { seconds: o.seconds, sockets: o.sockets })).max,
        );
      }
    }
    for (let i = 0; i < o.fixedRuns; i++) {
      for (const t of targets) {
        if (t.extra) continue; // NTS: its max rate is what is compared
        log(`  ${o.rate} req/s run ${i + 1}/${o.fixedRuns} on port ${t.port}`);
        const cpu0 = cpuSeconds(t.pid);
        // -T: t1 is the kernel's transmit stamp of each request, so the
        // offset is the server's own error, not ntpload's send path.
        const out = await ntpload(bin, t.port, [
          "-T",
          "-r",
          String(o.rate),
          "-d",
          String(o.seconds + 1),
          ...s,
        ]);
        const step = out[0] as unknown as Step;
        t.fixed.push(step);
        t.cpuUs.push((cpuSeconds(t.pid) - cpu0) * 1e6 / (step.answered_per_s * (o.seconds + 1)));
      }
    }
  } finally {
    for (const t of targets) t.rss.stop();
  }
}

async function startEdge(workers: number, rateLimit?: string, extraToml = ""): Promise<
  { port: number; pid: number; driver: string; stop: () => Promise<number> }
> {
  const port = await freeUdpPort();
  const statusPort = freeTcpPort();
  const et = await startEdgeTime(
    loadTargetToml(port, statusPort, workers, rateLimit) + extraToml,
    { readyPattern: /Serving NTP on/, deno: await privateDeno() },
  );
  // The status page comes up a moment after "Serving NTP on": polled, with a deadline.
  const status = await until(
    "edge-time's status page",
    async () => await (await fetch(`http://127.0.0.1:${statusPort}/status`)).json(),
    10_000,
  );
  return {
    port,
    pid: et.child.pid,
    driver: `${status.driver}, ${status.workers} worker(s)`,
    stop: () => et.stop(),
  };
}

/**
 * A copy of this deno for edge-time alone, as the compiled appliance has
 * its own executable: the kernel keeps the pages of an executable that
 * another process (this bench) maps too, so a shared one would not show
 * the start-up trim (lib/io/memory.ts) in edge-time's RSS.
 */
async function privateDeno(): Promise<string> {
  const path = new URL("out/deno-edge-time", import.meta.url).pathname;
  const have = await Deno.stat(path).catch(() => null);
  if (have?.size !== (await Deno.stat(Deno.execPath())).size) {
    await Deno.copyFile(Deno.execPath(), `${path}.tmp`);
    await Deno.rename(`${path}.tmp`, path);
  }
  return path;
}

/** bench/floor.c on a free loopback port: the least one thread can do to answer. */
async function startFloor(): Promise<{ port: number; stop: () => Promise<void> }> {
  const bin = await buildC(new URL("floor.c", import.meta.url).pathname, "floor");
  const port = await freeUdpPort();
  const child = new Deno.Command(bin, { args: [String(port)], stdout: "null", stderr: "piped" })
    .spawn();
  return {
    port,
    stop: async () => {
      try {
        child.kill("SIGKILL");
      } catch { /* gone */ }
      await child.output();
    },
  };
}

async function startChrony(bin: string): Promise<
  { port: number; pid: number; version: string; stop: () => Promise<void> }
> {
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
  const stop = async () => {
    try {
      child.kill("SIGTERM");
    } catch { /* gone */ }
    await child.status;
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  // Ready when it answers.
  for (let i = 0; i < 50; i++) {
    const r = await ntpload(bin, port, ["-r", "100", "-d", "0.1", "-s", "1"]).catch(() => []);
    if ((r[0]?.answered_per_s ?? 0) > 0) break;
    await new Promise((res) => setTimeout(res, 100));
  }
  return { port, pid: child.pid, version, stop };
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
      seconds: { type: "string", default: "2" },
      ramps: { type: "string", default: "2" },
      runs: { type: "string", default: "9" },
      sockets: { type: "string", default: "16" },
      "no-floor": { type: "boolean", default: false },
      "rate-limit": { type: "boolean", default: false },
      auth: { type: "boolean", default: false },
      nts: { type: "boolean", default: false },
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
  const counts = [values.ramps, values.runs, values.sockets].map(Number);
  if (
    !(workers >= 0 && workers <= 64 && rate > 0 && seconds > 0) ||
    !counts.every((n) => Number.isInteger(n) && n >= 1)
  ) {
    console.error(
      "bench: --workers must be 0..64; --rate, --seconds, --ramps, --runs, --sockets positive",
    );
    return 2;
  }
  const log = (s: string) => values.json || console.error(s);
  log("building ntpload ...");
  const bin = await buildNtpload();
  if (values.auth) {
    return await authMode(bin, workers, {
      seconds,
      rate,
      runs: Number(values.runs),
      ramps: Number(values.ramps),
      sockets: Number(values.sockets),
      json: values.json,
    }, log);
  }
  log(`starting edge-time (${workers} worker(s)) and chronyd ...`);
  const edge = await startEdge(workers);
  let limited: Awaited<ReturnType<typeof startEdge>> | null = null;
  let nts: Awaited<ReturnType<typeof startEdge>> | null = null;
  let ntsRequestBytes = 0;
  let ntsDir = "";
  let chrony: Awaited<ReturnType<typeof startChrony>> | null = null;
  let floor: Awaited<ReturnType<typeof startFloor>> | null = null;
  const floorMax: number[] = [];
  const targets: Target[] = [];
  const target = (t: { port: number; pid: number }, extra?: string[]): Target => ({
    port: t.port,
    pid: t.pid,
    ...(extra ? { extra } : {}),
    cpuUs: [],
    rss: new RssSampler(t.pid),
    ramps: [],
    fixed: [],
  });
  try {
    if (values["rate-limit"]) limited = await startEdge(workers, BENCH_RATE_LIMIT);
    let ntsTemplate = "";
    if (values.nts) {
      ntsDir = await Deno.makeTempDir({ prefix: "bench-nts-" });
      const made = await writeNtsRequests(ntsDir);
      ntsTemplate = made.templateFile;
      ntsRequestBytes = made.requestLength;
      nts = await startEdge(
        workers,
        undefined,
        `[nts]\nmaster_key_file = "${made.masterKeyFile}"\n`,
      );
    }
    chrony = await startChrony(bin);
    if (!values["no-floor"]) floor = await startFloor();
    // In turns: edge-time, (edge-time with rate limiting on,) chrony, (edge-time with NTS).
    targets.push(
      target(edge),
      ...(limited ? [target(limited)] : []),
      target(chrony),
      ...(nts ? [target(nts, ["--template", ntsTemplate])] : []),
    );
    log(
      `edge-time on port ${edge.port}, ${
        limited ? `edge-time with rate limiting on port ${limited.port}, ` : ""
      }chronyd on port ${chrony.port}${nts ? `, edge-time with NTS on port ${nts.port}` : ""}`,
    );
    await measureBoth(bin, targets, {
      rate,
      seconds,
      ramps: Number(values.ramps),
      fixedRuns: Number(values.runs),
      sockets: Number(values.sockets),
      floor: floor && { port: floor.port, max: floorMax },
    }, log);
  } finally {
    await edge.stop();
    await limited?.stop();
    await nts?.stop();
    if (ntsDir) await Deno.remove(ntsDir, { recursive: true }).catch(() => {});
    await chrony?.stop();
    await floor?.stop();
  }
  const floorBest = floorMax.length ? Math.max(...floorMax) : NaN;
  const et = { ...summary(targets[0]!), driver: edge.driver };
  const rl = limited ? { ...summary(targets[1]!), rate_limit: BENCH_RATE_LIMIT } : null;
  const chT = targets.find((t) => t.port === chrony!.port)!;
  const ch = { ...summary(chT), version: chrony!.version };
  const ntsT = nts ? targets.find((t) => t.port === nts!.port)! : null;
  const ntsResult = ntsT
    ? {
      max_rate: Math.max(...ntsT.ramps.map((r) => r.max)),
      max_rate_runs: ntsT.ramps.map((r) => r.max),
      request_bytes: ntsRequestBytes,
      /** KoD replies in all steps: NTS NAKs here (should be 0). */
      kod: ntsT.ramps.flatMap((r) => r.steps).reduce((n, f) => n + f.kod, 0),
    }
    : null;

  const ratio = (a: number, b: number) => (b > 0 ? a / b : NaN);
  const result = {
    date: new Date().toISOString(),
    machine: `${navigator.hardwareConcurrency} cores, ${Deno.build.os}/${Deno.build.arch}`,
    command: `deno task bench ${Deno.args.join(" ")}`.trim(),
    workers,
    fixed_rate: rate,
    ntpload: { sockets: Number(values.sockets), seconds_per_step: seconds },
    edge_time: et,
    /** `--rate-limit`: the same edge-time with rate limiting on (null without). */
    edge_time_rate_limited: rl,
    /** `--nts`: an edge-time with NTS on, loaded with NTS requests (null without). */
    edge_time_nts: ntsResult,
    chrony: ch,
    /** bench/floor.c: the least work one thread can do per request, under the same load. */
    floor: { max_rate: floorBest, max_rate_runs: floorMax },
    ratios: {
      throughput: ratio(et.max_rate, ch.max_rate),
      floor_throughput: ratio(floorBest, ch.max_rate),
      edge_time_of_floor: ratio(et.max_rate, floorBest),
      offset_p99: ratio(et.offset_p99_median_us, ch.offset_p99_median_us),
      rss: ratio(et.rss_mb, ch.rss_mb),
      /** Max rate with rate limiting on / off. */
      rate_limit_throughput: rl ? ratio(rl.max_rate, et.max_rate) : null,
      /** Max rate of NTS requests / plain requests. */
      nts_throughput: ntsResult ? ratio(ntsResult.max_rate, et.max_rate) : null,
    },
    targets: {
      throughput_ge_1_5x: ratio(et.max_rate, ch.max_rate) >= 1.5,
      offset_p99_le_chrony: et.offset_p99_median_us <= ch.offset_p99_median_us,
      rss_lt_80mb: et.rss_mb < 80,
      rate_limit_ge_90pct: rl ? ratio(rl.max_rate, et.max_rate) >= 0.9 : null,
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
      "  each ramp (req/s)",
      et.max_rate_runs.map((r) => fmt(r)).join(" "),
      ch.max_rate_runs.map((r) => fmt(r)).join(" "),
      "",
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
      fmt(et.offset_p99_median_us, 1),
      fmt(ch.offset_p99_median_us, 1),
      fmt(result.ratios.offset_p99, 2),
    ],
    [
      "  each run (µs)",
      et.fixed_runs.map((f) => fmt(f.offset_p99_abs_us)).join(" "),
      ch.fixed_runs.map((f) => fmt(f.offset_p99_abs_us)).join(" "),
      "",
    ],
    [
      `median RTT at ${rate} req/s (µs)`,
      fmt(et.fixed.rtt_median_us, 1),
      fmt(ch.fixed.rtt_median_us, 1),
      fmt(ratio(et.fixed.rtt_median_us, ch.fixed.rtt_median_us), 2),
    ],
    [
      `CPU per answered request at ${rate} req/s (µs)`,
      fmt(et.cpu_us_per_request, 1),
      fmt(ch.cpu_us_per_request, 1),
      fmt(ratio(et.cpu_us_per_request, ch.cpu_us_per_request), 2),
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
  if (floorMax.length) {
    console.log(
      `floor (bench/floor.c, one thread, no checks): max ${floorMax.map((r) => fmt(r)).join(" ")}` +
        ` req/s = ${fmt(result.ratios.floor_throughput, 2)}x chrony; edge-time reaches ` +
        `${fmt(result.ratios.edge_time_of_floor, 2)} of it`,
    );
  }
  if (rl) {
    const rows: [string, string, string, string][] = [
      [
        "max answered rate at >= 99 % (req/s)",
        fmt(rl.max_rate),
        fmt(et.max_rate),
        fmt(ratio(rl.max_rate, et.max_rate), 2),
      ],
      [
        "  each ramp (req/s)",
        rl.max_rate_runs.map((r) => fmt(r)).join(" "),
        et.max_rate_runs.map((r) => fmt(r)).join(" "),
        "",
      ],
      [
        `p99 |offset| at ${rate} req/s (µs)`,
        fmt(rl.offset_p99_median_us, 1),
        fmt(et.offset_p99_median_us, 1),
        fmt(ratio(rl.offset_p99_median_us, et.offset_p99_median_us), 2),
      ],
      [
        `CPU per answered request at ${rate} req/s (µs)`,
        fmt(rl.cpu_us_per_request, 1),
        fmt(et.cpu_us_per_request, 1),
        fmt(ratio(rl.cpu_us_per_request, et.cpu_us_per_request), 2),
      ],
      [
        "KoD replies in all steps (requests limited)",
        fmt([...rl.ramp, ...rl.fixed_runs].reduce((n, f) => n + f.kod, 0)),
        fmt([...et.ramp, ...et.fixed_runs].reduce((n, f) => n + f.kod, 0)),
        "",
      ],
    ];
    console.log(`edge-time, rate limiting on (rate_limit = { ${BENCH_RATE_LIMIT} }) vs off:`);
    console.log(line(["", "limit on", "limit off", "on/off"]));
    console.log(`|${"-".repeat(w0 + 2)}|${"-".repeat(14)}|${"-".repeat(14)}|${"-".repeat(8)}|`);
    for (const r of rows) console.log(line(r));
  }
  if (ntsResult) {
    console.log(
      `edge-time with NTS: max answered rate at >= 99 % of NTS requests (${ntsResult.request_bytes} bytes: ` +
        `cookie + authenticator) ${fmt(ntsResult.max_rate)} req/s (each ramp ${
          ntsResult.max_rate_runs.map((r) => fmt(r)).join(" ")
        }) vs plain ${fmt(et.max_rate)} req/s: ratio ${
          fmt(result.ratios.nts_throughput ?? NaN, 3)
        }; NTS NAKs ${ntsResult.kod}`,
    );
  }
  const t = result.targets;
  console.log(
    `targets: throughput >= 1.5x chrony: ${t.throughput_ge_1_5x ? "met" : "NOT met"}; ` +
      `p99 |offset| <= chrony: ${t.offset_p99_le_chrony ? "met" : "NOT met"}; ` +
      `RSS < 80 MB: ${t.rss_lt_80mb ? "met" : "NOT met"}` +
      (t.rate_limit_ge_90pct === null
        ? ""
        : `; rate with limiting on >= 90 % of off: ${t.rate_limit_ge_90pct ? "met" : "NOT met"}`),
  );
  return 0;
}

/** The keys of `--auth`: one per type measured (ntpd key file format, hex). */
const AUTH_KEYS = [
  { id: 1, type: "MD5", hex: "6b3c0f1e2d4a5968778695a4b3c2d1e0f1a2b3c4" },
  { id: 2, type: "SHA1", hex: "0123456789abcdef0123456789abcdef01234567" },
  { id: 3, type: "AES128CMAC", hex: "000102030405060708090a0b0c0d0e0f" },
] as const;

/**
 * `--auth`: one edge-time with a key file; max answered rate with plain
 * requests and with each key type's MACs, in turns (plain, MD5, SHA1,
 * CMAC, repeated `ramps` times), best of each kept.
 */
async function authMode(
  bin: string,
  workers: number,
  o: {
    seconds: number;
    rate: number;
    runs: number;
    ramps: number;
    sockets: number;
    json: boolean;
  },
  log: (s: string) => void,
): Promise<number> {
  const dir = await Deno.makeTempDir({ prefix: "bench-auth-" });
  const keyfile = `${dir}/ntp.keys`;
  await Deno.writeTextFile(keyfile, AUTH_KEYS.map((k) => `${k.id} ${k.type} ${k.hex}`).join("\n"));
  const modes = [
    { name: "plain", extra: [] as string[] },
    ...AUTH_KEYS.map((k) => ({ name: k.type, extra: ["-k", `${k.id}:${k.type}:${k.hex}`] })),
  ];
  const best = new Map<string, number[]>(modes.map((m) => [m.name, []]));
  const cpu = new Map<string, number[]>(modes.map((m) => [m.name, []]));
  log(`starting edge-time (${workers} worker(s)) with keys ...`);
  const edge = await startEdge(
    workers,
    undefined,
    `[auth]\nkeyfile = "${keyfile}"\ntrusted_keys = [${AUTH_KEYS.map((k) => k.id).join(", ")}]\n`,
  );
  try {
    for (let r = 0; r < o.ramps; r++) {
      for (const m of modes) {
        log(`ramp ${r + 1}/${o.ramps}: ${m.name} ...`);
        const found = await findMaxRate(bin, edge.port, {
          seconds: o.seconds,
          sockets: o.sockets,
          extra: m.extra,
        });
        best.get(m.name)!.push(found.max);
      }
    }
    for (let r = 0; r < o.runs; r++) {
      for (const m of modes) {
        log(`${o.rate} req/s run ${r + 1}/${o.runs}: ${m.name} ...`);
        const cpu0 = cpuSeconds(edge.pid);
        const [step] = await ntploadJson(bin, [
          "-p",
          String(edge.port),
          "-r",
          String(o.rate),
          "-d",
          String(o.seconds + 1),
          "-s",
          String(o.sockets),
          ...m.extra,
          "127.0.0.1",
        ]) as unknown as [Step];
        const answered = step.answered_per_s * (o.seconds + 1);
        if (answered > 0) cpu.get(m.name)!.push((cpuSeconds(edge.pid) - cpu0) * 1e6 / answered);
      }
    }
  } finally {
    await edge.stop();
    await Deno.remove(dir, { recursive: true });
  }
  const plain = Math.max(...best.get("plain")!);
  const plainCpu = median(cpu.get("plain")!);
  log("in-process cost of a reply ...");
  const inProcess = replyCostNs(
    AUTH_KEYS.map((k) => ({
      id: k.id,
      type: k.type,
      secret: new Uint8Array(k.hex.match(/../g)!.map((h) => parseInt(h, 16))),
    })),
  );
  const result = {
    date: new Date().toISOString(),
    machine: `${navigator.hardwareConcurrency} cores, ${Deno.build.os}/${Deno.build.arch}`,
    command: `deno task bench ${Deno.args.join(" ")}`.trim(),
    driver: edge.driver,
    /** ns per reply in one thread (respond, stamp, MAC), per digest backend. */
    in_process: inProcess,
    modes: modes.map((m) => {
      const runs = best.get(m.name)!;
      return {
        mode: m.name,
        max_rate: Math.max(...runs),
        runs,
        of_plain: Math.max(...runs) / plain,
        cpu_us_per_request: median(cpu.get(m.name)!),
        cpu_extra_us: median(cpu.get(m.name)!) - plainCpu,
      };
    }),
  };
  if (o.json) {
    console.log(JSON.stringify(result));
    return 0;
  }
  console.log(`${result.date}  ${result.machine}  edge-time: ${result.driver}`);
  console.log(
    `| requests | max answered rate at >= 99 % (req/s) | each ramp | of plain | ` +
      `CPU per answered request at ${o.rate} req/s (µs) | more than plain (µs) |`,
  );
  console.log("|---|--:|---|--:|--:|--:|");
  for (const m of result.modes) {
    console.log(
      `| ${m.mode} | ${fmt(m.max_rate)} | ${m.runs.map((r) => fmt(r)).join(" ")} | ${
        fmt(m.of_plain, 2)
      } | ${fmt(m.cpu_us_per_request, 2)} | ${fmt(m.cpu_extra_us, 2)} |`,
    );
  }
  console.log("In one thread, no sockets: respond + stamp (+ the reply's MAC), ns per reply:");
  console.log(
    "| requests | node:crypto / noble (ns) | libcrypto via FFI (ns) | FFI: more than plain (ns) |",
  );
  console.log("|---|--:|--:|--:|");
  const base = inProcess[0]!.libcrypto_ns ?? NaN;
  for (const m of inProcess) {
    console.log(
      `| ${m.mode} | ${fmt(m.library_ns)} | ${fmt(m.libcrypto_ns ?? NaN)} | ${
        fmt((m.libcrypto_ns ?? NaN) - base)
      } |`,
    );
  }
  return 0;
}

try {
  Deno.exit(await main());
} catch (e) {
  console.error(`bench: ${e instanceof Error ? e.message : e}`);
  Deno.exit(1);
}
