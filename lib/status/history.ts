/**
 * The in-memory ring of samples behind the status page's offset/jitter
 * chart and the server rates: one sample every `SAMPLE_INTERVAL_S` for
 * 24 h, in preallocated typed arrays, so memory is bounded (about 1 MB)
 * however long the process runs and however many sources come and go.
 *
 * Pure: the caller passes the time and the reports; nothing here reads a
 * clock or does I/O.
 */
import type { EngineReport } from "../engine/report.ts";
import type { ServerCounters } from "../contracts.ts";
import { isSynchronised } from "../ntp/system_state.ts";

/** Seconds between samples the app takes (the `local_stratum` refresh interval, too). */
export const SAMPLE_INTERVAL_S = 16;
/** Seconds of history the chart shows. */
export const HISTORY_SPAN_S = 24 * 3600;
/** Samples in 24 h at one per 16 s. */
export const DEFAULT_CAPACITY = HISTORY_SPAN_S / SAMPLE_INTERVAL_S;
/** Sources charted at most; further ones are counted in `droppedSources`, not stored. */
export const DEFAULT_MAX_SOURCES = 16;
/** ntpd's CLOCK_AVG: the averaging constant of the system jitter. */
const JITTER_AVG = 8;

/** Server packet rates over a recent window, per second. */
export interface ServerRates {
  /** Seconds between the two counter readings the rates come from. */
  window_s: number;
  received_per_s: number;
  answered_per_s: number;
  kod_per_s: number;
  dropped_per_s: number;
}

/** One series of bucket means; null where a bucket has no sample. */
export interface ChartLine {
  label: string;
  offset_s: (number | null)[];
  jitter_s: (number | null)[];
}

/** Bucketed history for the chart: `buckets` equal slices of [start, end]. */
export interface ChartSeries {
  start: number;
  end: number;
  buckets: number;
  system: ChartLine;
  sources: ChartLine[];
}

interface Slot {
  address: string;
  /** Time of the last sample with this source, to know when the slot can be reused. */
  lastSeen: number;
  offset: Float32Array;
  jitter: Float32Array;
}

const droppedOf = (c: ServerCounters) =>
  c.dropped.malformed + c.dropped.mode + c.dropped.control + c.dropped.rate_limited +
  c.dropped.denied;

/** Ring of offset/jitter/counter samples; see the module comment. */
export class History {
  readonly capacity: number;
  readonly maxSources: number;
  /** Sources seen while every slot was taken by a source still in the ring. */
  droppedSources = 0;
  #time: Float64Array;
  #sysOffset: Float64Array;
  #sysJitter: Float64Array;
  /** received, answered, kod, dropped per sample. */
  #counters: Float64Array;
  #slots: Slot[] = [];
  #next = 0;
  #count = 0;
  #jitter = 0;
  #lastRefTime = -1;
  #lastOffset = 0;

  constructor(opts: { capacity?: number; maxSources?: number } = {}) {
    this.capacity = opts.capacity ?? DEFAULT_CAPACITY;
    this.maxSources = opts.maxSources ?? DEFAULT_MAX_SOURCES;
    if (!(this.capacity >= 2) || !(this.maxSources >= 0)) {
      throw new RangeError("History needs a capacity of at least 2 and maxSources >= 0");
    }
    this.#time = new Float64Array(this.capacity);
    this.#sysOffset = new Float64Array(this.capacity);
    this.#sysJitter = new Float64Array(this.capacity);
    this.#counters = new Float64Array(this.capacity * 4);
  }

  /** Samples held now. */
  get length(): number {
    return this.#count;
  }

  /** Bytes of sample storage (all preallocated except source slots, which are bounded). */
  get bytes(): number {
    const perSlot = this.capacity * 8;
    return this.capacity * 8 * 7 + this.#slots.length * perSlot;
  }

  /**
   * System jitter, seconds: RMS of the differences between successive
   * clock updates, exponentially averaged as ntpd's `sys_jitter`.
   */
  get systemJitter(): number {
    return this.#jitter;
  }

  /** Adds one sample taken at `now` (Unix seconds). Samples must come in time order. */
  add(now: number, engine: EngineReport, counters: ServerCounters): void {
    const sys = engine.system;
    // Only a new clock update moves the jitter: the same offset read twice is not a sample.
    if (sys.ref_time !== this.#lastRefTime) {
      if (this.#lastRefTime > 0 && sys.ref_time > 0) {
        const d = sys.offset_s - this.#lastOffset;
        this.#jitter = Math.sqrt(
          Math.max(0, this.#jitter ** 2 + (d * d - this.#jitter ** 2) / JITTER_AVG),
        );
      }
      this.#lastRefTime = sys.ref_time;
      this.#lastOffset = sys.offset_s;
    }
    const i = this.#next;
    this.#time[i] = now;
    const synced = isSynchronised(sys);
    this.#sysOffset[i] = synced ? sys.offset_s : NaN;
    this.#sysJitter[i] = synced ? this.#jitter : NaN;
    this.#counters[i * 4] = counters.received;
    this.#counters[i * 4 + 1] = counters.answered;
    this.#counters[i * 4 + 2] = counters.kod_rate + counters.kod_deny;
    this.#counters[i * 4 + 3] = droppedOf(counters);
    for (const s of this.#slots) {
      s.offset[i] = NaN;
      s.jitter[i] = NaN;
    }
    const oldest = this.#count === this.capacity ? this.#time[(i + 1) % this.capacity]! : -Infinity;
    for (const src of engine.sources) {
      // A source with no valid sample yet has nothing to plot.
      if (src.when_s < 0 || src.reach === 0) continue;
      const slot = this.#slotFor(src.address, oldest);
      if (slot === null) continue;
      slot.lastSeen = now;
      slot.offset[i] = src.offset_s;
      slot.jitter[i] = src.jitter_s;
    }
    this.#next = (i + 1) % this.capacity;
    if (this.#count < this.capacity) this.#count++;
  }

  #slotFor(address: string, oldest: number): Slot | null {
    const have = this.#slots.find((s) => s.address === address);
    if (have) return have;
    if (this.#slots.length < this.maxSources) {
      const slot = {
        address,
        lastSeen: 0,
        offset: new Float32Array(this.capacity).fill(NaN),
        jitter: new Float32Array(this.capacity).fill(NaN),
      };
      this.#slots.push(slot);
      return slot;
    }
    // Reuse the slot of a source whose samples have all left the ring.
    const free = this.#slots.find((s) => s.lastSeen < oldest);
    if (!free) {
      this.droppedSources++;
      return null;
    }
    free.address = address;
    free.offset.fill(NaN);
    free.jitter.fill(NaN);
    return free;
  }

  /** Index of the k-th oldest sample held (k = 0 is the oldest). */
  #at(k: number): number {
    return (this.#next - this.#count + k + this.capacity) % this.capacity;
  }

  /**
   * Packet rates from the live `counters` at `now` and the newest sample at
   * least `minWindowS` older (or the oldest sample when none is that old).
   * Null before any sample, or when less than a second has passed.
   */
  rates(now: number, counters: ServerCounters, minWindowS = 10): ServerRates | null {
    if (this.#count === 0) return null;
    let pick = this.#at(0);
    for (let k = this.#count - 1; k >= 0; k--) {
      const j = this.#at(k);
      if (now - this.#time[j]! >= minWindowS) {
        pick = j;
        break;
      }
    }
    const dt = now - this.#time[pick]!;
    if (!(dt >= 1)) return null;
    // Counters restart from 0 when the process restarts; a negative delta is no rate.
    const rate = (cur: number, idx: number) =>
      Math.max(0, (cur - this.#counters[pick * 4 + idx]!) / dt);
    return {
      window_s: dt,
      received_per_s: rate(counters.received, 0),
      answered_per_s: rate(counters.answered, 1),
      kod_per_s: rate(counters.kod_rate + counters.kod_deny, 2),
      dropped_per_s: rate(droppedOf(counters), 3),
    };
  }

  /**
   * Bucket means of the system and per-source offset and jitter over the
   * `spanS` seconds before `now`, for the chart.
   */
  series(now: number, spanS = HISTORY_SPAN_S, buckets = 360): ChartSeries {
    const start = now - spanS;
    const width = spanS / buckets;
    const mean = (arr: Float64Array | Float32Array): (number | null)[] => {
      const sum = new Float64Array(buckets);
      const n = new Uint32Array(buckets);
      for (let k = 0; k < this.#count; k++) {
        const j = this.#at(k);
        const t = this.#time[j]!;
        const v = arr[j]!;
        if (t < start || t > now || Number.isNaN(v)) continue;
        const b = Math.min(buckets - 1, Math.floor((t - start) / width));
        sum[b]! += v;
        n[b]!++;
      }
      return Array.from(sum, (s, b) => (n[b]! > 0 ? s / n[b]! : null));
    };
    return {
      start,
      end: now,
      buckets,
      system: { label: "system", offset_s: mean(this.#sysOffset), jitter_s: mean(this.#sysJitter) },
      sources: this.#slots
        .filter((s) => s.lastSeen >= start)
        .map((s) => ({ label: s.address, offset_s: mean(s.offset), jitter_s: mean(s.jitter) })),
    };
  }
}
