/**
 * `deno task sim [--json] [--seed N] [--duration S] [--trace S] [scenario…]`: runs the
 * simulation scenarios (lib/sim/scenarios.ts) and prints a table, or with
 * --json one JSON object per line; --trace S prints every node's error and
 * sources every S simulated seconds (how the engine's problems were found).
 */
import { parseArgs } from "node:util";
import {
  DEFAULT_DURATION,
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
const seed = Number(values.seed ?? 1);
const fmt = (v: number | null | undefined) => v === null || v === undefined ? "-" : String(v);
if (!values.json) {
  console.log(
    ["scenario", "sync_s", "rms_us", "max_us", "rel_p99_us", "abs_p99_us", "notes"].map((h, i) =>
      i === 0 ? h.padEnd(20) : h.padStart(10)
    ).join(" "),
  );
}
for (const n of names as ScenarioName[]) {
  const started = performance.now();
  const trace = values.trace ? { every: Number(values.trace), print: console.log } : undefined;
  const r = runScenario(
    n,
    seed,
    values.duration ? Number(values.duration) : DEFAULT_DURATION[n],
    trace,
  );
  if (values.json) {
    console.log(JSON.stringify(r));
    continue;
  }
  const notes = [
    r.relative_p99_after_cut_us !== undefined
      ? `rel_p99_after_cut=${r.relative_p99_after_cut_us}us`
      : "",
    r.liar_tally ? `liar tally=${r.liar_tally.join("")}` : "",
    `${((performance.now() - started) / 1000).toFixed(1)}s wall`,
  ].filter(Boolean).join(" ");
  console.log(
    [
      r.scenario.padEnd(20),
      ...[r.sync_s, r.rms_offset_us, r.max_offset_us, r.relative_p99_us, r.absolute_p99_us].map((
        v,
      ) => fmt(v).padStart(10)),
      " " + notes,
    ].join(" "),
  );
}
