/** Unit tests: association protocol (reach, poll, iburst, KoD, bogus/replay), orphan election, real clock read-only. */
import assert from "assert";
import { VirtualClock } from "../../lib/engine/clock.ts";
import { Engine } from "../../lib/engine/engine.ts";
import { driven, engineOptions } from "../helpers/fixtures.ts";
import { asciiRefid, Leap, Mode, parsePacket, serializePacket } from "../../lib/ntp/packet.ts";
import { fromUnixSeconds } from "../../lib/ntp/timestamp.ts";
import { readKernelClock } from "../../lib/io/clock_linux.ts";

const T = 1_800_000_000;
const server = (address = "192.0.2.1") => ({
  address,
  kind: "server" as const,
  iburst: true,
  prefer: false,
  minPoll: 4,
  maxPoll: 6,
  maxSources: 1,
  xleave: false,
});

/** A reply to `req` from a server whose clock is `offset` ahead, or a KoD with `kiss`. */
function reply(
  req: Uint8Array,
  t: number,
  o: { offset?: number; kiss?: string; org?: bigint; stratum?: number } = {},
): Uint8Array {
  const p = parsePacket(req);
  if (typeof p === "string") throw new Error(p);
  const off = o.offset ?? 0;
  return serializePacket({
    leap: o.kiss ? Leap.unsync : Leap.none,
    version: 4,
    mode: Mode.server,
    stratum: o.kiss ? 0 : o.stratum ?? 1,
    poll: 6,
    precision: -20,
    rootDelay: 0,
    rootDisp: 0.0001,
    refid: asciiRefid(o.kiss ?? "GPS"),
    ref: fromUnixSeconds(t - 1),
    org: o.org ?? p.xmt,
    rec: fromUnixSeconds(t + off + 0.0001),
    xmt: fromUnixSeconds(t + off + 0.0001),
  });
}

function sends(actions: ReturnType<Engine["handleTimer"]>) {
  return actions.filter((a) => a.kind === "send");
}

Deno.test("association: reach, iburst, replies, bogus and replay", async (t) => {
  const e = driven(new Engine(engineOptions([server()]), new VirtualClock(), T));
  let now = T + 1;
  const first = sends(e.handleTimer(now, () => 0.5));
  assert.equal(first.length, 1);
  await t.step("a valid reply sets reach and synchronises", () => {
    e.handleIncoming("192.0.2.1", 123, reply(first[0]!.bytes, now, { offset: 0.01 }), now + 0.0002);
    const r = e.report(now + 1);
    assert.equal(r.sources[0]!.reach, 1);
    assert.equal(r.system.stratum, 2);
    assert.equal(r.sources[0]!.tally, "*");
    assert.ok(Math.abs(e.systemState().corrOffset - 0.01) < 1e-4);
  });
  await t.step("iburst polls again after 2 s", () => {
    now += 2;
    assert.equal(sends(e.handleTimer(now, () => 0)).length, 1);
  });
  await t.step("a reply with a wrong origin is bogus, counted and logged once", () => {
    const req = sends(e.handleTimer(now + 2.1, () => 0))[0]!;
    now += 2.1;
    const a1 = e.handleIncoming("192.0.2.1", 123, reply(req.bytes, now, { org: 12345n }), now);
    const a2 = e.handleIncoming(
      "192.0.2.1",
      123,
      reply(req.bytes, now + 0.1, { org: 54321n }),
      now + 0.1,
    );
    assert.equal(e.counters.bogus, 2);
    assert.equal(a1.filter((a) => a.kind === "log").length, 1);
    assert.equal(a2.filter((a) => a.kind === "log").length, 0);
  });
  await t.step("a replayed reply is dropped", () => {
    const req = sends(e.handleTimer(now + 2.1, () => 0))[0]!;
    now += 2.1;
    const pkt = reply(req.bytes, now);
    e.handleIncoming("192.0.2.1", 123, pkt, now);
    e.handleIncoming("192.0.2.1", 123, pkt, now + 0.01);
    assert.equal(e.counters.replay, 1);
  });
  await t.step("a packet from an unknown address is counted", () => {
    e.handleIncoming("198.51.100.9", 123, reply(first[0]!.bytes, now), now);
    assert.equal(e.counters.unknown_source, 1);
  });
});

Deno.test("association: kiss-o'-death RATE backs off, DENY stops", async (t) => {
  await t.step("RATE", () => {
    const e = driven(new Engine(engineOptions([server()]), new VirtualClock(), T));
    const req = sends(e.handleTimer(T + 1, () => 0.37))[0]!;
    e.handleIncoming("192.0.2.1", 123, reply(req.bytes, T + 1, { kiss: "RATE" }), T + 1.001);
    const s = e.report(T + 2).sources[0]!;
    assert.equal(s.poll, 6, "the server's poll (6) over our 4");
    assert.equal(e.counters.kod_rate, 1);
  });
  await t.step("RATE during iburst ends the burst and backs off 4 polls more, logged once", () => {
    const e = driven(new Engine(engineOptions([server()]), new VirtualClock(), T));
    let now = T + 1;
    const req = sends(e.handleTimer(now, () => 0.37))[0]!;
    const kiss = () => reply(req.bytes, now, { kiss: "RATE" });
    const logs = e.handleIncoming("192.0.2.1", 123, kiss(), now + 0.001)
      .filter((a) => a.kind === "log");
    assert.equal(logs.length, 1);
    const poll = 2 ** e.report(now).sources[0]!.poll;
    // No request until the poll interval plus four more have passed (chrony's back-off).
    let sent = 0;
    for (; now < T + 1 + 5 * poll - 1; now += 1) {
      sent += sends(e.handleTimer(now, () => 0.37)).length;
    }
    assert.equal(sent, 0, "no request during the back-off");
    assert.equal(sends(e.handleTimer(T + 1.001 + 5 * poll, () => 0.37)).length, 1);
  });
  await t.step("DENY", () => {
    const e = driven(new Engine(engineOptions([server()]), new VirtualClock(), T));
    const req = sends(e.handleTimer(T + 1, () => 0.37))[0]!;
    const acts = e.handleIncoming(
      "192.0.2.1",
      123,
      reply(req.bytes, T + 1, { kiss: "DENY" }),
      T + 1.001,
    );
    assert.ok(acts.some((a) => a.kind === "demobilize"));
    assert.equal(e.report(T + 2).sources[0]!.state, "denied");
    assert.equal(sends(e.handleTimer(T + 100, () => 0)).length, 0);
  });
});

Deno.test("association: unanswered polls empty the reach register", () => {
  const e = driven(new Engine(engineOptions([server()]), new VirtualClock(), T));
  let now = T + 1;
  const req = sends(e.handleTimer(now, () => 0))[0]!;
  e.handleIncoming("192.0.2.1", 123, reply(req.bytes, now), now);
  for (let i = 0; i < 10; i++) {
    now = e.nextTimer() + 0.001;
    e.handleTimer(now, () => 0);
  }
  assert.equal(e.report(now).sources[0]!.reach, 0);
});

Deno.test("engine: following a stratum-15 server is unsynchronised, not stratum 16", () => {
  const e = driven(new Engine(engineOptions([server()]), new VirtualClock(), T));
  const req = sends(e.handleTimer(T + 1, () => 0.37))[0]!;
  e.handleIncoming("192.0.2.1", 123, reply(req.bytes, T + 1, { stratum: 15 }), T + 1.001);
  e.handleTimer(T + 10, () => 0.37);
  assert.equal(e.systemVars().leap, Leap.unsync);
  assert.equal(e.systemVars().stratum, 16);
  assert.equal(e.report(T + 10).system.synchronised, false);
});

Deno.test("engine: a panic-sized offset is never applied", () => {
  const e = driven(new Engine(engineOptions([server()]), new VirtualClock(), T));
  const req = sends(e.handleTimer(T + 1, () => 0.37))[0]!;
  e.handleIncoming("192.0.2.1", 123, reply(req.bytes, T + 1, { offset: 5000 }), T + 1.001);
  assert.equal(e.counters.panic, 1);
  assert.equal(e.systemState().corrOffset, 0);
});

Deno.test("engine: orphan election by lowest refid", async (t) => {
  const peer = (address: string) => ({ ...server(address), kind: "peer" as const });
  await t.step("without sources for orphan_wait we become orphan parent", () => {
    const e = driven(new Engine(engineOptions([peer("10.0.0.2")]), new VirtualClock(), T));
    e.handleTimer(T + 1, () => 0.37);
    e.handleTimer(T + 12, () => 0);
    const r = e.report(T + 12);
    assert.ok(r.system.orphan);
    assert.equal(r.system.stratum, 7);
    assert.equal(r.system.refid, "10.0.0.1");
  });
  await t.step("a peer with a lower refid announcing the orphan stratum becomes our parent", () => {
    const e = driven(new Engine(engineOptions([peer("10.0.0.0")]), new VirtualClock(), T));
    const req = sends(e.handleTimer(T + 1, () => 0.37))[0]!;
    const p = parsePacket(req.bytes);
    if (typeof p === "string") throw new Error(p);
    const parent = serializePacket({
      leap: 0,
      version: 4,
      mode: Mode.symmetricPassive,
      stratum: 7,
      poll: 4,
      precision: -20,
      rootDelay: 0,
      rootDisp: 0,
      refid: 0x0a000000,
      ref: fromUnixSeconds(T),
      org: p.xmt,
      rec: fromUnixSeconds(T + 1),
      xmt: fromUnixSeconds(T + 1.0001),
    });
    e.handleIncoming("10.0.0.0", 123, parent, T + 1.0002);
    e.handleTimer(T + 12, () => 0);
    const r = e.report(T + 12);
    assert.equal(r.system.stratum, 8);
    assert.equal(r.system.system_peer, "10.0.0.0:123");
  });
  await t.step("a new orphan parent polls its peers within a second, not a poll later", () => {
    const e = driven(new Engine(engineOptions([peer("10.0.0.2")]), new VirtualClock(), T));
    assert.equal(sends(e.handleTimer(T + 1, () => 0.37)).length, 1);
    e.handleTimer(T + 12, () => 0.5); // orphan_wait passes: we claim parent
    assert.ok(e.report(T + 12).system.orphan);
    // The next regular poll was due at T + 1 + 16; the claim brings it forward.
    assert.ok(e.nextTimer() <= T + 13, `next timer at +${e.nextTimer() - T} s`);
    const out = sends(e.handleTimer(e.nextTimer(), () => 0.5));
    assert.equal(out.length, 1);
    const claim = parsePacket(out[0]!.bytes);
    if (typeof claim === "string") throw new Error(claim);
    assert.equal(claim.stratum, 7);
    assert.equal(claim.mode, Mode.symmetricActive);
  });
  await t.step("a peer's own poll echoing our answered packet updates its stratum at once", () => {
    const e = driven(new Engine(engineOptions([peer("10.0.0.0")]), new VirtualClock(), T));
    const req = sends(e.handleTimer(T + 1, () => 0.37))[0]!;
    const p = parsePacket(req.bytes);
    if (typeof p === "string") throw new Error(p);
    const from = (mode: number, stratum: number, refid: number, at: number) =>
      serializePacket({
        leap: 0,
        version: 4,
        mode,
        stratum,
        poll: 4,
        precision: -20,
        rootDelay: 0,
        rootDisp: 0,
        refid,
        ref: fromUnixSeconds(T),
        org: p.xmt,
        rec: fromUnixSeconds(T + 1),
        xmt: fromUnixSeconds(at),
      });
    // The passive answer to our poll: a sample, the peer at stratum 2.
    e.handleIncoming(
      "10.0.0.0",
      123,
      from(Mode.symmetricPassive, 2, 0xc0000201, T + 1.0001),
      T + 1.0002,
    );
    const before = e.associations.get("10.0.0.0:123")!;
    assert.equal(before.stratum, 2);
    const samples = before.filter.stages.length;
    // Its own poll, off schedule, echoing the same packet of ours: it now claims orphan parent.
    e.handleIncoming("10.0.0.0", 123, from(Mode.symmetricActive, 7, 0x0a000000, T + 5), T + 5.0001);
    const a = e.associations.get("10.0.0.0:123")!;
    assert.equal(a.stratum, 7);
    assert.equal(a.refid, 0x0a000000);
    assert.equal(a.filter.stages.length, samples, "no sample from an already answered packet");
  });
  await t.step("a peer above the orphan stratum is not followed, and the log says why once", () => {
    const e = driven(new Engine(engineOptions([peer("10.0.0.9")]), new VirtualClock(), T));
    const logs: string[] = [];
    const take = (acts: ReturnType<typeof e.handleTimer>) => {
      for (const a of acts) if (a.kind === "log") logs.push(a.message);
    };
    for (let i = 0; i < 3; i++) {
      const at = T + 1 + 20 * i;
      const req = sends(e.handleTimer(at, () => 0.37))[0]!;
      const p = parsePacket(req.bytes);
      if (typeof p === "string") throw new Error(p);
      take(e.handleIncoming(
        "10.0.0.9",
        123,
        serializePacket({
          leap: 0,
          version: 4,
          mode: Mode.symmetricPassive,
          stratum: 8, // a chronyd with `local stratum 8`, above orphan_stratum 7
          poll: 4,
          precision: -20,
          rootDelay: 0,
          rootDisp: 0,
          refid: 0x7f7f0101,
          ref: fromUnixSeconds(at),
          org: p.xmt,
          rec: fromUnixSeconds(at + 0.0001),
          xmt: fromUnixSeconds(at + 0.0002),
        }),
        at + 0.0003,
      ));
      take(e.handleTimer(at + 10, () => 0));
    }
    assert.notEqual(e.report(T + 60).system.system_peer, "10.0.0.9:123");
    const why = logs.filter((l) => l.includes("orphan election only"));
    assert.equal(why.length, 1, logs.join("\n"));
    assert.match(
      why[0]!,
      /10\.0\.0\.9:123: peer at stratum 8 is at or above clock\.orphan_stratum 7/,
    );
  });
});

Deno.test({
  name: "readKernelClock() reads adjtimex without changing it (modes = 0)",
  ignore: Deno.build.os !== "linux",
}, () => {
  const k = readKernelClock();
  assert.ok(k.state >= 0 && k.state <= 5);
  assert.ok(Math.abs(k.freqPpm) <= 600);
});

Deno.test("engine: a peer's sample nudges the clock only in holdover, not while the upstream answers", () => {
  const peer = { ...server("10.0.0.2"), kind: "peer" as const, iburst: false };
  const e = driven(new Engine(engineOptions([server(), peer]), new VirtualClock(), T));
  /** A symmetric passive answer from the peer (stratum 2, like us, so it only pulls), 20 µs ahead. */
  const peerAnswer = (req: Uint8Array, at: number) => {
    const p = parsePacket(req);
    if (typeof p === "string") throw new Error(p);
    return serializePacket({
      leap: 0,
      version: 4,
      mode: Mode.symmetricPassive,
      stratum: 2,
      poll: 4,
      precision: -20,
      rootDelay: 0.0001,
      rootDisp: 0.0001,
      refid: 0xc0000201,
      ref: fromUnixSeconds(at - 1),
      org: p.xmt,
      rec: fromUnixSeconds(at + 0.00005 + 20e-6),
      xmt: fromUnixSeconds(at + 0.00006 + 20e-6),
    });
  };
  let now = T + 1;
  let serverAnswers = true;
  /** Runs timers up to `until`, answering every request: the server (if up) and the peer. */
  const runTo = (until: number) => {
    while (now < until) {
      now = Math.max(now, e.nextTimer());
      if (now >= until) break;
      for (const s of sends(e.handleTimer(now, () => 0.5))) {
        if (s.host === "10.0.0.2") {
          e.handleIncoming("10.0.0.2", 123, peerAnswer(s.bytes, now), now + 0.0001);
        } else if (serverAnswers) {
          e.handleIncoming("192.0.2.1", 123, reply(s.bytes, now), now + 0.0002);
        }
      }
    }
  };
  runTo(T + 300);
  assert.equal(e.report(now).system.system_peer, "192.0.2.1:123");
  const updates = e.counters.clock_updates;
  // Peer samples while the server answers: no clock update of their own.
  const received = (id: string) => e.associations.get(id)!.counters.received;
  const peerBefore = received("10.0.0.2:123"), serverBefore = received("192.0.2.1:123");
  runTo(T + 600);
  const peerSamples = received("10.0.0.2:123") - peerBefore;
  const serverSamples = received("192.0.2.1:123") - serverBefore;
  const clockUpdates = e.counters.clock_updates - updates;
  assert.ok(peerSamples > 0 && serverSamples > 0);
  assert.ok(
    clockUpdates <= serverSamples,
    `${clockUpdates} clock updates for ${serverSamples} server and ${peerSamples} peer samples`,
  );
  // The server goes quiet: after two of its polls, the peer's samples nudge the clock.
  serverAnswers = false;
  const quiet = e.counters.clock_updates;
  runTo(now + 4 * 2 ** e.associations.get("192.0.2.1:123")!.hpoll + 60);
  assert.ok(e.counters.clock_updates > quiet, "holdover: the peer keeps nudging");
});

Deno.test("engine: a source whose refid is our own address is never selected, and the log says why once", () => {
  const e = driven(new Engine(engineOptions([server()]), new VirtualClock(), T));
  const logs: string[] = [];
  let now = T + 1;
  for (let i = 0; i < 4; i++) {
    for (const a of e.handleTimer(now, () => 0.5)) {
      if (a.kind === "log") logs.push(a.message);
      if (a.kind !== "send") continue;
      const p = parsePacket(a.bytes);
      if (typeof p === "string") throw new Error(p);
      const looped = serializePacket({
        leap: 0,
        version: 4,
        mode: Mode.server,
        stratum: 3,
        poll: 6,
        precision: -20,
        rootDelay: 0.001,
        rootDisp: 0.001,
        refid: 0x0a000001, // engineOptions' localRefid: it follows us
        ref: fromUnixSeconds(now - 1),
        org: p.xmt,
        rec: fromUnixSeconds(now + 0.0001),
        xmt: fromUnixSeconds(now + 0.0001),
      });
      for (const b of e.handleIncoming("192.0.2.1", 123, looped, now + 0.0002)) {
        if (b.kind === "log") logs.push(b.message);
      }
    }
    now = e.nextTimer();
  }
  assert.equal(e.report(now).system.system_peer, "");
  const why = logs.filter((l) => l.includes("its refid is our own address"));
  assert.equal(why.length, 1, logs.join("\n"));
  assert.match(why[0]!, /^192\.0\.2\.1:123: /);
});
