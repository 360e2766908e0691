/**
 * `deno task sim [--json] [--seed N] [--duration S] [--trace S] [--stamps K[,K…]] [scenario…]`:
 * runs the simulation scenarios (lib/sim/scenarios.ts) and prints a table,
 * or with --json one JSON object per line; --trace S prints every node's
 * error and sources every S simulated seconds (how the engine's problems
 * were found). --stamps runs each scenario once per timestamping model
 * named (ideal, kernel, user; lib/sim/host.ts), e.g. `--stamps kernel,user`;
 * without it each scenario runs on its default (the clknetsim defaults on
 * kernel stamps, the others ideal).
 */
import { parseArgs } from "node:util";
import { isStampKind, type StampKind } from "../lib/sim/host.ts";
import {
  DEFAULT_DURATION,
  DEFAULT_STAMPS,
  runScenario,
  type ScenarioName,
  SCENARIOS,
} from "../lib/sim/scenarios.ts";

const { values, positionals } = parseArgs({
  args: Deno.args,
  options: {
    json: { type: "boolean" },
    seed: { type: "string" },
    duration: { type: "string" },
    trace: { type: "string" },
    stamps: { type: "string" },
  },
  allowPositionals: true,
});
const names = positionals.length > 0 ? positionals : [...SCENARIOS];
for (const n of names) {
  if (!(SCENARIOS as readonly string[]).includes(n)) {
    console.error(`Unknown scenario "${n}"; known: ${SCENARIOS.join(", ")}`);
    Deno.exit(2);
  }
}
const stampList = values.stamps?.split(",").map((s) => s.trim()) ?? null;
for (const s of stampList ?? []) {
  if (!isStampKind(s)) {
    console.error(`Unknown stamps "${s}"; known: ideal, kernel, user`);
    Deno.exit(2);
  }
}
const seed = Number(values.seed ?? 1);
const fmt = (v: number | null | undefined) => v === null || v === undefined ? "-" : String(v);
const columns = [
  "scenario",
  "stamps",
  "sync_s",
  "p50_us",
  "p99_us",
  "max_us",
  "rms_us",
  "rel_p99_us",
  "frms_ppm",
  "fmax_ppm",
  "delay_us",
  "smp_p50_us",
  "smp_p99_us",
  "notes",
];
if (!values.json) {
  console.log(
    columns.map((h, i) => i === 0 ? h.padEnd(20) : i === 1 ? h.padEnd(6) : h.padStart(10)).join(
      " ",
    ),
  );
}
for (const n of names as ScenarioName[]) {
  for (const stamps of (stampList ?? [DEFAULT_STAMPS[n]]) as StampKind[]) {
    const started = performance.now();
    const trace = values.trace ? { every: Number(values.trace), print: console.log } : undefined;
    const duration = values.duration ? Number(values.duration) : DEFAULT_DURATION[n];
    const r = runScenario(n, seed, duration, trace, stamps);
    if (values.json) {
      console.log(JSON.stringify(r));
      continue;
    }
    const notes = [
      r.relative_p99_after_cut_us !== undefined
        ? `rel_p99_after_cut=${r.relative_p99_after_cut_us}us`
        : "",
      r.orphan_elected_s !== undefined
        ? `orphan_elected=${
          r.orphan_elected_s ?? "never"
        }s multi_parent=${r.orphan_multi_parent_s}s`
        : "",
      r.liar_tally ? `liar tally=${r.liar_tally.join("")}` : "",
      `${((performance.now() - started) / 1000).toFixed(1)}s wall`,
    ].filter(Boolean).join(" ");
    console.log(
      [
        r.scenario.padEnd(20),
        r.stamps.padEnd(6),
        ...[
          r.sync_s,
          r.absolute_p50_us,
          r.absolute_p99_us,
          r.max_offset_us,
          r.rms_offset_us,
          r.relative_p99_us,
          r.freq_rms_ppm,
          r.freq_max_ppm,
          r.delay_us,
          r.sample_p50_us,
          r.sample_p99_us,
        ].map((v) => fmt(v).padStart(10)),
        " " + notes,
      ].join(" "),
    );
  }
}
