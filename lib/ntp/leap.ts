/**
 * Leap seconds: when one may be announced and armed, and the IERS/NIST
 * `leap-seconds.list` file. Pure: every function takes the time it needs.
 *
 * The rule (chrony's): a leap second is announced (LI 1 or 2 in replies
 * and peer packets) and armed (the kernel's STA_INS/STA_DEL) only on the
 * last day of June or December, UTC, of the served time, and only when
 * the majority of the selectable sources say so — or the leap file, which
 * overrides the sources for the days it covers. Any other day: LI 0 and
 * the kernel flag cleared. An upstream that says LI 1 on 29 November is
 * ignored: armed, Linux would insert a second at the next UTC midnight.
 */
import { createHash } from "node:crypto";
import { Leap } from "./packet.ts";

/** Seconds from the NTP era 0 epoch (1900) to the Unix epoch (1970). */
export const NTP_UNIX_OFFSET = 2_208_988_800;
const DAY = 86_400;

/** True when Unix time `t` (seconds, UTC) falls on 30 June or 31 December. */
export function isLeapDay(t: number): boolean {
  const d = new Date(Math.floor(t / DAY) * DAY * 1000);
  const m = d.getUTCMonth(), day = d.getUTCDate();
  return (m === 5 && day === 30) || (m === 11 && day === 31);
}

/** The UTC midnight (Unix seconds) that ends the day of `t`: where a leap of that day happens. */
export function endOfDay(t: number): number {
  return (Math.floor(t / DAY) + 1) * DAY;
}

/**
 * The leap indicator that may go on the wire at served time `t`: an
 * insert or delete only on a leap day (30 June, 31 December), else 0;
 * 0 and 3 pass unchanged.
 */
export function leapOnDay(leap: number, t: number): number {
  if (leap !== Leap.insert && leap !== Leap.delete) return leap;
  return isLeapDay(t) ? leap : Leap.none;
}

/** The leap indicator most of `leaps` (the selectable sources') announce; ties and none: 0. */
export function majorityLeapOf(leaps: readonly number[]): number {
  let ins = 0, del = 0;
  for (const l of leaps) {
    if (l === Leap.insert) ins++;
    else if (l === Leap.delete) del++;
  }
  if (ins * 2 > leaps.length) return Leap.insert;
  if (del * 2 > leaps.length) return Leap.delete;
  return Leap.none;
}

/** One leap second of a leap file. */
export interface LeapEntry {
  /** Unix time of the midnight at which the new TAI−UTC offset starts (the end of the leap day). */
  at: number;
  /** +1: a second inserted (23:59:60), −1: one deleted. */
  change: 1 | -1;
  /** TAI − UTC from `at` on, seconds. */
  tai: number;
}

/** A parsed `leap-seconds.list`. */
export interface LeapTable {
  /** Where it was read from (for messages). */
  name: string;
  leaps: LeapEntry[];
  /** Unix time after which the file must not be trusted (its `#@` line). */
  expires: number;
  /** True when the file had a `#h` line and the SHA-1 matched. */
  hashVerified: boolean;
}

/**
 * The leap indicator to announce and arm at served time `t`: 0 unless `t`
 * is on a leap day; on a leap day the leap file decides when it covers the
 * day (its expiry is after the day's end): a leap it lists for that
 * midnight is announced whatever the sources say, and sources that
 * announce one it does not list are ignored. Without a file, or past its
 * expiry, `vote` (the majority of the selectable sources) decides.
 */
export function decideLeap(t: number, vote: number, table: LeapTable | null): number {
  if (!isLeapDay(t)) return Leap.none;
  const midnight = endOfDay(t);
  if (table && midnight <= table.expires) {
    const e = table.leaps.find((l) => l.at === midnight);
    return e ? (e.change > 0 ? Leap.insert : Leap.delete) : Leap.none;
  }
  return vote === Leap.insert || vote === Leap.delete ? vote : Leap.none;
}

/** True when the table's expiry is at or before Unix time `t`. */
export function leapTableExpired(table: LeapTable, t: number): boolean {
  return table.expires <= t;
}

/** `YYYY-MM-DD HH:MM:SS UTC` of Unix time `t`. */
export function utcTime(t: number): string {
  return `${new Date(Math.floor(t) * 1000).toISOString().slice(0, 19).replace("T", " ")} UTC`;
}

/** YYYY-MM-DD of Unix time `t`, UTC. */
export function utcDate(t: number): string {
  return new Date(t * 1000).toISOString().slice(0, 10);
}

/**
 * Parses the IERS/NIST `leap-seconds.list` format: data lines
 * `NTP-SECONDS TAI-UTC [# comment]` in increasing order, `#@ NTP-SECONDS`
 * the expiry (required), `#$ NTP-SECONDS` the last update, `#h` five hex
 * words of SHA-1 (optional; verified when present) over the digits of the
 * `#$`, `#@` and data lines; other `#` lines are comments. Returns the
 * table or one error line `NAME:LINE: message`.
 */
export function parseLeapFile(text: string, name: string): LeapTable | string {
  const lines = text.split(/\r?\n/);
  const leaps: LeapEntry[] = [];
  let expires: number | null = null;
  let hashLine = 0;
  let hashWords: number[] | null = null;
  let digits = "";
  let prev: { at: number; tai: number } | null = null;
  const err = (i: number, m: string) => `${name}:${i + 1}: ${m}`;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === "") continue;
    if (line.startsWith("#$") || line.startsWith("#@")) {
      const v = line.slice(2).trim();
      if (!/^\d+$/.test(v)) return err(i, `"${line.slice(0, 2)}" needs NTP seconds, got "${v}"`);
      digits += v;
      if (line[1] === "@") expires = Number(v) - NTP_UNIX_OFFSET;
      continue;
    }
    if (line.startsWith("#h")) {
      const words = line.slice(2).trim().split(/\s+/);
      if (words.length !== 5 || !words.every((w) => /^[0-9a-fA-F]{1,8}$/.test(w))) {
        return err(i, "the #h line needs five hex words (SHA-1)");
      }
      hashLine = i;
      hashWords = words.map((w) => parseInt(w, 16) >>> 0);
      continue;
    }
    if (line.startsWith("#")) continue;
    const data = line.split("#")[0]!.trim();
    const f = data.split(/\s+/);
    if (f.length !== 2 || !/^\d+$/.test(f[0]!) || !/^\d+$/.test(f[1]!)) {
      return err(i, `expected "NTP-SECONDS TAI-UTC", got "${data}"`);
    }
    digits += f[0]! + f[1]!;
    const at = Number(f[0]) - NTP_UNIX_OFFSET;
    const tai = Number(f[1]);
    if (at % DAY !== 0) return err(i, `${f[0]} is not a UTC midnight`);
    if (prev) {
      if (at <= prev.at) return err(i, `${f[0]} is not after the line before`);
      const change = tai - prev.tai;
      if (change !== 1 && change !== -1) {
        return err(i, `TAI-UTC changes by ${change} s (a leap is +1 or -1)`);
      }
      leaps.push({ at, change, tai });
    }
    prev = { at, tai };
  }
  if (!prev) return `${name}:1: no leap second lines`;
  if (expires === null) return `${name}:1: no "#@" expiry line`;
  if (hashWords) {
    const sum = createHash("sha1").update(digits, "latin1").digest();
    for (let k = 0; k < 5; k++) {
      if (sum.readUInt32BE(4 * k) !== hashWords[k]) {
        return err(hashLine, "SHA-1 of the file does not match its #h line (corrupt or edited)");
      }
    }
  }
  return { name, leaps, expires, hashVerified: hashWords !== null };
}

/**
 * A linear leap smear (Google's 24 h smear, chrony's `smoothtime ...
 * leaponly` idea) from `from` to `to` (Unix seconds on the *elapsed* time
 * scale: the clock as if the leap had not been carried out): the seconds
 * to add to elapsed time `t` to get smeared time. 0 up to `from`, then
 * falling (insert, `change` +1) or rising (delete, −1) linearly to exactly
 * −`change` at `to`, and −`change` after. Smeared time is monotonic (its
 * rate is 1 − change / (to − from) > 0 for windows over 1 s) and, after
 * the window, equals UTC again.
 */
export function smearRamp(from: number, to: number, change: number, t: number): number {
  if (t <= from) return 0;
  if (t >= to) return -change;
  return -change * ((t - from) / (to - from));
}

/**
 * The leap smear centred on the leap: `windowS` seconds around `leapAt`
 * (the Unix time of the midnight that ends the leap day), for a leap
 * `leap` (`Leap.insert` or `Leap.delete`; anything else: 0). `t` is on the
 * elapsed time scale (see `smearRamp`); returns the seconds to add to it
 * to get the time served to clients: 0 before the window, −0.5 s (insert)
 * or +0.5 s (delete) at the leap, −1 s or +1 s after the window.
 */
export function smearOffset(leapAt: number, leap: number, windowS: number, t: number): number {
  if (windowS <= 0 || (leap !== Leap.insert && leap !== Leap.delete)) return 0;
  const change = leap === Leap.insert ? 1 : -1;
  return smearRamp(leapAt - windowS / 2, leapAt + windowS / 2, change, t);
}
