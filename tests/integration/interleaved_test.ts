/**
 * Interleaved mode (RFC 9769, chrony's `xleave`): the server's pure reply
 * with its transmit-time store, then chronyd against edge-time in both
 * roles on loopback.
 */
import assert from "assert";
import { serverContext } from "../helpers/fixtures.ts";
import { newClientAddress, setClientAddress } from "../../lib/ntp/address.ts";
import { parsePacket, serializePacket } from "../../lib/ntp/packet.ts";
import {
  Counter,
  REPLY_LENGTH,
  REPLY_SAVE_TX,
  REPLY_STAMPED,
  respond,
  type ServerContext,
} from "../../lib/ntp/server.ts";
import { unsyncedState } from "../../lib/ntp/system_state.ts";
import { fromUnixSeconds, toUnixSeconds } from "../../lib/ntp/timestamp.ts";
import { TxStore } from "../../lib/ntp/tx_store.ts";
import { chronyAvailable, startChronyd } from "../helpers/chrony.ts";
import { freeTcpPort, freeUdpPort, startEdgeTime } from "../helpers/edge_time.ts";
import { fetchStatus } from "../helpers/status.ts";
import { until } from "../helpers/wait.ts";

const T = 1_800_000_000;

function context(): ServerContext {
  const system = { ...unsyncedState(-20), leap: 0, stratum: 2, refid: 0x7f000001, refTime: T - 10 };
  return serverContext(system, { txStore: new TxStore() });
}

function request(org: bigint, rec: bigint, xmt: bigint): Uint8Array {
  return serializePacket({
    leap: 0,
    version: 4,
    mode: 3,
    stratum: 0,
    poll: 4,
    precision: -20,
    rootDelay: 0,
    rootDisp: 0,
    refid: 0,
    ref: 0n,
    org,
    rec,
    xmt,
  });
}

function parsed(b: Uint8Array) {
  const p = parsePacket(b);
  if (typeof p === "string") throw new Error(p);
  return p;
}

Deno.test("respond() answers an interleaved request with the earlier reply's transmit time", async (t) => {
  const ctx = context();
  const client = newClientAddress();
  setClientAddress(client, new Uint8Array([127, 0, 0, 1]), 0, 4, 40000);
  const out = new Uint8Array(48);
  await t.step("a basic client (org = rec = 0) costs nothing more", () => {
    const r = respond(request(0n, 0n, 11n), 48, client, T, 0, ctx, out);
    assert.equal(r, 48);
  });
  let rec1 = 0n;
  await t.step("a request naming an unknown reply gets a basic reply marked to save", () => {
    const r = respond(request(5n, 6n, 12n), 48, client, T + 1, 500, ctx, out);
    assert.equal(r & REPLY_LENGTH, 48);
    assert.equal(r & REPLY_SAVE_TX, REPLY_SAVE_TX);
    assert.equal(r & REPLY_STAMPED, 0);
    const p = parsed(out);
    assert.equal(p.org, 12n, "basic: org = request xmt");
    rec1 = p.rec;
    // The driver saves when that reply really left.
    ctx.txStore!.save(Number(rec1 >> 32n), Number(rec1 & 0xffffffffn), T + 1, 900_000);
  });
  await t.step("the next request names it: interleaved reply", () => {
    const ourRec = fromUnixSeconds(T + 1.01);
    const r = respond(request(rec1, ourRec, 13n), 48, client, T + 17, 0, ctx, out);
    assert.equal(r & REPLY_STAMPED, REPLY_STAMPED, "xmt already written");
    assert.equal(r & REPLY_SAVE_TX, REPLY_SAVE_TX, "and this reply is saved in turn");
    const p = parsed(out);
    assert.equal(p.org, ourRec, "interleaved: org = request rec");
    assert.ok(Math.abs(toUnixSeconds(p.xmt, T) - (T + 1.0009)) < 1e-6, "xmt = saved send time");
    assert.ok(Math.abs(toUnixSeconds(p.rec, T) - (T + 17)) < 1e-6, "rec = this exchange's");
    assert.equal(ctx.counters[Counter.interleaved], 1);
  });
});

const skip = chronyAvailable();
if (skip) console.log(`interleaved_test: skipped: ${skip}`);

Deno.test({
  name: "chronyd with xleave gets interleaved replies from edge-time (two workers, one store)",
  ignore: skip !== null,
  sanitizeResources: false,
  sanitizeOps: false,
}, async () => {
  const eport = await freeUdpPort(), sport = freeTcpPort();
  const edge = await startEdgeTime(`
[server]
listen = ["127.0.0.1:${eport}"]
workers = 2
local_stratum = 8
rate_limit = { interval_s = 0 }
[clock]
control = false
driftfile = ""
[status]
listen = "127.0.0.1:${sport}"
`);
  const chrony = await startChronyd([
    `server 127.0.0.1 port ${eport} minpoll -2 maxpoll -2 xleave`,
    "port 0",
    "user root",
  ]);
  try {
    await until("chronyd receiving interleaved replies", async () => {
      const out = await chrony.chronyc("-n", "ntpdata", "127.0.0.1");
      return /^Interleaved\s*:\s*Yes/m.test(out) ? out : null;
    }, 30_000);
    const s = await fetchStatus(sport);
    assert.ok(s.server.interleaved > 0, JSON.stringify(s.server));
  } finally {
    await chrony.stop();
    await edge.stop();
  }
});

Deno.test({
  name: "edge-time with xleave = true follows chronyd in interleaved mode",
  ignore: skip !== null,
  sanitizeResources: false,
  sanitizeOps: false,
}, async () => {
  const cport = await freeUdpPort(), eport = await freeUdpPort(), sport = freeTcpPort();
  const chrony = await startChronyd([
    `port ${cport}`,
    "bindaddress 127.0.0.1",
    "local stratum 8",
    "allow 127.0.0.1",
  ]);
  const edge = await startEdgeTime(`
[server]
listen = ["127.0.0.1:${eport}"]
workers = 1
[clock]
control = false
driftfile = ""
[status]
listen = "127.0.0.1:${sport}"
[[source]]
address = "127.0.0.1:${cport}"
min_poll = 0
max_poll = 0
xleave = true
`);
  try {
    const st = await until("an interleaved sample", async () => {
      const s = await fetchStatus(sport);
      return s.sources[0]?.interleaved === true && s.system.synchronised ? s : null;
    }, 30_000);
    assert.equal(st.system.stratum, 9);
  } finally {
    await edge.stop();
    await chrony.stop();
  }
});

Deno.test({
  name:
    "symmetric interleaved: edge-time and chronyd as `xleave` peers both see interleaved packets",
  ignore: skip !== null,
  sanitizeResources: false,
  sanitizeOps: false,
}, async () => {
  const cport = await freeUdpPort(), eport = await freeUdpPort(), sport = freeTcpPort();
  const chrony = await startChronyd([
    `port ${cport}`,
    "bindaddress 127.0.0.1",
    "local stratum 8",
    "allow 127.0.0.0/8",
    `peer 127.0.0.2 port ${eport} minpoll 0 maxpoll 0 xleave`,
    "user root",
  ]);
  const edge = await startEdgeTime(`
[server]
listen = ["127.0.0.2:${eport}"]
workers = 1
[clock]
control = false
driftfile = ""
orphan_stratum = 0
[status]
listen = "127.0.0.1:${sport}"
[[source]]
address = "127.0.0.1:${cport}"
kind = "peer"
xleave = true
min_poll = 0
max_poll = 1
`);
  try {
    // chronyd takes our packets as interleaved: org is its own rec, xmt our kernel stamp.
    await until("chronyd seeing interleaved packets from us", async () => {
      const out = await chrony.chronyc("-n", "ntpdata", "127.0.0.2");
      return /^Interleaved\s*:\s*Yes/m.test(out) ? out : null;
    }, 60_000);
    // And we take chronyd's the same way.
    const s = await until("our peer sample from an interleaved packet", async () => {
      const s = await fetchStatus(sport);
      const p = s.sources.find((x) => x.address === `127.0.0.1:${cport}`);
      return p?.interleaved === true ? s : null;
    }, 60_000);
    const p = s.sources.find((x) => x.address === `127.0.0.1:${cport}`)!;
    assert.ok(p.reach !== 0, JSON.stringify(p));
    // One kernel clock on both ends: the offsets are the measurement error (printed, not bounded).
    const nd = await chrony.chronyc("-n", "ntpdata", "127.0.0.2");
    console.log(
      `peer offsets, µs: ours of chronyd ${(p.offset_s * 1e6).toFixed(1)}, chronyd's of us ${
        (Number(/^Offset\s*:\s*([-+\d.e]+)/m.exec(nd)?.[1] ?? NaN) * 1e6).toFixed(1)
      }`,
    );
  } catch (e) {
    console.log(await chrony.chronyc("-n", "ntpdata", "127.0.0.2").catch(() => ""));
    console.log(edge.logs().slice(-20).join("\n"));
    throw e;
  } finally {
    await edge.stop();
    await chrony.stop();
  }
});
