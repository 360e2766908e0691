/**
 * The leap second end to end in the simulator (issue 12 item 4): the real
 * engine and server core on virtual time across 2016-12-31 23:59:60, with a
 * fake Clock that records every setLeap call (the kernel's insert flag):
 * served time, LI on the wire and the clock before, during and after; and
 * the days and votes on which nothing may be armed.
 */
import assert from "assert";
import { VirtualClock } from "../../lib/engine/clock.ts";
import type { EngineOptions } from "../../lib/engine/engine.ts";
import { newClientAddress, parseIp, setClientAddress } from "../../lib/ntp/address.ts";
import { type LeapTable, parseLeapFile, smearOffset } from "../../lib/ntp/leap.ts";
import { Leap, parsePacket } from "../../lib/ntp/packet.ts";
import { respond } from "../../lib/ntp/server.ts";
import { toUnixSeconds } from "../../lib/ntp/timestamp.ts";
import { EngineNode, ReferenceServer, Simulation } from "../../lib/sim/sim.ts";

const at = (iso: string) => Date.parse(iso) / 1000;
/** 2017-01-01 00:00:00 UTC: the inserted second runs from here (true time) for one second. */
const M = at("2017-01-01T00:00:00Z");

/** A Clock that records each setLeap call with the true time it was made at. */
class RecordingClock extends VirtualClock {
  readonly calls: { leap: number; t: number }[] = [];
  constructor(private readonly now: () => number) {
    super();
  }
  override setLeap(leap: number): void {
    super.setLeap(leap);
    this.calls.push({ leap, t: this.now() });
  }
}

const CLOCK: Omit<EngineOptions, "localRefid" | "precision" | "sources"> = {
  stepThreshold: 0.128,
  panicThreshold: 1000,
  orphanStratum: 0,
  orphanWait: 60,
  minSources: 1,
  driftPpm: null,
};

interface Run {
  sim: Simulation;
  node: EngineNode;
  clock: RecordingClock;
  logs: string[];
}

/**
 * Three stratum-1 servers (LI from `leaps`; those in `doLeap` insert the
 * second at M as a kernel does) and one engine node, from `start`.
 */
function setup(
  start: string,
  leaps: number[],
  opts: { doLeap?: boolean; leapTable?: LeapTable; leapSmear?: number } = {},
): Run {
  const sim = new Simulation(7, at(start));
  const logs: string[] = [];
  const servers = leaps.map((leap, i) =>
    sim.add(
      new ReferenceServer(`192.0.2.${i + 1}`, 0, {
        leap,
        rootDisp: 1e-3,
        ...(opts.doLeap ? { leapAt: { t: M, change: 1 as const } } : {}),
      }),
    )
  );
  const clock = new RecordingClock(() => sim.now);
  const node = sim.add(
    new EngineNode(
      sim,
      "10.0.0.1",
      { offset: 0.01, freq: 20e-6, wander: 1e-9 },
      {
        ...CLOCK,
        ...(opts.leapTable ? { leapTable: opts.leapTable } : {}),
        ...(opts.leapSmear ? { leapSmear: opts.leapSmear } : {}),
        sources: servers.map((s) => ({
          address: s.address,
          kind: "server" as const,
          iburst: true,
          prefer: false,
          minPoll: 4,
          maxPoll: 6,
          maxSources: 1,
          xleave: false,
        })),
      },
      undefined,
      clock,
    ),
  );
  // Collect the engine's log lines: wrap its timer and packet paths' actions.
  const engine = node.engine;
  for (const k of ["handleTimer", "handleIncoming"] as const) {
    const f = engine[k].bind(engine) as (...a: unknown[]) => ReturnType<typeof engine.handleTimer>;
    (engine as unknown as Record<string, unknown>)[k] = (...a: unknown[]) => {
      const out = f(...a);
      for (const x of out) if (x.kind === "log") logs.push(x.message);
      return out;
    };
  }
  node.start(sim);
  return { sim, node, clock, logs };
}

/**
 * What a client asking the node at true time `t` gets: LI, the served time
 * of the clock (Unix s, UTC) and the reply's receive timestamp `rec`.
 */
function ask(r: Run, t: number): { li: number; served: number; rec: number } {
  const raw = r.node.osc.peek(t);
  const c = newClientAddress();
  const ip = parseIp("192.0.2.99")!;
  setClientAddress(c, ip, 0, 4, 40000);
  const req = new Uint8Array(48);
  req[0] = (4 << 3) | 3;
  const ctx = { ...r.node.ctx, system: r.node.engine.systemState() };
  const out = new Uint8Array(48);
  const sec = Math.floor(raw);
  assert.equal(respond(req, 48, c, sec, (raw - sec) * 1e9, ctx, out), 48);
  const p = parsePacket(out);
  assert.ok(typeof p !== "string");
  const m = r.clock.model;
  return {
    li: p.leap,
    served: raw + m.offset + m.freq * (raw - m.epoch),
    rec: toUnixSeconds(p.rec, t),
  };
}

Deno.test("simulator through 2016-12-31 23:59:60: served time, LI and the clock flag", () => {
  const r = setup("2016-12-31T22:00:00Z", [Leap.insert, Leap.insert, Leap.insert], {
    doLeap: true,
  });
  const seen: { t: number; li: number; served: number }[] = [];
  // Up to M − 5 s, then a look every 0.25 s for 11 s, then an hour on.
  r.sim.run(M - 5 - r.sim.start);
  r.sim.run(M + 6 - r.sim.start, (t) => seen.push({ t, ...ask(r, t) }), 0.25);
  r.sim.run(M + 3600 - r.sim.start);
  const utc = (t: number) => t - (t >= M ? 1 : 0); // what a correct UTC clock reads
  // Before: synchronised, LI 1, flag armed on the day.
  const before = seen.filter((s) => s.t < M);
  assert.ok(before.length > 0);
  for (const s of before) {
    assert.equal(s.li, Leap.insert, `LI at ${s.t - M}`);
    assert.ok(Math.abs(s.served - s.t) < 1e-3, `served at ${s.t - M}: ${s.served - s.t}`);
  }
  // During the inserted second the served time reads 23:59:59 again, still LI 1.
  // (At M itself the node's own timer, a few µs on, has not fired yet: from M + 0.25 s.)
  const during = seen.filter((s) => s.t > M && s.t < M + 1);
  assert.ok(during.length > 0);
  for (const s of during) {
    assert.ok(s.served >= M - 1 && s.served < M, `served ${s.served - M} during the leap`);
    assert.equal(s.li, Leap.insert);
  }
  // After: one second behind the elapsed count (UTC), LI 0.
  const after = seen.filter((s) => s.t > M + 1);
  assert.ok(after.length > 0);
  for (const s of after) {
    assert.ok(Math.abs(s.served - utc(s.t)) < 1e-3, `served at ${s.t - M}: ${s.served - utc(s.t)}`);
    assert.equal(s.li, Leap.none, `LI at ${s.t - M}`);
  }
  assert.ok(Math.abs(r.node.error(r.sim.now) + 1) < 1e-3, "an hour later: still on UTC");
  assert.equal(r.node.engine.systemState().leap, Leap.none);
  // The flag: armed on 31 December, cleared after the leap (on 1 January), nothing else.
  const armed = r.clock.calls.filter((c) => c.leap === Leap.insert);
  assert.equal(armed.length, 1);
  assert.ok(armed[0]!.t < M && armed[0]!.t >= at("2016-12-31T00:00:00Z"));
  const cleared = r.clock.calls.filter((c) => c.leap === Leap.none && c.t > armed[0]!.t);
  assert.equal(cleared.length, 1);
  assert.ok(cleared[0]!.t >= M + 1, "cleared only after the inserted second");
  assert.ok(cleared[0]!.t < M + 10, "and at once after it");
  assert.equal(r.clock.calls.at(-1)!.leap, Leap.none);
  // One step, the leap itself; no spike, no other step.
  assert.equal(r.clock.steps, 1);
  assert.equal(r.node.engine.counters.spikes, 0);
  assert.ok(r.logs.some((l) => /announced and armed for 2016-12-31/.test(l)), r.logs.join("\n"));
  assert.ok(r.logs.some((l) => l === "Leap second inserted at 2016-12-31 23:59:60 UTC"));
});

Deno.test("29 November: an upstream's LI 1 is neither announced nor armed", () => {
  const r = setup("2016-11-29T22:00:00Z", [Leap.insert, Leap.insert, Leap.insert]);
  const lis = new Set<number>();
  r.sim.run(4 * 3600, (t) => {
    if (t > r.sim.start + 60) lis.add(ask(r, t).li);
  });
  assert.deepEqual([...lis], [Leap.none], "LI 0 on the wire on 29 and 30 November");
  assert.ok(r.clock.calls.length > 0, "the flag was set (cleared) once synchronised");
  assert.ok(r.clock.calls.every((c) => c.leap === Leap.none), JSON.stringify(r.clock.calls));
  assert.equal(r.clock.steps, 0);
  assert.ok(Math.abs(r.node.error(r.sim.now)) < 1e-3, "no second inserted at midnight");
});

Deno.test("31 December: a minority of sources announcing a leap arms nothing", () => {
  const r = setup("2016-12-31T20:00:00Z", [Leap.insert, Leap.none, Leap.none]);
  const lis = new Set<number>();
  r.sim.run(3 * 3600, (t) => {
    if (t > r.sim.start + 60 && t < M) lis.add(ask(r, t).li);
  });
  assert.deepEqual([...lis], [Leap.none]);
  assert.ok(r.clock.calls.every((c) => c.leap === Leap.none));
});

Deno.test("the leap file overrides the sources: armed and carried out though none says so", () => {
  const text = Deno.readTextFileSync(new URL("../fixtures/leap-seconds.list", import.meta.url));
  const leapTable = parseLeapFile(text, "leap-seconds.list") as LeapTable;
  const r = setup("2016-12-31T22:00:00Z", [Leap.none, Leap.none, Leap.none], {
    doLeap: true,
    leapTable,
  });
  let liBefore = -1;
  r.sim.run(M + 1800 - r.sim.start, (t) => {
    if (t === M - 10) liBefore = ask(r, t).li;
  });
  assert.equal(liBefore, Leap.insert);
  assert.deepEqual(r.clock.calls.filter((c) => c.leap !== Leap.none).map((c) => c.leap), [1]);
  assert.equal(r.clock.calls.at(-1)!.leap, Leap.none);
  assert.ok(Math.abs(r.node.error(r.sim.now) + 1) < 1e-3);
  assert.ok(r.logs.some((l) => /armed .* from leap-seconds\.list/.test(l)), r.logs.join("\n"));
});

Deno.test("the leap file: sources announcing a leap it does not list are ignored; expiry warned once", () => {
  const text = Deno.readTextFileSync(new URL("../fixtures/leap-seconds.list", import.meta.url));
  const leapTable = parseLeapFile(text, "leap-seconds.list") as LeapTable;
  const r = setup("2016-06-30T20:00:00Z", [Leap.insert, Leap.insert, Leap.insert], {
    leapTable,
  });
  r.sim.run(6 * 3600);
  assert.ok(r.clock.calls.every((c) => c.leap === Leap.none));
  assert.equal(r.clock.steps, 0);
  // An expired file: one warning line, and the sources decide again.
  const expired = { ...leapTable, expires: at("2016-12-28T00:00:00Z") };
  const e = setup("2016-12-31T22:00:00Z", [Leap.insert, Leap.insert, Leap.insert], {
    doLeap: true,
    leapTable: expired,
  });
  e.sim.run(4 * 3600);
  const warned = e.logs.filter((l) => /expired on 2016-12-28/.test(l));
  assert.equal(warned.length, 1, e.logs.join("\n"));
  assert.ok(e.clock.calls.some((c) => c.leap === Leap.insert));
});

Deno.test("simulator through 2016-12-31 23:59:60 with a 24 h leap smear: served time never steps", () => {
  const W = 86_400;
  const r = setup("2016-12-30T23:00:00Z", [Leap.insert, Leap.insert, Leap.insert], {
    doLeap: true,
    leapSmear: W,
  });
  // A client of the smearing node: it follows the served time, told of no leap.
  const client = r.sim.add(
    new EngineNode(r.sim, "10.0.0.2", { offset: 0.005, freq: -10e-6, wander: 1e-9 }, {
      ...CLOCK,
      sources: [{
        address: "10.0.0.1",
        kind: "server",
        iburst: true,
        prefer: false,
        minPoll: 4,
        maxPoll: 6,
        maxSources: 1,
        xleave: false,
      }],
    }),
  );
  client.start(r.sim);
  const seen: { t: number; li: number; served: number; rec: number; clientErr: number }[] = [];
  const look = (t: number) => {
    // (Each run() samples its start again: once per instant.)
    if (t >= at("2016-12-31T00:00:00Z") && t !== seen.at(-1)?.t) {
      seen.push({ t, ...ask(r, t), clientErr: client.error(t) });
    }
  };
  const end = M + W / 2 + 3600;
  r.sim.run(M - 5 - r.sim.start, look, 60);
  r.sim.run(M + 6 - r.sim.start, look, 0.25);
  r.sim.run(end - r.sim.start, look, 60);
  assert.ok(seen.length > 2000);
  // LI 0 on the wire throughout, though the node itself knows (and arms) the leap.
  assert.deepEqual([...new Set(seen.map((s) => s.li))], [Leap.none]);
  const armed = r.clock.calls.filter((c) => c.leap === Leap.insert);
  assert.equal(armed.length, 1, "the clock's flag is armed as without smear");
  assert.ok(r.logs.some((l) => /^Leap smear for clients from 2016-12-31 12:00:00 UTC/.test(l)));
  assert.ok(r.logs.includes("Leap smear ended"), r.logs.join("\n"));
  // Served time follows the smear (elapsed time plus smearOffset) within a millisecond...
  for (const s of seen) {
    const want = s.t + smearOffset(M, Leap.insert, W, s.t);
    assert.ok(Math.abs(s.rec - want) < 1e-3, `rec at ${s.t - M}: ${s.rec - want}`);
  }
  // ...never runs backwards and never steps: each interval is its length, less the smear's rate.
  for (let i = 1; i < seen.length; i++) {
    const a = seen[i - 1]!, b = seen[i]!;
    const dt = b.t - a.t, d = b.rec - a.rec;
    assert.ok(d > 0, `served time ran backwards at ${b.t - M}: ${d}`);
    assert.ok(Math.abs(d / dt - 1) < 1e-4, `served rate at ${b.t - M}: ${d / dt - 1}`);
  }
  // At the leap half a second behind; the clock itself on UTC (it inserted the second).
  const atLeap = seen.find((s) => s.t > M + 1)!;
  assert.ok(Math.abs(atLeap.rec - atLeap.t + 0.5) < 2e-3, String(atLeap.rec - atLeap.t));
  assert.ok(Math.abs(atLeap.served - (atLeap.t - 1)) < 1e-3, "the node's clock reads UTC");
  assert.equal(r.clock.steps, 1, "the node's clock took the leap as a step (not served)");
  // After the window: served time is UTC again, one second behind the elapsed count.
  const last = seen.at(-1)!;
  assert.ok(Math.abs(last.rec - (last.t - 1)) < 1e-3, String(last.rec - last.t));
  assert.equal(r.node.engine.systemState().smearTo, 0, "no smear published after the window");
  assert.equal(r.node.engine.clockState().smearTo, 0);
  // The client: slewed along (never stepped), told of no leap, 1 s adjusted after the window.
  assert.equal(client.clock.steps, 0);
  assert.equal(client.engine.counters.spikes, 0);
  assert.ok(Math.abs(last.clientErr + 1) < 1e-3, `client at the end: ${last.clientErr}`);
  const worst = Math.max(
    ...seen.map((s) => Math.abs(s.clientErr - smearOffset(M, Leap.insert, W, s.t))),
  );
  assert.ok(worst < 2e-3, `client off the smear by up to ${worst}`);
});
