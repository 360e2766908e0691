/**
 * One-shot client exchange (SNTP, RFC 4330 / RFC 5905 §8): builds a
 * client request and turns the reply into offset and delay once it passed
 * `checkReply` (reply_check.ts), so a result is always usable time. Pure;
 * the socket lives in lib/io/query_client.ts.
 */
import { formatRefid, HEADER_LEN, Leap, Mode, parsePacket, serializePacket } from "./packet.ts";
import { checkReply } from "./reply_check.ts";
import { diff, type NtpTimestamp } from "./timestamp.ts";

/** A reply that passed `checkReply`: a synchronised server's time. */
export interface QueryResult {
  /** Server clock minus ours, seconds (RFC 5905 θ). */
  offset: number;
  /** Round-trip delay, seconds (δ). */
  delay: number;
  stratum: number;
  refid: string;
  leap: number;
  version: number;
  poll: number;
  precision: number;
  rootDelay: number;
  rootDisp: number;
}

/** A mode-3 request whose `xmt` is `t1` (used to match the reply). */
export function buildRequest(t1: NtpTimestamp, version = 4): Uint8Array {
  return serializePacket({
    leap: Leap.unsync,
    version,
    mode: Mode.client,
    stratum: 0,
    poll: 0,
    precision: 0,
    rootDelay: 0,
    rootDisp: 0,
    refid: 0,
    ref: 0n,
    org: 0n,
    rec: 0n,
    xmt: t1,
  });
}

/**
 * Turns the reply `bytes` to a request whose transmit timestamp was
 * `requestXmt` into offset and delay, after the checks of `checkReply`.
 * `t4` is our clock when the reply arrived and `t1` when the request left
 * (NTP timestamps; `t1` defaults to `requestXmt`). Returns the result, or
 * the reason the reply is not time as one line (`kiss-o'-death RATE`,
 * `transmit timestamp is zero`, `ORIGIN_MISMATCH` for a stale reply …).
 */
export function evaluateReply(
  bytes: Uint8Array,
  requestXmt: NtpTimestamp,
  t4: NtpTimestamp,
  t1: NtpTimestamp = requestXmt,
): QueryResult | string {
  if (bytes.length < HEADER_LEN) return `reply of ${bytes.length} bytes is too short`;
  const p = parsePacket(bytes);
  if (typeof p === "string") return `malformed reply (${p})`;
  const bad = checkReply(requestXmt, p, t4, t1);
  if (bad !== null) return bad;
  const t2 = p.rec, t3 = p.xmt;
  return {
    offset: (diff(t2, t1) + diff(t3, t4)) / 2,
    // Stamping noise can make a path of a few µs look shorter than 0 (reply_check.ts).
    delay: Math.max(0, diff(t4, t1) - diff(t3, t2)),
    stratum: p.stratum,
    refid: formatRefid(p.refid, p.stratum),
    leap: p.leap,
    version: p.version,
    poll: p.poll,
    precision: p.precision,
    rootDelay: p.rootDelay,
    rootDisp: p.rootDisp,
  };
}
