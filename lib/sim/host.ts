/**
 * The simulated host's timestamping: how far the timestamps a driver hands
 * the engine are from the moments packets really arrive and leave.
 *
 * - receive: the stamp is taken `rx` seconds after the packet arrived
 *   (t4, and a server's receive timestamp, are late by `rx`);
 * - transmit: the stamp is taken, then the packet leaves `tx` seconds
 *   later (t1, a symmetric packet's transmit timestamp and a server's
 *   reply transmit timestamp are early by `tx`).
 *
 * Each latency is a small fixed part, an exponential tail and, with
 * probability `spikeProb`, a scheduling spike drawn log-uniformly from
 * `spike` (a busy event loop, a garbage collection, a preempted thread).
 * Kernel stamps (`SO_TIMESTAMPNS`, `SOF_TIMESTAMPING_TX_SOFTWARE`) are
 * taken in the network stack and are off by a few microseconds, while the
 * transmit timestamp a symmetric packet carries is the driver's clock
 * reading before `send()`, a send latency (`send`) earlier; user-space
 * stamps are taken in the event loop, around the JS callbacks. See
 * docs/design/simulator.md for the figures and where they come from.
 */
import { Prng } from "./prng.ts";

/** One stamp's latency distribution; all times in seconds. */
export interface LatencySpec {
  /** Fixed part, seconds. */
  base: number;
  /** Mean of the exponential tail, seconds. */
  tail: number;
  /** Probability of a scheduling spike on a stamp (0–1). */
  spikeProb: number;
  /** Range of a spike's size, seconds, drawn log-uniformly (uniformly from 0); added to base and tail. */
  spike: readonly [number, number];
}

/** Where a host takes its timestamps: `ideal` is exact (no draws at all). */
export type StampKind = "ideal" | "kernel" | "user";

/** A host's timestamping model: receive and transmit latency. */
export interface StampSpec {
  kind: StampKind;
  /** From a packet's arrival to its receive stamp. */
  rx: LatencySpec;
  /** From a transmit stamp to the packet's departure. */
  tx: LatencySpec;
  /**
   * Kernel transmit stamps only: from the clock reading the driver writes
   * into a symmetric packet (right before `send()`) to the packet's
   * departure, where the kernel stamps it (then t1 is that stamp, `tx`
   * before the departure). Absent: t1 is the reading itself.
   */
  send?: LatencySpec;
}

const NONE: LatencySpec = { base: 0, tail: 0, spikeProb: 0, spike: [0, 0] };

/**
 * The presets. Kernel: 1 µs + exp(2 µs), one stamp in a thousand 10–50 µs
 * late (softirq, interrupt coalescing). User space: 20–30 µs + exp(40–60 µs)
 * for the event loop's wake-up and dispatch, and one stamp in twenty late
 * by 0.1–2 ms (a busy loop); the send side is a little slower (the packet
 * is queued before the `sendmsg`), which biases the offset by (tx − rx)/2.
 */
export const STAMPS: Readonly<Record<StampKind, StampSpec>> = {
  ideal: { kind: "ideal", rx: NONE, tx: NONE },
  kernel: {
    kind: "kernel",
    rx: { base: 1e-6, tail: 2e-6, spikeProb: 1e-3, spike: [10e-6, 50e-6] },
    tx: { base: 1e-6, tail: 2e-6, spikeProb: 1e-3, spike: [10e-6, 50e-6] },
    send: { base: 3e-6, tail: 3e-6, spikeProb: 1e-2, spike: [10e-6, 100e-6] },
  },
  user: {
    kind: "user",
    rx: { base: 20e-6, tail: 40e-6, spikeProb: 0.05, spike: [100e-6, 2e-3] },
    tx: { base: 30e-6, tail: 60e-6, spikeProb: 0.05, spike: [100e-6, 2e-3] },
  },
};

/** True for the names `STAMPS` knows. */
export function isStampKind(s: string): s is StampKind {
  return s === "ideal" || s === "kernel" || s === "user";
}

/**
 * Draws a host's stamp latencies (seconds) from its own generator, so a
 * model never shifts the network's or the clocks' random draws and a run
 * stays a function of its seed. `ideal` draws nothing and returns 0.
 */
export class Stamper {
  readonly #rng: Prng;
  constructor(readonly spec: StampSpec, seed: number) {
    this.#rng = new Prng(seed);
  }
  get ideal(): boolean {
    return this.spec.kind === "ideal";
  }
  /** Seconds from a packet's arrival to its receive stamp. */
  rx(): number {
    return this.#draw(this.spec.rx);
  }
  /** Seconds from a transmit stamp to the packet's departure. */
  tx(): number {
    return this.#draw(this.spec.tx);
  }
  /** Seconds from the driver's clock reading before `send()` to the departure (kernel TX stamps; 0 without). */
  send(): number {
    return this.spec.send ? this.#draw(this.spec.send) : 0;
  }
  #draw(l: LatencySpec): number {
    if (this.ideal) return 0;
    const r = this.#rng;
    let d = l.base + r.exp(l.tail);
    if (r.next() < l.spikeProb) {
      const [lo, hi] = l.spike;
      const u = r.next();
      d += lo > 0 ? lo * Math.pow(hi / lo, u) : hi * u;
    }
    return d;
  }
}

/** A 32-bit seed for one host's stamper, from the run's seed and the host's address (FNV-1a). */
export function stampSeed(seed: number, address: string): number {
  let h = 0x811c9dc5 ^ (seed >>> 0);
  for (const c of `|${address}`) {
    h ^= c.charCodeAt(0);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}
