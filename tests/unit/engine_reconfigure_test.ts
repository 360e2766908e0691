/**
 * Unit tests: the engine on reload (`Engine.reconfigure`) and pool member
 * replacement, on a small fake network: servers that answer at a fixed
 * offset (or not at all) and a fake DNS table. Pure, no sockets.
 */
import assert from "assert";
import { VirtualClock } from "../../lib/engine/clock.ts";
import {
  type Action,
  Engine,
  type EngineOptions,
  type EngineSource,
  RESOLVE_RETRY_S,
} from "../../lib/engine/engine.ts";
import { asciiRefid, Leap, Mode, parsePacket, serializePacket } from "../../lib/ntp/packet.ts";
import { fromUnixSeconds } from "../../lib/ntp/timestamp.ts";
import { statsTime } from "../../lib/engine/stats.ts";
import { driven, type DrivenEngine } from "../helpers/fixtures.ts";
import { appendStats } from "../../lib/io/stats_files.ts";

const T = 1_800_000_000;
const rand = () => 0.5;

const clockOpts = {
  stepThreshold: 0.128,
  panicThreshold: 1000,
  orphanStratum: 7,
  orphanWait: 10,
  minSources: 1,
};

function src(address: string, o: Partial<EngineSource> = {}): EngineSource {
  return {
    address,
    kind: "server",
    iburst: true,
    prefer: false,
    minPoll: 2,
    maxPoll: 3,
    maxSources: 4,
    xleave: false,
    ...o,
  };
}

/** Servers answering 1 ms after a request with their clock `offset` ahead, a DNS table, a timer. */
class World {
  now = T;
  readonly engine: DrivenEngine;
  readonly dns = new Map<string, string[]>();
  readonly down = new Set<string>();
  readonly logs: string[] = [];
  readonly demobilized: string[] = [];
  readonly sentTo: string[] = [];
  readonly stats: Extract<Action, { kind: "stats" }>[] = [];
  readonly start: number;
  #timer = Infinity;
  #inflight: { t: number; host: string; port: number; bytes: Uint8Array }[] = [];

  constructor(
    sources: EngineSource[],
    extra: Partial<EngineOptions> = {},
    dns: Record<string, string[]> = {},
    start = T,
  ) {
    this.start = this.now = start;
    for (const [name, addrs] of Object.entries(dns)) this.dns.set(name, addrs);
    this.engine = driven(
      new Engine(
        {
          sources,
          ...clockOpts,
          precision: -20,
          localRefid: 0x0a000001,
          driftPpm: null,
          rand,
          ...extra,
        },
        new VirtualClock(),
        start,
      ),
    );
    this.take(this.engine.handleTimer(start, rand));
  }

  take(actions: Action[]): void {
    for (const a of actions) {
      if (a.kind === "send") {
        this.sentTo.push(a.host);
        if (this.down.has(a.host)) continue;
        this.#inflight.push({
          t: this.now + 0.001,
          host: a.host,
          port: a.port,
          bytes: reply(a.bytes, this.now),
        });
      } else if (a.kind === "setTimer") {
        this.#timer = a.at;
      } else if (a.kind === "resolve") {
        this.take(this.engine.addResolved(a.source, this.dns.get(a.name) ?? [], this.now));
      } else if (a.kind === "log") {
        this.logs.push(a.message);
      } else if (a.kind === "demobilize") {
        this.demobilized.push(a.source);
      } else if (a.kind === "stats") {
        this.stats.push(a);
      }
    }
  }

  /** Runs until `t` seconds after the start; `each` is called after every event. */
  run(t: number, each?: () => void): void {
    const end = this.start + t;
    for (;;) {
      this.#inflight.sort((x, y) => x.t - y.t);
      const pkt = this.#inflight[0];
      const next = Math.min(this.#timer, pkt?.t ?? Infinity);
      if (next > end) break;
      this.now = next;
      if (pkt && pkt.t === next) {
        this.#inflight.shift();
        this.take(this.engine.handleIncoming(pkt.host, pkt.port, pkt.bytes, this.now, rand));
      } else {
        this.#timer = Infinity;
        this.take(this.engine.handleTimer(this.now, rand));
      }
      each?.();
    }
    this.now = end;
  }

  reconfigure(sources: EngineSource[], extra: Partial<typeof clockOpts> = {}): Action[] {
    const actions = this.engine.reconfigure({ sources, ...clockOpts, ...extra }, this.now);
    this.take(actions);
    return actions;
  }

  source(address: string) {
    return this.engine.report(this.now).sources.find((s) => s.address === address);
  }
}

/** A stratum-1 reply to `req` sent at `t`, received by the server 0.5 ms later. */
function reply(req: Uint8Array, t: number): Uint8Array {
  const p = parsePacket(req);
  if (typeof p === "string") throw new Error(p);
  return serializePacket({
    leap: Leap.none,
    version: 4,
    mode: Mode.server,
    stratum: 1,
    poll: p.poll,
    precision: -20,
    rootDelay: 0,
    rootDisp: 0.0001,
    refid: asciiRefid("GPS"),
    ref: fromUnixSeconds(t - 1),
    org: p.xmt,
    rec: fromUnixSeconds(t + 0.0005),
    xmt: fromUnixSeconds(t + 0.0005),
  });
}

function bits(reach: number): number {
  let n = 0;
  for (let r = reach; r; r >>= 1) n += r & 1;
  return n;
}

const A = "192.0.2.1", B = "192.0.2.2", C = "192.0.2.3";

Deno.test("Engine.reconfigure() keeps kept sources' state, drops removed ones, polls added ones", async (t) => {
  const w = new World([src(A), src(B)]);
  w.run(30);
  const assocA = w.engine.associations.get(`${A}:123`)!;
  const before = {
    reach: assocA.reach,
    received: assocA.counters.received,
    stages: assocA.filter.stages.length,
    points: assocA.stats.points.length,
    hpoll: assocA.hpoll,
  };
  assert.equal(w.engine.report(w.now).system.synchronised, true);
  assert.ok(bits(before.reach) >= 4 && before.points >= 4, JSON.stringify(before));

  await t.step("B removed, C added: B demobilised at once, A untouched", () => {
    const actions = w.reconfigure([src(A), src(C)]);
    assert.ok(actions.some((a) => a.kind === "demobilize" && a.source === `${B}:123`));
    assert.ok(w.logs.includes(`Source ${B} removed`) && w.logs.includes(`Source ${C} added`));
    assert.equal(w.engine.associations.get(`${A}:123`), assocA, "same association object");
    assert.equal(assocA.reach, before.reach);
    assert.equal(assocA.filter.stages.length, before.stages);
    assert.equal(assocA.stats.points.length, before.points);
    assert.equal(assocA.hpoll, before.hpoll);
    assert.deepEqual(
      w.engine.report(w.now).sources.map((s) => s.address).sort(),
      [`${A}:123`, `${C}:123`],
    );
  });

  await t.step("A's reach goes on from where it was; C polls and becomes reachable", () => {
    const sentBefore = w.sentTo.length;
    w.run(60);
    assert.ok(w.sentTo.slice(sentBefore).includes(C), "C was polled");
    assert.ok(!w.sentTo.slice(sentBefore).includes(B), "B was not polled again");
    assert.ok(assocA.counters.received > before.received);
    assert.ok(bits(assocA.reach) >= bits(before.reach), assocA.reach.toString(8));
    assert.ok((w.source(`${C}:123`)?.reach ?? 0) > 0);
    assert.equal(w.engine.report(w.now).system.synchronised, true);
  });

  await t.step("a packet from the removed B is an unknown source", () => {
    const n = w.engine.counters.unknown_source;
    w.engine.handleIncoming(B, 123, reply(new Uint8Array(48).fill(0x23, 0, 1), w.now), w.now);
    assert.equal(w.engine.counters.unknown_source, n + 1);
  });

  await t.step("changed options (prefer, polls) update the same association", () => {
    const reach = assocA.reach;
    w.reconfigure([src(A, { prefer: true, minPoll: 1, maxPoll: 1 }), src(C)]);
    assert.equal(w.engine.associations.get(`${A}:123`), assocA);
    assert.equal(assocA.opts.prefer, true);
    assert.equal(assocA.hpoll, 1);
    assert.equal(assocA.reach, reach);
    assert.ok(w.logs.includes(`Source ${A} updated`));
    w.run(90);
    assert.equal(w.engine.report(w.now).system.system_peer, `${A}:123`, "prefer wins");
  });

  await t.step("clock settings apply live: thresholds and min_sources", () => {
    w.reconfigure([src(A), src(C)], { stepThreshold: 0.5, panicThreshold: 10, minSources: 3 });
    assert.equal(w.engine.discipline.opts.stepThreshold, 0.5);
    assert.equal(w.engine.discipline.opts.panicThreshold, 10);
    assert.equal(w.engine.opts.minSources, 3);
  });
});

Deno.test("Engine.reconfigure() applies orphan settings live", async (t) => {
  // A source that never answers: after orphan_wait we are the orphan parent.
  const w = new World([src(A)]);
  w.down.add(A);
  w.run(20);
  assert.equal(w.engine.report(w.now).system.orphan, true);
  assert.equal(w.engine.report(w.now).system.stratum, 7);
  await t.step("a new orphan_stratum is announced", () => {
    w.reconfigure([src(A)], { orphanStratum: 5 });
    w.run(40);
    const s = w.engine.report(w.now).system;
    assert.ok(s.orphan && s.stratum === 5, JSON.stringify(s));
  });
  await t.step("orphan_stratum = 0 ends orphan mode: unsynchronised", () => {
    w.reconfigure([src(A)], { orphanStratum: 0 });
    w.run(60);
    const s = w.engine.report(w.now).system;
    assert.ok(!s.orphan && !s.synchronised, JSON.stringify(s));
  });
  await t.step("a source that answers after a reload is followed", () => {
    w.down.delete(A);
    w.run(90);
    const s = w.engine.report(w.now).system;
    assert.ok(s.synchronised && s.stratum === 2, JSON.stringify(s));
  });
});

Deno.test("pool: an unreachable member is replaced by a fresh address, up to max_sources", async (t) => {
  const pool = src("pool.example", { kind: "pool", maxSources: 4 });
  const addrs = ["192.0.2.11", "192.0.2.12", "192.0.2.13", "192.0.2.14"];
  const w = new World([pool], {}, { "pool.example": addrs });
  let most = 0;
  const count = () => most = Math.max(most, w.engine.associations.size);
  w.run(40, count);
  const members = () => [...w.engine.associations.keys()].sort();
  assert.deepEqual(members(), addrs.map((a) => `${a}:123`));
  assert.ok(w.engine.report(w.now).sources.every((s) => s.reach > 0 && s.kind === "pool"));

  await t.step("member .14 stops answering: after reach 0 it is replaced by .15", () => {
    w.down.add("192.0.2.14");
    w.dns.set("pool.example", [...addrs, "192.0.2.15"]);
    w.run(200, count);
    assert.deepEqual(
      members(),
      ["192.0.2.11", "192.0.2.12", "192.0.2.13", "192.0.2.15"].map((a) => `${a}:123`),
    );
    assert.ok(w.demobilized.includes("192.0.2.14:123"));
    assert.equal(w.logs.filter((l) => l.includes("replacing it")).length, 1);
    assert.ok((w.source("192.0.2.15:123")?.reach ?? 0) > 0, "the replacement is reachable");
    assert.equal(most, 4, "never more than max_sources");
  });

  await t.step("no address to be had: the name is resolved again later", () => {
    w.down.add("192.0.2.15");
    w.dns.set("pool.example", []);
    w.run(400, count);
    assert.equal(w.engine.associations.size, 3);
    w.dns.set("pool.example", ["192.0.2.16"]);
    w.run(400 + RESOLVE_RETRY_S + 1, count);
    assert.ok(w.engine.associations.has("192.0.2.16:123"));
    assert.equal(w.engine.associations.size, 4);
    assert.equal(most, 4);
  });

  await t.step("a lone dead address is retried rather than leaving the slot empty", () => {
    w.down.add("192.0.2.16");
    w.dns.set("pool.example", ["192.0.2.16"]);
    w.run(800, count);
    assert.equal(w.engine.associations.size, 4);
    assert.equal(most, 4);
  });

  await t.step("max_sources lowered on reload drops the least reachable member", () => {
    w.reconfigure([{ ...pool, maxSources: 3 }]);
    assert.deepEqual(members(), ["192.0.2.11", "192.0.2.12", "192.0.2.13"].map((a) => `${a}:123`));
  });
});

Deno.test("stats: lines cross midnight into the next day's files (one file per day)", async (t) => {
  // Start 60 s before 2027-01-16 00:00 UTC; run 3 minutes.
  const midnight = Date.UTC(2027, 0, 16) / 1000;
  const w = new World([src(A)], { stats: true }, {}, midnight - 60);
  w.run(180);
  const days = [...new Set(w.stats.map((s) => s.day))];
  await t.step("the engine names the day of each line", () => {
    assert.deepEqual(days, ["20270115", "20270116"]);
    for (const s of w.stats) {
      const mjd = Number(s.line.split(" ")[0]);
      assert.equal(statsTime((mjd - 40587) * 86400).day, s.day, s.line);
      const sec = Number(s.line.split(" ")[1]);
      assert.ok(sec >= 0 && sec < 86400);
    }
    for (const file of ["loopstats", "peerstats"] as const) {
      const before = w.stats.filter((s) => s.file === file && s.day === "20270115");
      const after = w.stats.filter((s) => s.file === file && s.day === "20270116");
      assert.ok(before.length > 0 && after.length > 0, `${file} on both days`);
      assert.ok(before.every((s) => s.line.startsWith("61420 ")), "MJD 61420 = 2027-01-15");
      assert.ok(after.every((s) => s.line.startsWith("61421 ")), "MJD 61421 = 2027-01-16");
    }
  });
  await t.step("written out, they make one file per kind and day", async () => {
    const dir = await Deno.makeTempDir({ prefix: "edge-time-stats-" });
    try {
      for (const s of w.stats) assert.equal(await appendStats(dir, s.file, s.day, s.line), null);
      const names = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
      assert.deepEqual(names, [
        "loopstats.20270115",
        "loopstats.20270116",
        "peerstats.20270115",
        "peerstats.20270116",
      ]);
      const lines = (await Deno.readTextFile(`${dir}/loopstats.20270116`)).trim().split("\n");
      assert.equal(
        lines.length,
        w.stats.filter((s) => s.file === "loopstats" && s.day === "20270116").length,
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
});

Deno.test("NTS sources are named by their NTS-KE server: two KE ports on one address are two associations", () => {
  // An IP and a name that resolves to it, each with its own KE server (issue 15 trial).
  const w = new World(
    [src(A, { ntsPort: 4460 }), src("ke.example", { ntsPort: 4461 }), src(A, { ntsPort: 4462 })],
    {},
    { "ke.example": [A] },
  );
  const ids = [...w.engine.associations.keys()].sort();
  assert.deepEqual(ids, [`${A}:4460`, `${A}:4461`, `${A}:4462`]);
  assert.equal(w.engine.sourceOf(`${A}:4461`), "server ke.example nts 4461");
  assert.deepEqual(w.logs.filter((l) => /skipped/.test(l)), []);
});

Deno.test("A source whose name resolves to another source's association is one warning, not silence", () => {
  const w = new World([src(A), src("dup.example")], {}, { "dup.example": [A] });
  assert.deepEqual([...w.engine.associations.keys()], [`${A}:123`]);
  const lines = w.logs.filter((l) => /skipped/.test(l));
  assert.deepEqual(lines, [
    `Source dup.example: its address ${A}:123 is already source ${A}; skipped (looked up again every ${RESOLVE_RETRY_S} s)`,
  ]);
  w.run(RESOLVE_RETRY_S * 3);
  assert.equal(w.logs.filter((l) => /skipped/.test(l)).length, 1, "said once");
});

Deno.test("An address added on reload that a name's association holds is skipped with a warning, not replaced", () => {
  const w = new World([src("a.example")], {}, { "a.example": [A], [A]: [A] });
  w.run(10);
  const before = w.engine.associations.get(`${A}:123`)!;
  assert.equal(w.engine.sourceOf(`${A}:123`), "server a.example");
  w.reconfigure([src("a.example"), src(A)]);
  w.run(20);
  assert.equal(w.engine.associations.get(`${A}:123`), before, "the association is kept");
  assert.equal(w.engine.sourceOf(`${A}:123`), "server a.example");
  assert.equal(w.logs.filter((l) => l.startsWith(`Source ${A}: its address`)).length, 1);
});
