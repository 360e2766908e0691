/**
 * The server's memory for interleaved mode (RFC 9769 §2, chrony's client
 * log of RX/TX timestamps): for each reply sent to a client that may ask
 * in interleaved mode, the receive timestamp the reply carried (`rec`, the
 * key the client's next request echoes as `org`) and when the reply really
 * left (raw clock, seconds and nanoseconds: first the reading taken right
 * before the send, then the kernel's transmit timestamp when it comes).
 *
 * One table in shared memory serves every server worker, so a client whose
 * next request lands on another worker (SO_REUSEPORT hashes the source
 * port, which chrony changes on every request) is still answered in
 * interleaved mode. Direct-mapped, SLOTS entries: a new entry replaces the
 * one in its slot, so the table never grows and a flood of clients only
 * shortens how long an entry lives (a lost entry means one basic reply).
 * Each slot has a sequence number (a seqlock): odd while a worker writes
 * it, so a reader never takes a half-written timestamp.
 */

/** Entries in the table (a power of two): 16 384, 384 KiB. */
export const SLOTS = 1 << 14;
/** Int32 words per slot: seq, key hi, key lo, sec hi, sec lo, nsec. */
const WORDS = 6;

/** Bytes of shared memory the table needs. */
export const TX_STORE_BYTES = SLOTS * WORDS * 4;

/** Raw transmit time of a saved reply. */
export interface SavedTx {
  sec: number;
  nsec: number;
}

export class TxStore {
  readonly #w: Int32Array;

  /** Over `buffer` (TX_STORE_BYTES, shared by the workers; zeroed = empty). */
  constructor(buffer: SharedArrayBuffer | ArrayBuffer = new ArrayBuffer(TX_STORE_BYTES)) {
    this.#w = new Int32Array(buffer, 0, SLOTS * WORDS);
  }

  /** Saves (or updates) the transmit time of the reply whose `rec` was `hi:lo`. */
  save(hi: number, lo: number, sec: number, nsec: number): void {
    if (hi === 0 && lo === 0) return;
    const w = this.#w;
    const i = slotOf(hi, lo) * WORDS;
    Atomics.add(w, i, 1); // odd: being written
    w[i + 1] = hi;
    w[i + 2] = lo;
    w[i + 3] = Math.floor(sec / 4294967296);
    w[i + 4] = sec >>> 0;
    w[i + 5] = nsec;
    Atomics.add(w, i, 1);
  }

  /** The transmit time saved under `hi:lo` into `into`; false when there is none. */
  lookup(hi: number, lo: number, into: SavedTx): boolean {
    if (hi === 0 && lo === 0) return false;
    const w = this.#w;
    const i = slotOf(hi, lo) * WORDS;
    const seq = Atomics.load(w, i);
    if ((seq & 1) !== 0 || seq === 0) return false;
    if (w[i + 1] !== (hi | 0) || w[i + 2] !== (lo | 0)) return false;
    const sec = w[i + 3]! * 4294967296 + (w[i + 4]! >>> 0), nsec = w[i + 5]!;
    if (Atomics.load(w, i) !== seq) return false; // rewritten meanwhile
    into.sec = sec;
    into.nsec = nsec;
    return true;
  }
}

/** The low fraction bits vary fastest: they pick the slot. */
function slotOf(hi: number, lo: number): number {
  return (Math.imul(lo ^ (hi << 7), 0x9e3779b1) >>> 18) & (SLOTS - 1);
}
