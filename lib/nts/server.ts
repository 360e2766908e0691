/**
 * The NTS side of the NTP server (RFC 8915 §5.7, chrony's
 * nts_ntp_server.c practice), per request in three steps:
 *
 * 1. `check` (before the reply is built): finds the Unique Identifier,
 *    the one NTS Cookie, the placeholders and the Authenticator (which
 *    must be last) among the request's fields; opens the cookie with the
 *    keyring and verifies the authenticator over everything before it
 *    with the C2S key. A cookie that does not open, or an authenticator
 *    that does not verify, gives an NTS NAK (kiss code NTSN); a request
 *    whose NTS fields are malformed is dropped.
 * 2. `finish` (after the header): appends the echoed Unique Identifier
 *    and, unless NAK, an authenticator whose plaintext holds one fresh
 *    cookie per cookie and placeholder of the request (up to 8), padded
 *    so that the reply is exactly as long as the request: never larger
 *    (no amplification), with fewer cookies if they would not fit.
 * 3. `seal` (after the driver stamped `xmt`): encrypts that plaintext
 *    with the S2C key over the header and the fields before it.
 *
 * Between the steps the state of each reply is kept by its offset in the
 * driver's reply buffer, as drivers build a batch of replies before they
 * stamp and send them. NTS replies are basic mode only (no interleaved).
 */
import { type ExtensionField, HEADER_LEN, walkTrailer } from "../ntp/packet.ts";
import { NTS_DROP, NTS_NAK, NTS_NONE, NTS_OK, type NtsResponder } from "../ntp/server.ts";
import { type Aead, aeadFor } from "./aead.ts";
import { type CookieContents, type CookieKeyring, cookieLength } from "./cookie.ts";
import {
  authEfLength,
  EF_NTS_AUTHENTICATOR,
  EF_NTS_COOKIE,
  EF_NTS_COOKIE_PLACEHOLDER,
  EF_UNIQUE_IDENTIFIER,
  efBody,
  efLength,
  readAuthEf,
  walkFields,
  writeAuthEf,
  writeEf,
} from "./ef.ts";

/** Most cookies a reply carries (RFC 8915 §5.7: the client keeps 8). */
export const MAX_REPLY_COOKIES = 8;

interface Checked {
  contents: CookieContents;
  aead: Aead;
  uid: ExtensionField;
  /** Cookies asked for: the cookie and every placeholder, in clear or encrypted. */
  requested: number;
}

interface PendingSeal {
  aead: Aead;
  key: Uint8Array;
  nonce: Uint8Array;
  /** Offsets from the reply's start: the authenticator field, its ciphertext. */
  authAt: number;
  ctAt: number;
  plaintextLength: number;
}

/** The NTS hook of the server core (`ServerContext.nts`). */
export class NtsServer implements NtsResponder {
  keyring: CookieKeyring;
  #checked: Checked | null = null;
  readonly #pending = new Map<number, PendingSeal>();
  /** Why the last `check` did not give NTS_OK (tests, debugging). */
  lastReason = "";

  constructor(keyring: CookieKeyring) {
    this.keyring = keyring;
  }

  /** See `NtsResponder.check`; never throws (a packet must not stop the server): NTS_DROP. */
  check(req: Uint8Array, length: number): number {
    try {
      return this.#check(req, length);
    } catch (e) {
      this.#checked = null;
      return this.#fail(NTS_DROP, `internal: ${e instanceof Error ? e.message : e}`);
    }
  }

  #check(req: Uint8Array, length: number): number {
    this.#checked = null;
    const fields: ExtensionField[] = [];
    const view = new DataView(req.buffer, req.byteOffset, length);
    if (walkTrailer(view, length, (req[0]! >> 3) & 7, fields) !== 0) {
      // A MAC (or malformed trailer): not an NTS request.
      return fields.some(isNts) ? this.#fail(NTS_DROP, "a MAC after NTS fields") : NTS_NONE;
    }
    let uid: ExtensionField | null = null;
    let cookie: ExtensionField | null = null;
    let auth: ExtensionField | null = null;
    let requested = 0, cookieLength = -1;
    for (const f of fields) {
      if (f.type === EF_UNIQUE_IDENTIFIER) {
        if (uid) return this.#fail(NTS_DROP, "two unique identifiers");
        uid = f;
      } else if (f.type === EF_NTS_COOKIE || f.type === EF_NTS_COOKIE_PLACEHOLDER) {
        // A cookie asks for a new one, as a placeholder does; all as long as the cookie.
        if (f.type === EF_NTS_COOKIE) {
          if (cookie) return this.#fail(NTS_DROP, "two cookies");
          cookie = f;
        }
        if (cookieLength >= 0 && cookieLength !== f.length) {
          return this.#fail(NTS_DROP, "placeholder and cookie lengths differ");
        }
        cookieLength = f.length;
        requested++;
      } else if (f.type === EF_NTS_AUTHENTICATOR) {
        if (f.offset + f.length !== length) return this.#fail(NTS_DROP, "authenticator not last");
        auth = f;
      }
    }
    if (!uid && !cookie && !auth) return NTS_NONE;
    if (!uid || !cookie || !auth) return this.#fail(NTS_DROP, "an NTS field is missing");
    const contents = this.keyring.openCookie(efBody(req, cookie));
    if (!contents) return this.#fail(NTS_NAK, "cookie");
    const aead = aeadFor(contents.aeadId)!;
    const parts = readAuthEf(req, auth, aead.nonceLength);
    if (!parts) return this.#fail(NTS_DROP, "authenticator lengths");
    const plain = aead.open(
      contents.c2s,
      parts.nonce,
      parts.ciphertext,
      req.subarray(0, auth.offset),
    );
    if (!plain) return this.#fail(NTS_NAK, "authenticator");
    const inner = walkFields(plain, 0, plain.length);
    if (!inner) return this.#fail(NTS_DROP, "encrypted fields");
    for (const f of inner) {
      if (f.type !== EF_NTS_COOKIE_PLACEHOLDER) continue;
      if (f.length !== cookieLength) return this.#fail(NTS_DROP, "placeholder length");
      requested++;
    }
    this.#checked = { contents, aead, uid, requested };
    this.lastReason = "";
    return NTS_OK;
  }

  #fail(r: number, why: string): number {
    this.lastReason = why;
    return r;
  }

  /** Whether the last `check` failed on the authenticator (for the bad-authenticator counter). */
  get badAuthenticator(): boolean {
    return this.lastReason === "authenticator";
  }

  /** See `NtsResponder.finish`; never throws: 0 (no reply) instead. */
  finish(
    req: Uint8Array,
    length: number,
    out: Uint8Array,
    outOffset: number,
    nak: boolean,
  ): number {
    try {
      return this.#finish(req, length, out, outOffset, nak);
    } catch {
      this.#pending.delete(outOffset);
      return 0;
    }
  }

  #finish(
    req: Uint8Array,
    length: number,
    out: Uint8Array,
    outOffset: number,
    nak: boolean,
  ): number {
    const c = this.#checked;
    this.#checked = null;
    // The unique identifier, copied whole (a NAK carries it too).
    const uid = c?.uid ?? uniqueIdentifier(req, length);
    let at = outOffset + HEADER_LEN;
    if (uid) {
      out.set(req.subarray(uid.offset, uid.offset + uid.length), at);
      at += uid.length;
    }
    if (nak || !c) return at - outOffset;
    const { aead, contents } = c;
    const used = at - outOffset;
    const room = length - used;
    const nonceLength = aead.nonceLength;
    let count = Math.min(MAX_REPLY_COOKIES, c.requested);
    const cookieEf = efLength(cookieLength(contents.aeadId));
    while (count > 0 && authEfLength(nonceLength, count * cookieEf) > room) count--;
    const cookies = this.keyring.makeCookies(contents.aeadId, contents.c2s, contents.s2c, count);
    const plaintextLength = count * cookieEf;
    const authLength = authEfLength(nonceLength, plaintextLength, room);
    if (authLength > room) return 0; // not even an empty authenticator fits: no reply
    const nonce = new Uint8Array(nonceLength);
    crypto.getRandomValues(nonce);
    const ctAt = writeAuthEf(out, at, authLength, nonce, plaintextLength + 16);
    let p = ctAt;
    for (const k of cookies) p = writeEf(out, p, EF_NTS_COOKIE, k);
    this.#pending.set(outOffset, {
      aead,
      key: contents.s2c,
      nonce,
      authAt: at - outOffset,
      ctAt: ctAt - outOffset,
      plaintextLength,
    });
    return used + authLength;
  }

  seal(out: Uint8Array, outOffset: number, _length: number): void {
    const p = this.#pending.get(outOffset);
    if (!p) return;
    this.#pending.delete(outOffset);
    const ctAt = outOffset + p.ctAt;
    const plaintext = out.slice(ctAt, ctAt + p.plaintextLength);
    const ct = p.aead.seal(
      p.key,
      p.nonce,
      plaintext,
      out.subarray(outOffset, outOffset + p.authAt),
    );
    out.set(ct, ctAt);
  }
}

/** The Unique Identifier field of a request that failed `check` (for its NAK), if any. */
function uniqueIdentifier(req: Uint8Array, length: number): ExtensionField | undefined {
  const fields: ExtensionField[] = [];
  walkTrailer(new DataView(req.buffer, req.byteOffset, length), length, 4, fields);
  return fields.find((f) => f.type === EF_UNIQUE_IDENTIFIER);
}

function isNts(f: ExtensionField): boolean {
  return f.type === EF_UNIQUE_IDENTIFIER || f.type === EF_NTS_COOKIE ||
    f.type === EF_NTS_COOKIE_PLACEHOLDER || f.type === EF_NTS_AUTHENTICATOR;
}
