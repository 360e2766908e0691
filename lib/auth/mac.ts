/**
 * NTP message authentication codes with symmetric keys (RFC 5905 §7.3,
 * §9.2 and Appendix A; RFC 8573 AES-CMAC), as ntpd, ntpsec and chrony
 * make and check them:
 *
 * - the MAC is the 32-bit key ID then the digest, after the header and any
 *   extension fields; the digest is H(key ‖ data) for the hashes
 *   (ntpd's "keyed MD5", also for SHA1/SHA256) and AES-CMAC(key, data);
 * - digests longer than 20 bytes (SHA256) are truncated to 20 in what we
 *   send, as ntpsec always does and chrony does in NTPv4 (RFC 7822 §7.5
 *   caps an NTPv4 MAC at 24 octets so that it is told from an extension
 *   field); received ones are accepted truncated or whole (chrony sends the
 *   whole 32 bytes in NTPv3, which it prefers for such keys);
 * - a 4-octet trailer of key ID 0 is a crypto-NAK.
 *
 * Where the MAC is found is lib/ntp/packet.ts `walkTrailer`. The digest
 * comes from a library (lib/auth/digest.ts); nothing here is cryptography.
 */
import type { MacCheck } from "../contracts.ts";
import { HEADER_LEN, walkTrailer } from "../ntp/packet.ts";
import { digestInto, fullDigestLength } from "./digest.ts";
import type { KeyTable, KeyType, SymmetricKey } from "./keys.ts";

export type { MacCheck } from "../contracts.ts";

/** Longest digest we send (RFC 7822: an NTPv4 MAC is at most 24 octets). */
const MAX_SENT_DIGEST = 20;
/** Key ID plus the longest digest we accept (SHA256 whole): 36 octets. */
export const MAX_MAC_LENGTH = 4 + 32;

/**
 * Length in bytes of the digest we send with a key of `type`: MD5 16,
 * SHA1 20, SHA256 20 (truncated, as ntpsec and chrony in NTPv4),
 * AES-CMAC 16. The MAC is 4 bytes longer (the key ID).
 */
export function macLength(type: KeyType): number {
  return Math.min(fullDigestLength(type), MAX_SENT_DIGEST);
}

/**
 * Writes the MAC of `buf[offset..offset+length)` made with `key` right
 * after it: the key ID (32 bit, big-endian) then the first `digestLength`
 * bytes of the digest (default `macLength(key.type)`; a server answers
 * with the length its client used). Returns the new length counted from
 * `offset` (`length + 4 + digestLength`). `buf` must have the room.
 */
export function writeMac(
  key: SymmetricKey,
  buf: Uint8Array,
  offset: number,
  length: number,
  digestLength: number = macLength(key.type),
): number {
  const at = offset + length;
  const id = key.id;
  buf[at] = id >>> 24;
  buf[at + 1] = (id >>> 16) & 0xff;
  buf[at + 2] = (id >>> 8) & 0xff;
  buf[at + 3] = id & 0xff;
  digestInto(key, buf.subarray(offset, at), buf, at + 4, digestLength);
  return length + 4 + digestLength;
}

/** Writes a crypto-NAK (key ID 0, no digest) after `buf[offset..offset+length)`; returns the new length. */
export function writeCryptoNak(buf: Uint8Array, offset: number, length: number): number {
  buf.fill(0, offset + length, offset + length + 4);
  return length + 4;
}

const NONE: MacCheck = { kind: "none" };
const scratch = new Uint8Array(64);

/**
 * Finds and checks the MAC of the packet `buf[0..length)` (NTP version
 * `version`, as in its first byte). `none`: no MAC (also a malformed
 * trailer: the packet parser rejects those). `crypto-nak`: a 4-octet MAC
 * of key ID 0. `ok`: a key of `keys` that is in `trusted` made a digest of
 * the right length (whole or truncated to 20 bytes) that matches.
 * Otherwise `unknown-key` (not in the table, or ID 0 with a digest),
 * `untrusted`, or `bad-mac` (wrong digest or length). `dataLength` is where
 * the MAC starts: what it covers.
 */
export function checkMac(
  keys: KeyTable,
  trusted: ReadonlySet<number>,
  buf: Uint8Array,
  length: number,
  version: number,
): MacCheck {
  if (length <= HEADER_LEN) return NONE;
  const mac = walkTrailer(new DataView(buf.buffer, buf.byteOffset, length), length, version);
  if (mac === "bad-extension" || mac === 0) return NONE;
  const dataLength = length - mac;
  const keyId = ((buf[dataLength]! << 24) | (buf[dataLength + 1]! << 16) |
    (buf[dataLength + 2]! << 8) | buf[dataLength + 3]!) >>> 0;
  if (mac === 4) {
    return keyId === 0
      ? { kind: "crypto-nak", dataLength }
      : { kind: "bad-mac", keyId, dataLength };
  }
  const key = keyId === 0 ? undefined : keys.get(keyId);
  if (!key) return { kind: "unknown-key", keyId, dataLength };
  if (!trusted.has(keyId)) return { kind: "untrusted", keyId, dataLength };
  const got = mac - 4;
  const full = fullDigestLength(key.type);
  if (got !== full && got !== Math.min(full, MAX_SENT_DIGEST)) {
    return { kind: "bad-mac", keyId, dataLength };
  }
  digestInto(key, buf.subarray(0, dataLength), scratch, 0, got);
  let diff = 0; // no early exit: the time taken does not tell how much matched
  for (let i = 0; i < got; i++) diff |= scratch[i]! ^ buf[dataLength + 4 + i]!;
  return diff === 0 ? { kind: "ok", keyId, dataLength } : { kind: "bad-mac", keyId, dataLength };
}
