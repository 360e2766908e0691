/**
 * The two AEAD algorithms NTS uses (RFC 8915 §5.1, IANA AEAD registry):
 *
 * - 15, AEAD_AES_SIV_CMAC_256 (RFC 5297): 32-byte key (two AES-128 keys),
 *   any nonce length (we send 16 bytes); the nonce is the last component
 *   of the associated-data vector, as RFC 5297 §7 and chrony's Nettle call
 *   (`siv_cmac_aes128_encrypt_message`) do. Mandatory for NTS.
 * - 30, AEAD_AES_128_GCM_SIV (RFC 8452): 16-byte key, 12-byte nonce.
 *
 * Both put a 16-byte tag in the ciphertext, which is therefore always
 * `plaintext.length + 16` bytes. The primitives come from
 * `@noble/ciphers` (audited, pure TypeScript, both algorithms; OpenSSL 3.0
 * has AES-SIV but no GCM-SIV): see docs/guide/nts.md for why.
 */
import { aessiv, gcmsiv } from "noble-ciphers/aes.js";

export const AEAD_AES_SIV_CMAC_256 = 15;
export const AEAD_AES_128_GCM_SIV = 30;
/** The AEADs we offer and accept, preferred first. */
export const SUPPORTED_AEADS: readonly number[] = [AEAD_AES_SIV_CMAC_256, AEAD_AES_128_GCM_SIV];
/** Tag length of both algorithms, bytes. */
export const AEAD_TAG_LENGTH = 16;

export interface Aead {
  /** IANA AEAD identifier. */
  id: number;
  /** Key length, bytes. */
  keyLength: number;
  /** Nonce length we use, bytes. */
  nonceLength: number;
  /** Encrypts `plaintext`; the result is `plaintext.length + 16` bytes (tag included). */
  seal(key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, ad: Uint8Array): Uint8Array;
  /** Decrypts and authenticates; null when the tag does not match (or the input is malformed). */
  open(
    key: Uint8Array,
    nonce: Uint8Array,
    ciphertext: Uint8Array,
    ad: Uint8Array,
  ): Uint8Array | null;
}

/** AES-SIV-CMAC-256 in TypeScript (@noble/ciphers). */
const nobleSiv: Pick<Aead, "seal" | "open"> = {
  seal: (key, nonce, plaintext, ad) => aessiv(key, ad, nonce).encrypt(plaintext),
  open(key, nonce, ciphertext, ad) {
    if (ciphertext.length < AEAD_TAG_LENGTH) return null;
    try {
      return aessiv(key, ad, nonce).decrypt(ciphertext);
    } catch {
      return null;
    }
  },
};

const siv: Aead = {
  id: AEAD_AES_SIV_CMAC_256,
  keyLength: 32,
  nonceLength: 16,
  seal: nobleSiv.seal,
  open: nobleSiv.open,
};

/**
 * Replaces the AES-SIV-CMAC-256 primitive (the I/O layer installs
 * OpenSSL's, lib/io/openssl_siv.ts, where libcrypto loads; it gives the
 * same bytes, much faster); null goes back to @noble/ciphers'. Returns
 * which one is in use: "openssl" or "noble".
 */
export function useSivImplementation(impl: Pick<Aead, "seal" | "open"> | null): string {
  siv.seal = (impl ?? nobleSiv).seal;
  siv.open = (impl ?? nobleSiv).open;
  return impl ? "openssl" : "noble";
}

/** The TypeScript AES-SIV, whatever is installed (tests compare the two). */
export const nobleAesSiv: Pick<Aead, "seal" | "open"> = nobleSiv;

const gcm: Aead = {
  id: AEAD_AES_128_GCM_SIV,
  keyLength: 16,
  nonceLength: 12,
  seal: (key, nonce, plaintext, ad) => gcmsiv(key, nonce, ad).encrypt(plaintext),
  open(key, nonce, ciphertext, ad) {
    if (ciphertext.length < AEAD_TAG_LENGTH || nonce.length !== 12) return null;
    try {
      return gcmsiv(key, nonce, ad).decrypt(ciphertext);
    } catch {
      return null;
    }
  },
};

/** The AEAD with IANA id `id`, or null when we do not implement it. */
export function aeadFor(id: number): Aead | null {
  return id === AEAD_AES_SIV_CMAC_256 ? siv : id === AEAD_AES_128_GCM_SIV ? gcm : null;
}
