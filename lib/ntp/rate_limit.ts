/**
 * Per-client rate limiting for the server: a leaky bucket (GCRA) per IPv4
 * /32 or IPv6 /64, kept in a fixed-size table so memory stays bounded no
 * matter how many (possibly spoofed) sources send to us.
 *
 * The table is 4-way set-associative. When a set is full, the entry seen
 * least recently is forgotten: a flood of new sources can only make us
 * forget old clients (and so be more lenient to them), never deny a
 * well-behaved client. Each entry costs 32 bytes; the default 65 536
 * entries take 2 MiB per worker.
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

export class RateLimiter {
  readonly intervalS: number;
  readonly #burstWindow: number;
  readonly #sets: number;
  // Per entry: key words (family tag, /32 or /64), theoretical arrival time, last KoD time.
  readonly #keyA: Uint32Array;
  readonly #keyB: Uint32Array;
  readonly #keyC: Uint32Array;
  readonly #tat: Float64Array;
  readonly #kodAt: Float64Array;
  readonly #seen: Float64Array;

  constructor(opts: RateLimitOptions) {
    this.intervalS = opts.intervalS;
    // GCRA tolerance: `burst` requests at one instant pass, the next waits an interval.
    this.#burstWindow = opts.intervalS * (Math.max(1, opts.burst) - 1);
    let size = WAYS;
    while (size < (opts.tableSize ?? 65536)) size *= 2;
    this.#sets = size / WAYS;
    this.#keyA = new Uint32Array(size);
    this.#keyB = new Uint32Array(size);
    this.#keyC = new Uint32Array(size);
    this.#tat = new Float64Array(size);
    this.#kodAt = new Float64Array(size).fill(-Infinity);
    this.#seen = new Float64Array(size);
  }

  get enabled(): boolean {
    return this.intervalS > 0;
  }

  /** Number of table entries. */
  get capacity(): number {
    return this.#sets * WAYS;
  }

  /**
   * Accounts one request from `client` at `now` (seconds, any monotonic
   * base) and says whether to answer it, answer with KoD RATE, or drop it.
   * KoD replies are themselves limited to one per interval per client.
   */
  check(client: ClientAddress, now: number, kod: boolean): RateVerdict {
    if (this.intervalS <= 0) return "pass";
    const w = client.words;
    // Tag 0 is an empty slot; 1 marks IPv4, 2 IPv6 (only the /64 counts).
    const a = client.family === 4 ? 1 : 2;
    const b = w[0]!;
    const c = client.family === 4 ? 0 : w[1]!;
    const h = Math.imul(b ^ Math.imul(c, 0x9e3779b1), 0x85ebca6b) ^ a;
    const base = ((h ^ (h >>> 15)) >>> 0) % this.#sets * WAYS;
    let slot = -1;
    let oldest = base;
    for (let i = base; i < base + WAYS; i++) {
      if (this.#keyA[i] === a && this.#keyB[i] === b && this.#keyC[i] === c) {
        slot = i;
        break;
      }
      if (this.#keyA[i] === 0 || this.#seen[i]! < this.#seen[oldest]!) oldest = i;
      if (this.#keyA[i] === 0) break;
    }
    if (slot < 0) {
      slot = oldest;
      this.#keyA[slot] = a;
      this.#keyB[slot] = b;
      this.#keyC[slot] = c;
      this.#tat[slot] = now;
      this.#kodAt[slot] = -Infinity;
    }
    this.#seen[slot] = now;
    const tat = Math.max(this.#tat[slot]!, now);
    if (tat - now <= this.#burstWindow) {
      this.#tat[slot] = tat + this.intervalS;
      return "pass";
    }
    if (kod && now - this.#kodAt[slot]! >= this.intervalS) {
      this.#kodAt[slot] = now;
      return "kod";
    }
    return "drop";
  }
}
