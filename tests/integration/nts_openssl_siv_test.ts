/**
 * OpenSSL's AES-SIV (lib/io/openssl_siv.ts) gives the same bytes as the
 * TypeScript one and refuses what that one refuses, including the cases it
 * hands back (empty plaintext, empty AD); installed, the NTS path works.
 */
import assert from "assert";
import { opensslSiv } from "../../lib/io/openssl_siv.ts";
import { aeadFor, nobleAesSiv, useSivImplementation } from "../../lib/nts/aead.ts";
import { CookieKeyring } from "../../lib/nts/cookie.ts";

Deno.test("OpenSSL AES-SIV-CMAC-256 = @noble/ciphers AES-SIV, both ways", () => {
  const o = opensslSiv(nobleAesSiv);
  assert.ok(typeof o !== "string", String(o));
  for (let i = 0; i < 300; i++) {
    const key = crypto.getRandomValues(new Uint8Array(32));
    const nonce = crypto.getRandomValues(new Uint8Array(16));
    const pt = crypto.getRandomValues(new Uint8Array(i % 130));
    const ad = crypto.getRandomValues(new Uint8Array((i * 7) % 300));
    const a = o.seal(key, nonce, pt, ad), b = nobleAesSiv.seal(key, nonce, pt, ad);
    assert.deepEqual(a, b, `sealed bytes, case ${i}`);
    assert.deepEqual(o.open(key, nonce, b, ad), pt);
    const bad = b.slice();
    bad[i % bad.length]! ^= 1;
    assert.equal(o.open(key, nonce, bad, ad), null, `changed byte, case ${i}`);
    assert.equal(o.open(key, crypto.getRandomValues(new Uint8Array(16)), b, ad), null);
  }
  assert.equal(
    o.open(new Uint8Array(32), new Uint8Array(16), new Uint8Array(10), new Uint8Array(4)),
    null,
  );
});

Deno.test("with OpenSSL's AES-SIV installed, cookies and AEAD 15 work as before", () => {
  const o = opensslSiv(nobleAesSiv);
  assert.ok(typeof o !== "string");
  const ring = new CookieKeyring([new Uint8Array(32).fill(4)], 2);
  const k = new Uint8Array(32).fill(9);
  const before = ring.makeCookies(15, k, k, 1)[0]!;
  assert.equal(useSivImplementation(o), "openssl");
  try {
    const after = ring.makeCookies(15, k, k, 1)[0]!;
    assert.ok(ring.openCookie(before), "a cookie sealed by the TypeScript AES-SIV opens");
    useSivImplementation(null);
    assert.ok(ring.openCookie(after), "and the other way");
    useSivImplementation(o);
    const a = aeadFor(15)!;
    const ct = a.seal(k, new Uint8Array(16), new Uint8Array(0), new Uint8Array(48));
    assert.deepEqual(a.open(k, new Uint8Array(16), ct, new Uint8Array(48)), new Uint8Array(0));
  } finally {
    assert.equal(useSivImplementation(null), "noble");
  }
});
