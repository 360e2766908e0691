import assert from "assert";
import { aessiv, gcmsiv } from "noble-ciphers/aes.js";
import {
  AEAD_AES_128_GCM_SIV,
  AEAD_AES_SIV_CMAC_256,
  aeadFor,
  SUPPORTED_AEADS,
} from "../../lib/nts/aead.ts";
import {
  authEfLength,
  EF_NTS_AUTHENTICATOR,
  EF_NTS_COOKIE,
  efLength,
  readAuthEf,
  walkFields,
  writeAuthEf,
  writeEf,
} from "../../lib/nts/ef.ts";
import { CookieKeyring, cookieLength, dayOf, keyIdOf, secretTag } from "../../lib/nts/cookie.ts";
import { parseMasterKeys } from "../../lib/nts/master_key.ts";

const hex = (s: string) =>
  Uint8Array.from(s.replace(/\s/g, "").match(/../g)!.map((b) => parseInt(b, 16)));
const toHex = (b: Uint8Array) => [...b].map((x) => x.toString(16).padStart(2, "0")).join("");

Deno.test("the AEAD library computes RFC 5297 and RFC 8452 test vectors", () => {
  // RFC 5297 A.1 (deterministic) and A.2 (nonce as the last AD component, as NTS uses it).
  const a1 = aessiv(
    hex("fffefdfc fbfaf9f8 f7f6f5f4 f3f2f1f0 f0f1f2f3 f4f5f6f7 f8f9fafb fcfdfeff"),
    hex("10111213 14151617 18191a1b 1c1d1e1f 20212223 24252627"),
  ).encrypt(hex("11223344 55667788 99aabbcc ddee"));
  assert.equal(toHex(a1), "85632d07c6e8f37f950acd320a2ecc9340c02b9690c4dc04daef7f6afe5c");
  const a2 = aessiv(
    hex("7f7e7d7c 7b7a7978 77767574 73727170 40414243 44454647 48494a4b 4c4d4e4f"),
    hex(
      "00112233 44556677 8899aabb ccddeeff deaddada deaddada ffeeddcc bbaa9988 77665544 33221100",
    ),
    hex("10203040 50607080 90a0"),
    hex("09f91102 9d74e35b d84156c5 635688c0"),
  ).encrypt(
    hex(
      "74686973 20697320 736f6d65 20706c61 696e7465 78742074 6f20656e 63727970 74207573 696e6720 5349562d 414553",
    ),
  );
  assert.equal(
    toHex(a2),
    "7bdb6e3b432667eb06f4d14bff2fbd0fcb900f2fddbe404326601965c889bf17dba77ceb094fa663b7a3f748ba8af829ea64ad544a272e9c485b62a3fd5c0d",
  );
  // RFC 8452 C.1, first two vectors.
  const key = hex("01000000000000000000000000000000"), nonce = hex("030000000000000000000000");
  assert.equal(
    toHex(gcmsiv(key, nonce, new Uint8Array(0)).encrypt(new Uint8Array(0))),
    "dc20e2d83f25705bb49e439eca56de25",
  );
  assert.equal(
    toHex(gcmsiv(key, nonce, new Uint8Array(0)).encrypt(hex("0100000000000000"))),
    "b5d839330ac7b786578782fff6013b815b287c22493a364c",
  );
});

Deno.test("aeadFor: both NTS AEADs seal, open, and refuse what was changed", () => {
  assert.deepEqual(SUPPORTED_AEADS, [15, 30]);
  assert.equal(aeadFor(99), null);
  for (const id of [AEAD_AES_SIV_CMAC_256, AEAD_AES_128_GCM_SIV]) {
    const a = aeadFor(id)!;
    const key = crypto.getRandomValues(new Uint8Array(a.keyLength));
    const nonce = crypto.getRandomValues(new Uint8Array(a.nonceLength));
    const ad = new Uint8Array([1, 2, 3]);
    const pt = new Uint8Array([9, 8, 7, 6]);
    const ct = a.seal(key, nonce, pt, ad);
    assert.equal(ct.length, pt.length + 16);
    assert.deepEqual(a.open(key, nonce, ct, ad), pt);
    assert.equal(a.open(key, nonce, ct, new Uint8Array([1, 2, 4])), null, "other AD");
    const bad = ct.slice();
    bad[0]! ^= 1;
    assert.equal(a.open(key, nonce, bad, ad), null, "changed ciphertext");
    assert.equal(a.open(key, nonce, ct.subarray(0, 10), ad), null, "shorter than a tag");
  }
});

Deno.test("NTS extension fields: lengths, padding and the authenticator layout", () => {
  assert.equal(efLength(32), 36);
  assert.equal(efLength(0), 16, "RFC 7822 minimum");
  assert.equal(efLength(13), 20, "body padded to 4 bytes");
  // 16-byte nonce, 0 plaintext: 8 + 16 + 16.
  assert.equal(authEfLength(16, 0), 40);
  // 12-byte nonce (GCM-SIV) gets 4 bytes of additional padding.
  assert.equal(authEfLength(12, 0), 40);
  assert.equal(authEfLength(16, 0, 101), 104, "padded up to the minimum");
  const out = new Uint8Array(200);
  const at = writeEf(out, 0, EF_NTS_COOKIE, new Uint8Array([1, 2, 3, 4, 5]));
  assert.equal(at, 16);
  const len = authEfLength(16, 8);
  const ctAt = writeAuthEf(out, at, len, new Uint8Array(16).fill(7), 24);
  assert.equal(ctAt, at + 8 + 16);
  const fields = walkFields(out, 0, at + len)!;
  assert.deepEqual(fields.map((f) => f.type), [EF_NTS_COOKIE, EF_NTS_AUTHENTICATOR]);
  const parts = readAuthEf(out, fields[1]!)!;
  assert.equal(parts.nonce.length, 16);
  assert.equal(parts.ciphertext.length, 24);
  assert.equal(parts.ciphertext.byteOffset, ctAt);
  // A 12-byte nonce without padding is refused when the AEAD takes 16 (chrony's check).
  const short = new Uint8Array(8 + 12 + 16);
  const f = { type: EF_NTS_AUTHENTICATOR, offset: 0, length: short.length };
  short.set([0x04, 0x04, 0, short.length, 0, 12, 0, 16]);
  assert.equal(readAuthEf(short, f, 16), null);
  assert.ok(readAuthEf(short, f, 12), "fine for an AEAD whose nonce is 12 bytes");
  assert.equal(walkFields(new Uint8Array([0, 1, 0, 6, 0, 0]), 0, 6), null, "not a multiple of 4");
});

const DAY = 86400;
const T = 20_000 * DAY + 3600; // some day, 01:00 UTC

function secret(fill: number): Uint8Array {
  return new Uint8Array(32).fill(fill);
}

Deno.test("cookies carry the AEAD and keys, and only our keys open them", () => {
  const ring = new CookieKeyring([secret(1)], 2, () => T);
  for (const id of [AEAD_AES_SIV_CMAC_256, AEAD_AES_128_GCM_SIV]) {
    const n = aeadFor(id)!.keyLength;
    const c2s = crypto.getRandomValues(new Uint8Array(n));
    const s2c = crypto.getRandomValues(new Uint8Array(n));
    const cookies = ring.makeCookies(id, c2s, s2c, 3);
    assert.equal(cookies.length, 3);
    assert.equal(cookies[0]!.length, cookieLength(id));
    assert.equal(cookies[0]!.length % 4, 0);
    assert.notDeepEqual(cookies[0], cookies[1], "each with its own nonce");
    assert.deepEqual(ring.openCookie(cookies[2]!), { aeadId: id, c2s, s2c });
    const bad = cookies[0]!.slice();
    bad[30]! ^= 1;
    assert.equal(ring.openCookie(bad), null);
    assert.equal(new CookieKeyring([secret(2)], 2, () => T).openCookie(cookies[0]!), null);
  }
  assert.equal(cookieLength(15), 104);
  assert.equal(cookieLength(30), 72);
  assert.throws(() => ring.makeCookies(99, new Uint8Array(32), new Uint8Array(32), 1));
});

Deno.test("fleet keys: any node with the master secret opens any node's cookies within the window", () => {
  let now = T;
  const a = new CookieKeyring([secret(7)], 2, () => now);
  const b = new CookieKeyring([secret(7)], 2, () => now);
  const keys = new Uint8Array(32).fill(3);
  const cookie = a.makeCookies(15, keys, keys, 1)[0]!;
  const id = new DataView(cookie.buffer).getUint32(0);
  assert.equal(id, keyIdOf(secretTag(secret(7)), dayOf(T)), "key id = tag ‖ day");
  assert.ok(b.openCookie(cookie), "node B opens node A's cookie");
  now = T + DAY; // the next day: still inside a 2-day window
  assert.ok(b.openCookie(cookie));
  now = T + 2 * DAY;
  assert.equal(b.openCookie(cookie), null, "expired");
  now = T - DAY; // B's clock a day behind: a cookie from "tomorrow" is accepted
  assert.ok(b.openCookie(cookie));
  now = T - 2 * DAY;
  assert.equal(b.openCookie(cookie), null);
  // Day keys differ from day to day.
  now = T;
  const today = a.makeCookies(15, keys, keys, 1)[0]!;
  now = T + DAY;
  const tomorrow = a.makeCookies(15, keys, keys, 1)[0]!;
  assert.notEqual(
    new DataView(today.buffer).getUint32(0),
    new DataView(tomorrow.buffer).getUint32(0),
  );
});

Deno.test("master secret rotation: the first secret makes cookies, every listed one opens them", () => {
  const old = secret(1), fresh = secret(2);
  const keys = new Uint8Array(32).fill(3);
  const oldCookie = new CookieKeyring([old], 2, () => T).makeCookies(15, keys, keys, 1)[0]!;
  // Step 1: the new secret is added below the old one on every node.
  const step1 = new CookieKeyring([old, fresh], 2, () => T);
  assert.ok(step1.openCookie(oldCookie));
  // Step 2: the new one moves to the top; old cookies still open.
  const step2 = new CookieKeyring([fresh, old], 2, () => T);
  const newCookie = step2.makeCookies(15, keys, keys, 1)[0]!;
  assert.ok(step2.openCookie(oldCookie));
  assert.ok(step1.openCookie(newCookie), "a node still at step 1 opens step-2 cookies");
  // Step 3: the old one is removed.
  const step3 = new CookieKeyring([fresh], 2, () => T);
  assert.equal(step3.openCookie(oldCookie), null);
  assert.ok(step3.openCookie(newCookie));
  // A reload replaces the secrets in place.
  step3.update([old], 2);
  assert.equal(step3.openCookie(newCookie), null);
  assert.throws(() => step3.update([], 2));
  assert.throws(() => step3.update([new Uint8Array(16)], 2));
});

Deno.test("the master key file: hex secrets, comments, errors as FILE:LINE", () => {
  const s1 = "ab".repeat(32), s2 = "cd".repeat(40);
  const ok = parseMasterKeys(`# fleet\n\n${s1}  # current\n${s2}\n`, "m.key");
  assert.ok(Array.isArray(ok));
  assert.equal(ok.length, 2);
  assert.equal(ok[0]![0], 0xab);
  assert.equal(ok[1]!.length, 40);
  assert.equal(
    parseMasterKeys(`# x\nzz${s1}\n`, "m.key"),
    "m.key:2: a secret must be hexadecimal digits (e.g. from `openssl rand -hex 32`)",
  );
  assert.equal(
    parseMasterKeys("abcd\n", "m.key"),
    "m.key:1: a secret needs at least 32 bytes (64 hex digits), this one has 2",
  );
  assert.equal(parseMasterKeys(`${s1}\n${s1}\n`, "m.key"), "m.key:2: this secret is listed twice");
  assert.equal(
    parseMasterKeys("# nothing\n", "m.key"),
    "m.key: no secret (one hex line, e.g. from `openssl rand -hex 32`)",
  );
});
