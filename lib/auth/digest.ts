/**
 * The digest under an NTP MAC, from libraries (never written here). Two
 * backends give the same bytes: this module's, MD5, SHA1 and SHA256 from
 * `node:crypto` and AES-CMAC (RFC 4493, RFC 8573) from `@noble/ciphers`
 * (import-map name `noble-ciphers`), which works in any thread; and
 * OpenSSL's libcrypto through FFI (lib/io/openssl_mac.ts), several times
 * cheaper per packet, installed wherever FFI is allowed. Why:
 * docs/design/authentication.md.
 *
 * A hash digest is H(key ‖ data), the "keyed hash" of RFC 5905 Appendix A
 * that ntpd, ntpsec and chrony compute; a CMAC digest is
 * AES-CMAC(key, data).
 */
import { createHash } from "node:crypto";
import { cmac } from "noble-ciphers/aes.js";
import type { KeyType, SymmetricKey } from "./keys.ts";

const HASH_NAME: Record<KeyType, string> = {
  MD5: "md5",
  SHA1: "sha1",
  SHA256: "sha256",
  AES128CMAC: "",
  AES256CMAC: "",
};

const FULL_LENGTH: Record<KeyType, number> = {
  MD5: 16,
  SHA1: 20,
  SHA256: 32,
  AES128CMAC: 16,
  AES256CMAC: 16,
};

/** Length in bytes of the whole digest of a key type (MD5 16, SHA1 20, SHA256 32, CMAC 16). */
export function fullDigestLength(type: KeyType): number {
  return FULL_LENGTH[type];
}

/**
 * Writes the first `n` bytes (at most the whole digest) of the digest of
 * `data` made with `key` into `out[outOffset..+n)`.
 */
export type DigestFn = (
  key: SymmetricKey,
  data: Uint8Array,
  out: Uint8Array,
  outOffset: number,
  n: number,
) => void;

/** The library path: node:crypto's createHash, noble's cmac. Works everywhere. */
export const libraryDigest: DigestFn = (key, data, out, outOffset, n) => {
  const name = HASH_NAME[key.type];
  const digest: Uint8Array = name
    ? createHash(name).update(key.secret).update(data).digest()
    : cmac(data, key.secret);
  out.set(digest.subarray(0, Math.min(n, digest.length)), outOffset);
};

let backend: DigestFn = libraryDigest;

/**
 * Replaces this thread's digest backend (lib/io/openssl_mac.ts installs
 * libcrypto through FFI where it may). Both give the same bytes.
 */
export function setDigestBackend(fn: DigestFn): void {
  backend = fn;
}

/** Writes the first `n` bytes of the digest of `data` made with `key` (see `DigestFn`). */
export function digestInto(
  key: SymmetricKey,
  data: Uint8Array,
  out: Uint8Array,
  outOffset: number,
  n: number,
): void {
  backend(key, data, out, outOffset, n);
}
