/**
 * ntpd statistics lines (ntp_util.c record_loop_stats / record_peer_stats),
 * byte for byte the same columns so existing gnuplot scripts work:
 *
 *   loopstats: MJD  seconds  offset(s)  freq(ppm)  jitter(s)  wander(ppm)  tc(log2)
 *              "%lu %s %.9f %.3f %.9f %.6f %d"
 *   peerstats: MJD  seconds  address  status(hex)  offset  delay  dispersion  jitter
 *              "%lu %s %s %x %.9f %.9f %.9f %.9f"
 *
 * where seconds are past UTC midnight with 3 decimals. Files are named
 * `loopstats.YYYYMMDD` (ntpd's filegen "day" type).
 */

/** Days from the Unix epoch to MJD 0. */
const MJD_UNIX = 40587;

/** MJD, seconds past midnight (3 decimals) and file suffix YYYYMMDD for Unix time `t`. */
export function statsTime(t: number): { mjd: number; seconds: string; day: string } {
  const days = Math.floor(t / 86400);
  const secs = t - days * 86400;
  const d = new Date(days * 86400 * 1000);
  const day = `${d.getUTCFullYear()}${String(d.getUTCMonth() + 1).padStart(2, "0")}${
    String(d.getUTCDate()).padStart(2, "0")
  }`;
  return { mjd: days + MJD_UNIX, seconds: (Math.floor(secs * 1000) / 1000).toFixed(3), day };
}

/** One loopstats line (without newline). */
export function loopstatsLine(
  t: number,
  v: { offset: number; freqPpm: number; jitter: number; wanderPpm: number; poll: number },
): string {
  const { mjd, seconds } = statsTime(t);
  return `${mjd} ${seconds} ${v.offset.toFixed(9)} ${v.freqPpm.toFixed(3)} ${v.jitter.toFixed(9)} ${
    v.wanderPpm.toFixed(6)
  } ${Math.trunc(v.poll)}`;
}

/**
 * ntpd peer status word (ntp_control.h CTL_PEER_STATUS): bits 15–11
 * configured/authenable/authentic/reach/bcast, bits 10–8 selection code,
 * bits 7–0 event count and code (0 here).
 */
export function peerStatusWord(
  v: { configured: boolean; reachable: boolean; select: number },
): number {
  return ((v.configured ? 0x80 : 0) | (v.reachable ? 0x10 : 0) | (v.select & 7)) << 8;
}

/** Selection codes of the status word, by tally. */
export const SELECT_CODE: Record<string, number> = {
  " ": 0,
  "x": 1,
  ".": 2,
  "-": 3,
  "+": 4,
  "#": 5,
  "*": 6,
  "o": 7,
};

/** One peerstats line (without newline). */
export function peerstatsLine(
  t: number,
  v: {
    address: string;
    status: number;
    offset: number;
    delay: number;
    disp: number;
    jitter: number;
  },
): string {
  const { mjd, seconds } = statsTime(t);
  return `${mjd} ${seconds} ${v.address} ${v.status.toString(16)} ${v.offset.toFixed(9)} ${
    v.delay.toFixed(9)
  } ${v.disp.toFixed(9)} ${v.jitter.toFixed(9)}`;
}
