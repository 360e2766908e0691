/**
 * Sources and peers with `key` (RFC 5905 §8 test 5): our packets carry the
 * key's ID for the driver's MAC; a packet without a valid MAC of that key
 * is dropped before anything else looks at it, counted, logged once per
 * episode, and never sets reach, gives a sample or steers.
 */
import assert from "assert";
import { VirtualClock } from "../../lib/engine/clock.ts";
import { Engine } from "../../lib/engine/engine.ts";
import { driven, engineOptions } from "../helpers/fixtures.ts";
import { asciiRefid, Leap, Mode, parsePacket, serializePacket } from "../../lib/ntp/packet.ts";
import { fromUnixSeconds } from "../../lib/ntp/timestamp.ts";
import { writeCryptoNak, writeMac } from "../../lib/auth/mac.ts";
import type { AuthKeys, SymmetricKey } from "../../lib/auth/keys.ts";
import { macProblem } from "../../lib/engine/source.ts";

const T = 1_800_000_000;
const K5: SymmetricKey = { id: 5, type: "SHA1", secret: new TextEncoder().encode("five") };
const K6: SymmetricKey = { id: 6, type: "MD5", secret: new TextEncoder().encode("six") };
const KEYS: AuthKeys = { keys: new Map([[5, K5], [6, K6]]), trusted: new Set([5, 6]) };

function source(kind: "server" | "peer", key: number) {
  return {
    address: "192.0.2.1",
    kind,
    iburst: true,
    prefer: false,
    minPoll: 4,
    maxPoll: 6,
    maxSources: 1,
    xleave: false,
    key,
    requireAuth: key !== 0,
  };
}

/** A server reply (or a peer's symmetric packet) to `req`, `offset` s ahead, signed by `key`. */
function answer(
  req: Uint8Array,
  t: number,
  o: { key?: SymmetricKey; nak?: boolean; mode?: number; offset?: number } = {},
): Uint8Array {
  const p = parsePacket(req);
  if (typeof p === "string") throw new Error(p);
  const off = o.offset ?? 0.5;
  const header = serializePacket({
    leap: Leap.none,
    version: 4,
    mode: o.mode ?? Mode.server,
    stratum: 1,
    poll: 6,
    precision: -20,
    rootDelay: 0,
    rootDisp: 0.0001,
    refid: asciiRefid("GPS"),
    ref: fromUnixSeconds(t - 1),
    org: p.xmt,
    rec: fromUnixSeconds(t + off + 0.0001),
    xmt: fromUnixSeconds(t + off + 0.0002),
  });
  const b = new Uint8Array(48 + 36);
  b.set(header);
  if (o.nak) return b.subarray(0, writeCryptoNak(b, 0, 48));
  if (o.key) return b.subarray(0, writeMac(o.key, b, 0, 48));
  return b.subarray(0, 48);
}

function engineWith(kind: "server" | "peer", key: number) {
  const e = driven(new Engine(engineOptions([source(kind, key)]), new VirtualClock(), T));
  e.setKeys(KEYS);
  return e;
}

function firstSend(e: ReturnType<typeof engineWith>, now: number) {
  return e.handleTimer(now, () => 0.5).filter((a) => a.kind === "send")[0]!;
}

Deno.test("a source with a key: requests name it, only its valid MACs count", async (t) => {
  const e = engineWith("server", 5);
  let now = T + 1;
  const req = firstSend(e, now);
  await t.step("the request asks the driver for a MAC of key 5", () => {
    assert.equal(req.key, 5);
  });
  await t.step("unsigned, crypto-NAK, other key, tampered: dropped, counted, logged once", () => {
    const forged = answer(req.bytes, now, { key: K5 });
    forged[20]! ^= 1; // covered by the MAC
    const logs: string[] = [];
    for (
      const b of [
        answer(req.bytes, now),
        answer(req.bytes, now, { nak: true }),
        answer(req.bytes, now, { key: K6 }),
        forged,
      ]
    ) {
      for (const a of e.handleIncoming("192.0.2.1", 123, b, now + 0.001)) {
        if (a.kind === "log") logs.push(a.message);
      }
    }
    const r = e.report(now + 1).sources[0]!;
    assert.equal(r.counters!.auth, 4);
    assert.equal(r.reach, 0, "no reach from unauthenticated packets");
    assert.equal(r.authenticated, false);
    assert.equal(e.report(now + 1).system.synchronised, false);
    assert.equal(e.counters.replay, 0, "a forged packet does not make the real one a replay");
    assert.deepEqual(logs, ["192.0.2.1:123: reply dropped: no MAC (key 5 required)"]);
  });
  await t.step("the real reply, signed with key 5, is taken and steers", () => {
    e.handleIncoming("192.0.2.1", 123, answer(req.bytes, now, { key: K5 }), now + 0.001);
    const r = e.report(now + 1);
    assert.equal(r.sources[0]!.reach, 1);
    assert.equal(r.sources[0]!.authenticated, true);
    assert.equal(r.sources[0]!.key, 5);
    assert.ok(Math.abs(e.systemState().corrOffset - 0.5) < 1e-3);
  });
  await t.step("after a good packet, a new bad episode is logged again", () => {
    now += 2;
    const next = firstSend(e, now);
    const logs = e.handleIncoming("192.0.2.1", 123, answer(next.bytes, now), now + 0.001)
      .filter((a) => a.kind === "log");
    assert.equal(logs.length, 1);
    assert.equal(e.report(now + 1).sources[0]!.authenticated, false);
  });
});

Deno.test("a require_auth peer: an unsigned symmetric packet never steers", () => {
  const e = engineWith("peer", 6);
  const now = T + 1;
  const req = firstSend(e, now);
  assert.equal(req.key, 6);
  assert.equal(req.mode, Mode.symmetricActive);
  e.handleIncoming(
    "192.0.2.1",
    123,
    answer(req.bytes, now, { mode: Mode.symmetricPassive, offset: 3 }),
    now + 0.001,
  );
  let r = e.report(now + 1);
  assert.equal(r.sources[0]!.reach, 0);
  assert.equal(r.sources[0]!.counters!.auth, 1);
  assert.equal(e.systemState().corrOffset, 0);
  e.handleIncoming(
    "192.0.2.1",
    123,
    answer(req.bytes, now, { mode: Mode.symmetricPassive, key: K6, offset: 0.25 }),
    now + 0.002,
  );
  r = e.report(now + 1);
  assert.equal(r.sources[0]!.reach, 1);
  assert.equal(r.sources[0]!.authenticated, true);
});

Deno.test("a source without a key takes replies with or without a MAC, sends none", () => {
  const e = engineWith("server", 0);
  const now = T + 1;
  const req = firstSend(e, now);
  assert.equal(req.key, 0);
  e.handleIncoming("192.0.2.1", 123, answer(req.bytes, now, { key: K5 }), now + 0.001);
  const r = e.report(now + 1).sources[0]!;
  assert.equal(r.reach, 1);
  assert.equal(r.key, undefined);
});

Deno.test("macProblem() says why a verdict does not authenticate a key", () => {
  assert.equal(macProblem({ kind: "ok", keyId: 5, dataLength: 48 }, 5), null);
  assert.match(macProblem({ kind: "ok", keyId: 6, dataLength: 48 }, 5)!, /key 6, not 5/);
  assert.match(macProblem({ kind: "crypto-nak", dataLength: 48 }, 5)!, /crypto-NAK/);
  assert.match(macProblem({ kind: "bad-mac", keyId: 5, dataLength: 48 }, 5)!, /bad MAC/);
  assert.match(macProblem({ kind: "untrusted", keyId: 7, dataLength: 48 }, 5)!, /untrusted key 7/);
  assert.match(macProblem({ kind: "unknown-key", keyId: 8, dataLength: 48 }, 5)!, /unknown key 8/);
});
