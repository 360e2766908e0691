/** Unit tests: broadcast mode 5 packets, the broadcast client's rules, calibration, discovery. */
import assert from "assert";
import {
  buildBroadcast,
  mayBroadcast,
  parseBroadcastAddress,
  pollOfInterval,
} from "../../lib/ntp/broadcast.ts";
import {
  admitBroadcast,
  BROADCAST_UNREACH_LIMIT,
  type BroadcastMac,
  broadcastOffset,
  calibratedDelay,
  CALIBRATION_SAMPLES,
} from "../../lib/engine/broadcast.ts";
import { Leap, Mode, parsePacket, serializePacket } from "../../lib/ntp/packet.ts";
import { unsyncedState } from "../../lib/ntp/system_state.ts";
import { fromUnixSeconds } from "../../lib/ntp/timestamp.ts";
import { VirtualClock } from "../../lib/engine/clock.ts";
import { Engine, type EngineSource } from "../../lib/engine/engine.ts";
import { refidOfAddress } from "../../lib/engine/refid.ts";
import { sourceKey } from "../../lib/engine/associations.ts";
import { driven, engineOptions } from "../helpers/fixtures.ts";
import { loadConfig } from "../../lib/config/mod.ts";

const T = 1_800_000_000;

Deno.test("parseBroadcastAddress: groups, subnet broadcast, and what is neither", () => {
  assert.equal((parseBroadcastAddress("224.0.1.1") as { kind: string }).kind, "multicast4");
  assert.equal((parseBroadcastAddress("10.0.0.255") as { kind: string }).kind, "broadcast4");
  assert.equal((parseBroadcastAddress("ff05::101") as { kind: string }).kind, "multicast6");
  assert.match(parseBroadcastAddress("2001:db8::1") as string, /no IPv6 multicast group/);
  assert.match(parseBroadcastAddress("127.0.0.1") as string, /no broadcast or multicast/);
  assert.match(parseBroadcastAddress("ntp.example") as string, /not an IP address/);
});

Deno.test("buildBroadcast: mode 5 from the system state, org/rec/xmt zero", () => {
  const s = {
    ...unsyncedState(-20),
    leap: Leap.none,
    stratum: 3,
    refid: 0x0a000001,
    refTime: T - 10,
    rootDelay: 0.002,
    rootDisp: 0.001,
  };
  assert.ok(mayBroadcast(s));
  assert.ok(!mayBroadcast(unsyncedState(-20)));
  const buf = new Uint8Array(48).fill(0xaa);
  assert.equal(buildBroadcast(buf, s, pollOfInterval(64), T), 48);
  const p = parsePacket(buf);
  if (typeof p === "string") throw new Error(p);
  assert.equal(p.mode, Mode.broadcast);
  assert.equal(p.version, 4);
  assert.equal(p.leap, Leap.none);
  assert.equal(p.stratum, 3);
  assert.equal(p.poll, 6);
  assert.equal(p.precision, -20);
  assert.equal(p.refid, 0x0a000001);
  assert.equal(p.org, 0n);
  assert.equal(p.rec, 0n);
  assert.equal(p.xmt, 0n); // stamped by the driver right before the send
  // Root dispersion grows by PHI over the 10 s since the reference time.
  assert.ok(Math.abs(p.rootDisp - (0.001 + 15e-6 * 10)) < 2e-5, `${p.rootDisp}`);
  assert.equal(pollOfInterval(1), 0);
  assert.equal(pollOfInterval(16), 4);
});

Deno.test("admitBroadcast: mode 5 only; a MAC with the source's key unless insecure", () => {
  const none: BroadcastMac = { kind: "none" };
  const ok = (keyId: number): BroadcastMac => ({ kind: "ok", keyId });
  const secure = { key: 5, insecure: false };
  assert.equal(admitBroadcast({ mode: Mode.symmetricActive }, ok(5), secure), "mode");
  assert.equal(admitBroadcast({ mode: Mode.broadcast }, none, secure), "unauthenticated");
  assert.equal(admitBroadcast({ mode: Mode.broadcast }, ok(5), secure), "ok");
  // Another trusted key is not this source's key.
  assert.equal(admitBroadcast({ mode: Mode.broadcast }, ok(6), secure), "bad-mac");
  assert.equal(
    admitBroadcast({ mode: Mode.broadcast }, { kind: "bad-mac", keyId: 5 }, secure),
    "bad-mac",
  );
  assert.equal(admitBroadcast({ mode: Mode.broadcast }, { kind: "crypto-nak" }, secure), "bad-mac");
  // No key configured: nothing authenticates.
  assert.equal(
    admitBroadcast({ mode: Mode.broadcast }, ok(0), { key: 0, insecure: false }),
    "bad-mac",
  );
  assert.equal(admitBroadcast({ mode: Mode.broadcast }, none, { key: 0, insecure: true }), "ok");
});

Deno.test("broadcastOffset and calibratedDelay", () => {
  // The server's clock equals ours, the path takes 1 ms each way: offset 0.
  const offset = broadcastOffset(fromUnixSeconds(T), fromUnixSeconds(T + 0.001), 0.002);
  assert.ok(Math.abs(offset) < 1e-6, `${offset}`);
  // The server is 5 ms ahead of our raw clock and drifts 10 ppm; the exchanges see it
  // over a 2 ms round trip; broadcasts take 1.5 ms one way (send latency included).
  const yAt = (t: number) => 0.005 + 10e-6 * (t - T);
  const samples = [0, 2, 4, 6, 8].map((dt) => ({ t: T + dt, y: yAt(T + dt), delay: 0.002 }));
  const heard = (t: number) => ({ t, y: yAt(t) - 0.0015 });
  assert.equal(calibratedDelay(samples.slice(0, CALIBRATION_SAMPLES - 1), [heard(T + 1)]), null);
  // No broadcast between two exchanges yet.
  assert.equal(calibratedDelay(samples, [heard(T - 1)]), null);
  assert.equal(calibratedDelay(samples, [heard(T + 9)]), null);
  // Between two: twice the broadcast's own one-way delay, the drift interpolated away.
  const d = calibratedDelay(samples, [heard(T - 1), heard(T + 5)])!;
  assert.ok(Math.abs(d - 0.003) < 1e-9, `${d}`);
  // With several, the median: one late broadcast does not set δ.
  const late = [heard(T + 1), heard(T + 3), { t: T + 5, y: yAt(T + 5) - 0.0019 }];
  assert.equal(calibratedDelay(samples, late.slice(0, 2), 3), null);
  assert.ok(Math.abs(calibratedDelay(samples, late, 3)! - 0.003) < 1e-9);
  // Held within [0, the smallest round trip].
  assert.equal(calibratedDelay(samples, [{ t: T + 5, y: yAt(T + 5) + 0.001 }]), 0);
  assert.equal(calibratedDelay(samples, [{ t: T + 5, y: yAt(T + 5) - 0.1 }]), 0.004);
});

const bsource = (o: Partial<EngineSource> = {}): EngineSource => ({
  address: "224.0.1.1",
  kind: "broadcast",
  iburst: false,
  prefer: false,
  minPoll: 4,
  maxPoll: 6,
  maxSources: 2,
  xleave: false,
  ...o,
});

/** A mode 5 packet from a server `offset` seconds ahead of us, sent at `t` (our time). */
function mode5(
  t: number,
  o: { offset?: number; stratum?: number; refid?: number; mode?: number } = {},
) {
  return serializePacket({
    leap: Leap.none,
    version: 4,
    mode: o.mode ?? Mode.broadcast,
    stratum: o.stratum ?? 2,
    poll: 4,
    precision: -20,
    rootDelay: 0.001,
    rootDisp: 0.001,
    refid: o.refid ?? 0xc0000201,
    ref: fromUnixSeconds(t - 1),
    org: 0n,
    rec: 0n,
    xmt: fromUnixSeconds(t + (o.offset ?? 0)),
  });
}

/** A reply to request `req` from a server `offset` ahead, `d` seconds each way, at our time `t`. */
function reply(req: Uint8Array, t: number, d: number, offset = 0, stratum = 2, refid = 0xc0000201) {
  const p = parsePacket(req);
  if (typeof p === "string") throw new Error(p);
  return serializePacket({
    leap: Leap.none,
    version: 4,
    mode: Mode.server,
    stratum,
    poll: 4,
    precision: -20,
    rootDelay: 0.001,
    rootDisp: 0.001,
    refid,
    ref: fromUnixSeconds(t - 1),
    org: p.xmt,
    rec: fromUnixSeconds(t + d + offset),
    xmt: fromUnixSeconds(t + d + offset),
  });
}

const KEYED: (bytes: Uint8Array) => BroadcastMac = (b) =>
  b.length > 48 ? { kind: "ok", keyId: b[51]! } : { kind: "none" };

Deno.test("broadcast client: authentication, mobilisation per sender, bounded count", async (t) => {
  const src = bsource({ key: 5 } as Partial<EngineSource>);
  const e = driven(
    new Engine(engineOptions([src], { checkMac: (b) => KEYED(b) }), new VirtualClock(), T),
  );
  const key = sourceKey(src);
  const signed = (p: Uint8Array, keyId: number) => {
    const out = new Uint8Array(68);
    out.set(p);
    out[51] = keyId;
    return out;
  };
  await t.step("nothing is mobilised at start", () => assert.equal(e.associations.size, 0));
  await t.step("no MAC, a wrong key, mode 1: counted, never mobilised", () => {
    e.handleBroadcast(key, "192.0.2.9", 123, mode5(T + 1), T + 1);
    e.handleBroadcast(key, "192.0.2.9", 123, signed(mode5(T + 2), 6), T + 2);
    e.handleBroadcast(
      key,
      "192.0.2.9",
      123,
      signed(mode5(T + 3, { mode: Mode.symmetricActive }), 5),
      T + 3,
    );
    assert.equal(e.associations.size, 0);
    assert.equal(e.counters.broadcast_unauthenticated, 1);
    assert.equal(e.counters.broadcast_bad_mac, 1);
    assert.equal(e.counters.broadcast_bad_mode, 1);
    assert.equal(e.counters.broadcast_received, 0);
  });
  await t.step("an authenticated broadcast mobilises its sender", () => {
    e.handleBroadcast(key, "192.0.2.1", 123, signed(mode5(T + 4), 5), T + 4);
    assert.deepEqual([...e.associations.keys()], ["192.0.2.1:123"]);
    const a = e.associations.get("192.0.2.1:123")!;
    assert.equal(a.opts.kind, "broadcast");
    assert.equal(a.opts.key, 5); // its calibration requests carry key 5's MAC
    assert.equal(a.authenticated, true);
    assert.equal(e.counters.broadcast_received, 1);
  });
  await t.step("max_sources senders at most; our own broadcasts are ignored", () => {
    e.handleBroadcast(key, "192.0.2.2", 123, signed(mode5(T + 5), 5), T + 5);
    e.handleBroadcast(key, "192.0.2.3", 123, signed(mode5(T + 6), 5), T + 6);
    e.handleBroadcast(key, "10.0.0.1", 123, signed(mode5(T + 7), 5), T + 7); // localRefid
    assert.deepEqual([...e.associations.keys()].sort(), ["192.0.2.1:123", "192.0.2.2:123"]);
    assert.equal(e.counters.broadcast_full, 1);
  });
  await t.step("a listener of another source, or a packet from a removed one, is dropped", () => {
    const before = e.associations.size;
    e.handleBroadcast(
      "broadcast 224.0.1.2",
      "192.0.2.7",
      123,
      signed(mode5(T + 8), 5),
      T + 8,
    );
    assert.equal(e.associations.size, before);
  });
});

Deno.test("broadcast client: calibration volley, then offset from broadcasts alone", () => {
  const src = bsource({ insecure: true, maxSources: 1 });
  const key = sourceKey(src);
  const e = driven(new Engine(engineOptions([src]), new VirtualClock(), T));
  const d = 0.0005; // one way
  const ahead = 0.004; // the server is 4 ms ahead
  let now = T + 1;
  e.handleBroadcast(key, "192.0.2.1", 123, mode5(now - d, { offset: ahead }), now);
  const a = e.associations.get("192.0.2.1:123")!;
  assert.equal(a.bdelay, null);
  assert.equal(a.counters.uncalibrated, 1);
  // The volley: client requests 2 s apart until CALIBRATION_SAMPLES replies are in and a
  // broadcast (every second here, 0.8 ms one way: the server sends late) lies between two.
  const bway = 0.0008;
  let requests = 0;
  for (let i = 0; i < 20 && a.bdelay === null; i++) {
    now = Math.max(now + 0.1, a.nextPoll);
    for (const s of e.handleTimer(now, () => 0.5)) {
      if (s.kind !== "send") continue;
      requests++;
      assert.equal(parsePacket(s.bytes) && (parsePacket(s.bytes) as { mode: number }).mode, 3);
      e.handleIncoming("192.0.2.1", 123, reply(s.bytes, now, d, ahead), now + 2 * d);
    }
    e.handleBroadcast(key, "192.0.2.1", 123, mode5(now + 1 - bway, { offset: ahead }), now + 1);
  }
  assert.equal(requests, CALIBRATION_SAMPLES);
  // δ is the broadcast path's: twice its one-way delay, not the unicast round trip.
  assert.ok(Math.abs(a.bdelay! - 2 * bway) < 1e-6, `bdelay ${a.bdelay}`);
  // Listening: the timer sends nothing, broadcasts give samples.
  const heardBefore = a.counters.broadcasts;
  for (let i = 0; i < 6; i++) {
    now += 16;
    const acts = e.handleTimer(now, () => 0.5);
    assert.equal(acts.filter((x) => x.kind === "send").length, 0);
    e.handleBroadcast(key, "192.0.2.1", 123, mode5(now, { offset: ahead }), now + bway);
  }
  assert.equal(a.counters.broadcasts, heardBefore + 6);
  const r = e.report(now);
  const row = r.sources.find((s) => s.address === "192.0.2.1:123")!;
  assert.equal(row.kind, "broadcast");
  assert.ok(Math.abs(row.broadcast_delay_s! - 2 * bway) < 1e-6);
  // The newest sample is a broadcast's: the server's lead over our raw clock, the calibrated delay.
  const newest = a.filter.stages[0]!;
  assert.ok(Math.abs(newest.y - ahead) < 1e-5, `raw-frame offset ${newest.y}`);
  assert.ok(Math.abs(newest.delay - 2 * bway) < 1e-6);
  assert.equal(r.system.system_peer, "192.0.2.1:123");
  assert.equal(r.system.stratum, 3);
  // A replayed broadcast is dropped.
  const replay = mode5(now + 0.5, { offset: ahead });
  e.handleBroadcast(key, "192.0.2.1", 123, replay, now + 1);
  e.handleBroadcast(key, "192.0.2.1", 123, replay, now + 1.1);
  assert.equal(a.counters.replay, 1);
  // Silence: forgotten after BROADCAST_UNREACH_LIMIT intervals.
  for (let i = 0; i <= BROADCAST_UNREACH_LIMIT + 1 && e.associations.size > 0; i++) {
    now = Math.max(now + 1, a.nextPoll);
    e.handleTimer(now, () => 0.5);
  }
  assert.equal(e.associations.size, 0);
});

Deno.test("discovery: heard broadcast nodes elect an orphan parent like configured peers", async (t) => {
  const ours = "10.0.0.5";
  const run = (sender: string) => {
    const src = bsource({ insecure: true });
    const e = driven(
      new Engine(
        engineOptions([src], { orphanWait: 5, localRefid: refidOfAddress(ours) }),
        new VirtualClock(),
        T,
      ),
    );
    const key = sourceKey(src);
    const refid = refidOfAddress(sender);
    let now = T + 1;
    // The sender announces itself an orphan parent: orphan stratum, its own address as refid.
    e.handleBroadcast(key, sender, 123, mode5(now, { stratum: 7, refid }), now);
    const a = e.associations.get(`${sender}:123`)!;
    for (let i = 0; i < 40; i++) {
      now = Math.max(now + 0.5, Math.min(a.nextPoll, now + 4));
      for (const s of e.handleTimer(now, () => 0.5)) {
        if (s.kind === "send") {
          e.handleIncoming(sender, 123, reply(s.bytes, now, 0.0002, 0, 7, refid), now + 0.0004);
        }
      }
      e.handleBroadcast(key, sender, 123, mode5(now + 0.3, { stratum: 7, refid }), now + 0.3002);
    }
    return e.report(now);
  };
  await t.step("a lower address is followed: orphan child at stratum 8", () => {
    const r = run("10.0.0.2");
    assert.equal(r.system.orphan, true);
    assert.equal(r.system.system_peer, "10.0.0.2:123");
    assert.equal(r.system.stratum, 8);
  });
  await t.step("a higher address is not: we are the parent at stratum 7", () => {
    const r = run("10.0.0.9");
    assert.equal(r.system.orphan, true);
    assert.equal(r.system.system_peer, "");
    assert.equal(r.system.stratum, 7);
  });
});

Deno.test("config: broadcast sources and destinations need a key or insecure", () => {
  const errors = (toml: string) => {
    const r = loadConfig(toml, "edge.toml");
    return r.ok ? [] : r.errors;
  };
  assert.deepEqual(errors('[[source]]\nkind = "broadcast"\naddress = "224.0.1.1"\n'), [
    'edge.toml:2: source[0].insecure: kind "broadcast" needs a key (or insecure = true, not advised: BCP 223)',
  ]);
  assert.deepEqual(
    errors('[[source]]\nkind = "broadcast"\naddress = "224.0.1.1"\ninsecure = true\n'),
    [],
  );
  assert.deepEqual(
    errors('[[source]]\nkind = "broadcast"\naddress = "192.0.2.1:123"\ninsecure = true\n').length,
    0,
  );
  assert.deepEqual(
    errors('[[source]]\nkind = "broadcast"\naddress = "2001:db8::1"\ninsecure = true\n'),
    [
      'edge.toml:3: source[0].address: kind "broadcast": "2001:db8::1" is no IPv6 multicast group (ff00::/8; IPv6 has no broadcast)',
    ],
  );
  assert.deepEqual(errors('[[source]]\naddress = "224.0.1.1"\n'), [
    'edge.toml:2: source[0].address: "224.0.1.1" is a multicast address, not a server\'s address',
  ]);
  assert.deepEqual(errors('[[broadcast]]\naddress = "224.0.1.1"\n'), [
    "edge.toml:2: broadcast[0].key: a key is required (or insecure = true, not advised: BCP 223)",
  ]);
  assert.deepEqual(
    errors(
      '[[broadcast]]\naddress = "224.0.1.1"\ninsecure = true\n[[broadcast]]\naddress = "224.0.1.1"\nkey = 1\n[auth]\nkeyfile = "k"\n',
    ),
    ["edge.toml:5: broadcast[1].address: same address as broadcast[0] (line 2)"],
  );
  assert.deepEqual(errors('[[broadcast]]\naddress = "2001:db8::1"\ninsecure = true\n'), [
    'edge.toml:2: broadcast[0].address: "2001:db8::1" is no IPv6 multicast group (ff00::/8; IPv6 has no broadcast)',
  ]);
});

Deno.test("status: broadcast destinations, broadcast sources and counters fit the schema", async () => {
  const { StatusModel } = await import("../../lib/status/mod.ts");
  const { validate } = await import("../helpers/json_schema.ts");
  const { fakeCounters, fakeEngine, T0 } = await import("../helpers/status_fixture.ts");
  const schema = JSON.parse(
    await Deno.readTextFile(new URL("../../lib/status/status.schema.json", import.meta.url)),
  );
  const engine = fakeEngine();
  engine.sources.push({
    ...engine.sources[0]!,
    address: "10.0.0.2:123",
    kind: "broadcast",
    broadcast_delay_s: 0.0004,
    counters: { broadcasts: 9, uncalibrated: 1 },
  });
  const dest = {
    address: "224.0.1.1",
    interval_s: 64,
    key: 5,
    sent: 3,
    unsynchronised: 1,
    error: "",
  };
  const model = (b: typeof dest[]) =>
    new StatusModel({
      version: "9.9.9-test",
      pool: () => ({
        driver: "ffi-recvmmsg",
        driverReason: "test",
        workerCount: 1,
        bound: ["0.0.0.0:123"],
        counters: () => fakeCounters(),
      }),
      now: () => T0,
      uptimeS: () => 10,
      engine: () => engine,
      anycast: () => null,
      residentMemoryBytes: () => 1,
      broadcast: () => b,
    }).snapshot();
  const with_ = model([dest]);
  assert.deepEqual(validate(schema, JSON.parse(JSON.stringify(with_))), []);
  assert.deepEqual(with_.broadcast, [dest]);
  assert.equal(with_.sources.at(-1)!.broadcast_delay_s, 0.0004);
  const without = model([]);
  assert.equal(without.broadcast, undefined);
  assert.deepEqual(validate(schema, JSON.parse(JSON.stringify(without))), []);
});

Deno.test("metrics: broadcast destinations as counters and an up gauge", async () => {
  const { renderMetrics } = await import("../../lib/status/metrics.ts");
  const { parsePrometheusText } = await import("../helpers/prom_text.ts");
  const { fakeModel } = await import("../helpers/status_fixture.ts");
  const snap = {
    ...fakeModel().model.snapshot(),
    broadcast: [
      { address: "224.0.1.1", interval_s: 64, key: 5, sent: 7, unsynchronised: 2, error: "" },
      { address: "10.0.0.255", interval_s: 64, key: 9, sent: 0, unsynchronised: 0, error: "x" },
    ],
  };
  const text = renderMetrics(snap);
  parsePrometheusText(text); // throws on a malformed exposition
  assert.match(text, /ntp_broadcast_sent_total\{address="224\.0\.1\.1"\} 7/);
  assert.match(text, /ntp_broadcast_unsynchronised_total\{address="224\.0\.1\.1"\} 2/);
  assert.match(text, /ntp_broadcast_up\{address="10\.0\.0\.255"\} 0/);
});

Deno.test("reload: a removed broadcast source forgets the servers it heard; [[broadcast]] changes are planned", async () => {
  const { planReload } = await import("../../lib/reload.ts");
  const src = bsource({ insecure: true });
  const e = driven(new Engine(engineOptions([src]), new VirtualClock(), T));
  e.handleBroadcast(sourceKey(src), "192.0.2.1", 123, mode5(T + 1), T + 1);
  assert.equal(e.associations.size, 1);
  e.handleBroadcast(sourceKey(src), "192.0.2.2", 123, mode5(T + 1.5), T + 1.5);
  assert.equal(e.associations.size, 2);
  // max_sources lowered: the extra server heard goes (nothing is looked up).
  const acts = e.reconfigure(engineOptions([{ ...src, maxSources: 1 }]), T + 1.7);
  assert.equal(e.associations.size, 1);
  assert.equal(acts.filter((a) => a.kind === "resolve").length, 0);
  e.reconfigure(engineOptions([]), T + 2);
  assert.equal(e.associations.size, 0);
  const base = loadConfig('[[broadcast]]\naddress = "224.0.1.1"\ninsecure = true\n', "a");
  const next = loadConfig('[[broadcast]]\naddress = "224.0.1.1"\ninsecure = true\nttl = 4\n', "b");
  if (!base.ok || !next.ok) throw new Error("config");
  assert.equal(planReload(base.config, next.config).broadcast, true);
  assert.equal(planReload(base.config, base.config).broadcast, false);
});

Deno.test("broadcast client: a server that never answers the calibration is not used, and says so once", () => {
  const src = bsource({ insecure: true });
  const key = sourceKey(src);
  const e = driven(new Engine(engineOptions([src]), new VirtualClock(), T));
  let now = T + 1;
  const logs: string[] = [];
  const take = (acts: { kind: string; message?: string }[]) => {
    for (const a of acts) if (a.kind === "log") logs.push(a.message!);
  };
  take(e.handleBroadcast(key, "192.0.2.1", 123, mode5(now), now));
  const a = e.associations.get("192.0.2.1:123")!;
  for (let i = 0; i < 30; i++) {
    now = Math.max(now + 1, Math.min(a.nextPoll, now + 16));
    take(e.handleTimer(now, () => 0.5)); // requests go out; nobody answers
    take(e.handleBroadcast(key, "192.0.2.1", 123, mode5(now + 0.5), now + 0.5));
  }
  assert.equal(a.bdelay, null);
  assert.equal(a.lastSample, -1);
  assert.equal(e.report(now).system.system_peer, ""); // never followed (orphan mode may make us parent)
  assert.equal(logs.filter((l) => l.includes("no valid reply to the calibration")).length, 1);
});

Deno.test("peers table: a heard broadcast server has type b", async () => {
  const { formatPeers } = await import("../../lib/status/text.ts");
  const { fakeEngine } = await import("../helpers/status_fixture.ts");
  const row = { ...fakeEngine().sources[0]!, address: "10.0.0.2:123", kind: "broadcast" as const };
  const line = formatPeers([row]).split("\n")[2]!;
  assert.match(line, /10\.0\.0\.2:123 +\S+ +\d+ b /);
});

Deno.test("broadcast client: δ is measured once more after RECALIBRATE_AFTER broadcasts, then never", async () => {
  const { RECALIBRATE_AFTER } = await import("../../lib/engine/broadcast.ts");
  const src = bsource({ insecure: true, maxSources: 1 });
  const key = sourceKey(src);
  const e = driven(new Engine(engineOptions([src]), new VirtualClock(), T));
  const d = 0.0005;
  let bway = 0.0009; // the server's first broadcasts leave late (its send latency not yet learnt)
  let now = T + 1;
  let requests = 0;
  const step = (dt: number) => {
    now = Math.max(now + 0.1, Math.min(a().nextPoll, now + dt));
    for (const s of e.handleTimer(now, () => 0.5)) {
      if (s.kind !== "send") continue;
      requests++;
      e.handleIncoming("192.0.2.1", 123, reply(s.bytes, now, d), now + 2 * d);
    }
    e.handleBroadcast(key, "192.0.2.1", 123, mode5(now + 1 - bway), now + 1);
  };
  e.handleBroadcast(key, "192.0.2.1", 123, mode5(now - bway), now);
  const a = () => e.associations.get("192.0.2.1:123")!;
  while (a().bdelay === null) step(2);
  assert.ok(Math.abs(a().bdelay! - 2 * bway) < 1e-6);
  const first = requests;
  bway = 0.0004; // learnt: later broadcasts are stamped closer to their departure
  for (let i = 0; i < RECALIBRATE_AFTER + 12; i++) step(2);
  assert.ok(requests > first, "a second volley");
  assert.ok(Math.abs(a().bdelay! - 2 * bway) < 1e-6, `bdelay ${a().bdelay}`);
  const second = requests;
  for (let i = 0; i < 3 * RECALIBRATE_AFTER; i++) step(2);
  assert.equal(requests, second, "no third volley");
});
