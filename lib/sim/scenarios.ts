/**
 * The named simulation scenarios and their figures. Each builds a world,
 * runs it, and samples every measured node's served time once a second.
 *
 * Figures (after sync, and not before `SETTLE_S` where set): `sync_s` is
 * the first time from which every measured node stays within 1 ms of true
 * time (single-node scenarios) or of every other node and within 2 ms of
 * true time (topologies);
 * `rms_offset_us`/`max_offset_us`/`absolute_p99_us` are over |served −
 * true|, `relative_p99_us` over all pairwise |node − node| differences,
 * `freq_*_ppm` over |served frequency − true| of every measured node.
 *
 * Stamps: every engine node stamps through the run's timestamping model
 * (lib/sim/host.ts); reference servers stamp ideally in ideal runs and
 * with kernel stamps otherwise (they stand for chronyd or a GPS server).
 */
import type { EngineOptions, EngineSource } from "../engine/engine.ts";
import { type StampKind, STAMPS } from "./host.ts";
import { EngineNode, type LinkSpec, ReferenceServer, Simulation, T0 } from "./sim.ts";

/** One scenario's figures. */
export interface ScenarioResult {
  scenario: string;
  /** The engine nodes' timestamping model. */
  stamps: StampKind;
  sync_s: number | null;
  rms_offset_us: number;
  max_offset_us: number;
  relative_p99_us: number | null;
  /** Median |served − true| after sync. */
  absolute_p50_us: number;
  /** Median of served − true after sync, signed: a bias every measured node shares. */
  signed_p50_us: number;
  absolute_p99_us: number;
  /** RMS of |served frequency − true| after sync, ppm. */
  freq_rms_ppm: number;
  /** Largest |served frequency − true| after sync, ppm. */
  freq_max_ppm: number;
  /** Median |measured − true offset| of the measured nodes' clock samples after sync (driver and network noise). */
  sample_p50_us: number;
  /** 99th percentile of the same. */
  sample_p99_us: number;
  /** The first measured node's filtered delay to its first source at the end, as it measures it. */
  delay_us: number | null;
  /** That source's jitter at the end. */
  jitter_us: number | null;
  /** mesh-orphan: relative p99 from the cut to the end. */
  relative_p99_after_cut_us?: number;
  /** mesh-orphan: seconds after the cut until one node is orphan parent and the rest follow it (null: never). */
  orphan_elected_s?: number | null;
  /** mesh-orphan: seconds after the cut during which two or more nodes claimed orphan parent. */
  orphan_multi_parent_s?: number;
  /** falseticker: tally of the lying server at every node. */
  liar_tally?: string[];
}

export const SCENARIOS = [
  "clknetsim-default",
  "single-upstream",
  "mesh",
  "mesh-orphan",
  "external-plus-peers",
  "core-server",
  "core-pool-prefer",
  "falseticker",
] as const;
export type ScenarioName = typeof SCENARIOS[number];

/** Per-scenario default run length, seconds of simulated time. */
export const DEFAULT_DURATION: Record<ScenarioName, number> = {
  "clknetsim-default": 10_000,
  "single-upstream": 3600,
  "mesh": 3600,
  "mesh-orphan": 3600,
  "external-plus-peers": 3600,
  "core-server": 3600,
  "core-pool-prefer": 3600,
  "falseticker": 3600,
};

/**
 * Per-scenario default timestamping: the clknetsim defaults run on kernel
 * stamps (what edge-time's driver takes); the older scenarios keep ideal
 * stamps, so their figures and targets stay comparable with earlier runs.
 */
export const DEFAULT_STAMPS: Record<ScenarioName, StampKind> = {
  "clknetsim-default": "kernel",
  "single-upstream": "ideal",
  "mesh": "ideal",
  "mesh-orphan": "ideal",
  "external-plus-peers": "ideal",
  "core-server": "ideal",
  "core-pool-prefer": "ideal",
  "falseticker": "ideal",
};

/**
 * Seconds from the start before which no figure is taken (besides
 * `sync_s`): clknetsim's statistics start after chrony's `max_sync_time`
 * (210 s), so the clknetsim defaults are measured the same way.
 */
export const SETTLE_S: Partial<Record<ScenarioName, number>> = { "clknetsim-default": 210 };

/**
 * chrony's simulation test defaults (test/simulation/test.common in the
 * chrony tree, run on clknetsim): client clock off by 0.1 s and 1e-4
 * (100 ppm) fast, wander 1e-9; every link 100 µs + exponential jitter of
 * mean 100 µs each way; 10 000 s. Polling is chrony's and edge-time's
 * default (min_poll 6, max_poll 10), with iburst.
 */
export const CLKNETSIM = {
  offset: 0.1,
  freq: 1e-4,
  wander: 1e-9,
  link: { delay: 100e-6, jitter: 100e-6 } as LinkSpec,
  duration: 10_000,
  minPoll: 6,
  maxPoll: 10,
} as const;

const CLOCK: Omit<EngineOptions, "localRefid" | "precision" | "sources"> = {
  stepThreshold: 0.128,
  panicThreshold: 1000,
  orphanStratum: 7,
  orphanWait: 60,
  minSources: 1,
  driftPpm: null,
};

/** A source: external servers poll 16–256 s; cluster-internal ones (LAN) 16–64 s. */
function src(
  address: string,
  kind: EngineSource["kind"] = "server",
  extra: Partial<EngineSource> = {},
): EngineSource {
  const lan = !address.startsWith("192.0.2.");
  return {
    address,
    kind,
    iburst: true,
    prefer: false,
    minPoll: 4,
    maxPoll: lan ? 6 : 8,
    maxSources: 4,
    xleave: false,
    ...extra,
  };
}

const EXT = ["192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"];
/** A WAN path to an external server. */
const WAN: LinkSpec = { delay: 2e-3, jitter: 50e-6 };
/** A LAN path inside the cluster. */
const LAN: LinkSpec = { delay: 100e-6, jitter: 10e-6 };

function nodeClock(sim: Simulation): { offset: number; freq: number; wander: number } {
  return { offset: sim.rng.uniform(-0.1, 0.1), freq: sim.rng.uniform(-50e-6, 50e-6), wander: 1e-9 };
}

function externals(sim: Simulation, stamps: StampKind, errors?: number[]): ReferenceServer[] {
  return EXT.map((a, i) => {
    const e = errors?.[i] ?? sim.rng.uniform(-1e-3, 1e-3);
    return sim.add(new ReferenceServer(a, e, { rootDisp: 1e-3, stamps: refStamps(stamps) }));
  });
}

/** Reference servers: ideal in ideal runs, else kernel stamps (chronyd, a GPS server). */
function refStamps(stamps: StampKind) {
  return stamps === "ideal" ? STAMPS.ideal : STAMPS.kernel;
}

/** Every `every` simulated seconds, one line per sample: each node's error in µs and its sources. */
export interface TraceOptions {
  every: number;
  print: (line: string) => void;
}

/**
 * Runs `name` for `duration` seconds of simulated time with `seed`;
 * `trace` shows the run as it goes; `stamps` is the engine nodes'
 * timestamping model (default: the scenario's, `DEFAULT_STAMPS`).
 */
export function runScenario(
  name: ScenarioName,
  seed = 1,
  duration = DEFAULT_DURATION[name],
  trace?: TraceOptions,
  stamps: StampKind = DEFAULT_STAMPS[name],
): ScenarioResult {
  const sim = new Simulation(seed);
  let measured: EngineNode[] = [];
  let cutAt: number | null = null;
  let liar: string | null = null;
  const all: EngineNode[] = [];
  const node = (addr: string, sources: EngineSource[], osc = nodeClock(sim)) => {
    const n = sim.add(new EngineNode(sim, addr, osc, { ...CLOCK, sources }, STAMPS[stamps]));
    all.push(n);
    return n;
  };
  const nodes5 = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"];
  const wan = (n: string) =>
    EXT.forEach((e) => sim.link(n, e, { ...WAN, asym: sim.rng.uniform(-20e-6, 20e-6) }));
  sim.defaultLink = LAN;

  switch (name) {
    case "clknetsim-default": {
      const c = CLKNETSIM;
      sim.add(new ReferenceServer("192.0.2.1", 0, { rootDisp: 0, stamps: refStamps(stamps) }));
      sim.link("10.0.0.1", "192.0.2.1", c.link);
      measured = [
        node(
          "10.0.0.1",
          [src("192.0.2.1", "server", { minPoll: c.minPoll, maxPoll: c.maxPoll })],
          { offset: c.offset, freq: c.freq, wander: c.wander },
        ),
      ];
      break;
    }
    case "single-upstream": {
      sim.add(new ReferenceServer("192.0.2.1", 0, { rootDisp: 0, stamps: refStamps(stamps) }));
      sim.link("10.0.0.1", "192.0.2.1", { delay: 100e-6, jitter: 100e-6 });
      measured = [
        node("10.0.0.1", [src("192.0.2.1")], { offset: 0.1, freq: 100e-6, wander: 1e-9 }),
      ];
      break;
    }
    case "falseticker": {
      externals(sim, stamps, [0.0002, -0.0001, 0.0001, 1.0]);
      liar = "192.0.2.4:123";
      measured = [
        node("10.0.0.1", EXT.map((e) => src(e)), { offset: 0.05, freq: 30e-6, wander: 1e-9 }),
      ];
      wan("10.0.0.1");
      break;
    }
    case "mesh":
    case "mesh-orphan": {
      externals(sim, stamps);
      measured = nodes5.map((a) =>
        node(a, [
          ...EXT.map((e) => src(e)),
          ...nodes5.filter((b) => b !== a).map((b) => src(b, "peer")),
        ])
      );
      nodes5.forEach(wan);
      if (name === "mesh-orphan") cutAt = duration / 2;
      break;
    }
    case "external-plus-peers": {
      externals(sim, stamps);
      measured = nodes5.map((a, i) => {
        const ring = [nodes5[(i + 1) % 5]!, nodes5[(i + 4) % 5]!];
        return node(a, [...EXT.map((e) => src(e)), ...ring.map((b) => src(b, "peer"))]);
      });
      nodes5.forEach(wan);
      break;
    }
    case "core-server": {
      externals(sim, stamps);
      node("10.0.1.1", EXT.map((e) => src(e)));
      wan("10.0.1.1");
      measured = nodes5.map((a) => node(a, [src("10.0.1.1")]));
      break;
    }
    case "core-pool-prefer": {
      externals(sim, stamps);
      node("10.0.1.1", [...EXT.map((e) => src(e)), src("10.0.1.2", "peer")]);
      node("10.0.1.2", [...EXT.map((e) => src(e)), src("10.0.1.1", "peer", { prefer: true })]);
      wan("10.0.1.1");
      wan("10.0.1.2");
      sim.dns.set("cores.cluster", ["10.0.1.1", "10.0.1.2"]);
      measured = nodes5.map((a) => node(a, [src("cores.cluster", "pool", { maxSources: 2 })]));
      break;
    }
  }
  if (cutAt !== null) {
    sim.at(T0 + cutAt, () => {
      for (const n of all) for (const e of EXT) sim.setLinkDown(n.address, e, true);
    });
  }
  for (const n of all) n.start(sim);

  const single = measured.length === 1;
  const times: number[] = [];
  const abs: number[][] = [];
  const freq: number[][] = [];
  // Per sample: how many nodes claim orphan parent, and whether every other node follows one.
  const parents: number[] = [];
  const elected: boolean[] = [];
  sim.run(duration, (t) => {
    times.push(t - T0);
    const claims = all.filter((n) => n.engine.orphanParent).length;
    parents.push(claims);
    elected.push(claims === 1 && all.every((n) => n.engine.orphan));
    abs.push(measured.map((n) => n.error(t)));
    freq.push(measured.map((n) => n.freqError()));
    if (trace && (t - T0) % trace.every === 0) {
      trace.print(
        (t - T0).toFixed(0) + " " + all.map((n) => {
          const r = n.engine.report(n.osc.peek(t));
          const detail = n === all[0]
            ? r.sources.map((s) =>
              `${s.tally}${(s.offset_s * 1e6).toFixed(0)}/${s.poll}/${
                n.engine.associations.get(s.address)?.stats.points.length
              }`
            ).join(" ")
            : r.sources.map((s) => s.tally + s.reach.toString(8)).join("");
          return `${(n.error(t) * 1e6).toFixed(0)}[s${r.system.stratum}${
            r.system.orphan ? "o" : ""
          } ${detail}]`;
        }).join(" "),
      );
    }
  });

  // Sync: the last sample that violates the bound, plus one.
  let syncIdx = 0;
  for (let i = 0; i < abs.length; i++) {
    const e = abs[i]!;
    const bad = single
      ? Math.abs(e[0]!) > 1e-3
      : e.some((x) => Math.abs(x) > 2e-3) || Math.max(...e) - Math.min(...e) > 1e-3;
    if (bad) syncIdx = i + 1;
  }
  const synced = syncIdx < abs.length;
  // Figures from sync, or from the scenario's settling time if later.
  const settle = SETTLE_S[name] ?? 0;
  const settleIdx = times.findIndex((t) => t >= settle);
  const fromIdx = Math.max(syncIdx, settleIdx < 0 ? times.length : settleIdx);
  const after = abs.slice(fromIdx);
  const absAll = after.flat().map(Math.abs);
  const rel = (rows: number[][]) => {
    const out: number[] = [];
    for (const e of rows) {
      for (let i = 0; i < e.length; i++) {
        for (let j = i + 1; j < e.length; j++) out.push(Math.abs(e[i]! - e[j]!));
      }
    }
    return out;
  };
  const us = (x: number) => Math.round(x * 1e7) / 10;
  const freqAll = freq.slice(fromIdx).flat().map(Math.abs);
  const from = times[fromIdx] ?? Infinity;
  const sampleErr = measured.flatMap((n) =>
    n.samples.filter((s) => s.t - T0 >= from).map((s) => Math.abs(s.err))
  );
  const first = measured[0]!;
  const firstSource = first.engine.report(first.osc.peek(sim.now)).sources[0];
  const ppm = (x: number) => Math.round(x * 1e8) / 100;
  const result: ScenarioResult = {
    scenario: name,
    stamps,
    sync_s: synced ? times[syncIdx]! : null,
    rms_offset_us: us(
      Math.sqrt(absAll.reduce((a, x) => a + x * x, 0) / Math.max(1, absAll.length)),
    ),
    max_offset_us: us(Math.max(0, ...absAll)),
    relative_p99_us: single ? null : us(p99(rel(after))),
    absolute_p50_us: us(quantile(absAll, 0.5)),
    signed_p50_us: us(quantile(after.flat(), 0.5)),
    absolute_p99_us: us(p99(absAll)),
    freq_rms_ppm: ppm(
      Math.sqrt(freqAll.reduce((a, x) => a + x * x, 0) / Math.max(1, freqAll.length)),
    ),
    freq_max_ppm: ppm(Math.max(0, ...freqAll)),
    sample_p50_us: us(quantile(sampleErr, 0.5)),
    sample_p99_us: us(p99(sampleErr)),
    delay_us: firstSource ? us(firstSource.delay_s) : null,
    jitter_us: firstSource ? us(firstSource.jitter_s) : null,
  };
  if (cutAt !== null) {
    const cutIdx = times.findIndex((t) => t >= cutAt!);
    result.relative_p99_after_cut_us = us(p99(rel(abs.slice(Math.max(cutIdx, fromIdx)))));
    const step = times.length > 1 ? times[1]! - times[0]! : 1;
    // Elected: from the first sample after which the election never changes again.
    let settled = -1;
    for (let i = times.length - 1; i >= cutIdx && elected[i]; i--) settled = i;
    result.orphan_elected_s = settled >= 0 ? times[settled]! - cutAt : null;
    result.orphan_multi_parent_s = parents.slice(cutIdx).filter((c) => c > 1).length * step;
  }
  if (liar) {
    result.liar_tally = measured.map((n) =>
      n.engine.report(n.osc.raw(sim.now)).sources.find((s) => s.address === liar)?.tally ?? "?"
    );
  }
  return result;
}

/** 99th percentile (nearest rank); 0 for an empty list. */
export function p99(xs: number[]): number {
  return quantile(xs, 0.99);
}

/** The `q` quantile (0–1, nearest rank); 0 for an empty list. */
export function quantile(xs: number[], q: number): number {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]!;
}
