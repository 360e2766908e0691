/**
 * Unit tests: symmetric interleaved mode (RFC 9769 §3) between two
 * engines in virtual time, with a driver that knows each packet's exact
 * transmit time (a kernel stamp) and writes a basic packet's xmt from the
 * clock reading SEND_LATENCY before it leaves: basic samples carry that error,
 * interleaved ones do not.
 */
import assert from "assert";
import { VirtualClock } from "../../lib/engine/clock.ts";
import { type Action, Engine } from "../../lib/engine/engine.ts";
import type { Transmit } from "../../lib/engine/source.ts";
import { stampTransmit } from "../../lib/ntp/server.ts";
import { driven, engineOptions } from "../helpers/fixtures.ts";
import { fromUnixSeconds } from "../../lib/ntp/timestamp.ts";
import { Mode, parsePacket, serializePacket } from "../../lib/ntp/packet.ts";

const T = 1_800_000_000;
/** One-way delay, seconds. */
const DELAY = 50e-6;
/** How long after the driver's clock reading a packet really leaves, seconds. */
const SEND_LATENCY = 8e-6;

interface Node {
  address: string;
  /** This node's raw clock minus true time, seconds. */
  skew: number;
  engine: Engine;
  last: Map<string, Transmit>;
  /** Packets that gave an interleaved sample. */
  interleaved: number;
}

function node(address: string, peer: string, skew: number, xleave: boolean): Node {
  const engine = new Engine(
    engineOptions([{
      address: peer,
      kind: "peer",
      iburst: false,
      prefer: false,
      minPoll: 0,
      maxPoll: 0,
      maxSources: 1,
      xleave,
    }], {
      localStratum: 8, // both serve; siblings at one stratum never follow each other
      orphanStratum: 0,
      localRefid: Number(address.split(".").reduce((a, b) => (Number(a) << 8) + Number(b), 0)),
    }),
    new VirtualClock(),
    T + skew,
  );
  return { address, skew, engine, last: new Map(), interleaved: 0 };
}

/** A small deterministic generator (LCG), so a lossy run is the same every time. */
function lcg(seed: number): () => number {
  let x = seed >>> 0;
  return () => (x = (Math.imul(x, 1664525) + 1013904223) >>> 0) / 2 ** 32;
}

/**
 * Runs the two nodes for `seconds` of true time; packets take DELAY each
 * way. With `loss`, that fraction of packets is dropped and the poll
 * timers draw their spread from a seeded generator, so the two nodes'
 * polls cross in every order.
 */
function run(
  a: Node,
  b: Node,
  seconds: number,
  loss = 0,
  onPacket?: (to: Node, from: Node) => void,
): void {
  const random = lcg(7);
  const queue: { at: number; fn: () => void }[] = [];
  const act = (n: Node, other: Node, actions: Action[], now: number) => {
    for (const x of actions) {
      if (x.kind !== "send") continue;
      const leaves = now + SEND_LATENCY;
      if (x.stampXmt) {
        const raw = now + n.skew; // the reading before send(): SEND_LATENCY early
        const sec = Math.floor(raw);
        stampTransmit(x.bytes, 0, n.engine.systemState(), sec, (raw - sec) * 1e9);
      }
      const xmt = new DataView(x.bytes.buffer, x.bytes.byteOffset).getBigUint64(40);
      n.last.set(x.source, { xmt, t1: leaves + n.skew, kernel: true });
      const bytes = x.bytes.slice();
      if (loss > 0 && random() < loss) continue;
      queue.push({
        at: leaves + DELAY,
        fn: () => {
          const t4 = leaves + DELAY + other.skew;
          const sent = other.last.get(`${n.address}:123`) ?? null;
          const out = other.engine.handleIncoming(n.address, 123, bytes, t4, sent);
          if (other.engine.associations.get(`${n.address}:123`)!.interleaved) other.interleaved++;
          onPacket?.(other, n);
          act(other, n, out, t4 - other.skew);
        },
      });
    }
  };
  let now = T;
  act(a, b, a.engine.handleTimer(now + a.skew, () => 0.5), now);
  act(b, a, b.engine.handleTimer(now + b.skew, () => 0.5), now);
  const end = T + seconds;
  while (now < end) {
    queue.sort((x, y) => x.at - y.at);
    const ta = a.engine.nextTimer() - a.skew, tb = b.engine.nextTimer() - b.skew;
    const next = Math.max(now, Math.min(queue[0]?.at ?? Infinity, ta, tb));
    now = next;
    if (queue[0] && queue[0].at <= next) queue.shift()!.fn();
    else if (ta <= next) {
      act(a, b, a.engine.handleTimer(now + a.skew, loss > 0 ? random : () => 0.1), now);
    } else act(b, a, b.engine.handleTimer(now + b.skew, loss > 0 ? random : () => 0.9), now);
  }
}

for (const xleave of [false, true]) {
  Deno.test(
    `two edge-time peers, xleave = ${xleave}: ${
      xleave
        ? "interleaved samples measure the true offset"
        : "basic samples carry the send latency"
    }`,
    () => {
      const a = node("10.0.0.1", "10.0.0.2", 0, xleave);
      const b = node("10.0.0.2", "10.0.0.1", 100e-6, xleave); // b's clock is 100 µs ahead
      run(a, b, 60);
      const ofA = a.engine.associations.get("10.0.0.2:123")!;
      const ofB = b.engine.associations.get("10.0.0.1:123")!;
      // Each node's passive answers to the other's polls are interleaved; its
      // own polls go out in basic mode (it sent an answer since the peer's last packet).
      assert.equal(a.interleaved > 0, xleave, `a: ${a.interleaved} interleaved samples`);
      assert.equal(b.interleaved > 0, xleave, `b: ${b.interleaved} interleaved samples`);
      // The clock filter keeps the lowest-delay sample: the interleaved one, with exact stamps.
      const thetaA = ofA.filter.output!.offset, thetaB = ofB.filter.output!.offset;
      // Basic: the peer's t3 is SEND_LATENCY early, so each reads the other half of it behind.
      const bias = xleave ? 0 : -SEND_LATENCY / 2;
      assert.ok(Math.abs(thetaA - (100e-6 + bias)) < 1e-6, `a measures b at ${thetaA * 1e6} µs`);
      assert.ok(Math.abs(thetaB - (-100e-6 + bias)) < 1e-6, `b measures a at ${thetaB * 1e6} µs`);
    },
  );
}

Deno.test("interleaved peers with 20 % loss and polls crossing in every order: every sample is exact", () => {
  const a = node("10.0.0.1", "10.0.0.2", 0, true);
  const b = node("10.0.0.2", "10.0.0.1", 100e-6, true);
  const last = new Map<Node, number>();
  const errors: number[] = [];
  run(a, b, 600, 0.2, (to, from) => {
    const as = to.engine.associations.get(`${from.address}:123`)!;
    if (!as.interleaved || as.lastSample === last.get(to)) return;
    last.set(to, as.lastSample);
    const st = as.filter.stages.reduce((m, x) => (x.t > m.t ? x : m));
    errors.push(st.y - (from.skew - to.skew));
  });
  assert.ok(errors.length > 100, `${errors.length} interleaved samples`);
  const worst = Math.max(...errors.map(Math.abs));
  assert.ok(worst < 1e-6, `worst interleaved sample error ${worst * 1e6} µs`);
});

Deno.test("symmetric packets sent without news from the peer carry distinct rec values", () => {
  const e = driven(
    new Engine(
      engineOptions([{
        address: "10.0.0.2",
        kind: "peer",
        iburst: false,
        prefer: false,
        minPoll: 0,
        maxPoll: 0,
        maxSources: 1,
        xleave: true,
      }], { localStratum: 8, orphanStratum: 0 }),
      new VirtualClock(),
      T,
    ),
  );
  const first = e.handleTimer(T + 1, () => 0.5).find((a) => a.kind === "send")!;
  if (first.kind !== "send") throw new Error("no poll");
  const poll = parsePacket(first.bytes);
  if (typeof poll === "string") throw new Error(poll);
  // The peer's own poll answers ours; we answer it (passive), then poll again before it sends more.
  const peerPoll = serializePacket({
    leap: 0,
    version: 4,
    mode: Mode.symmetricActive,
    stratum: 8,
    poll: 0,
    precision: -20,
    rootDelay: 0,
    rootDisp: 0,
    refid: 0x7f7f0101,
    ref: fromUnixSeconds(T),
    org: poll.xmt,
    rec: fromUnixSeconds(T + 1.0001),
    xmt: fromUnixSeconds(T + 1.3),
  });
  const answer = e.handleIncoming("10.0.0.2", 123, peerPoll, T + 1.3001)
    .find((a) => a.kind === "send");
  const again = e.handleTimer(e.nextTimer(), () => 0.5).find((a) => a.kind === "send");
  assert.ok(answer?.kind === "send" && again?.kind === "send");
  const recOf = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset).getBigUint64(32);
  assert.notEqual(recOf(again.bytes), recOf(answer.bytes));
});
