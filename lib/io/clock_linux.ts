/**
 * The real Clock: drives the kernel clock with `adjtimex(2)` through FFI
 * (needs CAP_SYS_TIME). Frequency goes to ADJ_FREQUENCY, small offsets to
 * ADJ_OFFSET_SINGLESHOT (the kernel slews them at 500 ppm), steps to
 * ADJ_SETOFFSET. `readKernelClock()` only reads (modes = 0) and is what the
 * tests exercise: a test never adjusts this machine's clock.
 */
import { type Clock, type Correction, correctionValue } from "../engine/clock.ts";

// struct timex on 64-bit Linux: 208 bytes; field offsets below.
const TIMEX_SIZE = 208;
const OFF = {
  modes: 0,
  offset: 8,
  freq: 16,
  maxerror: 24,
  esterror: 32,
  status: 40,
  timeSec: 72,
  timeUsec: 80,
  tick: 88,
} as const;
const ADJ_OFFSET_SINGLESHOT = 0x0001 | 0x8000;
const ADJ_FREQUENCY = 0x0002;
const ADJ_MAXERROR = 0x0004;
const ADJ_ESTERROR = 0x0008;
const ADJ_STATUS = 0x0010;
const ADJ_SETOFFSET = 0x0100;
const ADJ_NANO = 0x2000;
const STA_UNSYNC = 0x0040;
const STA_INS = 0x0010;
const STA_DEL = 0x0020;

/** What a read-only adjtimex call returns. */
export interface KernelClockState {
  /** adjtimex return value: TIME_OK (0) … TIME_ERROR (5). */
  state: number;
  /** Kernel frequency offset, ppm. */
  freqPpm: number;
  status: number;
  maxErrorUs: number;
  estErrorUs: number;
  synced: boolean;
}

type Lib = Deno.DynamicLibrary<{ adjtimex: { parameters: ["buffer"]; result: "i32" } }>;
let lib: Lib | null = null;

function open(): Lib {
  return lib ??= Deno.dlopen("libc.so.6", { adjtimex: { parameters: ["buffer"], result: "i32" } });
}

function call(modes: number, fill?: (v: DataView) => void): { rc: number; view: DataView } {
  const buf = new Uint8Array(TIMEX_SIZE);
  const view = new DataView(buf.buffer);
  view.setUint32(OFF.modes, modes, true);
  fill?.(view);
  const rc = open().symbols.adjtimex(buf);
  if (rc < 0) throw new Error(`adjtimex failed (modes 0x${modes.toString(16)}): need CAP_SYS_TIME`);
  return { rc, view };
}

/** Reads the kernel clock state without changing anything (modes = 0). */
export function readKernelClock(): KernelClockState {
  const { rc, view } = call(0);
  const status = view.getInt32(OFF.status, true);
  return {
    state: rc,
    freqPpm: Number(view.getBigInt64(OFF.freq, true)) / 65536,
    status,
    maxErrorUs: Number(view.getBigInt64(OFF.maxerror, true)),
    estErrorUs: Number(view.getBigInt64(OFF.esterror, true)),
    synced: (status & STA_UNSYNC) === 0,
  };
}

/** A Clock that steers the kernel. Only for `clock.control = true`. */
export class LinuxClock implements Clock {
  readonly steersKernel = true;
  #model: Correction | null = null;
  #status = 0;

  apply(model: Correction, now: number, step: number): void {
    const prev = this.#model;
    this.#model = { ...model };
    const delta = prev ? correctionValue(model, now) - correctionValue(prev, now) : 0;
    const freq = BigInt(Math.round(model.freq * 1e6 * 65536));
    if (step !== 0) {
      call(ADJ_SETOFFSET | ADJ_NANO, (v) => {
        const sec = Math.floor(delta);
        v.setBigInt64(OFF.timeSec, BigInt(sec), true);
        v.setBigInt64(OFF.timeUsec, BigInt(Math.round((delta - sec) * 1e9)), true);
      });
      call(ADJ_FREQUENCY, (v) => v.setBigInt64(OFF.freq, freq, true));
      return;
    }
    call(ADJ_FREQUENCY, (v) => v.setBigInt64(OFF.freq, freq, true));
    if (delta !== 0) {
      const us = Math.max(-0.5, Math.min(0.5, delta)) * 1e6;
      call(ADJ_OFFSET_SINGLESHOT, (v) => v.setBigInt64(OFF.offset, BigInt(Math.round(us)), true));
    }
  }

  setLeap(leap: number): void {
    const bits = leap === 1 ? STA_INS : leap === 2 ? STA_DEL : 0;
    this.#status = (this.#status & ~(STA_INS | STA_DEL)) | bits;
    call(ADJ_STATUS, (v) => v.setInt32(OFF.status, this.#status, true));
  }

  setSync(synced: boolean, maxError: number, estError: number): void {
    this.#status = synced ? this.#status & ~STA_UNSYNC : this.#status | STA_UNSYNC;
    call(ADJ_STATUS | ADJ_MAXERROR | ADJ_ESTERROR, (v) => {
      v.setInt32(OFF.status, this.#status, true);
      v.setBigInt64(OFF.maxerror, BigInt(Math.round(maxError * 1e6)), true);
      v.setBigInt64(OFF.esterror, BigInt(Math.round(estError * 1e6)), true);
    });
  }
}
