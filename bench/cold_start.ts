/**
 * Serving accuracy from the first second after start: edge-time and chronyd
 * are each started fresh and loaded at once (40 000 req/s by default) in
 * one-second ntpload steps; the table shows |offset| p99 for each second.
 * The kernel clock is shared, so any offset is the server's stamping error;
 * what the first seconds add over steady state is warm-up (JIT, page faults).
 *
 *   deno task bench:cold [--runs 3] [--steps 8] [--rate 40000]
 *
 * edge-time runs from a private copy of deno, as the appliance runs its own
 * executable (see bench/load.ts). Needs cc and chronyd (run with -x).
 */
import { parseArgs } from "cli";
import { freeTcpPort, freeUdpPort, startEdgeTime } from "../tests/helpers/edge_time.ts";
import { startChronyd } from "../tests/helpers/chrony.ts";
import { buildNtpload, loadTargetToml, ntploadJson } from "../tests/helpers/ntpload.ts";

const HELP = `Usage: deno task bench:cold [--runs N] [--steps N] [--rate R]

Starts edge-time and chronyd fresh, N times each, loads each at once in
one-second steps and prints |offset| p99 (µs) per second after start.
  --runs N    fresh starts per server (default 3)
  --steps N   one-second steps after each start (default 8)
  --rate R    requests per second (default 40000)`;

const { values } = parseArgs({
  args: Deno.args,
  options: {
    runs: { type: "string", default: "3" },
    steps: { type: "string", default: "8" },
    rate: { type: "string", default: "40000" },
    help: { type: "boolean", short: "h", default: false },
  },
});

function count(name: string, v: string, hi: number): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > hi) {
    console.error(`bench:cold: --${name} must be a whole number from 1 to ${hi}, got "${v}"`);
    Deno.exit(2);
  }
  return n;
}

/** A copy of this deno for edge-time alone (its own executable, as compiled). */
async function privateDeno(): Promise<string> {
  const path = new URL("out/deno-edge-time", import.meta.url).pathname;
  await Deno.mkdir(new URL("out", import.meta.url), { recursive: true });
  const have = await Deno.stat(path).catch(() => null);
  if (have?.size !== (await Deno.stat(Deno.execPath())).size) {
    await Deno.copyFile(Deno.execPath(), `${path}.tmp`);
    await Deno.rename(`${path}.tmp`, path);
  }
  return path;
}

/** p99 |offset| (µs) of each one-second step against `port`, started at once. */
async function steps(bin: string, port: number, n: number, rate: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const [s] = await ntploadJson(bin, [
      "-T", // t1 from the kernel: the offset is the server's error alone
      "-p",
      String(port),
      "-r",
      String(rate),
      "-d",
      "1",
      "-s",
      "16",
      "127.0.0.1",
    ]);
    out.push(s?.offset_p99_abs_us ?? NaN);
  }
  return out;
}

async function main(): Promise<void> {
  if (values.help) {
    console.log(HELP);
    return;
  }
  const runs = count("runs", values.runs, 50);
  const n = count("steps", values.steps, 120);
  const rate = count("rate", values.rate, 400_000);
  const bin = await buildNtpload();
  const deno = await privateDeno();
  const rows: { server: string; run: number; p99: number[] }[] = [];
  for (let r = 1; r <= runs; r++) {
    const port = await freeUdpPort(), statusPort = freeTcpPort();
    const et = await startEdgeTime(loadTargetToml(port, statusPort, 1), {
      readyPattern: /Serving NTP on/,
      deno,
    });
    try {
      rows.push({ server: "edge-time", run: r, p99: await steps(bin, port, n, rate) });
    } finally {
      await et.stop();
    }
    const cport = await freeUdpPort();
    const chrony = await startChronyd([
      "local stratum 8",
      "allow",
      `port ${cport}`,
      "bindaddress 127.0.0.1",
      "user root",
    ]);
    try {
      rows.push({ server: "chrony", run: r, p99: await steps(bin, cport, n, rate) });
    } finally {
      await chrony.stop();
    }
  }
  const head = ["server", "run", ...Array.from({ length: n }, (_, i) => `${i + 1} s`)];
  console.log(`|offset| p99 (µs) per second after start, ${rate} req/s`);
  console.log(`| ${head.join(" | ")} |`);
  console.log(`|${head.map(() => "---").join("|")}|`);
  for (const row of rows) {
    console.log(`| ${row.server} | ${row.run} | ${row.p99.map((v) => v.toFixed(1)).join(" | ")} |`);
  }
}

await main();
