/**
 * Per-client rate limiting for the server: a leaky bucket (GCRA) per IPv4
 * /32 or IPv6 /64, kept in a fixed-size table so memory stays bounded no
 * matter how many (possibly spoofed) sources send to us.
 *
 * **One table for every server worker.** The table lives in a buffer the
 * server pool allocates once (a SharedArrayBuffer, like the interleaved
 * store in tx_store.ts) and hands to each worker, so a client gets the
 * same answer however many workers there are and whichever worker
 * SO_REUSEPORT gives each of its source ports: with `burst = 8`, twenty
 * requests at once get 8 replies, one KoD and 11 silences with one worker
 * or with sixty-four.
 *
 * **Bounded, with a documented eviction rule.** The table is 4-way
 * set-associative: `tableSize` entries (rounded up to a power of two, at
 * least 4) in sets of 4; a client's /32 or /64 hashes to one set. A new
 * client takes an empty way of its set, else the way seen least recently
 * (its state is forgotten). So a flood of new sources can only make us
 * forget old clients (and so be more lenient to them), never deny a
 * well-behaved client. Each entry costs 40 bytes (`ENTRY_BYTES`): the
 * default 65 536 entries take 2.5 MiB, once for all workers.
 *
 * **Concurrency.** Each set has a lock word (0 free, 1 held, 2 held with a
 * waiter: a futex-style mutex on `Atomics.compareExchange`, `Atomics.wait`
 * and `Atomics.notify`). A check holds its set's lock while it looks up,
 * inserts and updates the entry, so two workers can neither grant the
 * same burst twice nor insert one client into two ways. The lock is held
 * for well under a microsecond; a worker that finds it taken spins a
 * little, then sleeps until the holder's release wakes it (a holder the
 * scheduler preempted mid-check can keep it for milliseconds). Only a
 * holder that never releases (a worker terminated mid-check; the pool
 * then discards the table with its workers) could make a check wait
 * `LOCK_WAIT_MS`: the request is then answered, erring on the lenient
 * side rather than stalling the worker.
 */
import type { ClientAddress } from "./address.ts";

export interface RateLimitOptions {
  /** Average seconds between requests a client may send; 0 disables limiting. */
  intervalS: number;
  /** Requests a client may send back to back before limiting starts. */
  burst: number;
  /** Entries in the client table (rounded up to a power of two, at least 4). */
  tableSize?: number;
}

export type RateVerdict = "pass" | "kod" | "drop";

const WAYS = 4;
/** Bytes per set: 16 Int32 words (lock, 4 × 3 key words, padding), 4 × 3 Float64 times. */
const SET_BYTES = 16 * 4 + WAYS * 3 * 8;
/** Bytes per entry of the table (a set's bytes over its ways). */
export const ENTRY_BYTES = SET_BYTES / WAYS;
const SET_I32 = SET_BYTES / 4;
const SET_F64 = SET_BYTES / 8;
/** Float64 index of a set's first time, relative to the set (after the 64 bytes of words). */
const TIMES_F64 = 8;
/** Spins on a busy set lock before sleeping on it. */
const LOCK_SPINS = 64;
/** Longest a check sleeps on a busy set lock in total, ms, before it answers anyway. */
export const LOCK_WAIT_MS = 100;

/** Entries a table for `tableSize` really has: a power of two, at least 4 (one set). */
export function rateLimitCapacity(tableSize = 65536): number {
  let size = WAYS;
  while (size < tableSize) size *= 2;
  return size;
}

/**
 * Bytes of (shared) memory a table for `tableSize` entries needs; the
 * server pool allocates a SharedArrayBuffer of this size (zeroed = empty).
 */
export function rateLimitTableBytes(tableSize = 65536): number {
  return rateLimitCapacity(tableSize) / WAYS * SET_BYTES;
}

export class RateLimiter {
  readonly intervalS: number;
  readonly #burstWindow: number;
  readonly #sets: number;
  /** Per set: lock, then way w's key words (family tag, /32 or /64) at 1 + 3w … 3 + 3w. */
  readonly #w: Int32Array;
  /** Per set, from TIMES_F64: way w's theoretical arrival time, last KoD time, last seen at 3w … 3w + 2. */
  readonly #t: Float64Array;

  /**
   * A limiter over `table` (at least `rateLimitTableBytes(opts.tableSize)`
   * bytes; a SharedArrayBuffer to share the clients with other workers,
   * each building its own RateLimiter over the same buffer). Without one,
   * a private table. Throws RangeError when `table` is too small.
   */
  constructor(opts: RateLimitOptions, table?: SharedArrayBuffer | ArrayBuffer) {
    this.intervalS = opts.intervalS;
    // GCRA tolerance: `burst` requests at one instant pass, the next waits an interval.
    this.#burstWindow = opts.intervalS * (Math.max(1, opts.burst) - 1);
    const bytes = rateLimitTableBytes(opts.tableSize);
    const buf = table ?? new ArrayBuffer(bytes);
    if (buf.byteLength < bytes) {
      throw new RangeError(`rate-limit table has ${buf.byteLength} bytes, needs ${bytes}`);
    }
    this.#sets = bytes / SET_BYTES;
    this.#w = new Int32Array(buf, 0, bytes / 4);
    this.#t = new Float64Array(buf, 0, bytes / 8);
  }

  get enabled(): boolean {
    return this.intervalS > 0;
  }

  /** Number of table entries. */
  get capacity(): number {
    return this.#sets * WAYS;
  }

  /**
   * Accounts one request from `client` at `now` (seconds, any base shared
   * by every limiter over the same table: the server uses the kernel's
   * receive time) and says whether to answer it, answer with KoD RATE, or
   * drop it. KoD replies are themselves limited to one per interval per
   * client. A request checked after one with a later time (another worker
   * with a backlog took it late) counts as arriving at that later time, so
   * the lag between workers never limits a client; the other side of it:
   * when a worker catches up a backlog of more than `burst` requests of one
   * client, they count as one burst.
   */
  check(client: ClientAddress, now: number, kod: boolean): RateVerdict {
    if (this.intervalS <= 0) return "pass";
    const w = client.words;
    // Tag 0 is an empty way; 1 marks IPv4, 2 IPv6 (only the /64 counts).
    const a = client.family === 4 ? 1 : 2;
    const b = w[0]! | 0;
    const c = client.family === 4 ? 0 : w[1]! | 0;
    const h = Math.imul(b ^ Math.imul(c, 0x9e3779b1), 0x85ebca6b) ^ a;
    const set = ((h ^ (h >>> 15)) >>> 0) % this.#sets;
    const lock = set * SET_I32;
    if (!this.#lock(lock)) return "pass";
    const verdict = this.#account(lock, set * SET_F64 + TIMES_F64, a, b, c, now, kod);
    this.#unlock(lock);
    return verdict;
  }

  /** The GCRA step for one client, with its set's lock held. */
  #account(
    lock: number,
    times: number,
    a: number,
    b: number,
    c: number,
    now: number,
    kod: boolean,
  ): RateVerdict {
    const k = this.#w, t = this.#t;
    let way = -1;
    let victim = 0;
    for (let i = 0; i < WAYS; i++) {
      const key = lock + 1 + 3 * i;
      const tag = k[key]!;
      if (tag === a && k[key + 1] === b && k[key + 2] === c) {
        way = i;
        break;
      }
      if (tag === 0) {
        victim = i;
        break;
      }
      if (t[times + 3 * i + 2]! < t[times + 3 * victim + 2]!) victim = i;
    }
    if (way < 0) {
      way = victim;
      const key = lock + 1 + 3 * way;
      k[key] = a;
      k[key + 1] = b;
      k[key + 2] = c;
      t[times + 3 * way] = now;
      t[times + 3 * way + 1] = -Infinity;
      t[times + 3 * way + 2] = now;
    }
    const e = times + 3 * way;
    // A request another worker got to late (its receive time before the latest
    // one seen) counts as arriving with the latest: a worker's backlog is no
    // client's fault.
    const at = Math.max(now, t[e + 2]!);
    t[e + 2] = at;
    const tat = Math.max(t[e]!, at);
    if (tat - at <= this.#burstWindow) {
      t[e] = tat + this.intervalS;
      return "pass";
    }
    if (kod && at - t[e + 1]! >= this.intervalS) {
      t[e + 1] = at;
      return "kod";
    }
    return "drop";
  }

  /** Takes the set lock at Int32 index `i`; false after LOCK_WAIT_MS without it. */
  #lock(i: number): boolean {
    const w = this.#w;
    if (Atomics.compareExchange(w, i, 0, 1) === 0) return true;
    for (let n = 0; n < LOCK_SPINS; n++) {
      if (Atomics.load(w, i) === 0 && Atomics.compareExchange(w, i, 0, 1) === 0) return true;
    }
    // Contended: mark the lock 2 (a waiter) and sleep until the holder's unlock wakes us.
    const end = performance.now() + LOCK_WAIT_MS;
    for (;;) {
      if (Atomics.exchange(w, i, 2) === 0) return true;
      const left = end - performance.now();
      if (left <= 0) return false;
      Atomics.wait(w, i, 2, left);
    }
  }

  #unlock(i: number): void {
    if (Atomics.exchange(this.#w, i, 0) === 2) Atomics.notify(this.#w, i, 1);
  }
}
