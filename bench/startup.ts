/**
 * Startup and stop time: process start → first answered NTP request, with
 * `deno run` (goal < 300 ms) and, when given, a compiled binary, and
 * SIGTERM → exit (graceful stop; tests/integration/appliance_stop_test.ts checks that
 * it exits 0). A client sends a request every 5 ms from the moment the
 * process is spawned until it has exited; the start figure is the arrival
 * time of the first reply.
 *
 *   deno run -A bench/startup.ts [--runs 5] [--binary dist/edge-time-x86_64-unknown-linux-gnu]
 */
import dgram from "node:dgram";
import { parseArgs } from "node:util";
import { freeUdpPort, mainArgv } from "../tests/helpers/edge_time.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: { runs: { type: "string", default: "5" }, binary: { type: "string" } },
});

function request(): Uint8Array {
  const p = new Uint8Array(48);
  p[0] = (4 << 3) | 3; // version 4, client
  p[47] = 1;
  return p;
}

/** Spawns `argv`; ms until the first NTP reply on `port`, then from SIGTERM until it exits. */
async function measure(argv: string[], port: number): Promise<{ start: number; stop: number }> {
  const sock = dgram.createSocket("udp4");
  await new Promise<void>((r) => sock.bind(0, "127.0.0.1", () => r()));
  const replied = new Promise<number>((resolve) =>
    sock.once("message", () => resolve(performance.now()))
  );
  const t0 = performance.now();
  const child = new Deno.Command(argv[0]!, {
    args: argv.slice(1),
    stdout: "null",
    stderr: "null",
    stdin: "null",
  }).spawn();
  const ticker = setInterval(() => sock.send(request(), port, "127.0.0.1"), 5);
  const timeout = new Promise<number>((r) => setTimeout(() => r(NaN), 10_000));
  const t1 = await Promise.race([replied, timeout]);
  const t2 = performance.now();
  child.kill("SIGTERM");
  await child.status;
  const t3 = performance.now();
  clearInterval(ticker);
  sock.close();
  return { start: t1 - t0, stop: t3 - t2 };
}

async function series(name: string, argv: (port: number, config: string) => string[]) {
  const ms: number[] = [], stops: number[] = [];
  const dir = await Deno.makeTempDir({ prefix: "edge-time-startup-" });
  for (let i = 0; i < Number(values.runs); i++) {
    const port = await freeUdpPort();
    const config = `${dir}/edge.toml`;
    await Deno.writeTextFile(
      config,
      `[server]\nlisten = ["127.0.0.1:${port}"]\nlocal_stratum = 8\n` +
        `[clock]\ncontrol = false\ndriftfile = ""\n[status]\nlisten = ""\n`,
    );
    const m = await measure(argv(port, config), port);
    ms.push(m.start);
    stops.push(m.stop);
  }
  await Deno.remove(dir, { recursive: true });
  ms.sort((a, b) => a - b);
  stops.sort((a, b) => a - b);
  const median = ms[Math.floor(ms.length / 2)]!;
  const stop = stops[Math.floor(stops.length / 2)]!;
  console.log(
    `| ${name} | ${median.toFixed(0)} ms | ${ms[0]!.toFixed(0)}–${ms.at(-1)!.toFixed(0)} ms | ` +
      `${stop.toFixed(0)} ms | ${stops[0]!.toFixed(0)}–${
        stops.at(-1)!.toFixed(0)
      } ms | ${ms.length} |`,
  );
  return median;
}

console.log(
  "| how | median start → first answer | range | median SIGTERM → exit | range | runs |\n" +
    "|---|---|---|---|---|---|",
);
const median = await series("deno run", (_port, config) => [
  ...mainArgv(),
  "run",
  "--config",
  config,
]);
if (values.binary) {
  await series(`binary ${values.binary}`, (_port, config) => [
    values.binary!,
    "run",
    "--config",
    config,
  ]);
} else {
  console.log(
    "| binary | not measured: pass --binary (deno task compile needs denort) | | | | |",
  );
}
Deno.exit(median < 300 ? 0 : 1);
