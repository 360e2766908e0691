import assert from "assert";
import { checkMac, macLength, writeCryptoNak, writeMac } from "../../lib/auth/mac.ts";
import { digestInto } from "../../lib/auth/digest.ts";
import type { KeyType, SymmetricKey } from "../../lib/auth/keys.ts";
import { parsePacket } from "../../lib/ntp/packet.ts";

const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
const unhex = (s: string) => new Uint8Array(s.match(/../g)!.map((x) => parseInt(x, 16)));

function key(id: number, type: KeyType, secret: Uint8Array): SymmetricKey {
  return { id, type, secret };
}

/** An NTPv`version` client request header (first byte only set). */
function header(version = 4): Uint8Array {
  const b = new Uint8Array(128);
  b[0] = (version << 3) | 3;
  return b;
}

Deno.test("digestInto() is the keyed hash of RFC 5905 and AES-CMAC of RFC 4493", () => {
  const text = new TextEncoder().encode("abcdefgh");
  const pkt = header(4).subarray(0, 48);
  // Independent values: Python hashlib over key ‖ packet.
  const want: [KeyType, string][] = [
    ["MD5", "1f5431551c81c8896b7a117457c0502a"],
    ["SHA1", "f8627ac461acbeaa4c9104e83662b51a68382d03"],
    ["SHA256", "4eb9c70305e8e739e7423d2f4e5b55ef37fa772d5c3e237677c06eca65a8e7d8"],
  ];
  for (const [type, digest] of want) {
    const out = new Uint8Array(32);
    digestInto(key(1, type, text), pkt, out, 0, 32);
    assert.equal(hex(out.subarray(0, digest.length / 2)), digest, type);
  }
  // RFC 4493 §4 examples 1 and 2 (AES-128), RFC 4493's key.
  const k = unhex("2b7e151628aed2a6abf7158809cf4f3c");
  const out = new Uint8Array(16);
  digestInto(key(1, "AES128CMAC", k), new Uint8Array(0), out, 0, 16);
  assert.equal(hex(out), "bb1d6929e95937287fa37d129b756746");
  digestInto(key(1, "AES128CMAC", k), unhex("6bc1bee22e409f96e93d7e117393172a"), out, 0, 16);
  assert.equal(hex(out), "070a16b46b4d4144f79bdd9dd04a287c");
});

Deno.test("macLength() is what ntpsec and chrony (NTPv4) send", () => {
  assert.deepEqual(
    (["MD5", "SHA1", "SHA256", "AES128CMAC", "AES256CMAC"] as const).map(macLength),
    [16, 20, 20, 16, 16],
  );
});

Deno.test("writeMac() then checkMac() for every key type and NTP version", () => {
  const types: KeyType[] = ["MD5", "SHA1", "SHA256", "AES128CMAC", "AES256CMAC"];
  const keys = new Map<number, SymmetricKey>();
  types.forEach((t, i) => {
    const len = t === "AES256CMAC" ? 32 : 16;
    keys.set(10 + i, key(10 + i, t, new Uint8Array(len).fill(i + 1)));
  });
  const trusted = new Set(keys.keys());
  for (const version of [1, 2, 3, 4]) {
    for (const k of keys.values()) {
      const b = header(version);
      b[47] = 42;
      const n = writeMac(k, b, 0, 48);
      assert.equal(n, 48 + 4 + macLength(k.type));
      assert.deepEqual(checkMac(keys, trusted, b, n, version), {
        kind: "ok",
        keyId: k.id,
        dataLength: 48,
      });
      const parsed = parsePacket(b, n);
      assert.ok(typeof parsed !== "string" && parsed.macLength === n - 48);
      // One bit changed in the covered data: bad MAC.
      b[40] = 1;
      assert.deepEqual(checkMac(keys, trusted, b, n, version), {
        kind: "bad-mac",
        keyId: k.id,
        dataLength: 48,
      });
    }
  }
});

Deno.test("checkMac() accepts chrony's whole SHA256 digest in NTPv3 (36-octet MAC)", () => {
  const k = key(7, "SHA256", new Uint8Array([1, 2, 3]));
  const keys = new Map([[7, k]]);
  const b = header(3);
  const n = writeMac(k, b, 0, 48, 32);
  assert.equal(n, 84);
  assert.equal(checkMac(keys, new Set([7]), b, n, 3).kind, "ok");
  // The same 36 octets in NTPv4 are not a MAC (RFC 7822: at most 24), so not "ok".
  b[0] = (4 << 3) | 3;
  assert.notEqual(checkMac(keys, new Set([7]), b, n, 4).kind, "ok");
});

Deno.test("checkMac() finds the MAC after NTPv4 extension fields", () => {
  const k = key(3, "SHA1", new Uint8Array([9, 9]));
  const b = header(4);
  b.set([0x02, 0x04, 0x00, 0x20], 48); // a 32-byte field
  const n = writeMac(k, b, 0, 80);
  assert.deepEqual(checkMac(new Map([[3, k]]), new Set([3]), b, n, 4), {
    kind: "ok",
    keyId: 3,
    dataLength: 80,
  });
});

Deno.test("checkMac() tells none, crypto-NAK, unknown, untrusted and bad length apart", () => {
  const k = key(5, "MD5", new Uint8Array([1]));
  const keys = new Map([[5, k]]);
  const b = header(4);
  assert.deepEqual(checkMac(keys, new Set([5]), b, 48, 4), { kind: "none" });
  const nak = writeCryptoNak(b, 0, 48);
  assert.deepEqual(checkMac(keys, new Set([5]), b, nak, 4), { kind: "crypto-nak", dataLength: 48 });
  const n = writeMac(k, b, 0, 48);
  assert.equal(checkMac(keys, new Set(), b, n, 4).kind, "untrusted");
  assert.equal(checkMac(new Map(), new Set([5]), b, n, 4).kind, "unknown-key");
  // An MD5 key with a 20-byte digest field: wrong length for the key's type.
  const sha = writeMac(key(5, "SHA1", new Uint8Array([1])), b, 0, 48);
  assert.deepEqual(checkMac(keys, new Set([5]), b, sha, 4), {
    kind: "bad-mac",
    keyId: 5,
    dataLength: 48,
  });
});

Deno.test("libcrypto through FFI gives the library's digests, for every key type", async (t) => {
  const { openSslDigest } = await import("../../lib/io/openssl_mac.ts");
  const ffi = openSslDigest();
  if (typeof ffi === "string") {
    console.log(`skipped: ${ffi}`);
    return;
  }
  const { libraryDigest } = await import("../../lib/auth/digest.ts");
  const types: KeyType[] = ["MD5", "SHA1", "SHA256", "AES128CMAC", "AES256CMAC"];
  for (const type of types) {
    await t.step(type, () => {
      const secret = crypto.getRandomValues(new Uint8Array(type === "AES256CMAC" ? 32 : 16));
      const k = key(7, type, secret);
      for (const len of [0, 16, 48, 68, 80]) {
        const data = crypto.getRandomValues(new Uint8Array(len));
        const a = new Uint8Array(40), b = new Uint8Array(40);
        libraryDigest(k, data, a, 4, 32);
        ffi(k, data, b, 4, 32);
        assert.deepEqual(b, a, `${type} over ${len} bytes`);
      }
    });
  }
  // RFC 4493 §4 example 2 through libcrypto too.
  const out = new Uint8Array(16);
  const k = key(1, "AES128CMAC", unhex("2b7e151628aed2a6abf7158809cf4f3c"));
  ffi(k, unhex("6bc1bee22e409f96e93d7e117393172a"), out, 0, 16);
  assert.equal(hex(out), "070a16b46b4d4144f79bdd9dd04a287c");
});
