/**
 * Unit tests of the one fallback system state (lib/engine/fallback.ts):
 * `local_stratum` and orphan mode as its two inputs, the pure rule, and
 * the engine announcing it — in what the server workers answer with and
 * in our peer packets alike — with a fake clock (explicit times, the
 * virtual clock).
 */
import assert from "assert";
import { VirtualClock } from "../../lib/engine/clock.ts";
import { Engine, type EngineSource } from "../../lib/engine/engine.ts";
import {
  chooseFallback,
  type FallbackConfig,
  orphanEnabled,
  REFID_LOCL,
} from "../../lib/engine/fallback.ts";
import { asciiRefid, Leap, Mode, parsePacket, serializePacket } from "../../lib/ntp/packet.ts";
import { correctionAt } from "../../lib/ntp/system_state.ts";
import { fromUnixSeconds, toUnixSeconds } from "../../lib/ntp/timestamp.ts";
import { driven, type DrivenEngine, engineOptions } from "../helpers/fixtures.ts";

const T = 1_800_000_000;
const OURS = 0x0a000001; // 10.0.0.1, the fixtures' localRefid

const cfg = (o: Partial<FallbackConfig>): FallbackConfig => ({
  localStratum: 0,
  orphanStratum: 7,
  orphanWait: 300,
  localRefid: OURS,
  ...o,
});

Deno.test("chooseFallback: local_stratum from the start, orphan mode only below it", async (t) => {
  await t.step("local_stratum alone: local at once and for good", () => {
    const c = cfg({ localStratum: 5, orphanStratum: 0 });
    for (const since of [0, 299, 300, 1e6]) {
      assert.deepEqual(chooseFallback(c, since, []), {
        kind: "local",
        stratum: 5,
        refid: REFID_LOCL,
      });
    }
  });
  await t.step("orphan mode alone: nothing before orphan_wait_s, then the election", () => {
    const c = cfg({});
    assert.deepEqual(chooseFallback(c, 299, []), { kind: "none" });
    assert.deepEqual(chooseFallback(c, 300, []), {
      kind: "orphan-parent",
      stratum: 7,
      refid: OURS,
    });
    // The lowest refid below ours is the parent; higher ones do not count.
    assert.deepEqual(chooseFallback(c, 300, [0x0b000000, 0x0a000000, 0x09000000]), {
      kind: "orphan-child",
      parent: 2,
    });
    assert.deepEqual(chooseFallback(c, 300, [0x0b000000]).kind, "orphan-parent");
  });
  await t.step("local_stratum at or below orphan_stratum: orphan mode never starts", () => {
    for (const local of [5, 7]) {
      const c = cfg({ localStratum: local });
      assert.equal(orphanEnabled(c), false);
      for (const since of [0, 300, 1e6]) {
        assert.equal(chooseFallback(c, since, [0x01000000]).kind, "local");
      }
    }
  });
  await t.step("orphan_stratum below local_stratum: local until orphan_wait_s, then orphan", () => {
    const c = cfg({ localStratum: 10 });
    assert.equal(orphanEnabled(c), true);
    assert.equal(chooseFallback(c, 0, []).kind, "local");
    assert.equal(chooseFallback(c, 300, []).kind, "orphan-parent");
  });
  await t.step("neither: none (holdover or unsynchronised)", () => {
    assert.deepEqual(chooseFallback(cfg({ orphanStratum: 0 }), 1e6, []), { kind: "none" });
  });
});

const source = (address: string, kind: "server" | "peer"): EngineSource => ({
  address,
  kind,
  iburst: false,
  prefer: false,
  minPoll: 4,
  maxPoll: 4,
  maxSources: 1,
  xleave: false,
});

function packet(bytes: Uint8Array) {
  const p = parsePacket(bytes);
  if (typeof p === "string") throw new Error(p);
  return p;
}

/** Polls due at `now`; the first packet sent, parsed, with its raw bytes. */
function poll(e: DrivenEngine, now: number) {
  const send = e.handleTimer(now, () => 0.5).find((a) => a.kind === "send");
  return send ? { bytes: send.bytes, p: packet(send.bytes) } : null;
}

/** The answer of a source at `stratum` (symmetric passive for a peer, mode 4 for a server). */
function answer(req: Uint8Array, t: number, o: { stratum: number; mode: number }): Uint8Array {
  const p = packet(req);
  return serializePacket({
    leap: Leap.none,
    version: 4,
    mode: o.mode,
    stratum: o.stratum,
    poll: 4,
    precision: -20,
    rootDelay: 0.0001,
    rootDisp: 0.0001,
    refid: asciiRefid(o.stratum === 1 ? "GPS" : "LOCL"),
    ref: fromUnixSeconds(t - 1),
    org: p.xmt,
    rec: fromUnixSeconds(t + 0.0001),
    xmt: fromUnixSeconds(t + 0.0001),
  });
}

/**
 * Asserts the announced state: leap 0, `stratum`, refid LOCL, and as
 * reference time the served time (raw time + our correction) at raw `now`.
 */
function assertLocal(e: DrivenEngine, stratum: number, now: number, what: string) {
  const s = e.systemState();
  assert.deepEqual(
    { leap: s.leap, stratum: s.stratum, refid: s.refid, refTime: s.refTime },
    { leap: Leap.none, stratum, refid: REFID_LOCL, refTime: now + correctionAt(s, now) },
    what,
  );
}

Deno.test("engine with local_stratum = 5 and one peer: the local state from the first packet on", async (t) => {
  const e = driven(
    new Engine(
      engineOptions([source("10.0.0.2", "peer")], { localStratum: 5 }),
      new VirtualClock(),
      T,
    ),
  );
  await t.step("before anything happened, the server workers get LI 0, stratum 5, LOCL", () => {
    assertLocal(e, 5, T, "at start");
    const r = e.report(T).system;
    assert.equal(r.synchronised, true);
    assert.equal(r.refid, "LOCL");
    assert.equal(r.system_peer, "");
  });
  let now = T + 1;
  const first = poll(e, now)!;
  await t.step("our first peer packet says the same", () => {
    assert.equal(first.p.mode, Mode.symmetricActive);
    assert.equal(first.p.leap, Leap.none);
    assert.equal(first.p.stratum, 5);
    assert.equal(first.p.refid, REFID_LOCL);
    const ref = toUnixSeconds(first.p.ref, T);
    assert.ok(ref >= T && ref <= now, `reference time ${ref}`);
  });
  await t.step("a peer at stratum 10 (chronyd's local stratum 10) is not followed", () => {
    e.handleIncoming("10.0.0.2", 123, answer(first.bytes, now, { stratum: 10, mode: 2 }), now);
    const r = e.report(now);
    assert.equal(r.sources[0]!.reach, 1);
    assert.equal(r.system.system_peer, "");
    assertLocal(e, 5, now, "after the peer's answer");
  });
  await t.step("orphan mode (stratum 7, after orphan_wait_s) never replaces it", () => {
    for (let i = 0; i < 40; i++) {
      now += 16;
      const req = poll(e, now);
      if (req) {
        assert.equal(req.p.stratum, 5);
        e.handleIncoming("10.0.0.2", 123, answer(req.bytes, now, { stratum: 10, mode: 2 }), now);
      }
    }
    assert.ok(now - T > 600, "well past orphan_wait_s");
    assert.equal(e.orphan, false);
    assertLocal(e, 5, now, "the reference time is fresh: the last update's");
  });
  await t.step("a peer below our stratum is followed", () => {
    now += 16;
    const req = poll(e, now)!;
    e.handleIncoming("10.0.0.2", 123, answer(req.bytes, now, { stratum: 3, mode: 2 }), now);
    const r = e.report(now);
    assert.equal(r.system.system_peer, "10.0.0.2:123");
    assert.equal(r.system.stratum, 4);
    assert.notEqual(e.systemState().refid, REFID_LOCL);
  });
  await t.step("when it is lost, the local state returns at once (no holdover)", () => {
    // Three polls without an answer make it unfit.
    for (let i = 0; i < 4; i++) poll(e, now += 16);
    assert.equal(e.report(now).system.system_peer, "");
    assertLocal(e, 5, now, "after the peer was lost");
  });
});

Deno.test("engine: local_stratum replaces a stratum-15 system peer, never stratum 16", () => {
  const e = driven(
    new Engine(
      engineOptions([source("192.0.2.1", "server")], { localStratum: 5 }),
      new VirtualClock(),
      T,
    ),
  );
  const now = T + 1;
  const req = poll(e, now)!;
  assert.equal(req.p.stratum, 0, "client requests carry no system state");
  e.handleIncoming("192.0.2.1", 123, answer(req.bytes, now, { stratum: 15, mode: 4 }), now);
  assertLocal(e, 5, now, "a stratum-15 server would make us 16");
});

Deno.test("engine: orphan_stratum below local_stratum takes over after orphan_wait_s", () => {
  const e = driven(
    new Engine(
      engineOptions([source("10.0.0.2", "peer")], { localStratum: 10, orphanWait: 10 }),
      new VirtualClock(),
      T,
    ),
  );
  assertLocal(e, 10, T, "local before orphan_wait_s");
  poll(e, T + 1);
  poll(e, T + 12);
  const s = e.systemState();
  assert.equal(e.orphanParent, true);
  assert.equal(s.stratum, 7);
  assert.equal(s.refid, OURS);
});

Deno.test("engine: a reload turns local_stratum on and off", () => {
  const opts = engineOptions([source("10.0.0.2", "peer")], { orphanStratum: 0 });
  const e = driven(new Engine(opts, new VirtualClock(), T));
  assert.equal(e.systemState().leap, Leap.unsync, "no local_stratum: unsynchronised");
  const reconf = (localStratum: number) => ({ ...opts, localStratum });
  e.reconfigure(reconf(6), T + 5);
  assertLocal(e, 6, T + 5, "local_stratum = 6 by reload");
  const p = poll(e, T + 6)!;
  assert.equal(p.p.stratum, 6);
  e.reconfigure(reconf(0), T + 7);
  assert.equal(e.systemState().leap, Leap.unsync, "off again");
  assert.equal(e.report(T + 7).system.synchronised, false);
});

Deno.test("engine: with local_stratum = 5 (orphan mode off) a peer at 5 is a sibling, at 4 a reference", () => {
  const mk = () =>
    driven(
      new Engine(
        engineOptions([source("10.0.0.2", "peer")], { localStratum: 5, orphanStratum: 0 }),
        new VirtualClock(),
        T,
      ),
    );
  const sibling = mk();
  let req = poll(sibling, T + 1)!;
  sibling.handleIncoming("10.0.0.2", 123, answer(req.bytes, T + 1, { stratum: 5, mode: 2 }), T + 1);
  assert.equal(sibling.report(T + 1).system.system_peer, "");
  assertLocal(sibling, 5, T + 1, "a peer at our local stratum is not followed");
  const below = mk();
  req = poll(below, T + 1)!;
  below.handleIncoming("10.0.0.2", 123, answer(req.bytes, T + 1, { stratum: 4, mode: 2 }), T + 1);
  assert.equal(below.report(T + 1).system.system_peer, "10.0.0.2:123");
  assert.equal(below.systemState().stratum, 5);
  assert.notEqual(below.systemState().refid, REFID_LOCL);
});
