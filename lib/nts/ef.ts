/**
 * The NTS extension fields of NTP packets (RFC 8915 §5.3–5.7), as a pure
 * codec over byte arrays:
 *
 * - Unique Identifier (0x0104): 32 random bytes the server echoes;
 * - NTS Cookie (0x0204): one opaque cookie;
 * - NTS Cookie Placeholder (0x0304): as long as a cookie, asks for one more;
 * - NTS Authenticator and Encrypted Extension Fields (0x0404): nonce length
 *   (u16), ciphertext length (u16), the nonce and the ciphertext, each
 *   padded to 4 bytes, then optional padding. The associated data is the
 *   packet before this field; the plaintext is a run of extension fields
 *   (the server's new cookies).
 *
 * Where the fields of a received packet are is lib/ntp/packet.ts
 * `walkTrailer`'s job; this file reads and writes their bodies. Lengths
 * follow chrony's nts_ntp_auth.c: a nonce shorter than 16 bytes is padded
 * up to 16 (RFC 8915 §5.6 asks receivers to reject shorter unpadded
 * space), and a reply's authenticator is padded so that the reply is as
 * long as the request.
 */
import type { ExtensionField } from "../ntp/packet.ts";

export const EF_UNIQUE_IDENTIFIER = 0x0104;
export const EF_NTS_COOKIE = 0x0204;
export const EF_NTS_COOKIE_PLACEHOLDER = 0x0304;
export const EF_NTS_AUTHENTICATOR = 0x0404;

/** Length of the unique identifiers we send (RFC 8915 §5.3: at least 32). */
export const UNIQUE_ID_LENGTH = 32;
/** Space a nonce takes at least in an authenticator (chrony NTS_MIN_UNPADDED_NONCE_LENGTH). */
export const MIN_NONCE_SPACE = 16;
/** Smallest extension field (RFC 7822 §3). */
export const MIN_EF_LENGTH = 16;

/** `n` rounded up to a multiple of 4. */
export function padded(n: number): number {
  return (n + 3) & ~3;
}

/** The length of an extension field with a `bodyLength`-byte body (padded, at least 16). */
export function efLength(bodyLength: number): number {
  return Math.max(MIN_EF_LENGTH, 4 + padded(bodyLength));
}

/**
 * Writes one extension field (type, length, body, zero padding) at
 * `out[at..]`; returns the offset after it. The caller made the room.
 */
export function writeEf(out: Uint8Array, at: number, type: number, body: Uint8Array): number {
  const length = efLength(body.length);
  writeEfHeader(out, at, type, length);
  out.set(body, at + 4);
  out.fill(0, at + 4 + body.length, at + length);
  return at + length;
}

/** Writes an extension field header (type, whole length) at `out[at..+4)`. */
export function writeEfHeader(out: Uint8Array, at: number, type: number, length: number): void {
  out[at] = type >> 8;
  out[at + 1] = type & 0xff;
  out[at + 2] = length >> 8;
  out[at + 3] = length & 0xff;
}

/** The body of field `ef` of `bytes` (a view, no copy): everything after its header. */
export function efBody(bytes: Uint8Array, ef: ExtensionField): Uint8Array {
  return bytes.subarray(ef.offset + 4, ef.offset + ef.length);
}

/**
 * Walks a run of extension fields filling `bytes[from..to)` exactly (the
 * plaintext of an authenticator); null when one is malformed. Inside
 * encrypted fields RFC 8915 §5.6 lifts RFC 7822's 16-byte minimum, so
 * only the 4-byte multiple is checked.
 */
export function walkFields(bytes: Uint8Array, from: number, to: number): ExtensionField[] | null {
  const out: ExtensionField[] = [];
  let at = from;
  while (at < to) {
    if (to - at < 4) return null;
    const length = (bytes[at + 2]! << 8) | bytes[at + 3]!;
    if (length < 4 || length % 4 !== 0 || at + length > to) return null;
    out.push({ type: (bytes[at]! << 8) | bytes[at + 1]!, length, offset: at });
    at += length;
  }
  return out;
}

/**
 * The length of an authenticator field for a `nonceLength`-byte nonce and
 * `plaintextLength` bytes to encrypt (16-byte tag), at least `minLength`.
 * Layout (RFC 8915 §5.6 Figure 4): lengths, nonce, nonce padding,
 * ciphertext, ciphertext padding, additional padding; the additional
 * padding makes nonce + padding at least 16 bytes and fills up to
 * `minLength`.
 */
export function authEfLength(nonceLength: number, plaintextLength: number, minLength = 0): number {
  const nonceSpace = padded(nonceLength);
  const base = 8 + nonceSpace + padded(plaintextLength + 16) +
    Math.max(0, MIN_NONCE_SPACE - nonceSpace);
  return Math.max(base, padded(minLength));
}

/**
 * Writes an authenticator field's header, lengths and nonce at `out[at..]`
 * (field length `length` from `authEfLength`), zeroes the rest; returns
 * the offset where the ciphertext (`ciphertextLength` bytes) goes.
 */
export function writeAuthEf(
  out: Uint8Array,
  at: number,
  length: number,
  nonce: Uint8Array,
  ciphertextLength: number,
): number {
  writeEfHeader(out, at, EF_NTS_AUTHENTICATOR, length);
  out[at + 4] = nonce.length >> 8;
  out[at + 5] = nonce.length & 0xff;
  out[at + 6] = ciphertextLength >> 8;
  out[at + 7] = ciphertextLength & 0xff;
  out.fill(0, at + 8, at + length);
  out.set(nonce, at + 8);
  return at + 8 + padded(nonce.length);
}

/**
 * The nonce and ciphertext of the authenticator field `ef` in `bytes`
 * (views), or null when its lengths do not fit the field, the nonce is
 * empty, the ciphertext is shorter than a tag, or the field lacks the
 * padding that makes the nonce's space at least `min(16, maxNonce)`
 * bytes (`maxNonce`: the AEAD's longest nonce; chrony's "missing
 * padding" check, RFC 8915 §5.6).
 */
export function readAuthEf(
  bytes: Uint8Array,
  ef: ExtensionField,
  maxNonce = MIN_NONCE_SPACE,
): { nonce: Uint8Array; ciphertext: Uint8Array } | null {
  if (ef.type !== EF_NTS_AUTHENTICATOR || ef.length < 8) return null;
  const at = ef.offset;
  const nonceLength = (bytes[at + 4]! << 8) | bytes[at + 5]!;
  const ctLength = (bytes[at + 6]! << 8) | bytes[at + 7]!;
  const body = ef.length - 8;
  if (nonceLength < 1 || ctLength < 16) return null;
  if (padded(nonceLength) + padded(ctLength) > body) return null;
  if (Math.min(MIN_NONCE_SPACE, maxNonce) + padded(ctLength) > body) return null;
  const nonceAt = at + 8;
  const ctAt = nonceAt + padded(nonceLength);
  return {
    nonce: bytes.subarray(nonceAt, nonceAt + nonceLength),
    ciphertext: bytes.subarray(ctAt, ctAt + ctLength),
  };
}
