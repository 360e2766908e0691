/**
 * Clock discipline: per-source regression (chrony's sourcestats.c) and
 * the system step/panic logic (chrony's reference.c).
 *
 * Why regression and not the RFC 5905 PLL/FLL: the PLL's time constant
 * starts at 2^4 × 16 s, so it needs tens of minutes to remove a 100 ppm
 * frequency error and cannot meet a one-minute sync target without a
 * step; its fixed gains also pass much of each noisy sample on. A weighted
 * line through a source's recent offsets of the *uncorrected* clock gives
 * offset and frequency together after a few samples, averages noise over
 * the whole window, and, because points are kept in the raw clock's frame,
 * stays valid when the correction changes. A runs test on the residuals
 * shortens the window when the frequency wanders. Samples are weighted by
 * their delay above the minimum, the continuous form of the RFC clock
 * filter's minimum-delay rule.
 */
import { type Correction, correctionValue } from "./clock.ts";

/** Most points kept per source. */
export const MAX_POINTS = 64;
/** Fewest points the runs test may shorten the window to. */
export const MIN_POINTS = 4;

/** A least-squares fit y = a + b·(t − tMean) and its quality. */
export interface LineFit {
  tMean: number;
  a: number;
  b: number;
  /** Weighted RMS of the residuals, seconds. */
  rms: number;
  /** Standard error of `b`. */
  bErr: number;
  residuals: number[];
}

/** Weighted least squares through `points` (weights default to 1). */
export function fitLine(points: readonly { t: number; y: number; w?: number }[]): LineFit {
  let sw = 0, st = 0, sy = 0;
  for (const p of points) {
    const w = p.w ?? 1;
    sw += w;
    st += w * p.t;
    sy += w * p.y;
  }
  const tMean = st / sw, yMean = sy / sw;
  let stt = 0, sty = 0;
  for (const p of points) {
    const w = p.w ?? 1;
    stt += w * (p.t - tMean) ** 2;
    sty += w * (p.t - tMean) * (p.y - yMean);
  }
  const b = stt > 0 ? sty / stt : 0;
  const residuals = points.map((p) => p.y - (yMean + b * (p.t - tMean)));
  let sse = 0;
  points.forEach((p, i) => sse += (p.w ?? 1) * residuals[i]! ** 2);
  const n = points.length;
  const rms = Math.sqrt(sse / sw);
  const bErr = n > 2 && stt > 0 ? Math.sqrt((sse / (n - 2)) / stt) : Infinity;
  return { tMean, a: yMean, b, rms, bErr, residuals };
}

/**
 * Wald–Wolfowitz runs test on residual signs: too few runs means the
 * residuals are not random (the line no longer fits the older points).
 */
export function runsOk(residuals: readonly number[]): boolean {
  let pos = 0, neg = 0, runs = 0, last = 0;
  for (const r of residuals) {
    const s = r >= 0 ? 1 : -1;
    if (s > 0) pos++;
    else neg++;
    if (s !== last) runs++;
    last = s;
  }
  const n = pos + neg;
  if (pos === 0 || neg === 0) return n < 6;
  const mu = 1 + (2 * pos * neg) / n;
  const variance = ((mu - 1) * (mu - 2)) / (n - 1);
  return runs >= mu - 2.33 * Math.sqrt(variance);
}

/** Largest frequency a regression may report, dimensionless (±500 ppm, like chrony's maxdrift default). */
export const MAX_FREQ = 500e-6;

/** One source's offset history (raw frame) and its regression. */
export class SourceStats {
  points: { t: number; y: number; delay: number }[] = [];
  fit: LineFit | null = null;
  #w: number[] = [];

  /** Adds a sample: `y` is source minus raw time at raw time `t`. */
  add(t: number, y: number, delay: number): void {
    this.points.push({ t, y, delay });
    if (this.points.length > MAX_POINTS) this.points.shift();
    this.#refit();
  }

  #refit(): void {
    for (;;) {
      const ds = this.points.map((p) => p.delay);
      const dmin = Math.min(...ds);
      const ex = ds.map((d) => d - dmin).sort((a, b) => a - b);
      // Noise floor: the median excess delay, at least 1 µs.
      const s0 = Math.max(1e-6, ex[ex.length >> 1] ?? 0);
      this.#w = this.points.map((p) => 1 / (s0 * s0 + ((p.delay - dmin) / 2) ** 2));
      const pts = this.points.map((p, i) => ({ t: p.t, y: p.y, w: this.#w[i]! }));
      const f = fitLine(pts);
      if (this.points.length > MIN_POINTS && !runsOk(f.residuals)) {
        this.points.splice(0, Math.max(1, this.points.length >> 2));
        continue;
      }
      this.fit = f;
      return;
    }
  }

  /** Whether the window is long enough to estimate a frequency. */
  get hasFreq(): boolean {
    return this.points.length >= 3 && this.fit !== null && Number.isFinite(this.fit.bErr);
  }

  /**
   * Predicted offset (raw frame) at raw time `t`, with `freq` the source's
   * frequency estimate or `fallbackFreq` when the window is too short.
   */
  predict(t: number, fallbackFreq: number): { y: number; freq: number } | null {
    const f = this.fit;
    if (!f) return null;
    if (this.hasFreq) {
      // A few start-up points over seconds can fit thousands of ppm (a
      // 3-point iburst fit gave −5860 ppm): no real oscillator is that far off.
      const b = Math.max(-MAX_FREQ, Math.min(MAX_FREQ, f.b));
      return { y: f.a + b * (t - f.tMean), freq: b };
    }
    // Too few points for a frequency: weighted mean offset, carried forward
    // with the fallback frequency.
    return { y: f.a + fallbackFreq * (t - f.tMean), freq: fallbackFreq };
  }

  clear(): void {
    this.points = [];
    this.fit = null;
  }

  /** Moves every stored offset by `dy` seconds (a leap second stepped the source's time scale). */
  shift(dy: number): void {
    for (const p of this.points) p.y += dy;
    if (this.points.length > 0) this.#refit();
  }
}

export interface DisciplineOptions {
  /** Seconds; 0 disables stepping. */
  stepThreshold: number;
  /** Seconds; 0 disables the check. */
  panicThreshold: number;
  /** Seconds a step-sized offset must persist before it is stepped. */
  stepout: number;
  /** Frequency from the driftfile, dimensionless (0 when none). */
  initialFreq: number;
}

/** What one update did. */
export type UpdateResult =
  | { kind: "slew"; offset: number }
  | { kind: "step"; offset: number }
  | { kind: "spike"; offset: number }
  | { kind: "panic"; offset: number };

/** System-level discipline: installs the combined estimate as the correction, within thresholds. */
export class Discipline {
  model: Correction;
  updates = 0;
  /** Raw time of the last update. */
  lastUpdate = 0;
  /** Standard error of the frequency (dimensionless), for `skew`. */
  skew = 1e-5;
  #spikeSince: number | null = null;

  constructor(readonly opts: DisciplineOptions, now: number) {
    this.model = { offset: 0, freq: opts.initialFreq, epoch: now };
  }

  /** Steps the correction by `dy` seconds (a leap second carried out on the virtual clock). */
  shift(dy: number): void {
    this.model = { ...this.model, offset: this.model.offset + dy };
  }

  /** Frequency correction in force, dimensionless. */
  get freq(): number {
    return this.model.freq;
  }

  /**
   * Installs the estimate "true minus raw time is `y` at raw time `now`,
   * changing at `freq`", unless its offset against the current correction
   * is panic-sized, or step-sized and not yet persistent.
   */
  update(now: number, y: number, freq: number, skew: number): UpdateResult {
    const offset = y - correctionValue(this.model, now);
    const abs = Math.abs(offset);
    if (this.opts.panicThreshold > 0 && abs > this.opts.panicThreshold) {
      return { kind: "panic", offset };
    }
    let kind: "slew" | "step" = "slew";
    if (this.opts.stepThreshold > 0 && abs > this.opts.stepThreshold) {
      this.#spikeSince ??= now;
      if (this.updates > 0 && now - this.#spikeSince < this.opts.stepout) {
        return { kind: "spike", offset };
      }
      kind = "step";
    }
    this.#spikeSince = null;
    this.model = { offset: y, freq, epoch: now };
    this.skew = skew;
    this.updates++;
    this.lastUpdate = now;
    return { kind, offset };
  }
}

/** One source's frequency (s/s) and the standard error of its regression slope. */
export interface FrequencyEstimate {
  freq: number;
  err: number;
}

/**
 * Combines the sources' frequency estimates, each weighted by 1/err² (as
 * chrony weights by 1/freq_sd²), so a short start-up fit cannot outvote
 * long, settled ones. `skew` is the smallest error. Null without estimates.
 */
export function combineFrequencies(
  estimates: FrequencyEstimate[],
): { freq: number; skew: number } | null {
  if (estimates.length === 0) return null;
  let w = 0, sum = 0, skew = Infinity;
  for (const e of estimates) {
    const wi = 1 / Math.max(e.err, 1e-12) ** 2;
    w += wi;
    sum += wi * e.freq;
    skew = Math.min(skew, e.err);
  }
  return { freq: sum / w, skew };
}
