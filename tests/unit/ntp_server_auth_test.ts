/** The server's answer to requests with a MAC (RFC 5905 §9.2; ntpd's and chrony's rules). */
import assert from "assert";
import { serverContext } from "../helpers/fixtures.ts";
import { newClientAddress, parseIp, setClientAddress } from "../../lib/ntp/address.ts";
import { Leap } from "../../lib/ntp/packet.ts";
import {
  Counter,
  REPLY_LENGTH,
  REPLY_SEAL,
  respond,
  type ServerContext,
  stampTransmit,
} from "../../lib/ntp/server.ts";
import { unsyncedState } from "../../lib/ntp/system_state.ts";
import { checkMac, writeMac } from "../../lib/auth/mac.ts";
import type { KeyType, SymmetricKey } from "../../lib/auth/keys.ts";
import { CHRONY_REQUEST, hex } from "../fixtures/requests.ts";

const KEYS = new Map<number, SymmetricKey>([
  [1, { id: 1, type: "MD5", secret: new TextEncoder().encode("one") }],
  [2, { id: 2, type: "SHA1", secret: new TextEncoder().encode("two") }],
  [3, { id: 3, type: "SHA256", secret: new TextEncoder().encode("three") }],
  [4, { id: 4, type: "AES128CMAC", secret: new Uint8Array(16).fill(4) }],
  [5, { id: 5, type: "MD5", secret: new TextEncoder().encode("not trusted") }],
]);
const TRUSTED = new Set([1, 2, 3, 4]);

function context(): ServerContext {
  const ctx = serverContext({ ...unsyncedState(-20), leap: Leap.none, stratum: 2 });
  ctx.auth = { check: (req, len, v) => checkMac(KEYS, TRUSTED, req, len, v) };
  return ctx;
}

function client() {
  const c = newClientAddress();
  setClientAddress(c, parseIp("192.0.2.50")!, 0, 4, 40000);
  return c;
}

/** A chrony request of `version` with a MAC by `key` (`digest` bytes of it). */
function request(key: SymmetricKey, version = 4, digest?: number): Uint8Array {
  const b = new Uint8Array(128);
  b.set(hex(CHRONY_REQUEST));
  b[0] = (b[0]! & 0xc7) | (version << 3);
  const n = writeMac(key, b, 0, 48, digest);
  return b.subarray(0, n);
}

/** respond, then the driver's steps: stamp, and the post-stamp MAC of the worker. */
function serve(req: Uint8Array, ctx: ServerContext) {
  const out = new Uint8Array(128);
  const r = respond(req, req.length, client(), 1_800_000_016, 250_000_000, ctx, out, 0);
  stampTransmit(out, 0, ctx.system, 1_800_000_016, 250_040_000);
  const n = r & REPLY_LENGTH;
  if (r & REPLY_SEAL) writeMac(KEYS.get(keyIdAt(out))!, out, 0, 48, n - 52);
  return { r, n, out: out.subarray(0, n) };
}

function keyIdAt(b: Uint8Array): number {
  return new DataView(b.buffer, b.byteOffset).getUint32(48);
}

Deno.test("respond() answers a valid MAC of a trusted key with a MAC by that key", async (t) => {
  for (const id of [1, 2, 3, 4]) {
    const key = KEYS.get(id)!;
    for (const version of [3, 4]) {
      await t.step(`${key.type} NTPv${version}`, () => {
        const ctx = context();
        const req = request(key, version);
        const { r, n, out } = serve(req, ctx);
        assert.equal(r & REPLY_SEAL, REPLY_SEAL, "the MAC waits for the stamped xmt");
        assert.equal(n, req.length, "same MAC length as the request");
        assert.equal(keyIdAt(out), id);
        assert.deepEqual(checkMac(KEYS, TRUSTED, out, n, version), {
          kind: "ok",
          keyId: id,
          dataLength: 48,
        });
        assert.equal(ctx.counters[Counter.authenticated], 1);
        assert.equal(ctx.counters[Counter.cryptoNak], 0);
      });
    }
  }
  await t.step("ntpdig's whole SHA256 digest in NTPv4 is answered whole", () => {
    const req = request(KEYS.get(3)!, 4, 32);
    const { n, out } = serve(req, context());
    assert.equal(n, 84);
    assert.equal(checkMac(KEYS, TRUSTED, out, n, 4).kind, "ok");
  });
  await t.step("chrony's whole SHA256 digest in NTPv3 is answered whole", () => {
    const req = request(KEYS.get(3)!, 3, 32);
    const { n, out } = serve(req, context());
    assert.equal(n, 84);
    assert.equal(checkMac(KEYS, TRUSTED, out, n, 3).kind, "ok");
  });
});

Deno.test("respond() answers unknown and untrusted keys and bad MACs with a crypto-NAK", async (t) => {
  const cases: [string, Uint8Array, boolean][] = [
    ["untrusted key", request(KEYS.get(5)!), false],
    ["unknown key", request({ id: 9, type: "MD5" as KeyType, secret: new Uint8Array(3) }), false],
    [
      "bad digest",
      (() => {
        const b = request(KEYS.get(2)!);
        b[b.length - 1]! ^= 1;
        return b;
      })(),
      true,
    ],
  ];
  for (const [name, req, bad] of cases) {
    await t.step(name, () => {
      const ctx = context();
      const { r, n, out } = serve(req, ctx);
      assert.equal(r & REPLY_SEAL, 0);
      assert.equal(n, 52);
      assert.equal(keyIdAt(out), 0);
      assert.equal(checkMac(KEYS, TRUSTED, out, n, 4).kind, "crypto-nak");
      assert.equal(ctx.counters[Counter.cryptoNak], 1);
      assert.equal(ctx.counters[Counter.badMac], bad ? 1 : 0);
      assert.equal(ctx.counters[Counter.authenticated], 0);
    });
  }
});

Deno.test("respond() answers an NTPv3 MAC of a digest type it has no keys for with a crypto-NAK", () => {
  // chronyd sends whole SHA512 digests in NTPv3: key ID and 64 bytes.
  const req = new Uint8Array(48 + 68);
  req.set(hex(CHRONY_REQUEST));
  req[0] = (req[0]! & 0xc7) | (3 << 3);
  req[51] = 7;
  const ctx = context();
  const { n, out } = serve(req, ctx);
  assert.equal(n, 52);
  assert.equal(keyIdAt(out), 0);
  assert.equal(ctx.counters[Counter.cryptoNak], 1);
});
