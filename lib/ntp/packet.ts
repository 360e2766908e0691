/**
 * NTP packet codec (RFC 5905 §7.3, RFC 7822 extension fields).
 *
 * `parsePacket` turns bytes into a plain `NtpPacket`, checking the layout
 * after the 48-byte header: NTPv4 extension fields must be well formed,
 * and a trailing MAC (4-byte crypto-NAK, key ID and digest) is recognised
 * and skipped (lib/auth/mac.ts checks it). `serializePacket` is its
 * inverse for the header; MACs are appended by lib/auth/mac.ts, the NTS
 * extension fields built by lib/nts/ef.ts.
 */
import {
  type NtpTimestamp,
  readShort,
  readTimestamp,
  toShort,
  writeTimestamp,
} from "./timestamp.ts";

export const HEADER_LEN = 48;

/** Association modes (RFC 5905 Figure 10). */
export const Mode = {
  reserved: 0,
  symmetricActive: 1,
  symmetricPassive: 2,
  client: 3,
  server: 4,
  broadcast: 5,
  control: 6,
  private: 7,
} as const;

/** Leap indicator values; 3 means the clock is not synchronised. */
export const Leap = { none: 0, insert: 1, delete: 2, unsync: 3 } as const;

export interface NtpPacket {
  leap: number;
  version: number;
  mode: number;
  stratum: number;
  poll: number;
  precision: number;
  /** Seconds. */
  rootDelay: number;
  /** Seconds. */
  rootDisp: number;
  refid: number;
  ref: NtpTimestamp;
  org: NtpTimestamp;
  rec: NtpTimestamp;
  xmt: NtpTimestamp;
  /** Extension fields found (NTPv4 only). */
  extensions: ExtensionField[];
  /** Length of a trailing legacy MAC, 0 when none. */
  macLength: number;
}

/**
 * An extension field's place in a packet (RFC 7822 §3): `offset` is where
 * its 4-byte header starts, `length` its whole length (header, body and
 * padding), a multiple of 4 and at least 16.
 */
export interface ExtensionField {
  type: number;
  length: number;
  offset: number;
}

/** Why a packet could not be parsed. */
export type ParseError = "short" | "bad-version" | "bad-extension";

/** NTPv4 trailers that are a MAC, not an extension field (RFC 7822 §7.5: at most 24 octets). */
const MAC_LENGTHS = new Set([4, 20, 24]);
/**
 * The longest MAC of an NTPv1-3 packet, which has no extension fields:
 * key ID and a 64-byte digest (chrony's NTP_MAX_MAC_LENGTH: it sends whole
 * SHA256 to SHA512 digests in NTPv3). Digests of types we have no keys for
 * are parsed all the same, so they get a crypto-NAK, not a drop.
 */
const MAX_V3_MAC = 4 + 64;
/**
 * A key ID and a whole SHA256 digest, as ntpdig sends it in NTPv4 (the
 * longest digest of the key types we have; longer trailers that are no
 * extension fields stay malformed).
 */
const LONG_V4_MAC = 4 + 32;

/**
 * Checks what follows the 48-byte header and returns the extension fields,
 * the MAC length, or a parse error. Pure bounds arithmetic, no allocation
 * for plain 48-byte packets.
 *
 * Where the MAC is, as chrony's `parse_packet` finds it: in NTPv1-3
 * everything after the header is a MAC (4 octets for a crypto-NAK, else
 * 20 to 68); in NTPv4 a trailer of 4, 20 or 24 octets is a MAC and
 * anything else longer than 16 is extension fields, then possibly such a
 * MAC (so an NTPv4 MAC is never longer than 24 octets: senders truncate
 * longer digests to 20 bytes), except a whole trailer of 36 octets that
 * cannot be extension fields: ntpdig's untruncated SHA256 MAC.
 */
export function walkTrailer(
  view: DataView,
  length: number,
  version: number,
  fields?: ExtensionField[],
): number | "bad-extension" {
  let pos = HEADER_LEN;
  let left = length - pos;
  if (left === 0) return 0;
  if (version < 4) {
    return left % 4 === 0 && (left === 4 || (left >= 20 && left <= MAX_V3_MAC))
      ? left
      : "bad-extension";
  }
  // An extension field is at least 16 bytes (RFC 7822), a multiple of 4;
  // anything that is not a valid field must be exactly a MAC.
  const trailer = left;
  // ntpsec's ntpdig sends a whole SHA256 digest in NTPv4 too (a 36-octet
  // MAC, beyond RFC 7822's 24): a whole trailer of 36 octets that starts
  // with a field of type 0 (unassigned; a key ID below 65536 read as a
  // field header) or cannot be extension fields is taken as such a MAC
  // rather than dropped.
  const longMac = trailer === LONG_V4_MAC;
  if (longMac && view.getUint16(pos) === 0) return trailer;
  while (left > 24 || (left >= 16 && !MAC_LENGTHS.has(left))) {
    if (left < 16) return pos === HEADER_LEN && longMac ? trailer : "bad-extension";
    const fieldLen = view.getUint16(pos + 2);
    if (fieldLen < 16 || fieldLen % 4 !== 0 || fieldLen > left) {
      return pos === HEADER_LEN && longMac ? trailer : "bad-extension";
    }
    fields?.push({ type: view.getUint16(pos), length: fieldLen, offset: pos });
    pos += fieldLen;
    left -= fieldLen;
  }
  if (left === 0) return 0;
  return MAC_LENGTHS.has(left) ? left : "bad-extension";
}

/** Parses an NTP packet of versions 1 to 4. */
export function parsePacket(bytes: Uint8Array, length = bytes.length): NtpPacket | ParseError {
  if (length < HEADER_LEN) return "short";
  const view = new DataView(bytes.buffer, bytes.byteOffset, length);
  const b0 = view.getUint8(0);
  const version = (b0 >> 3) & 7;
  if (version < 1 || version > 4) return "bad-version";
  const extensions: ExtensionField[] = [];
  const mac = walkTrailer(view, length, version, extensions);
  if (mac === "bad-extension") return mac;
  return {
    leap: b0 >> 6,
    version,
    mode: b0 & 7,
    stratum: view.getUint8(1),
    poll: view.getInt8(2),
    precision: view.getInt8(3),
    rootDelay: readShort(view, 4),
    rootDisp: readShort(view, 8),
    refid: view.getUint32(12),
    ref: readTimestamp(view, 16),
    org: readTimestamp(view, 24),
    rec: readTimestamp(view, 32),
    xmt: readTimestamp(view, 40),
    extensions,
    macLength: mac,
  };
}

/** Header fields to serialize; extension fields and MACs are never sent. */
export type PacketHeader = Omit<NtpPacket, "extensions" | "macLength">;

/** Serializes a 48-byte header. */
export function serializePacket(p: PacketHeader): Uint8Array {
  const out = new Uint8Array(HEADER_LEN);
  const view = new DataView(out.buffer);
  view.setUint8(0, ((p.leap & 3) << 6) | ((p.version & 7) << 3) | (p.mode & 7));
  view.setUint8(1, p.stratum);
  view.setInt8(2, p.poll);
  view.setInt8(3, p.precision);
  view.setUint32(4, toShort(p.rootDelay));
  view.setUint32(8, toShort(p.rootDisp));
  view.setUint32(12, p.refid >>> 0);
  writeTimestamp(view, 16, p.ref);
  writeTimestamp(view, 24, p.org);
  writeTimestamp(view, 32, p.rec);
  writeTimestamp(view, 40, p.xmt);
  return out;
}

/** Encodes a four-letter ASCII code (refid "LOCL", KoD "RATE") as a u32. */
export function asciiRefid(code: string): number {
  let v = 0;
  for (let i = 0; i < 4; i++) v = (v << 8) | (code.charCodeAt(i) & 0x7f || 0);
  return v >>> 0;
}

const REFID_LOCL = 0x4c4f434c; // "LOCL"

/**
 * Renders a refid the way ntpq does: ASCII for stratum 0/1, dotted quad
 * otherwise, except chrony's `LOCL`, which a local-stratum server uses at
 * any stratum.
 */
export function formatRefid(refid: number, stratum: number): string {
  if (stratum <= 1 || refid === REFID_LOCL) {
    let s = "";
    for (let shift = 24; shift >= 0; shift -= 8) {
      const c = (refid >>> shift) & 0xff;
      if (c === 0) break;
      s += c >= 0x20 && c < 0x7f ? String.fromCharCode(c) : "?";
    }
    return s;
  }
  return [24, 16, 8, 0].map((shift) => (refid >>> shift) & 0xff).join(".");
}
