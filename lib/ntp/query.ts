/**
 * One-shot client exchange (SNTP, RFC 4330 / RFC 5905 §8): builds a
 * client request and turns the reply into offset and delay. Pure; the
 * socket lives in lib/io/query_client.ts.
 */
import { formatRefid, HEADER_LEN, Leap, Mode, parsePacket, serializePacket } from "./packet.ts";
import { diff, type NtpTimestamp } from "./timestamp.ts";

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
  /** Kiss code when the reply was a KoD, else "". */
  kiss: string;
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

/** Checks a reply against the request sent at `t1` and received at `t4`. */
export function evaluateReply(
  bytes: Uint8Array,
  t1: NtpTimestamp,
  t4: NtpTimestamp,
): QueryResult | string {
  if (bytes.length < HEADER_LEN) return `reply of ${bytes.length} bytes is too short`;
  const p = parsePacket(bytes);
  if (typeof p === "string") return `malformed reply (${p})`;
  if (p.mode !== Mode.server) return `reply has mode ${p.mode}, expected 4`;
  if (p.org !== t1) return "reply does not match our request (bogus origin timestamp)";
  const kiss = p.stratum === 0 ? formatRefid(p.refid, 0) : "";
  const t2 = p.rec, t3 = p.xmt;
  return {
    offset: (diff(t2, t1) + diff(t3, t4)) / 2,
    delay: diff(t4, t1) - diff(t3, t2),
    stratum: p.stratum,
    refid: formatRefid(p.refid, p.stratum),
    leap: p.leap,
    version: p.version,
    poll: p.poll,
    precision: p.precision,
    rootDelay: p.rootDelay,
    rootDisp: p.rootDisp,
    kiss,
  };
}
