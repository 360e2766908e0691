/**
 * The clock seam (chrony's local.c driver table, ntpd-rs's NtpClock
 * trait). The engine never reads a clock: it is handed raw timestamps and
 * expresses what it wants as a `Correction` model, which a `Clock`
 * carries out.
 *
 * A correction says how much to add to raw system time to get true time:
 * `corr(t) = offset + freq * (t - epoch)`. The virtual clock (chrony's
 * sys_null, `clock.control = false`) keeps that model and the server
 * applies it to every timestamp it sends; a kernel clock (lib/io/
 * clock_linux.ts) turns the model into adjtimex calls instead, after which
 * the raw timestamps it delivers already include the correction.
 */

/** `corr(t) = offset + freq * (t - epoch)`, seconds, with `t` raw Unix seconds. */
export interface Correction {
  offset: number;
  /** Dimensionless (1e-6 = 1 ppm). */
  freq: number;
  epoch: number;
}

/** The identity correction. */
export function zeroCorrection(epoch = 0): Correction {
  return { offset: 0, freq: 0, epoch };
}

/** Value of a correction model at raw time `t`. */
export function correctionValue(c: Correction, t: number): number {
  return c.offset + c.freq * (t - c.epoch);
}

/** What the engine asks of a clock. */
export interface Clock {
  /**
   * True when the clock steers the kernel, so timestamps already include
   * the correction; false for a virtual clock whose correction the engine
   * and the server add to raw timestamps.
   */
  readonly steersKernel: boolean;
  /**
   * Installs a new correction model at raw time `now`. `step` is the
   * part that is a step (a discontinuity the clock may apply at once),
   * 0 for an ordinary update (slewed).
   */
  apply(model: Correction, now: number, step: number): void;
  /** Leap indicator to arm (RFC 5905 values: 0 none, 1 insert, 2 delete, 3 unsync). */
  setLeap(leap: number): void;
  /** Synchronisation status and error estimates, seconds (the kernel's STA_UNSYNC, maxerror, esterror). */
  setSync(synced: boolean, maxError: number, estError: number): void;
}

/**
 * The null driver: keeps the correction in memory and never touches the
 * operating system. `model` is published to the server workers through
 * `SystemState.corrOffset/corrFreq/corrEpoch`.
 */
export class VirtualClock implements Clock {
  readonly steersKernel = false;
  model: Correction;
  leap = 3;
  synced = false;
  steps = 0;

  constructor(initial: Correction = zeroCorrection()) {
    this.model = { ...initial };
  }

  apply(model: Correction, _now: number, step: number): void {
    this.model = { ...model };
    if (step !== 0) this.steps++;
  }

  setLeap(leap: number): void {
    this.leap = leap;
  }

  setSync(synced: boolean): void {
    this.synced = synced;
  }
}
