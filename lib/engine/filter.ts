/**
 * The clock filter (RFC 5905 §10, A.5.2): an 8-stage shift register of
 * samples from one source; the minimum-delay sample is the best estimate,
 * because queueing only ever adds delay and asymmetric queueing is what
 * corrupts an offset.
 *
 * Samples hold `y`, the source's offset expressed against the *raw* clock
 * (measured offset plus the correction in force when it was measured), so
 * stored samples stay valid when the engine changes its correction. Offsets
 * against the current correction ("residuals") are computed on demand.
 */
import { PHI } from "../ntp/system_state.ts";

/** Stages in the shift register. */
export const NSTAGE = 8;
/** Dispersion of an empty stage, seconds (RFC 5905 MAXDISP). */
export const MAXDISP = 16;

/** One measurement. */
export interface Sample {
  /** Raw time of the measurement (the receive time), Unix seconds. */
  t: number;
  /** Source time minus raw time, seconds. */
  y: number;
  /** Round-trip delay, seconds. */
  delay: number;
  /** Dispersion at time `t`, seconds. */
  disp: number;
}

/** The filter's answer: the chosen sample plus dispersion and jitter over all stages. */
export interface FilterOutput {
  sample: Sample;
  /** Residual of the chosen sample against the current correction. */
  offset: number;
  delay: number;
  /** Filter dispersion at `now`. */
  disp: number;
  jitter: number;
}

/** Maps a sample to its offset against the current correction. */
export type Residual = (s: Sample) => number;

/** One source's clock filter. */
export class ClockFilter {
  /** Newest first. */
  stages: Sample[] = [];
  /** Time of the last sample handed on (the RFC's "prime directive" guard). */
  lastUsed = -Infinity;
  /** Output for the last accepted update, null before the first. */
  output: FilterOutput | null = null;

  /**
   * Adds `s`. Returns the new output when the minimum-delay sample is newer
   * than the one last handed on (a sample is used at most once, and never
   * one older than the last used), else null.
   */
  add(s: Sample, residual: Residual, precision: number): FilterOutput | null {
    this.stages.unshift(s);
    if (this.stages.length > NSTAGE) this.stages.length = NSTAGE;
    const out = this.evaluate(s.t, residual, precision);
    if (!out || out.sample.t <= this.lastUsed) return null;
    this.lastUsed = out.sample.t;
    this.output = out;
    return out;
  }

  /** Output at `now` without consuming anything (for reports). */
  evaluate(now: number, residual: Residual, precision: number): FilterOutput | null {
    if (this.stages.length === 0) return null;
    const sorted = [...this.stages].sort((a, b) => a.delay - b.delay);
    const best = sorted[0]!;
    const off0 = residual(best);
    let disp = 0;
    let sq = 0;
    // Unlike RFC 5905, empty stages add no MAXDISP: a source is usable from
    // its first sample instead of its fourth (the regression weighs samples).
    for (let i = 0; i < sorted.length; i++) {
      const st = sorted[i]!;
      disp += (st.disp + PHI * (now - st.t)) / 2 ** (i + 1);
      if (i > 0) sq += (residual(st) - off0) ** 2;
    }
    const n = sorted.length;
    const jitter = Math.max(n > 1 ? Math.sqrt(sq / (n - 1)) : 0, 2 ** precision);
    return { sample: best, offset: off0, delay: best.delay, disp, jitter };
  }

  /** Moves every stored sample's offset by `dy` seconds (a leap second stepped the source's time scale). */
  shift(dy: number): void {
    for (const st of this.stages) st.y += dy;
  }

  /** Forgets every sample (after a clock step, the stored offsets are meaningless). */
  clear(): void {
    this.stages = [];
    this.lastUsed = -Infinity;
    this.output = null;
  }
}
