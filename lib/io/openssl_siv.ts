/**
 * AEAD_AES_SIV_CMAC_256 (RFC 5297) from OpenSSL 3's libcrypto through Deno
 * FFI: the EVP cipher "AES-128-SIV" (a 32-byte key: the CMAC key and the
 * CTR key). Each associated-data component is one `EVP_EncryptUpdate`
 * with no output buffer; RFC 8915 passes the AD, then the nonce. OpenSSL
 * returns the ciphertext and, as the AEAD tag, the synthetic IV V; RFC
 * 5297's output is V ‖ C, which is what `seal` returns and `open` takes.
 *
 * OpenSSL 3.0's SIV computes no tag for an empty plaintext (its final
 * step fails) nor takes an empty AD component: those calls go to
 * `fallback` (the TypeScript implementation). In NTS that is the
 * authenticator of a client request, which encrypts nothing.
 *
 * Installed in place of the pure-TypeScript implementation (lib/nts/aead.ts
 * `useSivImplementation`) where libcrypto loads: AES-NI makes it many
 * times faster, which is most of an NTS reply's cost. Gives exactly the
 * same bytes (tests/integration/nts_openssl_siv_test.ts checks both ways).
 */
import { type Aead, nobleAesSiv, useSivImplementation } from "../nts/aead.ts";

const SYMBOLS = {
  EVP_CIPHER_fetch: { parameters: ["pointer", "buffer", "pointer"], result: "pointer" },
  EVP_CIPHER_CTX_new: { parameters: [], result: "pointer" },
  EVP_EncryptInit_ex2: {
    parameters: ["pointer", "pointer", "buffer", "pointer", "pointer"],
    result: "i32",
  },
  EVP_DecryptInit_ex2: {
    parameters: ["pointer", "pointer", "buffer", "pointer", "pointer"],
    result: "i32",
  },
  EVP_EncryptUpdate: {
    parameters: ["pointer", "buffer", "buffer", "buffer", "i32"],
    result: "i32",
  },
  EVP_DecryptUpdate: {
    parameters: ["pointer", "buffer", "buffer", "buffer", "i32"],
    result: "i32",
  },
  EVP_EncryptFinal_ex: { parameters: ["pointer", "buffer", "buffer"], result: "i32" },
  EVP_DecryptFinal_ex: { parameters: ["pointer", "buffer", "buffer"], result: "i32" },
  EVP_CIPHER_CTX_ctrl: { parameters: ["pointer", "i32", "i32", "buffer"], result: "i32" },
  ERR_clear_error: { parameters: [], result: "void" },
} as const satisfies Deno.ForeignLibraryInterface;

const EVP_CTRL_AEAD_GET_TAG = 0x10;
const EVP_CTRL_AEAD_SET_TAG = 0x11;
const TAG = 16;

type Lib = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

/**
 * The OpenSSL implementation of AES-SIV-CMAC-256's seal and open, or a
 * one-line reason it is not available (no libcrypto.so.3, no FFI, no
 * AES-128-SIV in this OpenSSL).
 */
export function opensslSiv(
  fallback: Pick<Aead, "seal" | "open">,
): Pick<Aead, "seal" | "open"> | string {
  let lib: Lib;
  try {
    lib = Deno.dlopen("libcrypto.so.3", SYMBOLS).symbols;
  } catch (e) {
    return `libcrypto.so.3: ${e instanceof Error ? e.message : e}`;
  }
  const cipher = lib.EVP_CIPHER_fetch(null, cstr("AES-128-SIV"), null);
  if (cipher === null) return "OpenSSL has no AES-128-SIV";
  const ctx = lib.EVP_CIPHER_CTX_new();
  if (ctx === null) return "EVP_CIPHER_CTX_new failed";
  const outl = new Int32Array(1);
  const outlBytes = new Uint8Array(outl.buffer);
  const tag = new Uint8Array(TAG);
  const none = new Uint8Array(0);
  return {
    seal(key, nonce, plaintext, ad) {
      if (plaintext.length === 0 || ad.length === 0) {
        return fallback.seal(key, nonce, plaintext, ad);
      }
      const out = new Uint8Array(TAG + plaintext.length);
      const ok = lib.EVP_EncryptInit_ex2(ctx, cipher, key as BufferSource, null, null) === 1 &&
        lib.EVP_EncryptUpdate(ctx, null, outlBytes, ad as BufferSource, ad.length) === 1 &&
        lib.EVP_EncryptUpdate(ctx, null, outlBytes, nonce as BufferSource, nonce.length) === 1 &&
        lib.EVP_EncryptUpdate(
            ctx,
            out.subarray(TAG),
            outlBytes,
            plaintext as BufferSource,
            plaintext.length,
          ) === 1 &&
        lib.EVP_EncryptFinal_ex(ctx, none, outlBytes) === 1 &&
        lib.EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, TAG, tag) === 1;
      if (!ok) {
        lib.ERR_clear_error();
        throw new Error("OpenSSL AES-SIV encryption failed");
      }
      out.set(tag, 0);
      return out;
    },
    open(key, nonce, ciphertext, ad) {
      if (ciphertext.length < TAG) return null;
      if (ciphertext.length === TAG || ad.length === 0) {
        return fallback.open(key, nonce, ciphertext, ad);
      }
      const out = new Uint8Array(ciphertext.length - TAG);
      tag.set(ciphertext.subarray(0, TAG));
      const ok = lib.EVP_DecryptInit_ex2(ctx, cipher, key as BufferSource, null, null) === 1 &&
        lib.EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, TAG, tag) === 1 &&
        lib.EVP_DecryptUpdate(ctx, null, outlBytes, ad as BufferSource, ad.length) === 1 &&
        lib.EVP_DecryptUpdate(ctx, null, outlBytes, nonce as BufferSource, nonce.length) === 1 &&
        lib.EVP_DecryptUpdate(
            ctx,
            out,
            outlBytes,
            ciphertext.subarray(TAG) as BufferSource,
            out.length,
          ) === 1 &&
        lib.EVP_DecryptFinal_ex(ctx, none, outlBytes) === 1;
      if (!ok) {
        lib.ERR_clear_error();
        return null;
      }
      return out;
    },
  };
}

function cstr(s: string): Uint8Array<ArrayBuffer> {
  return new TextEncoder().encode(`${s}\0`) as Uint8Array<ArrayBuffer>;
}

/**
 * Makes NTS use OpenSSL's AES-SIV in this thread (each server worker, and
 * the main thread for NTS-KE cookies and NTS sources) when libcrypto
 * loads; returns which implementation is in use, with the reason when it
 * is the TypeScript one.
 */
export function installOpensslSiv(): string {
  if (installed === null) {
    const o = opensslSiv(nobleAesSiv);
    if (typeof o === "string") installed = `@noble/ciphers (${o})`;
    else {
      useSivImplementation(o);
      installed = "OpenSSL libcrypto.so.3";
    }
  }
  return installed;
}

let installed: string | null = null;
