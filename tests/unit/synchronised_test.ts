/**
 * One rule for "synchronised" (`isSynchronised`: leap ≠ 3, stratum 1..15),
 * read by every consumer. Each test feeds the state of a server that
 * follows a stratum-15 upstream — stratum 16 with leap 0, as the engine
 * reports it — and expects "not synchronised": the wire, the /status JSON,
 * the page, /healthz, /metrics, `peers`, `tracking`, the history ring and
 * the anycast gate (the gate's runtime case is in anycast_runtime_test.ts).
 */
import assert from "assert";
import { isSynchronised, unsyncedState } from "../../lib/ntp/system_state.ts";
import { handleStatusRequest } from "../../lib/status/handler.ts";
import { buildSnapshot } from "../../lib/status/snapshot.ts";
import { formatPeers, formatTracking } from "../../lib/status/text.ts";
import { History } from "../../lib/status/history.ts";
import { healthReason } from "../../lib/anycast/health.ts";
import { engineReportFromState } from "../../lib/app.ts";
import { asciiRefid, Leap, parsePacket } from "../../lib/ntp/packet.ts";
import { COUNTER_COUNT, respond, type ServerContext } from "../../lib/ntp/server.ts";
import { AccessList, type Cidr, parseCidr } from "../../lib/ntp/access.ts";
import { newClientAddress, parseIp, setClientAddress } from "../../lib/ntp/address.ts";
import { RateLimiter } from "../../lib/ntp/rate_limit.ts";
import { parsePrometheusText } from "../helpers/prom_text.ts";
import { fakeCounters, fakeEngine, fakeModel, T0 } from "../helpers/status_fixture.ts";
import { queryReply } from "../helpers/fixtures.ts";
import { CHRONY_REQUEST, hex } from "../fixtures/requests.ts";

/** What the engine reports behind a stratum-15 upstream: stratum 16, leap 0, "synchronised". */
const STRATUM_16 = { synchronised: true, leap: 0, stratum: 16, refid: "192.0.2.1" };

const get = (path: string) => new Request(`http://127.0.0.1:8123${path}`);

Deno.test("isSynchronised(): leap other than 3 and stratum 1..15", () => {
  assert.equal(isSynchronised({ leap: 0, stratum: 1 }), true);
  assert.equal(isSynchronised({ leap: 1, stratum: 15 }), true);
  assert.equal(isSynchronised({ leap: 0, stratum: 16 }), false);
  assert.equal(isSynchronised({ leap: 0, stratum: 0 }), false);
  assert.equal(isSynchronised({ leap: 3, stratum: 2 }), false);
  assert.equal(isSynchronised(unsyncedState(-20)), false);
});

Deno.test("the wire: a stratum-16 state is served as LI 3, stratum 0, refid 0", () => {
  const ctx: ServerContext = {
    system: { ...unsyncedState(-20), leap: Leap.none, stratum: 16, refid: asciiRefid("GPS") },
    access: new AccessList([parseCidr("0.0.0.0/0") as Cidr], []),
    limiter: new RateLimiter({ intervalS: 0, burst: 1 }),
    denyKod: false,
    rateKod: true,
    minPoll: 0,
    counters: new Float64Array(COUNTER_COUNT),
  };
  const from = newClientAddress();
  setClientAddress(from, parseIp("192.0.2.50")!, 0, 4, 40000);
  const req = hex(CHRONY_REQUEST);
  const out = new Uint8Array(64);
  assert.equal(respond(req, req.length, from, T0, 0, ctx, out, 0), 48);
  const p = parsePacket(out.subarray(0, 48));
  assert.ok(typeof p !== "string");
  assert.equal(p.leap, Leap.unsync);
  assert.equal(p.stratum, 0);
  assert.equal(p.refid, 0);
});

Deno.test("/status JSON: stratum 16 is synchronised false, leap 3, no refid, no system peer", async () => {
  const { model } = fakeModel({ engine: fakeEngine(STRATUM_16) });
  const doc = await handleStatusRequest(get("/status"), model).json();
  assert.equal(doc.system.synchronised, false);
  assert.equal(doc.system.leap, 3);
  assert.equal(doc.system.stratum, 16);
  assert.equal(doc.system.refid, "");
  assert.equal(doc.system.system_peer, "");
  assert.deepEqual(doc.health, { healthy: false, reason: "not synchronised" });
  assert.ok(!doc.sources.some((s: { tally: string }) => s.tally === "*"), "no system peer tally");
});

Deno.test("/status JSON: a synchronised engine's report passes unchanged", () => {
  const engine = fakeEngine();
  const snap = buildSnapshot({
    version: "t",
    now: T0,
    uptimeS: 1,
    driver: "d",
    driverReason: "r",
    workers: 1,
    listen: [],
    engine,
    anycast: null,
    counters: fakeCounters(),
    rates: null,
    systemJitterS: 0,
    residentMemoryBytes: 0,
    historyBytes: 0,
  });
  assert.equal(snap.system.synchronised, true);
  assert.equal(snap.system.stratum, 2);
  assert.equal(snap.sources[0]?.tally, "*");
});

Deno.test("the status page: stratum 16 shows the unhealthy banner", () => {
  const { model } = fakeModel({ engine: fakeEngine(STRATUM_16) });
  const html = handleStatusRequest(get("/"), model);
  return html.text().then((body) => {
    assert.match(body, /<div class="banner bad" id="health">Unhealthy — not synchronised<\/div>/);
    assert.match(body, /Not synchronised/);
  });
});

Deno.test("/healthz: stratum 16 answers 503 not synchronised", async () => {
  const { model } = fakeModel({ engine: fakeEngine(STRATUM_16) });
  const res = handleStatusRequest(get("/healthz"), model);
  assert.equal(res.status, 503);
  assert.equal(await res.text(), "unhealthy: not synchronised\n");
});

Deno.test("/metrics: stratum 16 gives ntp_system_synchronised 0 and leap 3", async () => {
  const { model } = fakeModel({ engine: fakeEngine(STRATUM_16) });
  const fams = parsePrometheusText(await handleStatusRequest(get("/metrics"), model).text());
  const value = (name: string) => fams.find((f) => f.name === name)?.samples[0]?.value;
  assert.equal(value("ntp_system_synchronised"), 0);
  assert.equal(value("ntp_system_leap"), 3);
  assert.equal(value("ntp_system_stratum"), 16);
  assert.equal(value("edge_time_healthy"), 0);
  const selected = fams.find((f) => f.name === "ntp_source_selected")!.samples;
  assert.ok(selected.every((s) => s.value === 0));
});

Deno.test("tracking: a stratum-16 state (even from an older server's JSON) is not synchronised", () => {
  const text = formatTracking({ ...fakeEngine(STRATUM_16).system, jitter_s: 0 });
  assert.match(text, /^Synchronised {4}: no$/m);
  assert.match(text, /^Leap status {5}: Not synchronised$/m);
  assert.match(text, /^Stratum {9}: 16$/m);
  assert.match(text, /^Reference ID {4}: -$/m);
});

Deno.test("peers: no source is tallied * while the system is not synchronised", () => {
  const e = fakeEngine(STRATUM_16);
  const rows = formatPeers(e.sources, e.system).split("\n").slice(2);
  assert.ok(rows.some((l) => l.startsWith(" 192.0.2.1 ")), rows.join("\n"));
  assert.ok(!rows.some((l) => l.startsWith("*")), rows.join("\n"));
  const synced = fakeEngine();
  assert.ok(formatPeers(synced.sources, synced.system).includes("\n*192.0.2.1 "));
});

Deno.test("the history ring plots no system offset while at stratum 16", () => {
  const h = new History({ capacity: 8 });
  h.add(T0, fakeEngine(STRATUM_16), fakeCounters());
  assert.ok(h.series(T0).system.offset_s.every((v) => v === null));
  const synced = new History({ capacity: 8 });
  synced.add(T0, fakeEngine(), fakeCounters());
  assert.ok(synced.series(T0).system.offset_s.some((v) => v !== null));
});

Deno.test("the anycast gate: a stratum-16 state is not synchronised", () => {
  const reason = healthReason(
    { leap: 0, stratum: 16, offsetS: 0, drain: false, selfQuery: queryReply() },
    { maxOffsetMs: 10 },
  );
  assert.equal(reason, "not synchronised (leap 0, stratum 16)");
});

Deno.test("the app's report of a published state uses the same rule", () => {
  const s = { ...unsyncedState(-20), leap: Leap.none, stratum: 16 };
  assert.equal(engineReportFromState(s, 0).system.synchronised, false);
  const local = { ...unsyncedState(-20), leap: Leap.none, stratum: 8 };
  assert.equal(engineReportFromState(local, 16).system.synchronised, true);
});
