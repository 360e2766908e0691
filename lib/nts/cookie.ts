/**
 * NTS cookies (RFC 8915 §6) and the keys that seal them.
 *
 * A cookie is `keyid (4) ‖ nonce (16) ‖ AES-SIV-CMAC-256(key, nonce,
 * plaintext, ad = keyid)`, the plaintext being `aeadId (u16) ‖ 0 (u16) ‖
 * c2s ‖ s2c`: 104 bytes for AEAD 15, 72 for AEAD 30 (multiples of 4, so
 * a cookie fills its extension field with no padding). The server keeps no
 * state per client: everything it needs comes back in the cookie.
 *
 * Keys for a fleet: the cookie key of UTC day D (days since 1970-01-01) is
 * HKDF-SHA256(secret, salt = "", info = "edge-time nts cookie key" ‖ D as
 * u32 big-endian, 32 bytes), and the key id is `tag ‖ D` (8 + 24 bits),
 * `tag` being the first byte of HKDF(secret, info = "edge-time nts key
 * tag"). Every node holding the same secret derives the same key from the
 * id alone, so no live shared state is needed (the anycast case). The
 * first secret of the ring makes cookies; every secret opens them (master
 * secret rotation, docs/guide/nts.md). Cookies of days `today -
 * (acceptDays - 1)` to `today + 1` are opened (one day ahead: a node whose
 * clock turned the day a little earlier).
 *
 * A single node without a master file uses a random secret made at start
 * (lib/io/nts_keys.ts): its day keys differ every day, and a restart
 * invalidates its cookies (clients then get an NTS NAK and do a new KE).
 */
import { hkdfSync } from "node:crypto";
import { AEAD_AES_SIV_CMAC_256, aeadFor } from "./aead.ts";

/** What a cookie carries: the AEAD and the two keys the NTS-KE exported. */
export interface CookieContents {
  aeadId: number;
  c2s: Uint8Array;
  s2c: Uint8Array;
}

const KEY_INFO = new TextEncoder().encode("edge-time nts cookie key");
const TAG_INFO = new TextEncoder().encode("edge-time nts key tag");
const NONCE_LENGTH = 16;
const HEADER = 4 + NONCE_LENGTH;
const SECONDS_PER_DAY = 86400;
/** Shortest master secret, bytes (the cookie key's own length). */
export const MIN_SECRET_LENGTH = 32;

const cookieAead = aeadFor(AEAD_AES_SIV_CMAC_256)!;

/** The length of a cookie for AEAD `aeadId`, or 0 when we do not support it. */
export function cookieLength(aeadId: number): number {
  const a = aeadFor(aeadId);
  return a ? HEADER + 16 + 4 + 2 * a.keyLength : 0;
}

/** UTC day number of Unix time `t` (seconds). */
export function dayOf(t: number): number {
  return Math.floor(t / SECONDS_PER_DAY);
}

/** The cookie key of UTC day `day` under `secret` (HKDF-SHA256, 32 bytes). */
export function dayKey(secret: Uint8Array, day: number): Uint8Array {
  const info = new Uint8Array(KEY_INFO.length + 4);
  info.set(KEY_INFO);
  new DataView(info.buffer).setUint32(KEY_INFO.length, day >>> 0);
  return new Uint8Array(hkdfSync("sha256", secret, new Uint8Array(0), info, 32));
}

/** The 8-bit tag that names `secret` in key ids. */
export function secretTag(secret: Uint8Array): number {
  return new Uint8Array(hkdfSync("sha256", secret, new Uint8Array(0), TAG_INFO, 1))[0]!;
}

/** The key id of day `day` under a secret with tag `tag`. */
export function keyIdOf(tag: number, day: number): number {
  return ((tag << 24) | (day & 0xffffff)) >>> 0;
}

/**
 * Makes and opens cookies with the day keys of one or more secrets.
 * `now` returns Unix seconds (tests pass their own).
 */
export class CookieKeyring {
  #secrets: { secret: Uint8Array; tag: number }[] = [];
  #acceptDays = 1;
  /** Day keys derived so far: `${secret index}/${day}`. */
  #keys = new Map<string, Uint8Array>();
  readonly #now: () => number;

  /**
   * `secrets`: at least one, each at least 32 bytes; the first makes
   * cookies. `acceptDays` ≥ 1: how many days (today included) a cookie
   * is accepted.
   */
  constructor(
    secrets: Uint8Array[],
    acceptDays: number,
    now: () => number = () => Date.now() / 1000,
  ) {
    this.#now = now;
    this.update(secrets, acceptDays);
  }

  /** Replaces the secrets and the window (a reload); throws on an empty list or a short secret. */
  update(secrets: Uint8Array[], acceptDays: number): void {
    if (secrets.length === 0) throw new Error("a cookie keyring needs a secret");
    for (const s of secrets) {
      if (s.length < MIN_SECRET_LENGTH) {
        throw new Error(`a cookie secret needs at least ${MIN_SECRET_LENGTH} bytes`);
      }
    }
    this.#secrets = secrets.map((secret) => ({ secret: secret.slice(), tag: secretTag(secret) }));
    this.#acceptDays = Math.max(1, Math.floor(acceptDays));
    this.#keys.clear();
  }

  /** The key id cookies made now carry. */
  currentKeyId(): number {
    return keyIdOf(this.#secrets[0]!.tag, dayOf(this.#now()));
  }

  #key(index: number, day: number): Uint8Array {
    const name = `${index}/${day}`;
    let k = this.#keys.get(name);
    if (!k) {
      if (this.#keys.size > 16 * this.#secrets.length + 64) this.#keys.clear();
      k = dayKey(this.#secrets[index]!.secret, day);
      this.#keys.set(name, k);
    }
    return k;
  }

  /**
   * `count` fresh cookies for keys `c2s`/`s2c` of AEAD `aeadId`, each
   * with its own random nonce. Throws when the AEAD is not supported or a
   * key has the wrong length (a caller's bug, never a client's input).
   */
  makeCookies(aeadId: number, c2s: Uint8Array, s2c: Uint8Array, count: number): Uint8Array[] {
    const a = aeadFor(aeadId);
    if (!a) throw new Error(`AEAD ${aeadId} is not supported`);
    if (c2s.length !== a.keyLength || s2c.length !== a.keyLength) {
      throw new Error(`AEAD ${aeadId} keys are ${a.keyLength} bytes`);
    }
    const day = dayOf(this.#now());
    const keyId = keyIdOf(this.#secrets[0]!.tag, day);
    const key = this.#key(0, day);
    const plain = new Uint8Array(4 + 2 * a.keyLength);
    plain[0] = aeadId >> 8;
    plain[1] = aeadId & 0xff;
    plain.set(c2s, 4);
    plain.set(s2c, 4 + a.keyLength);
    const out: Uint8Array[] = [];
    for (let i = 0; i < count; i++) {
      const cookie = new Uint8Array(HEADER + 16 + plain.length);
      new DataView(cookie.buffer).setUint32(0, keyId);
      const nonce = cookie.subarray(4, HEADER);
      crypto.getRandomValues(nonce);
      cookie.set(cookieAead.seal(key, nonce, plain, cookie.subarray(0, 4)), HEADER);
      out.push(cookie);
    }
    plain.fill(0);
    return out;
  }

  /**
   * The AEAD and keys in `cookie`, or null when it is malformed, its key
   * id names no secret of ours or a day outside the window, or it does
   * not authenticate (made with another secret).
   */
  openCookie(cookie: Uint8Array): CookieContents | null {
    if (cookie.length < HEADER + 16 + 4) return null;
    const keyId = ((cookie[0]! << 24) | (cookie[1]! << 16) | (cookie[2]! << 8) | cookie[3]!) >>> 0;
    const tag = keyId >>> 24, low = keyId & 0xffffff;
    const today = dayOf(this.#now());
    // The day whose low 24 bits match, nearest today.
    const day = today - (((today & 0xffffff) - low) << 8 >> 8);
    if (day > today + 1 || day < today - (this.#acceptDays - 1)) return null;
    const nonce = cookie.subarray(4, HEADER);
    const ad = cookie.subarray(0, 4);
    for (let i = 0; i < this.#secrets.length; i++) {
      if (this.#secrets[i]!.tag !== tag) continue;
      const plain = cookieAead.open(this.#key(i, day), nonce, cookie.subarray(HEADER), ad);
      if (!plain) continue;
      const aeadId = (plain[0]! << 8) | plain[1]!;
      const a = aeadFor(aeadId);
      if (!a || plain.length !== 4 + 2 * a.keyLength) return null;
      return {
        aeadId,
        c2s: plain.slice(4, 4 + a.keyLength),
        s2c: plain.slice(4 + a.keyLength),
      };
    }
    return null;
  }
}
