/**
 * Backlog stamping: how the ffi driver's transmit timestamps are spaced
 * when a backlog is answered in batches (tests/integration/server_batch_stamp_test.ts
 * checks the behaviour; this measures it). Each round stops the server
 * (SIGSTOP), queues BURST requests, lets it go and reads every reply's
 * xmt: the step between consecutive replies (within a sendmmsg it is the
 * driver's measured time per message; between batches it is however long
 * the next batch took to come, which load stretches), the span of the
 * whole burst, and steps that went backwards.
 *
 *   deno run -A bench/backlog.ts [--rounds 20] [--burst 256] [--json]
 */
import { parseArgs } from "node:util";
import {
  freeTcpPort,
  freeUdpPort,
  localServerToml,
  startEdgeTime,
} from "../tests/helpers/edge_time.ts";
import { backlogClient, ntpDiff, ntpTime } from "../tests/helpers/backlog.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    rounds: { type: "string", default: "20" },
    burst: { type: "string", default: "256" },
    json: { type: "boolean", default: false },
  },
});
const rounds = Number(values.rounds), burst = Number(values.burst);
if (!(rounds >= 1 && rounds <= 1000 && burst >= 2 && burst <= 4096)) {
  console.error("usage: bench/backlog.ts [--rounds 1..1000] [--burst 2..4096] [--json]");
  Deno.exit(2);
}

interface Round {
  step_median_us: number;
  step_p99_us: number;
  step_max_us: number;
  span_ms: number;
  backwards: number;
}

const quantile = (sorted: number[], q: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;

const port = await freeUdpPort();
const et = await startEdgeTime(
  localServerToml(
    port,
    freeTcpPort(),
    `driver = "ffi"\nworkers = 1\nrate_limit = { interval_s = 0 }`,
  ),
);
const client = await backlogClient(et, port, burst);
const results: Round[] = [];
try {
  await client.burst(0); // the driver learns its time per message
  for (let r = 1; r <= rounds; r++) {
    const xmt = (await client.burst(r)).map((b) => ntpTime(b, 40));
    const steps = xmt.slice(1).map((x, i) => ntpDiff(x, xmt[i]!) * 1e6);
    const sorted = [...steps].sort((a, b) => a - b);
    results.push({
      step_median_us: quantile(sorted, 0.5),
      step_p99_us: quantile(sorted, 0.99),
      step_max_us: sorted.at(-1)!,
      span_ms: ntpDiff(xmt.at(-1)!, xmt[0]!) * 1e3,
      backwards: steps.filter((s) => s <= 0).length,
    });
  }
} finally {
  client.close();
  await et.stop();
}

const column = (k: keyof Round) => results.map((r) => r[k]).sort((a, b) => a - b);
const summary = Object.fromEntries(
  (Object.keys(results[0]!) as (keyof Round)[]).map((k) => {
    const c = column(k);
    return [k, { min: c[0]!, median: quantile(c, 0.5), max: c.at(-1)! }];
  }),
);
if (values.json) {
  console.log(JSON.stringify({ rounds, burst, cores: navigator.hardwareConcurrency, summary }));
} else {
  console.log(`backlog of ${burst} requests, ${rounds} rounds, ffi driver, 1 worker`);
  console.log("| figure | min | median | max |\n|---|---|---|---|");
  for (const [k, v] of Object.entries(summary)) {
    console.log(`| ${k} | ${v.min.toFixed(2)} | ${v.median.toFixed(2)} | ${v.max.toFixed(2)} |`);
  }
}
