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
/** Broadcast samples after the first calibration at which δ is measured once more. */
export const RECALIBRATE_AFTER = 16;
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

/** A raw-frame offset measured at raw time `t` (seconds): `y` = offset + our correction at `t`. */
export interface CalibrationPoint {
  t: number;
  y: number;
}

/** A client/server calibration sample: a raw-frame offset and its round-trip delay. */
export interface CalibrationSample extends CalibrationPoint {
  delay: number;
}

/** Bracketed broadcasts a calibration uses when it can get them (the median of their delays). */
export const CALIBRATION_BROADCASTS = 3;

/**
 * The broadcast delay δ (seconds, a round-trip equivalent: each broadcast
 * then gives T3 − T4 + δ/2) from the calibration, as ntpd's broadcast
 * client measures it: twice the difference between what the client/server
 * exchanges say the offset is and what a broadcast alone says (T3 − T4).
 * That is the broadcast path's own one-way delay, the server's send
 * latency included, rather than half a unicast round trip. Offsets are
 * compared in our raw frame (`y`), and the exchanges' offset is
 * interpolated to each broadcast's arrival between the replies before and
 * after it, so neither our clock corrections nor the drift of the raw clock
 * in between bias it.
 *
 * `samples`: the client/server samples (time order); `heard`: the raw
 * broadcasts heard meanwhile (`y` = T3 − T4 + correction). Null until
 * CALIBRATION_SAMPLES samples are in and `want` broadcasts lie between
 * two of them; then the median of their one-way delays, each held within
 * [0, the smallest round trip] (a broadcast cannot arrive before it left,
 * nor take longer than a whole exchange on the same path).
 */
export function calibratedDelay(
  samples: readonly CalibrationSample[],
  heard: readonly CalibrationPoint[],
  want = 1,
): number | null {
  if (samples.length < CALIBRATION_SAMPLES) return null;
  const rtt = Math.min(...samples.map((s) => s.delay));
  const oneWay: number[] = [];
  for (const b of heard) {
    const before = samples.findLast((s) => s.t <= b.t);
    const after = samples.find((s) => s.t >= b.t);
    if (!before || !after) continue;
    const span = after.t - before.t;
    const y = span > 0 ? before.y + (after.y - before.y) * (b.t - before.t) / span : before.y;
    oneWay.push(Math.max(0, Math.min(rtt, y - b.y)));
  }
  if (oneWay.length < Math.max(1, want)) return null;
  oneWay.sort((x, y) => x - y);
  const m = oneWay.length >> 1;
  return oneWay.length % 2 ? 2 * oneWay[m]! : oneWay[m - 1]! + oneWay[m]!;
}
