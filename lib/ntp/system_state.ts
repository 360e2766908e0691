/**
 * The system variables a server answers with (RFC 5905 §11: leap, stratum,
 * precision, root delay/dispersion, refid, reference time) plus the
 * virtual clock correction used when the system clock is not controlled.
 *
 * Server workers read them from a SharedArrayBuffer under a sequence lock,
 * so the engine can publish new values without messages and the packet
 * path never waits.
 */
import { Leap } from "./packet.ts";
import { smearRamp } from "./leap.ts";

/** Stratum of an unsynchronised server; sent on the wire as 0. */
export const MAXSTRAT = 16;

/** RFC 5905 frequency tolerance (15 ppm), used to grow root dispersion with age. */
export const PHI = 15e-6;

export interface SystemState {
  leap: number;
  stratum: number;
  /** Reference ID as a u32. */
  refid: number;
  /** Reference time as Unix seconds (0 when never synchronised). */
  refTime: number;
  rootDelay: number;
  rootDisp: number;
  /** log2 seconds. */
  precision: number;
  /**
   * Seconds to add to the system clock to get served time: the virtual
   * correction with `clock.control = false`, 0 when we steer the kernel.
   * `correction(t) = corrOffset + corrFreq * (t - corrEpoch)`.
   */
  corrOffset: number;
  corrFreq: number;
  corrEpoch: number;
  /**
   * The server-side leap smear (`server.leap_smear_s`, lib/ntp/leap.ts
   * `smearRamp`), 0 = none: while `smearTo` > 0, served time is the
   * corrected time plus `smearCorrection`. `smearFrom`/`smearTo` bound the
   * ramp on the elapsed time scale (the clock as if the leap had not been
   * carried out), `smearChange` is +1 (insert) or −1 (delete), and
   * `smearStepped` is 1 once the clock carried the leap out (it reads UTC,
   * `smearChange` seconds behind the elapsed scale), else 0. Only replies to
   * clients carry it: our own packets (peers) stay on UTC.
   */
  smearFrom: number;
  smearTo: number;
  smearChange: number;
  smearStepped: number;
}

/**
 * The one rule for "synchronised" (RFC 5905 §7.3): a leap indicator other
 * than 3 (alarm) and a stratum of 1..15. Stratum 0 is "unspecified" (or a
 * kiss) and 16 is MAXSTRAT, so a server following a stratum-15 upstream
 * (stratum 16) is unsynchronised whatever its leap indicator says. The
 * wire, `/status`, the status page, `/healthz`, `/metrics`, `peers`,
 * `tracking`, the anycast gate and the reply checks all decide with this.
 */
export function isSynchronised(s: { leap: number; stratum: number }): boolean {
  return s.leap !== Leap.unsync && s.stratum > 0 && s.stratum < MAXSTRAT;
}

/** The state of a server with no time to serve: leap 3, stratum 16, refid 0, never updated. */
export function unsyncedState(precision: number): SystemState {
  return {
    leap: Leap.unsync,
    stratum: MAXSTRAT,
    refid: 0,
    refTime: 0,
    rootDelay: 0,
    rootDisp: 0,
    precision,
    corrOffset: 0,
    corrFreq: 0,
    corrEpoch: 0,
    smearFrom: 0,
    smearTo: 0,
    smearChange: 0,
    smearStepped: 0,
  };
}

/** Correction in seconds to add to raw system time `t` (Unix seconds). */
export function correctionAt(s: SystemState, t: number): number {
  return s.corrOffset + s.corrFreq * (t - s.corrEpoch);
}

/**
 * Seconds of leap smear to add to corrected (UTC) time `u` while a smear is
 * published (`smearTo` > 0): back to the elapsed scale (`+ smearChange`
 * once the clock stepped), then the ramp. Continuous across the step: the
 * clock's second back is given back here.
 */
export function smearCorrection(s: SystemState, u: number): number {
  const shift = s.smearStepped ? s.smearChange : 0;
  return shift + smearRamp(s.smearFrom, s.smearTo, s.smearChange, u + shift);
}

/**
 * Seconds to add to raw system time `t` to get the time served to clients:
 * the correction, plus the leap smear while one is published (one
 * comparison per packet otherwise).
 */
export function servedCorrectionAt(s: SystemState, t: number): number {
  const c = s.corrOffset + s.corrFreq * (t - s.corrEpoch);
  return s.smearTo > 0 ? c + smearCorrection(s, t + c) : c;
}

const FIELDS = [
  "leap",
  "stratum",
  "refid",
  "refTime",
  "rootDelay",
  "rootDisp",
  "precision",
  "corrOffset",
  "corrFreq",
  "corrEpoch",
  "smearFrom",
  "smearTo",
  "smearChange",
  "smearStepped",
] as const;

/** Bytes of shared memory a `SharedSystemState` needs. */
const SHARED_STATE_BYTES = 8 + FIELDS.length * 8;

/** A SystemState in shared memory: one writer (the main thread), many readers. */
export class SharedSystemState {
  readonly buffer: SharedArrayBuffer;
  readonly #seq: Int32Array;
  readonly #values: Float64Array;

  constructor(buffer = new SharedArrayBuffer(SHARED_STATE_BYTES)) {
    this.buffer = buffer;
    this.#seq = new Int32Array(buffer, 0, 2);
    this.#values = new Float64Array(buffer, 8, FIELDS.length);
  }

  write(s: SystemState): void {
    Atomics.add(this.#seq, 0, 1); // odd: write in progress
    FIELDS.forEach((k, i) => this.#values[i] = s[k]);
    Atomics.add(this.#seq, 0, 1);
  }

  /** Copies the current values into `into`; returns false if there never was a write. */
  read(into: SystemState): boolean {
    for (;;) {
      const before = Atomics.load(this.#seq, 0);
      if (before === 0) return false;
      if (before & 1) continue;
      FIELDS.forEach((k, i) => into[k] = this.#values[i]!);
      if (Atomics.load(this.#seq, 0) === before) return true;
    }
  }

  /** Sequence number; changes on every write, so readers can skip unchanged state. */
  get version(): number {
    return Atomics.load(this.#seq, 0);
  }
}
