/**
 * Client accuracy benchmark: edge-time against chronyd as NTP clients of
 * one upstream, side by side, on each link in turn.
 *
 * Per link: an upstream `chronyd -x` (`local stratum 8`); as its clients,
 * edge-time (`clock.control = false`, a virtual clock) and `chronyd -x`
 * (observe-only), both at poll 4 with iburst, both serving what they
 * believe on a port of their own; and bench/client_probe.c asking both
 * servers for the time ~20 times a second with kernel timestamps. Every
 * process reads the same kernel clock, so the true offset of each client
 * is zero and the offset the probe measures is the client's error. Samples
 * count after a settling time, from replies that say they are synchronised;
 * in each window of 20 per client only the 10 of lowest delay are kept, so
 * the probe's own noise stays out.
 *
 * Links: "loopback" (everything on 127.0.0.1) and "wan" (the upstream in one
 * namespace, both clients and the probe in another, behind the WAN lab of
 * tests/helpers/wan_lab.ts: 1 ms + U[0, 0.1) ms each way, 0.1 % loss by
 * default; needs root).
 *
 *   deno task bench:client [--seconds N] [--links loopback,wan] [--json FILE] ...
 *
 * Every chronyd runs with -x: nothing here adjusts the machine's clock.
 */
import { checkedArgs, numberOption, parseArgs, runBench, UsageError } from "./cli_options.ts";
import {
  type EdgeTimeProcess,
  freeTcpPort,
  freeUdpPort,
  startEdgeTime,
} from "../tests/helpers/edge_time.ts";
import { buildC } from "../tests/helpers/ntpload.ts";
import {
  buildWanLab,
  checkImpairment,
  type ChronydProc,
  type Impairment,
  startChronydIn,
  type WanLab,
  wanLabUnavailable,
} from "../tests/helpers/wan_lab.ts";

const HELP = `Usage: deno task bench:client [options]

Client accuracy of edge-time and chronyd -x following one upstream chronyd,
measured by what each then serves (the kernel clock is shared: truth is 0).
  --seconds N     seconds per link (default 180)
  --links LIST    comma-separated: loopback, wan (default loopback,wan)
  --delay-ms MS   wan: one-way base delay (default 1)
  --jitter-ms MS  wan: jitter on top of the base, uniform (default 0.1)
  --loss P        wan: loss probability per frame, each way (default 0.001)
  --rate R        probe requests per second to each client (default 20)
  --settle S      seconds before served offsets count (default min(60, N/3))
  --xleave        both clients ask for interleaved replies (edge-time xleave = true, chronyd xleave)
  --cpus MODE     where the processes run (default split):
                    split   the upstream on CPU 0; both clients and the probe on the other CPUs
                    shared  everything on CPU 0
                    none    wherever the scheduler puts them
                  On loopback a basic-mode exchange is several µs longer when the two ends run
                  on different CPUs; placement must be the same for both clients
                  (docs/benchmarks/client.md, "CPU placement").
  --json FILE     also write the results as JSON to FILE
The wan link needs root (network namespaces); it is skipped with a reason otherwise.`;

const LINKS = ["loopback", "wan"] as const;
type LinkName = typeof LINKS[number];

/** One probe sample: seconds since the clients started, offset and delay in seconds. */
interface Sample {
  t: number;
  offset: number;
  delay: number;
  leap: number;
  stratum: number;
}

interface ClientResult {
  /** Median of the distinct delays the client reported for the upstream, seconds. */
  upstream_delay_s: number;
  upstream_delay_readings: number;
  /** Seconds from start until it reported itself synchronised; null if never. */
  first_sync_s: number | null;
  /** Signed frequency estimate at the end, ppm (truth 0). */
  frequency_ppm: number;
  /** Served offset, from the probe's kept samples, microseconds. */
  offset_abs_p50_us: number;
  offset_abs_p99_us: number;
  offset_median_us: number;
  probe_delay_median_us: number;
  samples: { sent: number; answered: number; synchronised_after_settle: number; kept: number };
}

interface LinkResult {
  link: LinkName;
  description: string;
  seconds: number;
  settle_s: number;
  edge_time: ClientResult;
  chrony: ClientResult;
  relay?: unknown;
}

interface Options {
  seconds: number;
  settle: number;
  rate: number;
  impairment: Required<Impairment>;
  /** Both clients in interleaved mode (RFC 9769). */
  xleave: boolean;
  /** CPU placement of the upstream, the clients and the probe. */
  cpus: Placement;
}

const PLACEMENTS = ["split", "shared", "none"] as const;
type Placement = typeof PLACEMENTS[number];

/**
 * The CPU lists (taskset syntax) for the upstream and for the clients with
 * the probe, or null to leave placement to the scheduler. "split" needs two
 * CPUs; with one, it degrades to "shared".
 */
function cpuSets(p: Placement): { upstream: string; clients: string } | null {
  const n = navigator.hardwareConcurrency;
  if (p === "none") return null;
  if (p === "shared" || n < 2) return { upstream: "0", clients: "0" };
  return { upstream: "0", clients: n === 2 ? "1" : `1-${n - 1}` };
}

/** Pins every thread of process `pid` to `cpus` (taskset syntax). */
async function pin(pid: number, cpus: string): Promise<void> {
  const r = await run(["taskset", "-a", "-c", "-p", cpus, String(pid)]);
  if (r.code !== 0) throw new Error(`taskset -a -c -p ${cpus} ${pid}: ${r.stderr.trim()}`);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function inNs(ns: string | null, argv: string[]): string[] {
  return ns ? ["ip", "netns", "exec", ns, ...argv] : argv;
}

async function run(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(argv[0]!, {
    args: argv.slice(1),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const d = new TextDecoder();
  return { code: out.code, stdout: d.decode(out.stdout), stderr: d.decode(out.stderr) };
}

function quantile(sorted: number[], q: number): number {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

function median(xs: number[]): number {
  return quantile([...xs].sort((a, b) => a - b), 0.5);
}

/**
 * The samples that count: after `settle` seconds, synchronised replies
 * (leap != 3, stratum 1..15), and in each run of 20 of those the 10 of
 * lowest delay.
 */
function keep(samples: Sample[], settle: number): { counted: number; kept: Sample[] } {
  const counted = samples.filter((s) =>
    s.t >= settle && s.leap !== 3 && s.stratum >= 1 && s.stratum <= 15
  );
  const kept: Sample[] = [];
  for (let i = 0; i < counted.length; i += 20) {
    const w = counted.slice(i, i + 20).sort((a, b) => a.delay - b.delay);
    kept.push(...w.slice(0, Math.ceil(w.length / 2)));
  }
  return { counted: counted.length, kept };
}

/** The probe, streaming samples for each target index. */
function startProbe(
  bin: string,
  ns: string | null,
  targets: string[],
  o: Options,
  t0: number,
  cpus: string | null,
) {
  const probe = [bin, "-r", String(o.rate), "-d", String(o.seconds), ...targets];
  const argv = inNs(ns, cpus ? ["taskset", "-c", cpus, ...probe] : probe);
  const child = new Deno.Command(argv[0]!, {
    args: argv.slice(1),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const samples: Sample[][] = targets.map(() => []);
  const totals = targets.map(() => ({ sent: 0, answered: 0 }));
  const stderr = new Response(child.stderr).text();
  const done = (async () => {
    let buf = "";
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      buf += chunk;
      for (let nl; (nl = buf.indexOf("\n")) >= 0; buf = buf.slice(nl + 1)) {
        const f = buf.slice(0, nl).split("\t");
        const i = Number(f[1]);
        if (f[0] === "S" && samples[i]) {
          samples[i].push({
            t: Number(f[2]) - t0,
            offset: Number(f[3]),
            delay: Number(f[4]),
            leap: Number(f[5]),
            stratum: Number(f[6]),
          });
        } else if (f[0] === "E" && totals[i]) {
          totals[i] = { sent: Number(f[2]), answered: Number(f[3]) };
        }
      }
    }
    const st = await child.status;
    if (!st.success) throw new Error(`client_probe failed: ${(await stderr).trim()}`);
  })();
  return {
    samples,
    totals,
    done,
    stop() {
      try {
        child.kill("SIGTERM");
      } catch { /* gone */ }
      return done.catch(() => {});
    },
  };
}

/** Until `host:port` answers the probe from `ns` (at most `tries` half-second probes). */
async function waitAnswering(bin: string, ns: string | null, target: string, tries = 40) {
  for (let i = 0; i < tries; i++) {
    const r = await run(inNs(ns, [bin, "-r", "20", "-d", "0.5", target]));
    if (r.stdout.includes("S\t0\t")) return;
    if (r.code === 2) throw new Error(r.stderr.trim());
    await sleep(250);
  }
  throw new Error(`nothing answers NTP at ${target}`);
}

interface EdgeReading {
  synced: boolean;
  delay: number | null;
  freq: number;
}

/** edge-time's /status via curl (from `ns`): sync state, the source's delay, frequency. */
async function readEdge(ns: string | null, statusPort: number): Promise<EdgeReading | null> {
  const r = await run(
    inNs(ns, ["curl", "-s", "--max-time", "2", `http://127.0.0.1:${statusPort}/status`]),
  );
  if (r.code !== 0) return null;
  const s = JSON.parse(r.stdout) as {
    system: { synchronised: boolean; frequency_ppm: number };
    sources: { tally: string; delay_s: number; reach: number }[];
  };
  const src = s.sources[0];
  return {
    synced: s.system.synchronised && src?.tally === "*",
    delay: src && src.reach !== 0 ? src.delay_s : null,
    freq: s.system.frequency_ppm,
  };
}

/** chronyd's tracking and ntpdata for `upAddr`: sync state, peer delay, frequency. */
async function readChrony(c: ChronydProc, upAddr: string): Promise<EdgeReading | null> {
  const tracking = await c.chronyc("tracking").catch(() => null);
  if (!tracking) return null;
  const field = (text: string, name: string) =>
    new RegExp(`^${name}\\s*:\\s*(.*)$`, "m").exec(text)?.[1]?.trim() ?? "";
  const leap = field(tracking, "Leap status");
  const fm = /^([\d.]+) ppm (slow|fast)/.exec(field(tracking, "Frequency"));
  const freq = fm ? Number(fm[1]) * (fm[2] === "fast" ? 1 : -1) : NaN;
  const ntpdata = await c.chronyc("ntpdata", upAddr).catch(() => "");
  const dm = /^([\d.]+) seconds/.exec(field(ntpdata, "Peer delay"));
  const total = Number(field(ntpdata, "Total RX") || 0);
  return { synced: leap === "Normal", delay: dm && total > 0 ? Number(dm[1]) : null, freq };
}

function clientResult(
  probeSamples: Sample[],
  totals: { sent: number; answered: number },
  settle: number,
  firstSync: number | null,
  delays: number[],
  freq: number,
): ClientResult {
  const { counted, kept } = keep(probeSamples, settle);
  const abs = kept.map((s) => Math.abs(s.offset)).sort((a, b) => a - b);
  return {
    upstream_delay_s: median(delays),
    upstream_delay_readings: delays.length,
    first_sync_s: firstSync,
    frequency_ppm: freq,
    offset_abs_p50_us: quantile(abs, 0.5) * 1e6,
    offset_abs_p99_us: quantile(abs, 0.99) * 1e6,
    offset_median_us: median(kept.map((s) => s.offset)) * 1e6,
    probe_delay_median_us: median(kept.map((s) => s.delay)) * 1e6,
    samples: { ...totals, synchronised_after_settle: counted, kept: kept.length },
  };
}

/** Registered clean-ups, run in reverse on the way out (also on SIGINT/SIGTERM). */
const cleanups: (() => Promise<unknown>)[] = [];
async function cleanUp(): Promise<void> {
  while (cleanups.length) await cleanups.pop()!().catch(() => {});
}

async function runLink(
  link: LinkName,
  o: Options,
  bins: { probe: string },
  log: (s: string) => void,
): Promise<LinkResult> {
  let lab: WanLab | null = null;
  if (link === "wan") {
    lab = await buildWanLab(o.impairment);
    const l = lab;
    cleanups.push(() => l.close());
  }
  const upNs = lab?.up ?? null, clNs = lab?.client ?? null;
  const upAddr = lab?.upAddr ?? "127.0.0.1";
  const upPort = lab ? 123 : await freeUdpPort();
  const edgePort = lab ? 12301 : await freeUdpPort();
  const chronyPort = lab ? 12302 : await freeUdpPort();
  const statusPort = lab ? 18123 : freeTcpPort();
  const imp = o.impairment;
  const description = lab
    ? `wan (${lab.mode}): ${imp.delayMs} ms + U[0, ${imp.jitterMs}) ms each way, loss ${
      imp.loss * 100
    } %`
    : "loopback: all on 127.0.0.1";
  log(`${link}: ${description}`);

  const upstream = await startChronydIn(upNs, [
    "local stratum 8",
    "allow",
    `bindaddress ${upAddr}`,
    `port ${upPort}`,
  ]);
  cleanups.push(() => upstream.stop());
  const cpus = cpuSets(o.cpus);
  if (cpus) await pin(upstream.pid, cpus.upstream);
  await waitAnswering(bins.probe, clNs, `${upAddr}:${upPort}`);

  const edgeToml = `[server]
listen = ["127.0.0.1:${edgePort}"]
workers = 1
rate_limit = { interval_s = 0 }
[clock]
control = false
driftfile = ""
[status]
listen = "127.0.0.1:${statusPort}"
[[source]]
address = "${upAddr}:${upPort}"
min_poll = 4
max_poll = 4
iburst = true
xleave = ${o.xleave}
`;
  const chronyLines = [
    `server ${upAddr} port ${upPort} minpoll 4 maxpoll 4 iburst${o.xleave ? " xleave" : ""}`,
    `port ${chronyPort}`,
    "bindaddress 127.0.0.1",
    "allow",
  ];
  log(`${link}: starting edge-time and chronyd -x as clients, probing for ${o.seconds} s`);
  const t0 = Date.now() / 1000, p0 = performance.now();
  const [edgeR, chronyR] = await Promise.allSettled([
    startEdgeTime(edgeToml, clNs ? { netns: clNs } : {}),
    startChronydIn(clNs, chronyLines),
  ]);
  let edge: EdgeTimeProcess | null = null, chrony: ChronydProc | null = null;
  if (edgeR.status === "fulfilled") {
    edge = edgeR.value;
    cleanups.push(() => edgeR.value.stop());
  }
  if (chronyR.status === "fulfilled") {
    chrony = chronyR.value;
    cleanups.push(() => chronyR.value.stop());
  }
  if (!edge || !chrony) {
    const why = [edgeR, chronyR].find((r) => r.status === "rejected") as PromiseRejectedResult;
    throw why.reason;
  }
  if (cpus) {
    await pin(edge.child.pid, cpus.clients);
    await pin(chrony.pid, cpus.clients);
  }
  const probe = startProbe(
    bins.probe,
    clNs,
    [`127.0.0.1:${edgePort}`, `127.0.0.1:${chronyPort}`],
    o,
    t0,
    cpus?.clients ?? null,
  );
  cleanups.push(() => probe.stop());

  // Watch both clients until the probe is done: first sync, delays, frequency.
  const firstSync: (number | null)[] = [null, null];
  const delays: number[][] = [[], []];
  const last: (EdgeReading | null)[] = [null, null];
  let probeDone = false;
  probe.done.finally(() => probeDone = true).catch(() => {});
  const deadline = p0 + (o.seconds + 60) * 1000;
  let nextNote = 30;
  while (!probeDone && performance.now() < deadline) {
    const readings = await Promise.all([readEdge(clNs, statusPort), readChrony(chrony, upAddr)]);
    const now = (performance.now() - p0) / 1000;
    readings.forEach((r, i) => {
      if (!r) return;
      if (r.synced && firstSync[i] === null) firstSync[i] = now;
      const ds = delays[i]!;
      if (r.delay !== null && r.delay !== ds[ds.length - 1]) ds.push(r.delay);
      last[i] = r;
    });
    if (now >= nextNote) {
      log(
        `  ${Math.round(now)} s: synchronised edge-time ${last[0]?.synced}, chrony ${
          last[1]?.synced
        }; probe samples ${probe.samples[0]!.length}, ${probe.samples[1]!.length}`,
      );
      nextNote += 30;
    }
    await sleep(firstSync.includes(null) ? 250 : 1000);
  }
  await probe.done;
  const final = await Promise.all([readEdge(clNs, statusPort), readChrony(chrony, upAddr)]);
  const relay = await lab?.relayStats();
  await cleanUp();

  return {
    link,
    description,
    seconds: o.seconds,
    settle_s: o.settle,
    edge_time: clientResult(
      probe.samples[0]!,
      probe.totals[0]!,
      o.settle,
      firstSync[0]!,
      delays[0]!,
      (final[0] ?? last[0])?.freq ?? NaN,
    ),
    chrony: clientResult(
      probe.samples[1]!,
      probe.totals[1]!,
      o.settle,
      firstSync[1]!,
      delays[1]!,
      (final[1] ?? last[1])?.freq ?? NaN,
    ),
    ...(relay ? { relay } : {}),
  };
}

function fmt(n: number | null, digits: number): string {
  return n !== null && Number.isFinite(n) ? n.toFixed(digits) : "-";
}

function table(r: LinkResult): string {
  const e = r.edge_time, c = r.chrony;
  const ratio = (a: number | null, b: number | null) =>
    a !== null && b !== null && b > 0 ? fmt(a / b, 2) : "-";
  const rows: [string, number | null, number | null, number][] = [
    ["delay to the upstream, median (ms)", e.upstream_delay_s * 1e3, c.upstream_delay_s * 1e3, 3],
    ["served |offset| p50 (µs)", e.offset_abs_p50_us, c.offset_abs_p50_us, 1],
    ["served |offset| p99 (µs)", e.offset_abs_p99_us, c.offset_abs_p99_us, 1],
    ["served offset, median (µs)", e.offset_median_us, c.offset_median_us, 1],
    [
      "|frequency error| at the end (ppm)",
      Math.abs(e.frequency_ppm),
      Math.abs(c.frequency_ppm),
      3,
    ],
    ["time to first sync (s)", e.first_sync_s, c.first_sync_s, 1],
  ];
  const w0 = Math.max(...rows.map((x) => x[0].length), 30);
  const line = (a: string, b: string, cc: string, d: string) =>
    `| ${a.padEnd(w0)} | ${b.padStart(10)} | ${cc.padStart(10)} | ${d.padStart(6)} |`;
  const out = [
    `${r.description}; ${r.seconds} s, offsets from ${r.settle_s} s on`,
    line("", "edge-time", "chrony", "ratio"),
    `|${"-".repeat(w0 + 2)}|${"-".repeat(12)}|${"-".repeat(12)}|${"-".repeat(8)}|`,
    ...rows.map(([name, a, b, d]) =>
      line(name, fmt(a, d), fmt(b, d), name.includes("median (µs)") ? "" : ratio(a, b))
    ),
    line(
      "probe samples kept / answered",
      `${e.samples.kept}/${e.samples.answered}`,
      `${c.samples.kept}/${c.samples.answered}`,
      "",
    ),
  ];
  return out.join("\n");
}

function parseOptions(): { o: Options; links: LinkName[]; json: string | null } | null {
  const args = () =>
    parseArgs({
      args: Deno.args,
      options: {
        seconds: { type: "string", default: "180" },
        links: { type: "string", default: "loopback,wan" },
        "delay-ms": { type: "string", default: "1" },
        "jitter-ms": { type: "string", default: "0.1" },
        loss: { type: "string", default: "0.001" },
        rate: { type: "string", default: "20" },
        settle: { type: "string" },
        json: { type: "string" },
        xleave: { type: "boolean", default: false },
        cpus: { type: "string", default: "split" },
        help: { type: "boolean", short: "h", default: false },
      },
    }).values;
  const values = checkedArgs(args);
  if (values.help) {
    console.log(HELP);
    return null;
  }
  const num = numberOption;
  const seconds = num("seconds", values.seconds, 10, 86400);
  const links = values.links.split(",").map((s: string) => s.trim()).filter(Boolean);
  for (const l of links) {
    if (!(LINKS as readonly string[]).includes(l)) {
      throw new UsageError(`--links: "${l}" is not one of ${LINKS.join(", ")}`);
    }
  }
  if (!links.length) throw new UsageError("--links names no link");
  let impairment: Required<Impairment>;
  try {
    impairment = checkImpairment({
      delayMs: num("delay-ms", values["delay-ms"], 0, 1000),
      jitterMs: num("jitter-ms", values["jitter-ms"], 0, 1000),
      loss: num("loss", values.loss, 0, 0.5),
    });
  } catch (e) {
    throw new UsageError(e instanceof Error ? e.message : String(e));
  }
  if (!(PLACEMENTS as readonly string[]).includes(values.cpus)) {
    throw new UsageError(`--cpus: "${values.cpus}" is not one of ${PLACEMENTS.join(", ")}`);
  }
  const settle = values.settle === undefined
    ? Math.min(60, Math.floor(seconds / 3))
    : num("settle", values.settle, 0, seconds - 5);
  return {
    o: {
      seconds,
      settle,
      rate: num("rate", values.rate, 1, 200),
      impairment,
      xleave: values.xleave,
      cpus: values.cpus as Placement,
    },
    links: [...new Set(links)] as LinkName[],
    json: values.json ?? null,
  };
}

async function main(): Promise<number> {
  const parsed = parseOptions();
  if (!parsed) return 0;
  const { o, links, json } = parsed;
  const log = (s: string) => console.error(s);
  for (const tool of [["chronyd", "-v"], ["chronyc", "-v"], ["curl", "--version"]]) {
    if ((await run(tool).catch(() => null))?.code !== 0) {
      throw new Error(`${tool[0]} is not installed (scripts/setup.sh test installs it)`);
    }
  }
  log("building client_probe ...");
  const probe = await buildC(new URL("client_probe.c", import.meta.url).pathname, "client_probe");
  const results: LinkResult[] = [];
  const skipped: Record<string, string> = {};
  for (const link of links) {
    const why = link === "wan" ? wanLabUnavailable() : null;
    if (why) {
      log(`${link}: skipped: ${why}`);
      skipped[link] = why;
      continue;
    }
    try {
      results.push(await runLink(link, o, { probe }, log));
    } finally {
      await cleanUp();
    }
  }
  const chronyVersion = (await run(["chronyd", "-v"])).stdout.trim().split(" ").slice(0, 4)
    .join(" ");
  const header = {
    date: new Date().toISOString(),
    machine: `${navigator.hardwareConcurrency} cores, ${Deno.build.os}/${Deno.build.arch}`,
    command: `deno task bench:client ${Deno.args.join(" ")}`.trim(),
    chrony: chronyVersion,
    cpus: o.cpus,
  };
  console.log(`${header.date}  ${header.machine}  ${header.chrony}  cpus ${header.cpus}`);
  for (const r of results) console.log(`\n${table(r)}`);
  if (json) {
    const doc = { ...header, options: o, skipped, links: results };
    await Deno.writeTextFile(json, JSON.stringify(doc, null, 2) + "\n");
    log(`wrote ${json}`);
  }
  return 0;
}

await runBench("bench:client", main, cleanUp);
