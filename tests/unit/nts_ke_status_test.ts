/** The NTS-KE server in /status (schema) and /metrics (Prometheus text). */
import assert from "assert";
import { handleStatusRequest } from "../../lib/status/handler.ts";
import { StatusModel } from "../../lib/status/mod.ts";
import { validate } from "../helpers/json_schema.ts";
import { parsePrometheusText } from "../helpers/prom_text.ts";
import { fakeCounters, fakeEngine, T0 } from "../helpers/status_fixture.ts";
import { newKeCounters } from "../../lib/nts/ke_server.ts";

const schema = JSON.parse(
  await Deno.readTextFile(new URL("../../lib/status/status.schema.json", import.meta.url)),
);

function model(ke: boolean): StatusModel {
  const counters = {
    ...newKeCounters(),
    connections: 12,
    handshakes: 9,
    recordErrors: 1,
    refused: 1,
    tlsFailures: 1,
    cookies: 72,
  };
  return new StatusModel({
    version: "9.9.9-test",
    pool: () => ({
      driver: "ffi-recvmmsg",
      driverReason: "test",
      workerCount: 1,
      bound: ["127.0.0.1:123"],
      counters: () => fakeCounters(),
    }),
    now: () => T0,
    uptimeS: () => 10,
    engine: () => fakeEngine(),
    anycast: () => null,
    residentMemoryBytes: () => 1,
    ntsKe: () => ke ? { listen: ["[::]:4460"], certificateNotAfter: T0 + 86400, counters } : null,
  });
}

Deno.test("/status nts_ke: listen and counters when the NTS-KE server runs, absent when not", async () => {
  const on = await handleStatusRequest(new Request("http://x/status"), model(true)).json();
  assert.deepEqual(validate(schema, on), []);
  assert.deepEqual(on.nts_ke, {
    listen: ["[::]:4460"],
    certificate_not_after: T0 + 86400,
    connections: 12,
    handshakes: 9,
    record_errors: 1,
    refused: 1,
    tls_failures: 1,
    cookies: 72,
    busy: 0,
    denied: 0,
  });
  const off = await handleStatusRequest(new Request("http://x/status"), model(false)).json();
  assert.deepEqual(validate(schema, off), []);
  assert.equal("nts_ke" in off, false);
});

Deno.test("/metrics nts_ke_*_total counters when the NTS-KE server runs", async () => {
  const text = await handleStatusRequest(new Request("http://x/metrics"), model(true)).text();
  const fams = parsePrometheusText(text);
  const value = (name: string) => fams.find((f) => f.name === name)?.samples[0]?.value;
  assert.equal(value("nts_ke_handshakes_total"), 9);
  assert.equal(value("nts_ke_cookies_total"), 72);
  assert.equal(value("nts_ke_tls_failures_total"), 1);
  assert.equal(value("nts_ke_certificate_expiry_timestamp_seconds"), T0 + 86400);
  assert.equal(fams.find((f) => f.name === "nts_ke_handshakes_total")?.type, "counter");
  const off = await handleStatusRequest(new Request("http://x/metrics"), model(false)).text();
  assert.ok(!off.includes("nts_ke_"));
});

Deno.test("the status page and ?format=text show the NTS-KE server only while it runs", async () => {
  const page = await handleStatusRequest(new Request("http://x/"), model(true)).text();
  assert.match(page, /<h2>NTS-KE<\/h2>/);
  assert.match(page, /9 \(72 cookies\) of 12 connections/);
  assert.match(page, /1 TLS failures, 0 denied, 0 busy/);
  assert.match(page, new RegExp(new Date((T0 + 86400) * 1000).toISOString().slice(0, 10)));
  const text = await handleStatusRequest(new Request("http://x/status?format=text"), model(true))
    .text();
  assert.match(text, /^NTS-KE$/m);
  assert.match(text, /key exchanges\s*:?\s*9 \(72 cookies\) of 12 connections/);
  assert.match(text, /\[::\]:4460/);
  const offPage = await handleStatusRequest(new Request("http://x/"), model(false)).text();
  assert.doesNotMatch(offPage, /NTS-KE/);
  const offText = await handleStatusRequest(
    new Request("http://x/status?format=text"),
    model(false),
  )
    .text();
  assert.doesNotMatch(offText, /NTS-KE/);
});
