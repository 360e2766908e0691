/**
 * The broadcast client's rules (RFC 5905 §8–9, ntpd's broadcast client;
 * chrony has none): which mode 5 packets may mobilise or feed an
 * association, and the offset a broadcast gives once the one-way delay is
 * calibrated. Pure; the engine (engine.ts) applies them, the association
 * (source.ts) keeps the calibration.
 *
 * Authentication is required by default (BCP 223 / RFC 8633, on broadcast mode: an
 * unauthenticated broadcast lets anyone on the LAN set every listener's
 * clock): a packet must carry a MAC made with the source's `key`, or the
 * source must say `insecure = true`.
 */
import { Mode, type NtpPacket } from "../ntp/packet.ts";
import { diff, type NtpTimestamp } from "../ntp/timestamp.ts";

/** Valid client/server replies that calibrate the delay (ntpd's broadcast client volley). */
export const CALIBRATION_SAMPLES = 4;
/** Reach-timer intervals without a broadcast after which a heard server is forgotten. */
export const BROADCAST_UNREACH_LIMIT = 8;

/**
 * The outcome of a MAC check, as lib/auth/mac.ts `checkMac` reports it
 * (only the fields the broadcast rules read).
 */
export type BroadcastMac =
  | { kind: "none" }
  | { kind: "ok"; keyId: number }
  | { kind: "crypto-nak" }
  | { kind: "unknown-key" | "untrusted" | "bad-mac"; keyId: number };

/** What a broadcast source asks of a packet: its key (0 = none) and whether it runs `insecure`. */
export interface BroadcastPolicy {
  key: number;
  insecure: boolean;
}

/** Why a packet heard on a broadcast listener is dropped, or "ok". */
export type BroadcastVerdict =
  | "ok"
  /** Not mode 5 (a symmetric packet sent to the group, say). */
  | "mode"
  /** No MAC, while one is required. */
  | "unauthenticated"
  /** A MAC that fails (unknown, untrusted or other key, wrong digest, crypto-NAK). */
  | "bad-mac";

/**
 * Checks a packet heard on a broadcast listener against the source's
 * policy: mode 5 only; then, unless `insecure`, a MAC made with exactly
 * the source's key.
 */
export function admitBroadcast(
  p: Pick<NtpPacket, "mode">,
  mac: BroadcastMac,
  policy: BroadcastPolicy,
): BroadcastVerdict {
  if (p.mode !== Mode.broadcast) return "mode";
  if (policy.insecure) return "ok";
  if (mac.kind === "none") return "unauthenticated";
  if (mac.kind === "ok" && policy.key !== 0 && mac.keyId === policy.key) return "ok";
  return "bad-mac";
}

/**
 * The offset a broadcast gives (RFC 5905 §8: "the offset is computed as
 * if the delay were δ/2 each way"; ntpd's broadcast client with its
 * calibrated `delay`): θ = T3 − T4 + δ/2, where T3 is the server's
 * transmit timestamp, T4 our receive time (served, NTP 32.32) and δ the
 * round-trip delay the client/server calibration measured, seconds.
 */
export function broadcastOffset(xmt: NtpTimestamp, dst: NtpTimestamp, delay: number): number {
  return diff(xmt, dst) + delay / 2;
}

/**
 * The calibrated delay from the calibration replies' round-trip delays
 * (seconds): the smallest, as the clock filter prefers the least delayed
 * sample (queueing only ever adds delay). Null while fewer than
 * CALIBRATION_SAMPLES.
 */
export function calibratedDelay(delays: readonly number[]): number | null {
  return delays.length >= CALIBRATION_SAMPLES ? Math.min(...delays) : null;
}
