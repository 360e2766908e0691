/**
 * The digests under NTP MACs from OpenSSL's libcrypto through Deno FFI:
 * EVP_Digest* for MD5, SHA1 and SHA256 (H(key ‖ data)), EVP_MAC "CMAC"
 * for AES-CMAC. Installed as lib/auth/digest.ts's backend where FFI is
 * allowed (server workers, the main thread), because per packet it costs
 * a fraction of the library path: node:crypto's createHash is ~1.8 µs a
 * digest in Deno (an object and a Buffer per call, through the Node
 * compatibility layer), libcrypto through FFI ~0.3 µs; noble's CMAC ~3.8 µs
 * (the key schedule every call), EVP_MAC ~0.3 µs with a context kept per
 * key (docs/design/authentication.md has the figures).
 *
 * A hash is one call (EVP_Digest over key ‖ data copied into one buffer:
 * each FFI call costs more than MD5 over 68 bytes); CMAC keeps a context
 * per key, made on first use, freed when the key is dropped (a reload).
 */
import { type DigestFn, fullDigestLength, setDigestBackend } from "../auth/digest.ts";
import type { KeyType, SymmetricKey } from "../auth/keys.ts";

const SYMBOLS = {
  EVP_Digest: {
    parameters: ["buffer", "usize", "buffer", "pointer", "pointer", "pointer"],
    result: "i32",
  },
  EVP_MD_fetch: { parameters: ["pointer", "buffer", "pointer"], result: "pointer" },
  EVP_MAC_fetch: { parameters: ["pointer", "buffer", "pointer"], result: "pointer" },
  EVP_MAC_CTX_new: { parameters: ["pointer"], result: "pointer" },
  EVP_MAC_CTX_free: { parameters: ["pointer"], result: "void" },
  EVP_MAC_CTX_set_params: { parameters: ["pointer", "buffer"], result: "i32" },
  EVP_MAC_init: { parameters: ["pointer", "buffer", "usize", "pointer"], result: "i32" },
  EVP_MAC_update: { parameters: ["pointer", "buffer", "usize"], result: "i32" },
  EVP_MAC_final: { parameters: ["pointer", "buffer", "buffer", "usize"], result: "i32" },
  OSSL_PARAM_construct_utf8_string: {
    parameters: ["buffer", "buffer", "usize"],
    result: { struct: ["pointer", "u32", "pointer", "usize", "usize"] },
  },
  OSSL_PARAM_construct_end: {
    parameters: [],
    result: { struct: ["pointer", "u32", "pointer", "usize", "usize"] },
  },
} as const;

type Lib = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

const CIPHER: Partial<Record<KeyType, string>> = {
  AES128CMAC: "AES-128-CBC",
  AES256CMAC: "AES-256-CBC",
};

/** Lengths as the bigint FFI wants for size_t, made once (no allocation per packet). */
const BIGS = Array.from({ length: 4097 }, (_, i) => BigInt(i));
const big = (n: number): bigint => BIGS[n] ?? BigInt(n);

function cString(s: string): Uint8Array {
  return new TextEncoder().encode(s + "\0");
}

/**
 * Makes the libcrypto digest function, or says in one line why it cannot
 * (no FFI permission, no libcrypto.so.3).
 */
export function openSslDigest(): DigestFn | string {
  let c: Lib;
  try {
    c = Deno.dlopen("libcrypto.so.3", SYMBOLS).symbols;
  } catch (e) {
    return `libcrypto.so.3 through FFI: ${e instanceof Error ? e.message : e}`;
  }
  const cmac = c.EVP_MAC_fetch(null, cString("CMAC"), null);
  if (cmac === null) return "libcrypto: no CMAC";
  // Fetched once: EVP_md5() and the like would make libcrypto fetch the implementation on
  // every digest (OpenSSL 3's implicit fetch, most of a digest's cost here).
  const md: Partial<Record<KeyType, Deno.PointerValue>> = {
    MD5: c.EVP_MD_fetch(null, cString("MD5"), null),
    SHA1: c.EVP_MD_fetch(null, cString("SHA1"), null),
    SHA256: c.EVP_MD_fetch(null, cString("SHA256"), null),
  };
  if (Object.values(md).some((p) => p === null)) return "libcrypto: no MD5, SHA1 or SHA256";
  // Strings and parameter blocks the CMAC contexts were set up with: kept alive here.
  const names = { cipher: cString("cipher") };
  const contexts = new WeakMap<SymmetricKey, Deno.PointerValue>();
  const freeCtx = new FinalizationRegistry<Deno.PointerValue>((p) => c.EVP_MAC_CTX_free(p));
  const cmacContext = (key: SymmetricKey): Deno.PointerValue => {
    let ctx = contexts.get(key);
    if (ctx !== undefined) return ctx;
    ctx = c.EVP_MAC_CTX_new(cmac);
    const value = cString(CIPHER[key.type]!);
    const params = new Uint8Array(80); // two OSSL_PARAM of 40 bytes
    params.set(c.OSSL_PARAM_construct_utf8_string(names.cipher, value, 0n), 0);
    params.set(c.OSSL_PARAM_construct_end(), 40);
    // The cipher, then the key; every packet re-inits with no key (same key, fresh state).
    if (
      ctx === null || c.EVP_MAC_CTX_set_params(ctx, params) !== 1 ||
      c.EVP_MAC_init(ctx, key.secret, BigInt(key.secret.length), null) !== 1
    ) {
      throw new Error(`libcrypto: cannot set up CMAC for key ${key.id}`);
    }
    contexts.set(key, ctx);
    freeCtx.register(key, ctx);
    return ctx;
  };
  const digest = new Uint8Array(64);
  const outLen = new Uint8Array(8);
  // key ‖ data in one buffer, so a hash is one call (EVP_Digest) rather than four.
  let joined = new Uint8Array(4096);
  return (key, data, out, outOffset, n) => {
    const alg = md[key.type];
    if (alg !== undefined) {
      const len = key.secret.length + data.length;
      if (len > joined.length) joined = new Uint8Array(len);
      joined.set(key.secret, 0);
      joined.set(data, key.secret.length);
      c.EVP_Digest(joined, big(len), digest, null, alg, null);
    } else {
      const ctx = cmacContext(key);
      c.EVP_MAC_init(ctx, null as unknown as Uint8Array, 0n, null);
      c.EVP_MAC_update(ctx, data, big(data.length));
      c.EVP_MAC_final(ctx, digest, outLen, 64n);
    }
    out.set(digest.subarray(0, Math.min(n, fullDigestLength(key.type))), outOffset);
  };
}

/**
 * Makes libcrypto the digest backend of this thread when it can; returns
 * null, or why not (then the library path of lib/auth/digest.ts stays).
 */
export function useOpenSslDigests(): string | null {
  const fn = openSslDigest();
  if (typeof fn === "string") return fn;
  setDigestBackend(fn);
  return null;
}
