/**
 * NTP time values (RFC 5905 §6): 64-bit timestamps that wrap at the era
 * boundary, and signed durations in seconds.
 *
 * A timestamp is a `bigint` holding the unsigned 32.32 fixed-point value
 * exactly as it travels on the wire. Differences are taken modulo 2^64 and
 * read as signed, so arithmetic stays correct across the 2036 era rollover
 * as long as the two instants are within 68 years of each other.
 */

/** Seconds from the NTP epoch (1900) to the Unix epoch (1970). */
export const NTP_UNIX_OFFSET = 2_208_988_800;

/** An era-relative 64-bit NTP timestamp (unsigned 32.32 fixed point). */
export type NtpTimestamp = bigint;

const TWO_32 = 4294967296;
const MASK_64 = (1n << 64n) - 1n;

/** Builds a timestamp from Unix seconds and nanoseconds. */
export function fromUnix(sec: number, nsec: number): NtpTimestamp {
  const s = (sec + NTP_UNIX_OFFSET) >>> 0;
  const frac = Math.floor((nsec / 1e9) * TWO_32) >>> 0;
  return (BigInt(s) << 32n) | BigInt(frac);
}

/** Builds a timestamp from fractional Unix seconds (loses sub-µs precision; for tests and display). */
export function fromUnixSeconds(t: number): NtpTimestamp {
  const sec = Math.floor(t);
  return fromUnix(sec, (t - sec) * 1e9);
}

/**
 * Converts to Unix seconds, placing the timestamp in the era closest to
 * `pivot` (Unix seconds), so a 2036 rollover does not jump 136 years.
 */
export function toUnixSeconds(ts: NtpTimestamp, pivot: number): number {
  const pivotTs = fromUnixSeconds(pivot);
  return pivot + diff(ts, pivotTs);
}

/** Signed difference `a - b` in seconds, era-safe. */
export function diff(a: NtpTimestamp, b: NtpTimestamp): number {
  const d = BigInt.asIntN(64, a - b);
  // Split so the integer part converts exactly before scaling.
  const whole = Number(d >> 32n);
  const frac = Number(d & 0xffffffffn);
  return whole + frac / TWO_32;
}

/** `ts + seconds`, wrapping at the era boundary. */
export function addSeconds(ts: NtpTimestamp, seconds: number): NtpTimestamp {
  const whole = Math.floor(seconds);
  const frac = Math.round((seconds - whole) * TWO_32);
  return (ts + (BigInt(whole) << 32n) + BigInt(frac)) & MASK_64;
}

/** Reads a 64-bit timestamp at `offset`. */
export function readTimestamp(view: DataView, offset: number): NtpTimestamp {
  return (BigInt(view.getUint32(offset)) << 32n) | BigInt(view.getUint32(offset + 4));
}

/** Writes a 64-bit timestamp at `offset`. */
export function writeTimestamp(view: DataView, offset: number, ts: NtpTimestamp): void {
  view.setUint32(offset, Number(ts >> 32n));
  view.setUint32(offset + 4, Number(ts & 0xffffffffn));
}

/**
 * Writes Unix time `sec`+`nsec`, corrected by `correction` seconds, as an
 * NTP timestamp without allocating: this runs once or twice per packet on
 * the server path.
 */
export function writeUnixTime(
  view: DataView,
  offset: number,
  sec: number,
  nsec: number,
  correction: number,
): void {
  let f = nsec * 1e-9 + correction;
  const carry = Math.floor(f);
  f -= carry;
  let frac = Math.floor(f * TWO_32);
  let s = sec + carry + NTP_UNIX_OFFSET;
  if (frac >= TWO_32) { // rounding at the top of the second
    frac -= TWO_32;
    s += 1;
  }
  view.setUint32(offset, s >>> 0);
  view.setUint32(offset + 4, frac >>> 0);
}

/** Reads an NTP short (16.16 unsigned) value in seconds. */
export function readShort(view: DataView, offset: number): number {
  return view.getUint32(offset) / 65536;
}

/** Encodes seconds as an NTP short (16.16), saturating at its range. */
export function toShort(seconds: number): number {
  if (!(seconds > 0)) return 0;
  const v = Math.round(seconds * 65536);
  return v > 0xffffffff ? 0xffffffff : v;
}
