/**
 * NTP broadcast and multicast (RFC 5905 §8 "broadcast server", mode 5):
 * the packet a broadcast server sends unasked, and the addresses it may be
 * sent to or heard on. Pure; the sending (lib/io/broadcast_server.ts) and
 * the listening (lib/io/broadcast_listener.ts) are drivers.
 *
 * A mode 5 packet is a server reply without a request: our system
 * variables, `org` and `rec` zero, and `xmt` written by the driver from a
 * clock reading taken right before the send (`stampTransmit`), then the
 * MAC, which covers `xmt`, after it.
 */
import { HEADER_LEN, Leap, Mode } from "./packet.ts";
import { isSynchronised, PHI, type SystemState } from "./system_state.ts";
import { toShort, writeUnixTime } from "./timestamp.ts";
import { parseIp } from "./address.ts";
import { leapOnDay } from "./leap.ts";

/** What a broadcast address is: an IPv4 or IPv6 multicast group, or an IPv4 (subnet) broadcast. */
export type BroadcastKind = "multicast4" | "multicast6" | "broadcast4";

/** A parsed broadcast destination or listening address. */
export interface BroadcastAddress {
  kind: BroadcastKind;
  /** The address, 4 or 16 bytes. */
  bytes: Uint8Array;
}

/**
 * Parses a broadcast address: an IPv4 multicast group (224.0.0.0/4, e.g.
 * 224.0.1.1, the IANA NTP group), an IPv6 multicast group (ff00::/8, e.g.
 * ff05::101, site-local "all NTP servers"), or any other IPv4 address,
 * taken as a subnet broadcast address (10.0.0.255, 255.255.255.255).
 * A unicast IPv6 address is an error (IPv6 has no broadcast). Returns the
 * address or one line saying why not.
 */
export function parseBroadcastAddress(text: string): BroadcastAddress | string {
  const bytes = parseIp(text);
  if (!bytes) return `"${text}" is not an IP address`;
  if (bytes.length === 16) {
    return bytes[0] === 0xff
      ? { kind: "multicast6", bytes }
      : `"${text}" is no IPv6 multicast group (ff00::/8; IPv6 has no broadcast)`;
  }
  if (bytes[0] === 0 || bytes[0] === 127) return `"${text}" is no broadcast or multicast address`;
  return { kind: (bytes[0]! & 0xf0) === 0xe0 ? "multicast4" : "broadcast4", bytes };
}

/** Whether a system state may be broadcast: synchronised (an orphan parent is). */
export function mayBroadcast(s: Pick<SystemState, "leap" | "stratum">): boolean {
  return isSynchronised(s);
}

/**
 * Writes the 48-byte mode 5 header for system state `s` into
 * `out[0..48)`: leap (announced on its day only, as replies do), version
 * 4, stratum, `poll` (log2 of the broadcast interval), precision, root
 * delay, root dispersion grown by PHI since the reference time (served
 * time `now`, Unix seconds), refid, reference time; `org`, `rec` and `xmt`
 * zero (the driver stamps `xmt` right before the send). Returns 48. The
 * caller checks `mayBroadcast` first: an unsynchronised state is never
 * sent.
 */
export function buildBroadcast(out: Uint8Array, s: SystemState, poll: number, now: number): number {
  const view = new DataView(out.buffer, out.byteOffset, HEADER_LEN);
  out.fill(0, 0, HEADER_LEN);
  const synced = isSynchronised(s);
  const leap = synced ? leapOnDay(s.leap, now) : Leap.unsync;
  view.setUint8(0, (leap << 6) | (4 << 3) | Mode.broadcast);
  view.setUint8(1, synced ? s.stratum : 0);
  view.setInt8(2, poll);
  view.setInt8(3, s.precision);
  view.setUint32(4, toShort(s.rootDelay));
  const age = s.refTime > 0 ? Math.max(0, now - s.refTime) : 0;
  view.setUint32(8, toShort(s.rootDisp + PHI * age));
  view.setUint32(12, synced ? s.refid : 0);
  if (s.refTime > 0) {
    const refSec = Math.floor(s.refTime);
    writeUnixTime(view, 16, refSec, (s.refTime - refSec) * 1e9, 0);
  }
  return HEADER_LEN;
}

/** log2 of a broadcast interval in seconds, as the packet's poll field carries it (0..17). */
export function pollOfInterval(intervalS: number): number {
  return Math.max(0, Math.min(17, Math.round(Math.log2(Math.max(1, intervalS)))));
}
