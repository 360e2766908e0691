/**
 * The simulator: virtual clocks (offset, frequency error, random-walk
 * wander) and links (delay, exponential jitter, loss, asymmetry) driving
 * the real engine (lib/engine) and the real server core (lib/ntp/server.ts)
 * on a discrete-event timeline, deterministic for a seed, thousands of
 * times faster than real time. Plays the role of chrony's clknetsim.
 * Each host stamps packets through a timestamping model (lib/sim/host.ts:
 * ideal, kernel or user space), as a real driver would.
 */
import { AccessList, parseCidr } from "../ntp/access.ts";
import { newClientAddress, parseIp, setClientAddress } from "../ntp/address.ts";
import { asciiRefid, Leap, Mode } from "../ntp/packet.ts";
import { RateLimiter } from "../ntp/rate_limit.ts";
import { COUNTER_COUNT, respond, type ServerContext, stampTransmit } from "../ntp/server.ts";
import { type SystemState, unsyncedState } from "../ntp/system_state.ts";
import { VirtualClock } from "../engine/clock.ts";
import { type Action, Engine, type EngineOptions } from "../engine/engine.ts";
import { refidOfAddress } from "../engine/refid.ts";
import { sourceId, type Transmit } from "../engine/source.ts";
import { Stamper, STAMPS, stampSeed, type StampSpec } from "./host.ts";
import { Prng } from "./prng.ts";

/** Simulated time starts here (Unix seconds), so timestamps look real. */
export const T0 = 1_800_000_000;

/** A free-running oscillator: raw(t) = t + err(t). */
export interface OscillatorSpec {
  /** Initial error, seconds (raw minus true). */
  offset: number;
  /** Frequency error, dimensionless (1e-4 = 100 ppm fast). */
  freq: number;
  /** Random-walk frequency noise, per √second (clknetsim "wander"). */
  wander: number;
}

/** A link between two addresses (both directions). */
export interface LinkSpec {
  /** One-way base delay, seconds. */
  delay: number;
  /** Mean of the exponential extra delay per packet and direction, seconds. */
  jitter: number;
  /** Probability a packet is lost. */
  loss?: number;
  /** Extra one-way delay a→b minus b→a, seconds (a constant offset error of asym/2). */
  asym?: number;
}

class Oscillator {
  err: number;
  freq: number;
  #t: number;
  constructor(spec: OscillatorSpec, private wander: number, t: number, private rng: Prng) {
    this.err = spec.offset;
    this.freq = spec.freq;
    this.#t = t;
  }
  /** Raw time at true time `t` (t never decreases). */
  raw(t: number): number {
    const dt = t - this.#t;
    if (dt > 0) {
      this.err += this.freq * dt;
      if (this.wander > 0) this.freq += this.wander * Math.sqrt(dt) * this.rng.gauss();
      this.#t = t;
    }
    return t + this.err;
  }
  /** Raw time at `t` without advancing the oscillator, so observing (a trace) never changes a run. */
  peek(t: number): number {
    return t + this.err + this.freq * Math.max(0, t - this.#t);
  }
}

/** Something with an address on the simulated network. */
interface Host {
  address: string;
  receive(sim: Simulation, from: string, port: number, bytes: Uint8Array, t: number): void;
  /** Served minus true time at true time `t`, seconds. */
  error(t: number): number;
}

/**
 * One clock sample an engine node took: true time `t` (Unix seconds),
 * `err` = measured minus true offset to the source (seconds: network
 * asymmetry, jitter and the timestamping model's error) and the sample's
 * round-trip `delay` as measured (seconds).
 */
export interface SampleRecord {
  source: string;
  t: number;
  err: number;
  delay: number;
}

function serverContext(system: SystemState): ServerContext {
  const any = [parseCidr("0.0.0.0/0"), parseCidr("::/0")].filter((c) => typeof c !== "string");
  return {
    system,
    access: new AccessList(any as Exclude<ReturnType<typeof parseCidr>, string>[], []),
    limiter: new RateLimiter({ intervalS: 0, burst: 1 }),
    denyKod: false,
    rateKod: false,
    minPoll: 0,
    counters: new Float64Array(COUNTER_COUNT),
  };
}

/**
 * Calls `fn` with the true time at which the host takes the receive stamp
 * of a packet that arrived at `t`: at once with ideal stamps (no event, so
 * ideal runs are unchanged), else `rx` later, when the driver gets to it.
 */
function atReceiveStamp(
  sim: Simulation,
  stamper: Stamper,
  t: number,
  fn: (stampedAt: number) => void,
): void {
  if (stamper.ideal) return fn(t);
  sim.at(t + stamper.rx(), () => fn(sim.now));
}

/**
 * Answers a client request as the server core does. `t` is when the
 * receive stamp is taken (true time); the transmit stamp is read 5 µs
 * later and the reply leaves the stamper's `tx` after that.
 */
function answer(
  sim: Simulation,
  self: string,
  ctx: ServerContext,
  raw: (t: number) => number,
  stamper: Stamper,
  from: string,
  port: number,
  bytes: Uint8Array,
  t: number,
): void {
  const client = newClientAddress();
  const ip = parseIp(from)!;
  setClientAddress(client, ip, 0, ip.length as 4 | 16, port);
  const rx = raw(t);
  const rxSec = Math.floor(rx);
  const out = new Uint8Array(48);
  const n = respond(bytes, bytes.length, client, rxSec, (rx - rxSec) * 1e9, ctx, out);
  if (n !== 48) return;
  // A server answers within a few microseconds; the reply leaves `tx`
  // after its transmit stamp.
  const tx = raw(t) + 5e-6;
  const txSec = Math.floor(tx);
  stampTransmit(out, 0, ctx.system, txSec, (tx - txSec) * 1e9);
  sim.send(self, 123, from, port, out, t + 5e-6 + stamper.tx());
}

/**
 * A reference server (stratum 1) whose time is off by a fixed `error`
 * (seconds); `stamps` is its timestamping model (default ideal).
 */
export class ReferenceServer implements Host {
  readonly ctx: ServerContext;
  down = false;
  readonly #stamps: StampSpec;
  #stamper: Stamper | null = null;
  readonly #error: number;
  readonly #leapAt: { t: number; change: 1 | -1 } | null;
  constructor(
    readonly address: string,
    error: number,
    opts: {
      rootDisp?: number;
      leap?: number;
      stamps?: StampSpec;
      /**
       * True time (sim seconds) of a leap second this server carries out as
       * a kernel does: from then on its served time is one second behind
       * (insert; ahead for a delete), so it reads 23:59:59 twice.
       */
      leapAt?: { t: number; change: 1 | -1 };
    } = {},
  ) {
    this.#error = error;
    this.#leapAt = opts.leapAt ?? null;
    this.#stamps = opts.stamps ?? STAMPS.ideal;
    const s: SystemState = {
      ...unsyncedState(-20),
      leap: opts.leap ?? Leap.none,
      stratum: 1,
      refid: asciiRefid("GPS"),
      refTime: T0,
      rootDelay: 0,
      rootDisp: opts.rootDisp ?? 0.0001,
      corrOffset: error,
    };
    this.ctx = serverContext(s);
  }
  /** Served minus true time: the fixed `error`, less a leap second once it happened. */
  error(t: number): number {
    const l = this.#leapAt;
    return this.#error - (l && t >= l.t ? l.change : 0);
  }
  receive(sim: Simulation, from: string, port: number, bytes: Uint8Array, t: number): void {
    if (this.down) return;
    const stamper = this.#stamper ??= new Stamper(this.#stamps, stampSeed(sim.seed, this.address));
    atReceiveStamp(sim, stamper, t, (at) => {
      if (this.down) return;
      this.ctx.system.corrOffset = this.error(at);
      this.ctx.system.refTime = at - 8; // as if updated a few seconds ago
      answer(sim, this.address, this.ctx, (x) => x, stamper, from, port, bytes, at);
    });
  }
}

/**
 * A node running the real engine and server core on a virtual clock;
 * `stamps` is how its driver timestamps packets (default ideal).
 */
export class EngineNode implements Host {
  readonly engine: Engine;
  readonly clock: VirtualClock;
  readonly osc: Oscillator;
  readonly ctx: ServerContext;
  readonly stamper: Stamper;
  /** Every clock sample the engine took, in order (what the driver's stamps made of the network). */
  readonly samples: SampleRecord[] = [];
  down = false;
  #timerGen = 0;
  /** The last packet sent to each association (what a driver hands back with replies). */
  readonly #sent = new Map<string, Transmit>();
  constructor(
    sim: Simulation,
    readonly address: string,
    osc: OscillatorSpec,
    opts: Omit<EngineOptions, "localRefid" | "precision">,
    stamps: StampSpec = STAMPS.ideal,
    clock: VirtualClock = new VirtualClock(),
  ) {
    this.clock = clock;
    this.stamper = new Stamper(stamps, stampSeed(sim.seed, address));
    this.osc = new Oscillator(osc, osc.wander, sim.now, sim.rng);
    this.engine = new Engine(
      { ...opts, precision: -20, localRefid: refidOfAddress(address), rand: sim.rng.fn() },
      this.clock,
      this.osc.raw(sim.now),
    );
    this.ctx = serverContext(this.engine.systemState());
  }
  /** Served minus true time at true time `t`. */
  error(t: number): number {
    const raw = this.osc.peek(t); // measuring must not change the run
    const m = this.clock.model;
    return raw + m.offset + m.freq * (raw - m.epoch) - t;
  }
  /** Served frequency minus true, dimensionless (1e-6 = 1 ppm fast), as of the last clock reading. */
  freqError(): number {
    const f = this.clock.model.freq;
    return this.osc.freq * (1 + f) + f;
  }
  start(sim: Simulation): void {
    this.#run(sim, this.engine.handleTimer(this.osc.raw(sim.now), sim.rng.fn()));
  }
  receive(sim: Simulation, from: string, port: number, bytes: Uint8Array, t: number): void {
    if (this.down || bytes.length < 48) return;
    // The driver's part: t4 is the receive stamp, taken `rx` after arrival.
    atReceiveStamp(sim, this.stamper, t, (at) => {
      if (this.down) return;
      const mode = bytes[0]! & 7;
      const isPeer = this.engine.peerHosts().includes(from);
      if (mode === Mode.client || ((mode === Mode.symmetricActive) && !isPeer)) {
        this.ctx.system = this.engine.systemState();
        const raw = (x: number) => this.osc.raw(x);
        answer(sim, this.address, this.ctx, raw, this.stamper, from, port, bytes, at);
        return;
      }
      const id = sourceId(from, port);
      const sent = this.#sent.get(id) ?? null;
      const assoc = this.engine.associations.get(id);
      const before = assoc?.lastSample;
      const t4 = this.osc.raw(at);
      const actions = this.engine.handleIncoming(from, port, bytes, t4, sent, sim.rng.fn());
      const p = assoc && assoc.lastSample !== before ? assoc.stats.points.at(-1) : undefined;
      const server = sim.hosts.get(from);
      if (p && server) {
        // The sample's y is the source's time minus our raw time.
        const truth = server.error(at) - (t4 - at);
        this.samples.push({ source: id, t: at, err: p.y - truth, delay: p.delay });
      }
      this.#run(sim, actions);
    });
  }
  #run(sim: Simulation, actions: Action[]): void {
    for (const a of actions) {
      if (a.kind === "send") {
        // The driver's part: stamp symmetric packets as they leave, and
        // remember what went out and when (the engine's t1). The packet
        // really leaves the stamper's `tx` after that stamp.
        const reading = this.osc.raw(sim.now);
        if (a.stampXmt) {
          const sec = Math.floor(reading);
          stampTransmit(a.bytes, 0, this.engine.clockState(), sec, (reading - sec) * 1e9);
        }
        const xmt = new DataView(a.bytes.buffer, a.bytes.byteOffset).getBigUint64(40);
        // Kernel transmit stamps: the packet leaves a send latency after the
        // reading and t1 is the kernel's stamp, `tx` before it left. Without
        // them, t1 is the reading and the packet leaves `tx` later.
        const kernelTx = this.stamper.spec.send !== undefined;
        const leaves = sim.now + (kernelTx ? this.stamper.send() : this.stamper.tx());
        const t1 = kernelTx ? this.osc.raw(leaves - this.stamper.tx()) : reading;
        this.#sent.set(a.source, { xmt, t1 });
        sim.send(this.address, 123, a.host, a.port, a.bytes, leaves);
      } else if (a.kind === "setTimer") {
        const gen = ++this.#timerGen;
        const wait = Math.max(0, a.at - this.osc.raw(sim.now));
        if (!Number.isFinite(wait)) continue;
        sim.at(sim.now + wait, () => {
          if (gen !== this.#timerGen || this.down) return;
          this.#run(sim, this.engine.handleTimer(this.osc.raw(sim.now), sim.rng.fn()));
        });
      } else if (a.kind === "resolve") {
        const addrs = sim.dns.get(a.name) ?? [];
        const got = this.engine.addResolved(a.sourceIndex, addrs, this.osc.raw(sim.now));
        sim.at(sim.now, () => this.#run(sim, got));
      }
    }
  }
}

interface Event {
  t: number;
  seq: number;
  fn: () => void;
}

/** The discrete-event simulation. */
export class Simulation {
  now: number;
  /** True time the run starts at (Unix seconds; default T0). */
  readonly start: number;
  readonly rng: Prng;
  /** The run's seed (hosts derive their stamping generators from it). */
  readonly seed: number;
  readonly hosts = new Map<string, Host>();
  readonly links = new Map<string, LinkSpec & { down?: boolean }>();
  readonly dns = new Map<string, string[]>();
  defaultLink: LinkSpec = { delay: 100e-6, jitter: 10e-6 };
  #heap: Event[] = [];
  #seq = 0;

  constructor(seed: number, start = T0) {
    this.start = this.now = start;
    this.seed = seed;
    this.rng = new Prng(seed);
  }

  add<H extends Host>(h: H): H {
    this.hosts.set(h.address, h);
    return h;
  }

  /** Sets the link between `a` and `b` (asymmetry counts from a to b). */
  link(a: string, b: string, spec: LinkSpec): void {
    this.links.set(`${a}|${b}`, spec);
    this.links.set(`${b}|${a}`, { ...spec, asym: -(spec.asym ?? 0) });
  }

  /** Cuts or restores the link between `a` and `b`. */
  setLinkDown(a: string, b: string, down: boolean): void {
    for (const k of [`${a}|${b}`, `${b}|${a}`]) {
      const l = this.links.get(k) ?? { ...this.defaultLink };
      this.links.set(k, { ...l, down });
    }
  }

  at(t: number, fn: () => void): void {
    const e = { t, seq: this.#seq++, fn };
    const h = this.#heap;
    h.push(e);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (less(h[p]!, e)) break;
      h[i] = h[p]!;
      i = p;
    }
    h[i] = e;
  }

  send(
    from: string,
    fromPort: number,
    to: string,
    _toPort: number,
    bytes: Uint8Array,
    t: number,
  ): void {
    const l = this.links.get(`${from}|${to}`) ?? this.defaultLink;
    if ((l as { down?: boolean }).down) return;
    if (l.loss && this.rng.next() < l.loss) return;
    const d = l.delay + (l.asym ?? 0) / 2 + this.rng.exp(l.jitter);
    const host = this.hosts.get(to);
    if (!host) return;
    const copy = bytes.slice();
    this.at(Math.max(t, this.now) + d, () => host.receive(this, from, fromPort, copy, this.now));
  }

  /** Runs events until `end` (true time, seconds since `start`). */
  run(end: number, onStep?: (t: number) => void, step = 1): void {
    let nextSample = this.now;
    for (;;) {
      const e = this.#heap[0];
      const tNext = e ? e.t : Infinity;
      if (nextSample <= tNext && nextSample <= this.start + end) {
        this.now = nextSample;
        onStep?.(nextSample);
        nextSample += step;
        continue;
      }
      if (!e || e.t > this.start + end) break;
      this.#pop();
      this.now = e.t;
      e.fn();
    }
    this.now = this.start + end;
  }

  #pop(): void {
    const h = this.#heap;
    const last = h.pop()!;
    if (h.length === 0) return;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1, r = l + 1;
      let m = i;
      const cand = (j: number) => j < h.length && less(h[j]!, m === i ? last : h[m]!);
      if (cand(l)) m = l;
      if (cand(r)) m = r;
      if (m === i) break;
      h[i] = h[m]!;
      i = m;
    }
    h[i] = last;
  }
}

function less(a: Event, b: Event): boolean {
  return a.t < b.t || (a.t === b.t && a.seq < b.seq);
}
