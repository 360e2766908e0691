/**
 * The NTS client side of one association (RFC 8915 §5.7, chrony's
 * nts_ntp_client.c practice), without I/O: the keys and the cookie jar
 * from a key exchange, the request's fields, and the check of a reply.
 *
 * - `request(header)` builds `header ‖ Unique Identifier ‖ Cookie ‖
 *   Placeholders ‖ Authenticator`: one cookie is used up per request, and
 *   one placeholder per cookie missing from the jar of 8 asks the server
 *   for more. The authenticator covers the header, `xmt` included, so it
 *   is left empty here and completed by `seal(bytes)` once the driver has
 *   written `xmt`, right before the send.
 * - `verify(reply)` accepts a reply only when it echoes the last request's
 *   identifier and its authenticator verifies with the S2C key; the
 *   cookies it carries go into the jar. A kiss code NTSN with the
 *   identifier is an NTS NAK: the cookies are no good, a new key exchange
 *   is due.
 */
import { asciiRefid, type ExtensionField, HEADER_LEN, walkTrailer } from "../ntp/packet.ts";
import { type Aead, aeadFor } from "./aead.ts";
import {
  authEfLength,
  EF_NTS_AUTHENTICATOR,
  EF_NTS_COOKIE,
  EF_NTS_COOKIE_PLACEHOLDER,
  EF_UNIQUE_IDENTIFIER,
  efBody,
  efLength,
  readAuthEf,
  UNIQUE_ID_LENGTH,
  walkFields,
  writeAuthEf,
  writeEf,
  writeEfHeader,
} from "./ef.ts";

/** Cookies a client keeps (RFC 8915 §5.7 suggests 8). */
export const COOKIE_JAR_SIZE = 8;
const REFID_NTSN = asciiRefid("NTSN");

/** What a key exchange gives the session (lib/io/nts_ke_client.ts `NtsKeResult`). */
export interface NtsKeys {
  aeadId: number;
  c2s: Uint8Array;
  s2c: Uint8Array;
  cookies: Uint8Array[];
}

/** The outcome of `verify`. */
export type NtsVerdict = "ok" | "nak" | "bad";

/** The NTS state of one association: keys, cookie jar, the identifier in flight. */
export class NtsSession {
  readonly aead: Aead;
  readonly #c2s: Uint8Array;
  readonly #s2c: Uint8Array;
  readonly cookies: Uint8Array[];
  /** Identifier of the request in flight, and where its authenticator starts. */
  #uid: Uint8Array | null = null;
  /** Last reply's problem, for status and tests. */
  lastError = "";

  /** Throws when the KE named an AEAD we do not implement or keys of the wrong length. */
  constructor(ke: NtsKeys) {
    const a = aeadFor(ke.aeadId);
    if (!a) throw new Error(`AEAD ${ke.aeadId} is not supported`);
    if (ke.c2s.length !== a.keyLength || ke.s2c.length !== a.keyLength) {
      throw new Error(`AEAD ${ke.aeadId} keys are ${a.keyLength} bytes`);
    }
    this.aead = a;
    this.#c2s = ke.c2s.slice();
    this.#s2c = ke.s2c.slice();
    this.cookies = ke.cookies.slice(-COOKIE_JAR_SIZE);
  }

  /**
   * The request for the 48-byte `header`: a new array with the NTS fields
   * after it, its authenticator still to be sealed (`seal`). Null when the
   * jar is empty (a new key exchange is due).
   */
  request(header: Uint8Array): Uint8Array | null {
    const cookie = this.cookies.shift();
    if (!cookie) return null;
    const placeholders = Math.max(0, COOKIE_JAR_SIZE - 1 - this.cookies.length);
    const uid = crypto.getRandomValues(new Uint8Array(UNIQUE_ID_LENGTH));
    const cookieEf = efLength(cookie.length);
    const nonceLength = this.aead.nonceLength;
    const authLength = authEfLength(nonceLength, 0);
    const length = HEADER_LEN + efLength(uid.length) + cookieEf * (1 + placeholders) + authLength;
    const out = new Uint8Array(length);
    out.set(header.subarray(0, HEADER_LEN));
    let at = writeEf(out, HEADER_LEN, EF_UNIQUE_IDENTIFIER, uid);
    at = writeEf(out, at, EF_NTS_COOKIE, cookie);
    for (let i = 0; i < placeholders; i++) {
      writeEfHeader(out, at, EF_NTS_COOKIE_PLACEHOLDER, cookieEf);
      at += cookieEf; // body: zeros
    }
    const nonce = crypto.getRandomValues(new Uint8Array(nonceLength));
    writeAuthEf(out, at, authLength, nonce, 16);
    this.#uid = uid;
    return out;
  }

  /** Completes the authenticator of a `request` after `xmt` was written (C2S key). */
  seal(bytes: Uint8Array): void {
    const auth = lastField(bytes);
    if (!auth || auth.type !== EF_NTS_AUTHENTICATOR) return;
    const parts = readAuthEf(bytes, auth, this.aead.nonceLength);
    if (!parts) return;
    const ct = this.aead.seal(
      this.#c2s,
      parts.nonce,
      new Uint8Array(0),
      bytes.subarray(0, auth.offset),
    );
    bytes.set(ct, parts.ciphertext.byteOffset - bytes.byteOffset);
  }

  /**
   * Checks a reply to the request in flight: "ok" (authentic; its cookies
   * are in the jar), "nak" (an NTS NAK echoing our identifier), or "bad"
   * (anything else: ignore the packet). A reply is accepted once.
   */
  verify(reply: Uint8Array): NtsVerdict {
    const uid = this.#uid;
    if (!uid) return this.#bad("no request in flight");
    if (reply.length <= HEADER_LEN) return this.#bad("no NTS fields");
    const fields: ExtensionField[] = [];
    const view = new DataView(reply.buffer, reply.byteOffset, reply.length);
    if (walkTrailer(view, reply.length, (reply[0]! >> 3) & 7, fields) !== 0) {
      return this.#bad("malformed fields");
    }
    const id = fields.find((f) => f.type === EF_UNIQUE_IDENTIFIER);
    if (!id || !sameBytes(efBody(reply, id).subarray(0, uid.length), uid)) {
      return this.#bad("unique identifier does not match");
    }
    if (reply[1] === 0 && view.getUint32(12) === REFID_NTSN) {
      this.#uid = null;
      this.lastError = "NTS NAK";
      return "nak";
    }
    const auth = fields.at(-1);
    if (!auth || auth.type !== EF_NTS_AUTHENTICATOR) return this.#bad("no authenticator");
    const parts = readAuthEf(reply, auth, this.aead.nonceLength);
    if (!parts) return this.#bad("authenticator lengths");
    const plain = this.aead.open(
      this.#s2c,
      parts.nonce,
      parts.ciphertext,
      reply.subarray(0, auth.offset),
    );
    if (!plain) return this.#bad("authenticator does not verify");
    const inner = walkFields(plain, 0, plain.length);
    if (!inner) return this.#bad("encrypted fields malformed");
    this.#uid = null;
    for (const f of inner) {
      if (f.type !== EF_NTS_COOKIE) continue;
      this.cookies.push(plain.slice(f.offset + 4, f.offset + f.length));
    }
    // Cookies in clear outside the authenticator are not to be trusted (RFC 8915 §5.7).
    while (this.cookies.length > COOKIE_JAR_SIZE) this.cookies.shift();
    this.lastError = "";
    return "ok";
  }

  #bad(why: string): NtsVerdict {
    this.lastError = why;
    return "bad";
  }
}

/** The last extension field of an NTPv4 packet, or null. */
function lastField(bytes: Uint8Array): ExtensionField | null {
  const fields: ExtensionField[] = [];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  if (walkTrailer(view, bytes.length, 4, fields) !== 0) return null;
  return fields.at(-1) ?? null;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
