/**
 * The send latency of a server socket, learnt from a sample of its basic
 * replies, and the transmit time a basic reply should carry.
 *
 * A basic-mode reply's `xmt` is a clock reading taken right before the
 * send; the packet leaves the send latency later (the kernel's software
 * transmit stamp, `SOF_TIMESTAMPING_TX_SOFTWARE`, taken as the datagram
 * is handed to the device). With the bare reading every client reads the
 * server half of that early (a median offset of −3 µs at 40 000 req/s on
 * loopback, docs/benchmarks/serving.md). chronyd and ntpd serve the raw
 * reading; we write reading + estimate, the departure as well as basic
 * mode can predict it, as symmetric packets already do (send_latency.ts).
 * Interleaved replies (RFC 9769) carry the kernel's stamp itself and need
 * none of this.
 *
 * Sampling: one plain 48-octet basic reply in `SAMPLE_EVERY`, and at least
 * one a `SAMPLE_MS` while replies flow, is sent asking for its kernel
 * transmit stamp; the driver hands the stamp back with the reply's `xmt`
 * (`matched`), which finds the reading it was sent with. That costs one
 * error-queue read per sample: ~1/32 of a system call per reply.
 * Outstanding samples are kept in a ring of `PENDING`; one whose stamp never
 * comes is overwritten.
 */
import { SendLatency } from "./send_latency.ts";

/**
 * The estimate is this low quantile of the recent latencies, not their
 * median. Clients keep the samples of lowest delay (the clock filter of
 * RFC 5905 §10, chrony's likewise), and a reply whose `xmt` is later than
 * its departure looks shorter by that error: with the median, the
 * half of the replies stamped late would be the ones clients prefer. With
 * a low quantile few are late, and those by little. Sparse traffic shows
 * it most: each reply then runs cold, latencies spread over 5–25 µs, and
 * with the median most single queries on one host saw a negative delay.
 */
export const QUANTILE = 0.1;

/** Basic replies between two latency samples while replies flow. */
export const SAMPLE_EVERY = 32;
/** Longest gap between two samples while replies flow, ms (low request rates). */
export const SAMPLE_MS = 1000;
/** Samples whose stamps may be outstanding at once. */
export const PENDING = 4;

export class ReplyLatency {
  #latency = new SendLatency(QUANTILE);
  #estimateNs = 0;
  #since = SAMPLE_EVERY; // the first reply is a sample
  #lastMs = -Infinity;
  // Outstanding samples: the xmt they carry (two 32-bit words) and the reading.
  readonly #xmtHi = new Uint32Array(PENDING);
  readonly #xmtLo = new Uint32Array(PENDING);
  readonly #sec = new Float64Array(PENDING);
  readonly #nsec = new Float64Array(PENDING).fill(-1);
  #next = 0;

  /**
   * Forgets every sample, and keeps the estimate until `MIN_SAMPLES` new
   * ones replace it: after a warm-up whose samples ran slower code (the
   * JIT, page faults) than serving will, a prior still beats none.
   */
  restart(): void {
    this.#latency = new SendLatency(QUANTILE);
    this.#since = SAMPLE_EVERY;
    this.#lastMs = -Infinity;
    this.#nsec.fill(-1);
  }

  /** The estimate in whole nanoseconds (0 until send_latency.ts has `MIN_SAMPLES`). */
  get estimateNs(): number {
    return this.#estimateNs;
  }

  /**
   * Whether the next plain basic reply, sent at `nowMs` (any monotonic ms
   * clock), should ask for its kernel transmit stamp. Counts the reply.
   */
  due(nowMs: number): boolean {
    if (++this.#since < SAMPLE_EVERY && nowMs - this.#lastMs < SAMPLE_MS) return false;
    this.#since = 0;
    this.#lastMs = nowMs;
    return true;
  }

  /**
   * Records a sample: the reply at `reply[at..]` (its `xmt` already
   * written) was sent right after the clock read `sec`/`nsec`.
   */
  sent(reply: Uint8Array, at: number, sec: number, nsec: number): void {
    const i = this.#next;
    this.#next = (i + 1) % PENDING;
    this.#xmtHi[i] = word(reply, at + 40);
    this.#xmtLo[i] = word(reply, at + 44);
    this.#sec[i] = sec;
    this.#nsec[i] = nsec;
  }

  /**
   * A kernel transmit stamp `sec`/`nsec` came back for the reply at
   * `reply[at..]`: if it is an outstanding sample, learn from it and return
   * true (the caller has nothing more to do with it); otherwise false.
   */
  matched(reply: Uint8Array, at: number, sec: number, nsec: number): boolean {
    const hi = word(reply, at + 40), lo = word(reply, at + 44);
    for (let i = 0; i < PENDING; i++) {
      if (this.#nsec[i]! < 0 || this.#xmtHi[i] !== hi || this.#xmtLo[i] !== lo) continue;
      this.#latency.add(sec - this.#sec[i]! + (nsec - this.#nsec[i]!) * 1e-9);
      // 0 until MIN_SAMPLES: the estimate in force stays until then.
      const estimate = this.#latency.estimate;
      if (estimate > 0) this.#estimateNs = Math.round(estimate * 1e9);
      this.#nsec[i] = -1;
      return true;
    }
    return false;
  }
}

function word(b: Uint8Array, at: number): number {
  return ((b[at]! << 24) | (b[at + 1]! << 16) | (b[at + 2]! << 8) | b[at + 3]!) >>> 0;
}
