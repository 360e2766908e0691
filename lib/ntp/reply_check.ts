/**
 * The client-side sanity checks of a server reply (RFC 5905 §8 and A.5.1.1,
 * RFC 4330 §5): one pure function that every client of ours applies before
 * it believes a reply — `edge-time query`, the anycast self-query, the
 * router's node checks and the engine's server and pool sources. A reply that fails is not time: the caller reports
 * the reason and uses nothing from the packet.
 */
import { Mode, type NtpPacket } from "./packet.ts";
import { isSynchronised } from "./system_state.ts";
import { diff, type NtpTimestamp } from "./timestamp.ts";

/** RFC 5905 MAXDISP: a root distance (delay / 2 + dispersion) at or above this is unusable, seconds. */
export const MAXDISP = 16;

/**
 * The reason `checkReply` gives for a reply whose origin timestamp is not
 * our request's transmit timestamp: a stale or forged reply, which a
 * client waiting for its answer ignores rather than reports.
 */
export const ORIGIN_MISMATCH = "origin timestamp does not match our request";

/**
 * The kiss code of a stratum-0 packet (RFC 5905 §7.4): its refid as 1..4
 * printable ASCII characters (trailing NULs dropped), or "" when the refid
 * is not such a code (an unsynchronised server's refid 0, for instance).
 */
export function kissCode(refid: number): string {
  const bytes = [24, 16, 8, 0].map((shift) => (refid >>> shift) & 0xff);
  let end = 4;
  while (end > 0 && bytes[end - 1] === 0) end--;
  const chars = bytes.slice(0, end);
  if (end === 0 || !chars.every((c) => c >= 0x21 && c <= 0x7e)) return "";
  return String.fromCharCode(...chars);
}

/**
 * How far below 0 a measured round-trip delay may be and still be time:
 * on a path of a few µs (loopback, a veth) it is stamping noise. A server
 * that dates its `xmt` with its predicted departure (edge-time adds its
 * measured send latency, lib/io/reply_latency.ts) is late by up to that
 * prediction's error, tens of µs at worst; chronyd takes |delay| for the
 * same reason. Further below 0 the timestamps contradict each other.
 */
export const NEGATIVE_DELAY_TOLERANCE_S = 100e-6;

/**
 * Why `reply` to the client request whose transmit timestamp was
 * `requestXmt` must not be used, or null when it passes. `receivedAt` is
 * our clock when the reply arrived and `sentAt` when the request left
 * (NTP timestamps; `sentAt` defaults to `requestXmt`, pass it when the
 * transmit timestamp carries random low bits); with `receivedAt` the
 * round-trip delay is checked too. Checks, in order:
 *
 * - mode is not 4 (server)                → `reply has mode M, expected 4 (server)`
 * - origin ≠ our transmit timestamp       → `origin timestamp does not match our request`
 * - stratum 0 with a kiss code            → `kiss-o'-death RATE` (DENY, RSTR, …)
 * - leap 3, stratum 0 or stratum ≥ 16     → `server is not synchronised (leap L, stratum S)`
 * - transmit or receive timestamp zero    → `transmit timestamp is zero` / `receive timestamp is zero`
 * - root delay / 2 + root dispersion ≥ 16 s → `root distance D s is not below 16 s`
 * - round-trip delay below −NEGATIVE_DELAY_TOLERANCE_S → `negative round-trip delay D s`
 *
 * Pure; never throws.
 */
export function checkReply(
  requestXmt: NtpTimestamp,
  reply: NtpPacket,
  receivedAt?: NtpTimestamp,
  sentAt: NtpTimestamp = requestXmt,
): string | null {
  return replyProblem(requestXmt, reply, receivedAt, sentAt)?.message ?? null;
}

/** What `replyProblem` found wrong with a reply, by kind, with the line `checkReply` gives. */
export type ReplyProblem =
  | { kind: "mode" | "origin" | "unsynchronised" | "zero" | "distance" | "delay"; message: string }
  | { kind: "kiss"; message: string; code: string };

/**
 * `checkReply` by kind, for callers that count or act on the reason (the
 * engine's sources: a RATE kiss backs off, an unsynchronised server still
 * counts as reachable). Same checks, same order, same messages.
 */
export function replyProblem(
  requestXmt: NtpTimestamp,
  reply: NtpPacket,
  receivedAt?: NtpTimestamp,
  sentAt: NtpTimestamp = requestXmt,
): ReplyProblem | null {
  if (reply.mode !== Mode.server) {
    return { kind: "mode", message: `reply has mode ${reply.mode}, expected 4 (server)` };
  }
  if (reply.org !== requestXmt) return { kind: "origin", message: ORIGIN_MISMATCH };
  if (reply.stratum === 0) {
    const code = kissCode(reply.refid);
    if (code !== "") return { kind: "kiss", message: `kiss-o'-death ${code}`, code };
  }
  if (!isSynchronised(reply)) {
    return {
      kind: "unsynchronised",
      message: `server is not synchronised (leap ${reply.leap}, stratum ${reply.stratum})`,
    };
  }
  if (reply.xmt === 0n) return { kind: "zero", message: "transmit timestamp is zero" };
  if (reply.rec === 0n) return { kind: "zero", message: "receive timestamp is zero" };
  const distance = reply.rootDelay / 2 + reply.rootDisp;
  if (distance >= MAXDISP) {
    return {
      kind: "distance",
      message: `root distance ${distance.toFixed(3)} s is not below ${MAXDISP} s`,
    };
  }
  if (receivedAt !== undefined) {
    const delay = diff(receivedAt, sentAt) - diff(reply.xmt, reply.rec);
    if (delay < -NEGATIVE_DELAY_TOLERANCE_S) {
      return { kind: "delay", message: `negative round-trip delay ${delay.toFixed(6)} s` };
    }
  }
  return null;
}
