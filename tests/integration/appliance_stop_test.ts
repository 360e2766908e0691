/**
 * Graceful stop: SIGTERM (and SIGINT) under load exits 0 with its sockets
 * closed. How long a stop takes is a figure of bench/startup.ts.
 */
import assert from "assert";
import { freeTcpPort, freeUdpPort, localServerToml, startEdgeTime } from "../helpers/edge_time.ts";
import { buildNtpload, runNtpload } from "../helpers/ntpload.ts";
import { queryServer } from "../../lib/io/query_client.ts";

function config(port: number, statusPort: number): string {
  return localServerToml(
    port,
    statusPort,
    `workers = 1\nrate_limit = { interval_s = 0, burst = 8, kod = false }`,
  );
}

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  Deno.test(`${signal} under load exits 0 and frees its ports`, async () => {
    await buildNtpload();
    const port = await freeUdpPort();
    const statusPort = freeTcpPort();
    const et = await startEdgeTime(config(port, statusPort));
    const load = runNtpload("127.0.0.1", port, { rate: 2000, seconds: 2, sockets: 8 });
    await new Promise((r) => setTimeout(r, 1000));
    const t0 = performance.now();
    const code = await et.stop(signal);
    const ms = performance.now() - t0;
    await load;
    console.log(`  ${signal} → exit ${code} in ${ms.toFixed(0)} ms`);
    assert.equal(code, 0);
    assert.ok(et.logs().some((l) => l.includes(`Stopping on ${signal}`)));
    assert.ok(et.logs().some((l) => / INFO +app: Stopped$/.test(l)), "stop sequence finished");
    // Both ports are free again: the process is gone and nothing answers.
    await assert.rejects(queryServer("127.0.0.1", port, { timeoutMs: 200, attempts: 1 }));
    const l = Deno.listen({ hostname: "127.0.0.1", port: statusPort });
    l.close();
  });
}

Deno.test("SIGTERM during start-up still stops cleanly with exit 0", async () => {
  const port = await freeUdpPort();
  // Stop as soon as the app logs its first line, before the server is up.
  const et = await startEdgeTime(config(port, freeTcpPort()), { readyPattern: /starting with/ });
  const code = await et.stop("SIGTERM");
  assert.equal(code, 0, et.logs().join("\n"));
  assert.ok(et.logs().some((l) => l.includes("Stopping on SIGTERM")), et.logs().join("\n"));
});
