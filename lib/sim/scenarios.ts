/**
 * The named simulation scenarios and their figures. Each builds a world,
 * runs it, and samples every measured node's served time once a second.
 *
 * Figures (after sync): `sync_s` is the first time from which every
 * measured node stays within 1 ms of true time (single-node scenarios) or
 * of every other node and within 2 ms of true time (topologies);
 * `rms_offset_us`/`max_offset_us`/`absolute_p99_us` are over |served −
 * true|, `relative_p99_us` over all pairwise |node − node| differences.
 */
import type { EngineOptions, EngineSource } from "../engine/engine.ts";
import { EngineNode, type LinkSpec, ReferenceServer, Simulation, T0 } from "./sim.ts";

/** One scenario's figures. */
export interface ScenarioResult {
  scenario: string;
  sync_s: number | null;
  rms_offset_us: number;
  max_offset_us: number;
  relative_p99_us: number | null;
  absolute_p99_us: number;
  /** mesh-orphan: relative p99 from the cut to the end. */
  relative_p99_after_cut_us?: number;
  /** falseticker: tally of the lying server at every node. */
  liar_tally?: string[];
}

export const SCENARIOS = [
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
  "single-upstream": 3600,
  "mesh": 3600,
  "mesh-orphan": 3600,
  "external-plus-peers": 3600,
  "core-server": 3600,
  "core-pool-prefer": 3600,
  "falseticker": 3600,
};

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

function externals(sim: Simulation, errors?: number[]): ReferenceServer[] {
  return EXT.map((a, i) => {
    const e = errors?.[i] ?? sim.rng.uniform(-1e-3, 1e-3);
    return sim.add(new ReferenceServer(a, e, { rootDisp: 1e-3 }));
  });
}

/** Every `every` simulated seconds, one line per sample: each node's error in µs and its sources. */
export interface TraceOptions {
  every: number;
  print: (line: string) => void;
}

/** Runs `name` for `duration` seconds with `seed`; `trace` shows the run as it goes. */
export function runScenario(
  name: ScenarioName,
  seed = 1,
  duration = DEFAULT_DURATION[name],
  trace?: TraceOptions,
): ScenarioResult {
  const sim = new Simulation(seed);
  let measured: EngineNode[] = [];
  let cutAt: number | null = null;
  let liar: string | null = null;
  const all: EngineNode[] = [];
  const node = (addr: string, sources: EngineSource[], osc = nodeClock(sim)) => {
    const n = sim.add(new EngineNode(sim, addr, osc, { ...CLOCK, sources }));
    all.push(n);
    return n;
  };
  const nodes5 = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"];
  const wan = (n: string) =>
    EXT.forEach((e) => sim.link(n, e, { ...WAN, asym: sim.rng.uniform(-20e-6, 20e-6) }));
  sim.defaultLink = LAN;

  switch (name) {
    case "single-upstream": {
      sim.add(new ReferenceServer("192.0.2.1", 0, { rootDisp: 0 }));
      sim.link("10.0.0.1", "192.0.2.1", { delay: 100e-6, jitter: 100e-6 });
      measured = [
        node("10.0.0.1", [src("192.0.2.1")], { offset: 0.1, freq: 100e-6, wander: 1e-9 }),
      ];
      break;
    }
    case "falseticker": {
      externals(sim, [0.0002, -0.0001, 0.0001, 1.0]);
      liar = "192.0.2.4:123";
      measured = [
        node("10.0.0.1", EXT.map((e) => src(e)), { offset: 0.05, freq: 30e-6, wander: 1e-9 }),
      ];
      wan("10.0.0.1");
      break;
    }
    case "mesh":
    case "mesh-orphan": {
      externals(sim);
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
      externals(sim);
      measured = nodes5.map((a, i) => {
        const ring = [nodes5[(i + 1) % 5]!, nodes5[(i + 4) % 5]!];
        return node(a, [...EXT.map((e) => src(e)), ...ring.map((b) => src(b, "peer"))]);
      });
      nodes5.forEach(wan);
      break;
    }
    case "core-server": {
      externals(sim);
      node("10.0.1.1", EXT.map((e) => src(e)));
      wan("10.0.1.1");
      measured = nodes5.map((a) => node(a, [src("10.0.1.1")]));
      break;
    }
    case "core-pool-prefer": {
      externals(sim);
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
  sim.run(duration, (t) => {
    times.push(t - T0);
    abs.push(measured.map((n) => n.error(t)));
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
  const after = abs.slice(syncIdx);
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
  const result: ScenarioResult = {
    scenario: name,
    sync_s: synced ? times[syncIdx]! : null,
    rms_offset_us: us(
      Math.sqrt(absAll.reduce((a, x) => a + x * x, 0) / Math.max(1, absAll.length)),
    ),
    max_offset_us: us(Math.max(0, ...absAll)),
    relative_p99_us: single ? null : us(p99(rel(after))),
    absolute_p99_us: us(p99(absAll)),
  };
  if (cutAt !== null) {
    const cutIdx = times.findIndex((t) => t >= cutAt!);
    result.relative_p99_after_cut_us = us(p99(rel(abs.slice(Math.max(cutIdx, syncIdx)))));
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
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(0.99 * s.length) - 1)]!;
}
