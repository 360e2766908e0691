/**
 * Topology benchmark: the simulator's seed topology "three nodes with two
 * upstreams and peers, then the upstreams cut" on real links, edge-time and
 * chronyd side by side in the same lab.
 *
 * The lab is a star of namespaces (tests/helpers/wan_star.ts) joined by the
 * project's delay relay (or netem where the kernel has it): two upstream
 * sites on WAN-like links (1 ms + U[0, 0.1) ms each way, 0.1 % loss by
 * default) and six cluster sites on LAN-like links (50 µs + U[0, 10) µs),
 * so the cluster reaches an upstream in ~1.05 ms and a peer in ~100 µs.
 *
 * - upstreams u1, u2: `chronyd -x`, `local stratum 1`, no sources. Every
 *   process reads the one kernel clock, so the truth is 0 for everyone.
 * - edge-time nodes e1..e3: `clock.control = false`, both upstreams as
 *   `[[source]]`, the other two as `kind = "peer"`, orphan_stratum 10.
 * - chronyd nodes c1..c3: `chronyd -x`, both upstreams as `server`, the
 *   other two as `peer`, `local stratum 10 orphan`.
 * - a probe (bench/client_probe.c) in each node's namespace asks that node
 *   for the time ~10 times a second with kernel timestamps.
 *
 * Warm-up (not counted), phase 1 (all up), phase 2 (both upstream links at
 * loss 1). Per phase and implementation: |offset| of what the nodes serve
 * (p50/p99 over nodes and seconds), the relative offset (max − min across
 * the three nodes in the same second, p50/p99), whether they stayed
 * synchronised and who became orphan parent; ratios edge-time/chrony.
 *
 *   deno task bench:topology [--seconds-per-phase N] [--json FILE] ...
 *
 * Needs root. Every chronyd runs with -x and edge-time with
 * `clock.control = false`: nothing here adjusts the machine's clock.
 */
import { checkedArgs, numberOption, parseArgs, runBench, UsageError } from "./cli_options.ts";
import { type EdgeTimeProcess, startEdgeTime } from "../tests/helpers/edge_time.ts";
import { buildC } from "../tests/helpers/ntpload.ts";
import {
  checkImpairment,
  type ChronydProc,
  type Impairment,
  type RelayStats,
  startChronydIn,
  wanLabUnavailable,
} from "../tests/helpers/wan_lab.ts";
import { buildWanStar, type StarSite, type WanStar } from "../tests/helpers/wan_star.ts";

const HELP = `Usage: deno task bench:topology [options]

Three edge-time nodes and three chronyd -x nodes, each following two upstream
chronyds over WAN-like links and peering with the other two of its kind over a
LAN-like link; phase 1 all up, phase 2 the upstream links cut. The kernel
clock is shared, so the true offset of every node is 0.
  --seconds-per-phase N  seconds of each phase (default 300)
  --warmup S             seconds from start before phase 1 (default 120)
  --rate R               probe requests per second to each node (default 10)
  --wan-delay-ms MS      upstream links: one-way base delay (default 1)
  --wan-jitter-ms MS     upstream links: uniform jitter on top (default 0.1)
  --wan-loss P           upstream links: loss per frame, each way (default 0.001)
  --lan-delay-ms MS      cluster links: one-way base delay (default 0.05)
  --lan-jitter-ms MS     cluster links: uniform jitter on top (default 0.01)
  --orphan-wait S        edge-time clock.orphan_wait_s (default 60)
  --no-peers             no peering inside the clusters (a control run: the
                         same lab with every node following only the upstreams)
  --xleave               interleaved mode (RFC 9769) on every source and peer,
                         edge-time's and chronyd's alike
  --seed N               relay seed (default: random)
  --json FILE            also write the results as JSON to FILE
Needs root (network namespaces), cc, chronyd/chronyc and curl.`;

const NODES = 3;
const ORPHAN_STRATUM = 10;
const STATUS_PORT = 18123;
const POLL = { min: 4, max: 6 };
/** Seconds between status readings of the nodes. */
const STATUS_EVERY_S = 5;
/** Seconds per window of the per-phase time series in the JSON. */
const WINDOW_S = 30;

type Impl = "edge_time" | "chrony";
const IMPLS: Impl[] = ["edge_time", "chrony"];

interface Options {
  secondsPerPhase: number;
  warmup: number;
  rate: number;
  wan: Required<Impairment>;
  lan: Required<Impairment>;
  orphanWait: number;
  seed: number | undefined;
  peers: boolean;
  /** Interleaved mode on every source and peer (both implementations). */
  xleave: boolean;
}

/** One probe reply: t1 (Unix s), offset and delay (s), leap, stratum. */
interface Sample {
  t: number;
  offset: number;
  delay: number;
  leap: number;
  stratum: number;
}

/** What a node said about itself at one moment. */
interface NodeState {
  /** Seconds since the nodes were started. */
  t: number;
  synchronised: boolean;
  stratum: number;
  /** edge-time: system.orphan; chronyd: the local reference is active. */
  orphan: boolean;
  /** Orphan parent: the local reference / free-running orphan, no system peer. */
  parent: boolean;
  /** The address it follows ("" when none). */
  follows: string;
  /**
   * What it measures of each upstream, µs: edge-time its clock filter's
   * delay and offset (/status), chronyd its last measurement (`ntpdata`).
   */
  upstreams: { addr: string; delay_us: number; offset_us: number }[];
  /** What it measures of each reachable peer, µs, in the same terms as `upstreams`. */
  peers: { addr: string; delay_us: number; offset_us: number }[];
}

interface PhaseFigures {
  phase: 1 | 2;
  from_s: number;
  to_s: number;
  seconds: number;
  /** |served offset| of each node's lowest-delay synchronised reply per second, pooled, µs. */
  abs_p50_us: number;
  abs_p99_us: number;
  abs_max_us: number;
  /** max − min across the nodes, per second in which all of them answered synchronised, µs. */
  rel_p50_us: number;
  rel_p99_us: number;
  rel_max_us: number;
  /** Signed median served offset per node, µs. */
  median_us: number[];
  /** Seconds in which every node answered synchronised, of `seconds`. */
  all_synchronised_s: number;
  /** Per node: seconds it answered unsynchronised (leap 3 / stratum 0 or 16). */
  unsynchronised_s: number[];
  /** Per node: seconds without any answer. */
  unanswered_s: number[];
  /** Per node: the strata it served during the phase, with seconds each. */
  strata: Record<string, number>[];
  /** Per node: what it said about itself at the end of the phase. */
  end_state: (NodeState | null)[];
  /** Orphan parents named at the end of the phase. */
  orphan_parents: string[];
  /** Median over the phase's status readings of what the nodes measured of the upstreams, µs. */
  upstream_delay_median_us: number;
  upstream_offset_median_us: number;
  /**
   * Peer measurement closure, µs: for each pair of nodes A, B, the median
   * offset A measures of B plus the median B measures of A, averaged over
   * the pairs. Unbiased measurements give 0; −2b means each node sees its
   * peers b behind (a bias the peer pull turns into a common offset).
   */
  peer_closure_us: number | null;
  /** Phase 2: seconds after the cut until a node first served the orphan stratum. */
  orphan_stratum_after_s: number | null;
  /** The phase in windows of WINDOW_S: how the figures move (µs). */
  windows: { from_s: number; abs_p50_us: number; abs_max_us: number; rel_max_us: number }[];
}

interface ImplResult {
  nodes: string[];
  phases: PhaseFigures[];
  /** Per node, per second since start: the served offset (µs) of its lowest-delay synchronised reply, or null. */
  per_second_us: (number | null)[][];
  /** Every change of a node's own state, as read every STATUS_EVERY_S. */
  transitions: (Omit<NodeState, "upstreams" | "peers"> & { node: string })[];
  probe: { sent: number; answered: number }[];
}

/** The 1-minute load average, NaN when unreadable. */
function loadavg(): number {
  try {
    return Number(Deno.readTextFileSync("/proc/loadavg").split(" ")[0]);
  } catch {
    return NaN;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

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
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

const sortNum = (xs: number[]) => [...xs].sort((a, b) => a - b);

/** Registered clean-ups, run in reverse on the way out (also on SIGINT/SIGTERM). */
const cleanups: (() => Promise<unknown>)[] = [];
async function cleanUp(): Promise<void> {
  while (cleanups.length) await cleanups.pop()!().catch(() => {});
}

/** A client_probe in `ns` asking `target` for the time; samples stream in as it runs. */
function startProbe(bin: string, ns: string, target: string, rate: number, seconds: number) {
  const child = new Deno.Command("ip", {
    args: ["netns", "exec", ns, bin, "-r", String(rate), "-d", String(seconds), target],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const samples: Sample[] = [];
  const totals = { sent: 0, answered: 0 };
  const stderr = new Response(child.stderr).text();
  const done = (async () => {
    let buf = "";
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      buf += chunk;
      for (let nl; (nl = buf.indexOf("\n")) >= 0; buf = buf.slice(nl + 1)) {
        const f = buf.slice(0, nl).split("\t");
        if (f[0] === "S") {
          samples.push({
            t: Number(f[2]),
            offset: Number(f[3]),
            delay: Number(f[4]),
            leap: Number(f[5]),
            stratum: Number(f[6]),
          });
        } else if (f[0] === "E") {
          totals.sent = Number(f[2]);
          totals.answered = Number(f[3]);
        }
      }
    }
    const st = await child.status;
    if (!st.success && st.signal === null) {
      throw new Error(`client_probe failed: ${(await stderr).trim()}`);
    }
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

/** Until something answers NTP at `target` from `ns` (at most `tries` half-second probes). */
async function waitAnswering(bin: string, ns: string, target: string, tries = 40) {
  for (let i = 0; i < tries; i++) {
    const r = await run(["ip", "netns", "exec", ns, bin, "-r", "20", "-d", "0.5", target]);
    if (r.stdout.includes("S\t0\t")) return;
    if (r.code === 2) throw new Error(r.stderr.trim());
    await sleep(250);
  }
  throw new Error(`nothing answers NTP at ${target} from ${ns}`);
}

/** edge-time's /status, read with curl inside the node's namespace. */
async function readEdge(ns: string, t: number): Promise<NodeState | null> {
  const r = await run([
    "ip",
    "netns",
    "exec",
    ns,
    "curl",
    "-s",
    "--max-time",
    "2",
    `http://127.0.0.1:${STATUS_PORT}/status`,
  ]);
  if (r.code !== 0) return null;
  try {
    const s = JSON.parse(r.stdout) as {
      system: { synchronised: boolean; stratum: number; orphan: boolean; system_peer: string };
      sources: {
        address: string;
        kind: string;
        reach: number;
        delay_s: number;
        offset_s: number;
      }[];
    };
    const sys = s.system;
    const measured = (kind: string) =>
      s.sources.filter((x) => x.kind === kind && x.reach !== 0).map((x) => ({
        addr: x.address.replace(/:123$/, ""),
        delay_us: Math.round(x.delay_s * 1e7) / 10,
        offset_us: Math.round(x.offset_s * 1e7) / 10,
      }));
    const upstreams = measured("server"), peers = measured("peer");
    return {
      t,
      synchronised: sys.synchronised,
      stratum: sys.stratum,
      orphan: sys.orphan,
      parent: sys.orphan && sys.system_peer === "",
      follows: sys.system_peer.replace(/:123$/, ""),
      upstreams,
      peers,
    };
  } catch {
    return null;
  }
}

/** chronyd's `tracking`: the local reference (7F7F0101) is orphan-parent mode. */
async function readChrony(
  c: ChronydProc,
  t: number,
  upAddrs: string[],
  peerAddrs: string[],
): Promise<NodeState | null> {
  const text = await c.chronyc("tracking").catch(() => null);
  if (!text) return null;
  const fieldOf = (text: string, name: string) =>
    new RegExp(`^${name}\\s*:\\s*(.*)$`, "m").exec(text)?.[1]?.trim() ?? "";
  const field = (name: string) => fieldOf(text, name);
  const measured = async (addrs: string[]) => {
    const out: NodeState["upstreams"] = [];
    for (const addr of addrs) {
      const nd = await c.chronyc("ntpdata", addr).catch(() => "");
      const delay = /^([-+\d.e]+) seconds/.exec(fieldOf(nd, "Peer delay"))?.[1];
      const offset = /^([-+\d.e]+) seconds/.exec(fieldOf(nd, "Offset"))?.[1];
      const rx = Number(fieldOf(nd, "Total valid RX") || 0);
      if (delay && offset && rx > 0) {
        out.push({
          addr,
          delay_us: Math.round(Number(delay) * 1e7) / 10,
          offset_us: Math.round(Number(offset) * 1e7) / 10,
        });
      }
    }
    return out;
  };
  const upstreams = await measured(upAddrs), peers = await measured(peerAddrs);
  const ref = field("Reference ID");
  const local = ref.startsWith("7F7F0101");
  const addr = /\(([\d.]+)\)/.exec(ref)?.[1] ?? "";
  const stratum = Number(field("Stratum"));
  return {
    t,
    synchronised: field("Leap status") === "Normal",
    stratum,
    orphan: local || stratum >= ORPHAN_STRATUM,
    parent: local,
    follows: local ? "" : addr,
    upstreams,
    peers,
  };
}

function edgeToml(node: StarSite, upstreams: StarSite[], peers: StarSite[], o: Options): string {
  const src = (s: StarSite, peer: boolean) =>
    `[[source]]
address = "${s.addr}"
${peer ? 'kind = "peer"\n' : ""}min_poll = ${POLL.min}
max_poll = ${POLL.max}
iburst = ${!peer}
xleave = ${o.xleave}
`;
  return `[server]
listen = ["${node.addr}:123"]
workers = 1
rate_limit = { interval_s = 0 }
[clock]
control = false
driftfile = ""
orphan_stratum = ${ORPHAN_STRATUM}
orphan_wait_s = ${o.orphanWait}
[status]
listen = "127.0.0.1:${STATUS_PORT}"
${upstreams.map((s) => src(s, false)).join("")}${peers.map((s) => src(s, true)).join("")}`;
}

function chronyLines(upstreams: StarSite[], peers: StarSite[], xleave: boolean): string[] {
  const x = xleave ? " xleave" : "";
  return [
    ...upstreams.map((s) => `server ${s.addr} iburst minpoll ${POLL.min} maxpoll ${POLL.max}${x}`),
    ...peers.map((s) => `peer ${s.addr} minpoll ${POLL.min} maxpoll ${POLL.max}${x}`),
    `local stratum ${ORPHAN_STRATUM} orphan`,
    "allow",
  ];
}

/** Per node, per whole second since `t0`: the lowest-delay reply (any state). */
function perSecond(samples: Sample[], t0: number): Map<number, Sample> {
  const out = new Map<number, Sample>();
  for (const s of samples) {
    const sec = Math.floor(s.t - t0);
    const prev = out.get(sec);
    if (!prev || s.delay < prev.delay) out.set(sec, s);
  }
  return out;
}

const synced = (s: Sample | undefined) =>
  s !== undefined && s.leap !== 3 && s.stratum >= 1 && s.stratum <= 15;

function phaseFigures(
  phase: 1 | 2,
  from: number,
  to: number,
  bins: Map<number, Sample>[],
  states: NodeState[][],
  names: string[],
  addrs: string[],
  cutAt: number,
): PhaseFigures {
  const abs: number[] = [], rel: number[] = [];
  const perNode: number[][] = bins.map(() => []);
  const unsynced = bins.map(() => 0), unanswered = bins.map(() => 0);
  const strata: Record<string, number>[] = bins.map(() => ({}));
  let allSynced = 0;
  let orphanAfter: number | null = null;
  const windows: PhaseFigures["windows"] = [];
  let wAbs: number[] = [], wRel: number[] = [];
  const us = (x: number) => Math.round(x * 1e7) / 10;
  const closeWindow = (sec: number) => {
    const wa = sortNum(wAbs), wr = sortNum(wRel);
    windows.push({
      from_s: sec,
      abs_p50_us: us(quantile(wa, 0.5)),
      abs_max_us: us(wa[wa.length - 1] ?? NaN),
      rel_max_us: us(wr[wr.length - 1] ?? NaN),
    });
    wAbs = [];
    wRel = [];
  };
  for (let sec = from; sec < to; sec++) {
    const row = bins.map((b) => b.get(sec));
    row.forEach((s, i) => {
      if (!s) unanswered[i]!++;
      else {
        strata[i]![String(s.stratum)] = (strata[i]![String(s.stratum)] ?? 0) + 1;
        if (!synced(s)) unsynced[i]!++;
        else {
          abs.push(Math.abs(s.offset));
          wAbs.push(Math.abs(s.offset));
          perNode[i]!.push(s.offset);
        }
        if (phase === 2 && orphanAfter === null && s.stratum === ORPHAN_STRATUM) {
          orphanAfter = sec - cutAt;
        }
      }
    });
    if (row.every(synced)) {
      allSynced++;
      const offs = row.map((s) => s!.offset);
      rel.push(Math.max(...offs) - Math.min(...offs));
      wRel.push(Math.max(...offs) - Math.min(...offs));
    }
    if ((sec - from + 1) % WINDOW_S === 0 || sec === to - 1) {
      closeWindow(sec + 1 - ((sec - from) % WINDOW_S + 1));
    }
  }
  const a = sortNum(abs), r = sortNum(rel);
  // The state last read before the phase ended.
  const endState = states.map((list) => [...list].reverse().find((s) => s.t <= to + 1) ?? null);
  const parents = endState.flatMap((s, i) => s?.parent ? [names[i]!] : []);
  const readings = states.flat().filter((s) => s.t >= from && s.t < to).flatMap((s) => s.upstreams);
  const med = (xs: number[]) => Math.round(quantile(sortNum(xs), 0.5) * 10) / 10;
  // Median offset node i measures of node j over the phase, µs (undefined: none).
  const peerMedian = (i: number, j: number) => {
    const xs = (states[i] ?? []).filter((s) => s.t >= from && s.t < to)
      .flatMap((s) => s.peers.filter((p) => p.addr === addrs[j]).map((p) => p.offset_us));
    return xs.length > 0 ? quantile(sortNum(xs), 0.5) : undefined;
  };
  const closures: number[] = [];
  for (let i = 0; i < addrs.length; i++) {
    for (let j = i + 1; j < addrs.length; j++) {
      const ij = peerMedian(i, j), ji = peerMedian(j, i);
      if (ij !== undefined && ji !== undefined) closures.push(ij + ji);
    }
  }
  return {
    phase,
    from_s: from,
    to_s: to,
    seconds: to - from,
    abs_p50_us: us(quantile(a, 0.5)),
    abs_p99_us: us(quantile(a, 0.99)),
    abs_max_us: us(a[a.length - 1] ?? NaN),
    rel_p50_us: us(quantile(r, 0.5)),
    rel_p99_us: us(quantile(r, 0.99)),
    rel_max_us: us(r[r.length - 1] ?? NaN),
    median_us: perNode.map((xs) => us(quantile(sortNum(xs), 0.5))),
    all_synchronised_s: allSynced,
    unsynchronised_s: unsynced,
    unanswered_s: unanswered,
    strata,
    end_state: endState.map((s) =>
      s ? { ...s, follows: names[addrs.indexOf(s.follows)] ?? s.follows } : null
    ),
    orphan_parents: parents,
    upstream_delay_median_us: med(readings.map((x) => x.delay_us)),
    upstream_offset_median_us: med(readings.map((x) => x.offset_us)),
    peer_closure_us: closures.length > 0
      ? Math.round(closures.reduce((a, x) => a + x, 0) / closures.length * 10) / 10
      : null,
    orphan_stratum_after_s: orphanAfter,
    windows,
  };
}

interface RunResult {
  mode: string;
  /** /proc/loadavg (1-minute) when the nodes started, at the cut and at the end: other load on the machine. */
  loadavg: { start: number; cut: number; end: number };
  t0: number;
  cut_at_s: number;
  edge_time: ImplResult;
  chrony: ImplResult;
  /**
   * The upstreams as a probe in their own namespace sees them (no link in
   * between), per phase: the part of every node's offset that is the
   * upstream's own serving error, inherited by a perfect follower.
   */
  upstream_reference: { node: string; phase: 1 | 2; median_us: number; abs_p99_us: number }[];
  /**
   * The upstreams across the lab, phase 1: a probe in e1 asking u1 and one
   * in c1 asking u2, over the path the nodes use; each second's
   * lowest-delay reply. A symmetric path gives the local figure above; the
   * difference is the path's asymmetry, inherited by every node.
   */
  path_reference: { from: string; to: string; median_us: number; delay_median_us: number }[];
  relay_before_cut: Record<string, RelayStats | null>;
  relay_at_end: Record<string, RelayStats | null>;
}

async function runTopology(o: Options, probeBin: string, log: (s: string) => void) {
  const wanSites = ["u1", "u2"], edgeSites = ["e1", "e2", "e3"], chronySites = ["c1", "c2", "c3"];
  const star: WanStar = await buildWanStar([
    ...wanSites.map((name) => ({ name, impairment: o.wan })),
    ...[...edgeSites, ...chronySites].map((name) => ({ name, impairment: o.lan })),
  ], o.seed === undefined ? {} : { seed: o.seed });
  cleanups.push(() => star.close());
  const site = (n: string) => star.site(n);
  const ups = wanSites.map(site);
  log(
    `lab (${star.mode}): upstreams ${
      ups.map((s) => s.addr).join(", ")
    } on ${o.wan.delayMs} ms + U[0, ${o.wan.jitterMs}) ms, loss ${
      o.wan.loss * 100
    } %; cluster links ${o.lan.delayMs} ms + U[0, ${o.lan.jitterMs}) ms`,
  );

  for (const u of ups) {
    const c = await startChronydIn(u.ns, ["local stratum 1", "allow"]);
    star.track(() => c.stop());
  }
  for (const u of ups) await waitAnswering(probeBin, site("e1").ns, `${u.addr}:123`);

  const groups: Record<Impl, StarSite[]> = {
    edge_time: edgeSites.map(site),
    chrony: chronySites.map(site),
  };
  const others = (list: StarSite[], s: StarSite) => o.peers ? list.filter((x) => x !== s) : [];
  log(`starting ${NODES} edge-time and ${NODES} chronyd -x nodes`);
  const t0 = Date.now() / 1000;
  const load = { start: loadavg(), cut: NaN, end: NaN };
  const started = await Promise.allSettled([
    ...groups.edge_time.map((s) =>
      startEdgeTime(edgeToml(s, ups, others(groups.edge_time, s), o), { netns: s.ns })
    ),
    ...groups.chrony.map((s) =>
      startChronydIn(s.ns, chronyLines(ups, others(groups.chrony, s), o.xleave))
    ),
  ]);
  const edges: EdgeTimeProcess[] = [], chronys: ChronydProc[] = [];
  for (const [i, r] of started.entries()) {
    if (r.status !== "fulfilled") continue;
    if (i < NODES) {
      const e = r.value as EdgeTimeProcess;
      edges.push(e);
      star.track(() => e.stop());
    } else {
      const c = r.value as ChronydProc;
      chronys.push(c);
      star.track(() => c.stop());
    }
  }
  const failed = started.find((r) => r.status === "rejected") as PromiseRejectedResult | undefined;
  if (failed) throw failed.reason;

  const total = o.warmup + 2 * o.secondsPerPhase;
  const cutAt = o.warmup + o.secondsPerPhase;
  const probes = Object.fromEntries(IMPLS.map((impl) => [
    impl,
    groups[impl].map((s) => {
      const p = startProbe(probeBin, s.ns, `${s.addr}:123`, o.rate, total + 2);
      cleanups.push(() => p.stop());
      return p;
    }),
  ])) as Record<Impl, ReturnType<typeof startProbe>[]>;
  const upProbes = ups.map((s) => {
    const p = startProbe(probeBin, s.ns, `${s.addr}:123`, o.rate, total + 2);
    cleanups.push(() => p.stop());
    return p;
  });
  const paths = [[groups.edge_time[0]!, ups[0]!], [groups.chrony[0]!, ups[1]!]] as const;
  const pathProbes = paths.map(([from, to]) => {
    const p = startProbe(probeBin, from.ns, `${to.addr}:123`, o.rate, cutAt);
    cleanups.push(() => p.stop());
    return p;
  });

  const states: Record<Impl, NodeState[][]> = {
    edge_time: edgeSites.map(() => []),
    chrony: chronySites.map(() => []),
  };
  const elapsed = () => Date.now() / 1000 - t0;
  let relayBeforeCut: Record<string, RelayStats | null> = {};
  let cut = false, nextRead = 0, nextNote = 30;
  // Bounded: one pass per second at most, until the end of phase 2 (plus a margin).
  const maxPasses = Math.ceil(total) + 120;
  for (let pass = 0; pass < maxPasses && elapsed() < total + 1; pass++) {
    const now = elapsed();
    if (!cut && now >= cutAt) {
      relayBeforeCut = Object.fromEntries(
        await Promise.all(wanSites.map(async (n) => [n, await star.relayStats(n)] as const)),
      );
      for (const n of wanSites) await star.setImpairment(n, { ...o.wan, loss: 1 });
      cut = true;
      load.cut = loadavg();
      log(`  ${Math.round(elapsed())} s: upstream links cut (loss 1)`);
    }
    if (now >= nextRead) {
      nextRead = now + STATUS_EVERY_S;
      const t = elapsed();
      const [e, c] = await Promise.all([
        Promise.all(groups.edge_time.map((s) => readEdge(s.ns, t))),
        Promise.all(
          chronys.map((c) =>
            readChrony(c, t, ups.map((u) => u.addr), groups.chrony.map((s) => s.addr))
          ),
        ),
      ]);
      e.forEach((s, i) => s && states.edge_time[i]!.push(s));
      c.forEach((s, i) => s && states.chrony[i]!.push(s));
      if (t >= nextNote) {
        nextNote += 30;
        const show = (list: (NodeState | null)[]) =>
          list.map((s) =>
            s
              ? `${s.synchronised ? "" : "!"}s${s.stratum}${s.parent ? "P" : s.orphan ? "o" : ""}`
              : "?"
          ).join(" ");
        log(`  ${Math.round(t)} s: edge-time ${show(e)} | chrony ${show(c)}`);
      }
    }
    const wake = Math.min(nextRead, cut ? Infinity : cutAt);
    await sleep(Math.max(50, Math.min(1000, (wake - elapsed()) * 1000)));
  }
  for (const impl of IMPLS) await Promise.all(probes[impl].map((p) => p.done));
  await Promise.all([...upProbes, ...pathProbes].map((p) => p.done));
  load.end = loadavg();
  const relayAtEnd = Object.fromEntries(
    await Promise.all(
      star.sites.map(async (s) => [s.name, await star.relayStats(s.name)] as const),
    ),
  );
  await cleanUp();

  const phases: [1 | 2, number, number][] = [[1, o.warmup, cutAt], [2, cutAt, total]];
  const result = (impl: Impl): ImplResult => {
    const sites = groups[impl];
    const bins = probes[impl].map((p) => perSecond(p.samples, t0));
    return {
      nodes: sites.map((s) => `${s.name} ${s.addr}`),
      phases: phases.map(([n, from, to]) =>
        phaseFigures(
          n,
          from,
          to,
          bins,
          states[impl],
          sites.map((s) => s.name),
          sites.map((s) => s.addr),
          cutAt,
        )
      ),
      probe: probes[impl].map((p) => ({ ...p.totals })),
      per_second_us: bins.map((b) =>
        Array.from({ length: total }, (_, sec) => {
          const x = b.get(sec);
          return synced(x) ? Math.round(x!.offset * 1e7) / 10 : null;
        })
      ),
      transitions: transitions(states[impl], sites),
    };
  };
  return {
    mode: star.mode,
    loadavg: load,
    t0,
    cut_at_s: cutAt,
    edge_time: result("edge_time"),
    chrony: result("chrony"),
    upstream_reference: ups.flatMap((s, i) => {
      const bins = perSecond(upProbes[i]!.samples, t0);
      return phases.map(([phase, from, to]) => {
        const xs: number[] = [];
        for (let sec = from; sec < to; sec++) {
          const x = bins.get(sec);
          if (synced(x)) xs.push(x!.offset);
        }
        const us = (x: number) => Math.round(x * 1e7) / 10;
        return {
          node: s.name,
          phase,
          median_us: us(quantile(sortNum(xs), 0.5)),
          abs_p99_us: us(quantile(sortNum(xs.map(Math.abs)), 0.99)),
        };
      });
    }),
    path_reference: paths.map(([from, to], i) => {
      const bins = [...perSecond(pathProbes[i]!.samples, t0).values()].filter(synced);
      return {
        from: from.name,
        to: to.name,
        median_us: Math.round(quantile(sortNum(bins.map((x) => x.offset)), 0.5) * 1e7) / 10,
        delay_median_us: Math.round(quantile(sortNum(bins.map((x) => x.delay)), 0.5) * 1e7) / 10,
      };
    }),
    relay_before_cut: relayBeforeCut,
    relay_at_end: relayAtEnd,
  } satisfies RunResult;
}

/** The readings at which a node's state changed (the first reading counts as a change). */
function transitions(states: NodeState[][], sites: StarSite[]): ImplResult["transitions"] {
  const key = (s: NodeState) =>
    `${s.synchronised} ${s.stratum} ${s.orphan} ${s.parent} ${s.follows}`;
  const out: ImplResult["transitions"] = [];
  states.forEach((list, i) => {
    let last = "";
    for (const s of list) {
      const k = key(s);
      if (k === last) continue;
      last = k;
      const follows = sites.find((x) => x.addr === s.follows)?.name ?? s.follows;
      const { upstreams: _, peers: __, ...rest } = s;
      out.push({ node: sites[i]!.name, ...rest, t: Math.round(s.t), follows });
    }
  });
  return out.sort((a, b) => a.t - b.t);
}

function fmt(n: number | null, digits: number): string {
  return n !== null && Number.isFinite(n) ? n.toFixed(digits) : "-";
}

function table(r: RunResult): string {
  const out: string[] = [];
  const ratio = (a: number, b: number) =>
    Number.isFinite(a) && Number.isFinite(b) && b > 0 ? fmt(a / b, 2) : "-";
  const line = (a: string, b: string, c: string, d: string) =>
    `| ${a.padEnd(50)} | ${b.padStart(14)} | ${c.padStart(14)} | ${d.padStart(6)} |`;
  for (const i of [0, 1]) {
    const e = r.edge_time.phases[i]!, c = r.chrony.phases[i]!;
    const refs = r.upstream_reference.filter((x) => x.phase === e.phase);
    out.push(
      `\nphase ${e.phase} (${
        e.phase === 1 ? "all up" : "upstreams cut"
      }), ${e.from_s}–${e.to_s} s after start`,
    );
    out.push(line("", "edge-time", "chrony", "ratio"));
    out.push(`|${"-".repeat(52)}|${"-".repeat(16)}|${"-".repeat(16)}|${"-".repeat(8)}|`);
    const rows: [string, keyof PhaseFigures][] = [
      ["absolute |offset| p50 (µs)", "abs_p50_us"],
      ["absolute |offset| p99 (µs)", "abs_p99_us"],
      ["absolute |offset| max (µs)", "abs_max_us"],
      ["relative offset (max − min) p50 (µs)", "rel_p50_us"],
      ["relative offset (max − min) p99 (µs)", "rel_p99_us"],
      ["relative offset (max − min) max (µs)", "rel_max_us"],
    ];
    for (const [name, k] of rows) {
      const a = e[k] as number, b = c[k] as number;
      out.push(line(name, fmt(a, 1), fmt(b, 1), ratio(a, b)));
    }
    out.push(
      line(
        "seconds all 3 served synchronised",
        `${e.all_synchronised_s}/${e.seconds}`,
        `${c.all_synchronised_s}/${c.seconds}`,
        "",
      ),
    );
    out.push(line("signed median per node (µs)", e.median_us.join(" "), c.median_us.join(" "), ""));
    out.push(
      line(
        "upstreams u1 u2 to a local probe, median (µs)",
        refs.map((x) => x.median_us).join(" "),
        "(same)",
        "",
      ),
    );
    if (e.phase === 1) {
      out.push(
        line(
          "upstreams across the lab (e1→u1 c1→u2), median (µs)",
          r.path_reference.map((x) => x.median_us).join(" "),
          "(same)",
          "",
        ),
      );
      out.push(
        line(
          "delay it measures to the upstreams, median (µs)",
          fmt(e.upstream_delay_median_us, 1),
          fmt(c.upstream_delay_median_us, 1),
          ratio(e.upstream_delay_median_us, c.upstream_delay_median_us),
        ),
      );
      out.push(
        line(
          "offset it measures of the upstreams, median (µs)",
          fmt(e.upstream_offset_median_us, 1),
          fmt(c.upstream_offset_median_us, 1),
          "",
        ),
      );
    }
    out.push(
      line(
        "peer closure θ(A→B)+θ(B→A), mean of pairs (µs)",
        fmt(e.peer_closure_us, 1),
        fmt(c.peer_closure_us, 1),
        "",
      ),
    );
    const strata = (f: PhaseFigures) =>
      f.end_state.map((s) => s ? `${s.stratum}${s.synchronised ? "" : "!"}` : "?").join(" ");
    out.push(line("stratum per node at the end", strata(e), strata(c), ""));
    const parents = (f: PhaseFigures) => f.orphan_parents.join(" ") || "none";
    out.push(line("orphan parent at the end", parents(e), parents(c), ""));
    if (e.phase === 2) {
      out.push(
        line(
          "orphan stratum first served (s after cut)",
          fmt(e.orphan_stratum_after_s, 0),
          fmt(c.orphan_stratum_after_s, 0),
          "",
        ),
      );
    }
  }
  return out.join("\n");
}

function parseOptions(): { o: Options; json: string | null } | null {
  const args = () =>
    parseArgs({
      args: Deno.args,
      options: {
        "seconds-per-phase": { type: "string", default: "300" },
        warmup: { type: "string", default: "120" },
        rate: { type: "string", default: "10" },
        "wan-delay-ms": { type: "string", default: "1" },
        "wan-jitter-ms": { type: "string", default: "0.1" },
        "wan-loss": { type: "string", default: "0.001" },
        "lan-delay-ms": { type: "string", default: "0.05" },
        "lan-jitter-ms": { type: "string", default: "0.01" },
        "orphan-wait": { type: "string", default: "60" },
        "no-peers": { type: "boolean", default: false },
        xleave: { type: "boolean", default: false },
        seed: { type: "string" },
        json: { type: "string" },
        help: { type: "boolean", short: "h", default: false },
      },
    }).values;
  const values = checkedArgs(args);
  if (values.help) {
    console.log(HELP);
    return null;
  }
  const num = numberOption;
  const imp = (prefix: string, loss: number): Required<Impairment> => {
    try {
      return checkImpairment({
        delayMs: num(`${prefix}-delay-ms`, values[`${prefix}-delay-ms` as "wan-delay-ms"], 0, 1000),
        jitterMs: num(
          `${prefix}-jitter-ms`,
          values[`${prefix}-jitter-ms` as "wan-jitter-ms"],
          0,
          1000,
        ),
        loss,
      });
    } catch (e) {
      throw e instanceof UsageError ? e : new UsageError(e instanceof Error ? e.message : `${e}`);
    }
  };
  return {
    o: {
      secondsPerPhase: Math.round(num("seconds-per-phase", values["seconds-per-phase"], 20, 7200)),
      warmup: Math.round(num("warmup", values.warmup, 10, 3600)),
      rate: num("rate", values.rate, 1, 100),
      wan: imp("wan", num("wan-loss", values["wan-loss"], 0, 0.5)),
      lan: imp("lan", 0),
      orphanWait: num("orphan-wait", values["orphan-wait"], 0, 86400),
      seed: values.seed === undefined ? undefined : num("seed", values.seed, 0, 2 ** 52),
      peers: !values["no-peers"],
      xleave: values.xleave,
    },
    json: values.json ?? null,
  };
}

async function main(): Promise<number> {
  const parsed = parseOptions();
  if (!parsed) return 0;
  const { o, json } = parsed;
  const log = (s: string) => console.error(s);
  const why = wanLabUnavailable();
  if (why) throw new Error(`cannot build the lab: ${why}`);
  for (const tool of [["chronyd", "-v"], ["chronyc", "-v"], ["curl", "--version"]]) {
    if ((await run(tool).catch(() => null))?.code !== 0) {
      throw new Error(`${tool[0]} is not installed (scripts/setup.sh test installs it)`);
    }
  }
  log("building client_probe ...");
  const probe = await buildC(new URL("client_probe.c", import.meta.url).pathname, "client_probe");
  const date = new Date().toISOString();
  const r = await runTopology(o, probe, log);
  const chronyVersion = (await run(["chronyd", "-v"])).stdout.trim().split(" ").slice(0, 4)
    .join(" ");
  const header = {
    date,
    machine: `${navigator.hardwareConcurrency} cores, ${Deno.build.os}/${Deno.build.arch}`,
    command: `deno task bench:topology ${Deno.args.join(" ")}`.trim(),
    chrony: chronyVersion,
  };
  console.log(`${header.date}  ${header.machine}  ${header.chrony}  lab: ${r.mode}`);
  const la = r.loadavg;
  console.log(`load average (1 min) at start / cut / end: ${la.start} / ${la.cut} / ${la.end}`);
  console.log(
    `upstreams: ${o.wan.delayMs} ms + U[0, ${o.wan.jitterMs}) ms, loss ${
      o.wan.loss * 100
    } %; cluster: ${o.lan.delayMs} ms + U[0, ${o.lan.jitterMs}) ms; warm-up ${o.warmup} s${
      o.peers ? "" : "; no peers"
    }${o.xleave ? "; xleave" : ""}`,
  );
  console.log(table(r));
  if (json) {
    const doc = { ...header, options: o, ...r };
    await Deno.writeTextFile(json, JSON.stringify(doc, null, 2) + "\n");
    log(`wrote ${json}`);
  }
  return 0;
}

await runBench("bench:topology", main, cleanUp);
