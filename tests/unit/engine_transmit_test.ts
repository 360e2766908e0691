/**
 * Unit tests: the driver owns t1 and t4. The engine takes a packet with
 * the driver's receive time and its record of the last send (`Transmit`:
 * what went out as xmt, and when), so a packet that left later than it
 * was built is measured from when it left; symmetric packets ask the
 * driver to stamp their xmt; interleaved replies (RFC 9769) complete the
 * previous exchange with the server's later transmit timestamp.
 */
import assert from "assert";
import { VirtualClock } from "../../lib/engine/clock.ts";
import { type Action, Engine, type EngineSource } from "../../lib/engine/engine.ts";
import { engineOptions } from "../helpers/fixtures.ts";
import { Leap, Mode, type NtpPacket, parsePacket, serializePacket } from "../../lib/ntp/packet.ts";
import { fromUnixSeconds, toUnixSeconds } from "../../lib/ntp/timestamp.ts";

const T = 1_800_000_000;
const UP = "192.0.2.1";
/** How much later than built a packet leaves. */
const LATE = 0.002;
/** One-way network delay. */
const D = 0.0001;

function source(o: Partial<EngineSource> = {}): EngineSource {
  return {
    address: UP,
    kind: "server",
    iburst: false,
    prefer: false,
    minPoll: 4,
    maxPoll: 6,
    maxSources: 1,
    xleave: false,
    ...o,
  };
}

function engine(o: Partial<EngineSource> = {}): Engine {
  return new Engine(engineOptions([source(o)]), new VirtualClock(), T);
}

type Send = Extract<Action, { kind: "send" }>;

function sendOf(actions: Action[]): Send {
  const s = actions.find((a): a is Send => a.kind === "send");
  assert.ok(s, `no send in ${JSON.stringify(actions.map((a) => a.kind))}`);
  return s;
}

function parse(bytes: Uint8Array): NtpPacket {
  const p = parsePacket(bytes);
  if (typeof p === "string") throw new Error(p);
  return p;
}

/** A server on our clock answers: `org` echoed, received at `rec`, sent at `xmt` (Unix seconds). */
function reply(org: bigint, rec: number, xmt: number): Uint8Array {
  return serializePacket({
    leap: Leap.none,
    version: 4,
    mode: Mode.server,
    stratum: 1,
    poll: 4,
    precision: -20,
    rootDelay: 0,
    rootDisp: 0.0001,
    refid: 0x47505300,
    ref: fromUnixSeconds(rec - 1),
    org,
    rec: fromUnixSeconds(rec),
    xmt: fromUnixSeconds(xmt),
  });
}

Deno.test("Engine.handleIncoming() measures from the driver's t1, not from when the packet was built", () => {
  const e = engine();
  const built = T + 1;
  const req = sendOf(e.handleTimer(built, () => 0.5));
  const xmt = parse(req.bytes).xmt;
  const left = built + LATE; // the kernel's transmit timestamp
  e.handleIncoming(UP, 123, reply(xmt, left + D, left + D), left + 2 * D, { xmt, t1: left });
  const a = e.associations.get(`${UP}:123`)!;
  const s = a.filter.stages[0]!;
  assert.ok(Math.abs(s.delay - 2 * D) < 1e-6, `delay ${s.delay}`);
  assert.ok(Math.abs(s.y) < 1e-6, `offset ${s.y}: same clock, so 0`);
});

Deno.test("Engine.handleIncoming() origin test against the driver's last send", async (t) => {
  await t.step("a reply to another xmt is bogus", () => {
    const e = engine();
    const req = sendOf(e.handleTimer(T + 1, () => 0.5));
    const xmt = parse(req.bytes).xmt;
    e.handleIncoming(UP, 123, reply(xmt + 1n, T + 1 + D, T + 1 + D), T + 1 + 2 * D, {
      xmt,
      t1: T + 1,
    });
    assert.equal(e.counters.bogus, 1);
  });
  await t.step("a reply when nothing was sent is bogus", () => {
    const e = engine();
    sendOf(e.handleTimer(T + 1, () => 0.5));
    e.handleIncoming(UP, 123, reply(5n, T + 1 + D, T + 1 + D), T + 1 + 2 * D, null);
    assert.equal(e.counters.bogus, 1);
  });
  await t.step("a request is answered once", () => {
    const e = engine();
    const req = sendOf(e.handleTimer(T + 1, () => 0.5));
    const sent = { xmt: parse(req.bytes).xmt, t1: T + 1 };
    e.handleIncoming(UP, 123, reply(sent.xmt, T + 1 + D, T + 1 + D), T + 1 + 2 * D, sent);
    e.handleIncoming(UP, 123, reply(sent.xmt, T + 1 + D, T + 1 + 2 * D), T + 1 + 3 * D, sent);
    assert.equal(e.associations.get(`${UP}:123`)!.counters.bogus, 1);
  });
});

Deno.test("Engine.handleIncoming() applies the shared reply checks (reply_check.ts)", async (t) => {
  const zeroRec = (org: bigint, at: number) => {
    const b = reply(org, at, at);
    b.fill(0, 32, 40); // receive timestamp zero: not time, whatever the origin says
    return b;
  };
  await t.step("a reply with a zero receive timestamp is dropped, not sampled", () => {
    const e = engine();
    const req = sendOf(e.handleTimer(T + 1, () => 0.5));
    const xmt = parse(req.bytes).xmt;
    const acts = e.handleIncoming(UP, 123, zeroRec(xmt, T + 1 + D), T + 1 + 2 * D, {
      xmt,
      t1: T + 1,
    });
    const a = e.associations.get(`${UP}:123`)!;
    assert.equal(a.filter.stages.length, 0, "no sample");
    assert.equal(a.counters.bogus, 1);
    assert.ok(
      acts.some((x) => x.kind === "log" && x.message.includes("receive timestamp is zero")),
    );
  });
});

Deno.test("send actions: symmetric packets are stamped by the driver, client requests are not", () => {
  const client = sendOf(engine().handleTimer(T + 1, () => 0.5));
  assert.equal(client.stampXmt, false);
  const peer = sendOf(engine({ kind: "peer", address: "10.0.0.2" }).handleTimer(T + 1, () => 0.5));
  assert.equal(peer.mode, Mode.symmetricActive);
  assert.equal(peer.stampXmt, true);
});

Deno.test("interleaved client mode (RFC 9769) uses the server's transmit time of its previous reply", async (t) => {
  const e = engine({ xleave: true });
  const a = () => e.associations.get(`${UP}:123`)!;
  // Exchange 1 (basic): sent at t1, received by the server at t2, its reply
  // stamped t3 before it left but really left at t3k, back to us at t4.
  const t1 = T + 1, t2 = t1 + D, t3 = t2 + 0.00001, t3k = t3 + 0.0003, t4 = t3k + D;
  const r1 = sendOf(e.handleTimer(t1, () => 0.5));
  const p1 = parse(r1.bytes);
  await t.step("the first request is basic", () => {
    assert.equal(p1.org, 0n);
    assert.equal(p1.rec, 0n);
  });
  e.handleIncoming(UP, 123, reply(p1.xmt, t2, t3), t4, { xmt: p1.xmt, t1 });
  const basicDelay = a().filter.stages[0]!.delay;
  assert.ok(basicDelay > 2 * D + 0.0002, "the basic sample carries the server's send latency");

  const u1 = t4 + 16, u2 = u1 + D, u4 = u2 + 0.00002 + D;
  const r2 = sendOf(e.handleTimer(u1, () => 0.5));
  const p2 = parse(r2.bytes);
  await t.step("the next request names the last exchange", () => {
    assert.equal(p2.org, fromUnixSeconds(t2), "org = the server's receive timestamp");
    const rec = toUnixSeconds(p2.rec, t4);
    assert.ok(Math.abs(rec - t4) < 0.001, `rec ${rec - t4} = when its reply reached us (served)`);
  });
  await t.step("an interleaved reply completes exchange 1 with the late transmit time", () => {
    // Interleaved reply: org = our rec, rec = this exchange's, xmt = when reply 1 left.
    e.handleIncoming(UP, 123, reply(p2.rec, u2, t3k), u4, { xmt: p2.xmt, t1: u1 });
    assert.equal(a().interleaved, true);
    const s = a().filter.stages.find((x) => x.t === t4)!;
    assert.ok(s, "a sample at the time of exchange 1");
    assert.ok(Math.abs(s.delay - 2 * D) < 1e-6, `delay ${s.delay}`);
    assert.ok(Math.abs(s.y) < 1e-6, `offset ${s.y}`);
  });
  await t.step("a basic reply to an interleaved request still counts", () => {
    const v1 = u4 + 16;
    const r3 = sendOf(e.handleTimer(v1, () => 0.5));
    const p3 = parse(r3.bytes);
    assert.equal(p3.org, fromUnixSeconds(u2));
    e.handleIncoming(UP, 123, reply(p3.xmt, v1 + D, v1 + D), v1 + 2 * D, { xmt: p3.xmt, t1: v1 });
    assert.equal(a().interleaved, false);
    assert.equal(a().counters.bogus, 0);
  });
});
