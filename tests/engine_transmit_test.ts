/**
 * Unit tests: symmetric-mode transmit timestamps confirmed by the driver
 * (`confirmSends`, `confirmTransmit`): the peer echoes what really went
 * out, which may arrive before the confirmation does.
 */
import assert from "assert";
import { VirtualClock } from "../lib/engine/clock.ts";
import { type Action, Engine } from "../lib/engine/engine.ts";
import { engineOptions } from "./helpers/fixtures.ts";
import { Leap, Mode, type NtpPacket, parsePacket, serializePacket } from "../lib/ntp/packet.ts";
import { fromUnixSeconds, toUnixSeconds } from "../lib/ntp/timestamp.ts";

const T = 1_800_000_000;
const PEER = "10.0.0.2";
/** How much later than built the packet leaves (server worker latency). */
const LATE = 0.002;
/** One-way network delay. */
const D = 0.0001;

function engine(confirmSends: boolean): Engine {
  const o = engineOptions([{
    address: PEER,
    kind: "peer",
    iburst: false,
    prefer: false,
    minPoll: 4,
    maxPoll: 6,
    maxSources: 1,
  }], { confirmSends });
  return new Engine(o, new VirtualClock(), T);
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

/** The peer (same clock) answers a packet of ours that left at `sentAt`, echoing `org`. */
function answer(org: bigint, sentAt: number, mode: number = Mode.symmetricPassive): Uint8Array {
  return serializePacket({
    leap: Leap.none,
    version: 4,
    mode,
    stratum: 1,
    poll: 4,
    precision: -20,
    rootDelay: 0,
    rootDisp: 0.0001,
    refid: 0x47505300,
    ref: fromUnixSeconds(sentAt - 1),
    org,
    rec: fromUnixSeconds(sentAt + D),
    xmt: fromUnixSeconds(sentAt + 2 * D),
  });
}

function source(e: Engine, at: number) {
  const s = e.report(at).sources[0]!;
  return { ...s, bogus: s.counters?.bogus ?? -1 };
}

Deno.test("Engine.confirmTransmit() replaces the provisional xmt of symmetric sends", async (t) => {
  await t.step("without confirmSends a send carries no stamp", () => {
    const e = engine(false);
    assert.equal(sendOf(e.handleTimer(T + 1, () => 0.5)).stamp, undefined);
  });

  await t.step("the confirmed xmt is our t1 and what the peer's org must match", () => {
    const e = engine(true);
    const send = sendOf(e.handleTimer(T + 1, () => 0.5));
    assert.equal(typeof send.stamp, "number");
    const built = toUnixSeconds(parse(send.bytes).xmt, T);
    const sentAt = built + LATE;
    const real = fromUnixSeconds(sentAt);
    e.confirmTransmit(send.stamp!, real, sentAt + 0.0001);
    e.handleIncoming(PEER, 123, answer(real, sentAt), sentAt + 3 * D);
    const s = source(e, sentAt + 1);
    assert.equal(s.reach, 1);
    assert.equal(s.bogus, 0);
    // With the provisional t1 this would be +1 ms offset and 2.2 ms delay.
    assert.ok(Math.abs(s.offset_s) < 1e-5, `offset ${s.offset_s}`);
    assert.ok(Math.abs(s.delay_s - 2 * D) < 1e-5, `delay ${s.delay_s}`);
  });

  await t.step("after confirmation the provisional xmt no longer matches", () => {
    const e = engine(true);
    const send = sendOf(e.handleTimer(T + 1, () => 0.5));
    const p = parse(send.bytes);
    const built = toUnixSeconds(p.xmt, T);
    e.confirmTransmit(send.stamp!, fromUnixSeconds(built + LATE), built + LATE);
    e.handleIncoming(PEER, 123, answer(p.xmt, built + LATE), built + LATE + 3 * D);
    const s = source(e, built + 1);
    assert.equal(s.reach, 0);
    assert.equal(s.bogus, 1);
  });

  await t.step("race: an answer before the confirmation is held, then accepted", () => {
    const e = engine(true);
    const send = sendOf(e.handleTimer(T + 1, () => 0.5));
    const sentAt = toUnixSeconds(parse(send.bytes).xmt, T) + LATE;
    const real = fromUnixSeconds(sentAt);
    e.handleIncoming(PEER, 123, answer(real, sentAt), sentAt + 3 * D);
    let s = source(e, sentAt + 0.001);
    assert.equal(s.reach, 0, "judged before the confirmation");
    assert.equal(s.bogus, 0, "counted bogus before the confirmation");
    e.confirmTransmit(send.stamp!, real, sentAt + 0.001);
    s = source(e, sentAt + 1);
    assert.equal(s.reach, 1);
    assert.equal(s.bogus, 0);
    assert.ok(Math.abs(s.offset_s) < 1e-5, `offset ${s.offset_s}`);
  });

  await t.step("race: a held packet with a wrong org is bogus once confirmed", () => {
    const e = engine(true);
    const send = sendOf(e.handleTimer(T + 1, () => 0.5));
    const sentAt = toUnixSeconds(parse(send.bytes).xmt, T) + LATE;
    e.handleIncoming(PEER, 123, answer(fromUnixSeconds(sentAt + 0.5), sentAt), sentAt + 3 * D);
    e.confirmTransmit(send.stamp!, fromUnixSeconds(sentAt), sentAt + 0.001);
    const s = source(e, sentAt + 1);
    assert.equal(s.reach, 0);
    assert.equal(s.bogus, 1);
  });

  await t.step("a lost confirmation: the held packet is dropped at the next poll", () => {
    const e = engine(true);
    const send = sendOf(e.handleTimer(T + 1, () => 0.5));
    const sentAt = toUnixSeconds(parse(send.bytes).xmt, T) + LATE;
    e.handleIncoming(PEER, 123, answer(fromUnixSeconds(sentAt), sentAt), sentAt + 3 * D);
    e.handleTimer(T + 40, () => 0.5);
    const s = source(e, T + 40);
    assert.equal(s.reach, 0);
    assert.equal(s.bogus, 1);
  });

  await t.step("our passive reply to the peer's poll is confirmed the same way", () => {
    const e = engine(true);
    const first = sendOf(e.handleTimer(T + 1, () => 0.5));
    e.confirmTransmit(first.stamp!, parse(first.bytes).xmt, T + 1.01);
    // The peer's own poll (org 0: it has not heard from us): we answer it.
    const poll = answer(0n, T + 2, Mode.symmetricActive);
    const reply = sendOf(e.handleIncoming(PEER, 123, poll, T + 2 + D, () => 0.5, T + 2 + D));
    assert.equal(reply.mode, Mode.symmetricPassive);
    assert.equal(typeof reply.stamp, "number");
    const sentAt = T + 2 + D + LATE;
    const real = fromUnixSeconds(sentAt);
    // The peer's next poll echoes the reply's real xmt, and arrives before the confirmation.
    const next = answer(real, sentAt, Mode.symmetricActive);
    e.handleIncoming(PEER, 123, next, sentAt + 3 * D);
    assert.equal(source(e, sentAt + 0.001).reach, 0);
    const again = e.confirmTransmit(reply.stamp!, real, sentAt + 0.001);
    const s = source(e, sentAt + 1);
    assert.equal(s.reach, 1);
    assert.equal(s.bogus, 0);
    assert.ok(Math.abs(s.offset_s) < 1e-5, `offset ${s.offset_s}`);
    // It was an active packet: it gets its own passive reply, with a new cookie.
    const r2 = sendOf(again);
    assert.ok(r2.stamp !== undefined && r2.stamp !== reply.stamp);
  });
});
