import assert from "assert";
import { asciiRefid, formatRefid, parsePacket, serializePacket } from "../../lib/ntp/packet.ts";
import { CHRONY_REQUEST, hex, NTPDIG_REQUEST, toHex } from "../fixtures/requests.ts";

Deno.test("parsePacket() decodes captured client requests", async (t) => {
  await t.step("ntpdig", () => {
    const p = parsePacket(hex(NTPDIG_REQUEST));
    assert.ok(typeof p !== "string");
    assert.deepEqual([p.leap, p.version, p.mode, p.stratum], [3, 4, 3, 0]);
    assert.equal(p.xmt, 0xeeb12463f6f6b000n);
    assert.equal(p.macLength, 0);
  });
  await t.step("chronyd", () => {
    const p = parsePacket(hex(CHRONY_REQUEST));
    assert.ok(typeof p !== "string");
    assert.deepEqual([p.leap, p.version, p.mode, p.poll, p.precision], [0, 4, 3, 6, 32]);
  });
});

Deno.test("serializePacket() round-trips parsePacket()", () => {
  for (const h of [NTPDIG_REQUEST, CHRONY_REQUEST]) {
    const p = parsePacket(hex(h));
    assert.ok(typeof p !== "string");
    assert.equal(toHex(serializePacket(p)), h);
  }
});

function withTrailer(trailer: number[]): Uint8Array {
  const b = new Uint8Array(48 + trailer.length);
  b.set(hex(CHRONY_REQUEST));
  b.set(trailer, 48);
  return b;
}

Deno.test("parsePacket() walks extension fields and legacy MACs", async (t) => {
  await t.step("a 20-byte MD5 MAC is recognised", () => {
    const p = parsePacket(withTrailer(Array(20).fill(7)));
    assert.ok(typeof p !== "string");
    assert.equal(p.macLength, 20);
  });
  await t.step("a 24-byte SHA-1 MAC and a 4-byte crypto-NAK are recognised", () => {
    for (const len of [24, 4]) {
      const p = parsePacket(withTrailer(Array(len).fill(1)));
      assert.ok(typeof p !== "string" && p.macLength === len);
    }
  });
  await t.step("an extension field followed by a MAC", () => {
    const ef = [0x01, 0x04, 0x00, 0x20, ...Array(28).fill(0)];
    const p = parsePacket(withTrailer([...ef, ...Array(20).fill(9)]));
    assert.ok(typeof p !== "string");
    assert.deepEqual(p.extensions, [{ type: 0x0104, length: 32, offset: 48 }]);
    assert.equal(p.macLength, 20);
  });
  await t.step("an extension field whose length overruns the packet is rejected", () => {
    assert.equal(
      parsePacket(withTrailer([0x01, 0x04, 0x01, 0x00, ...Array(28).fill(0)])),
      "bad-extension",
    );
  });
  await t.step("a length that is not a multiple of 4 is rejected", () => {
    assert.equal(
      parsePacket(withTrailer([0x01, 0x04, 0x00, 0x1e, ...Array(28).fill(0)])),
      "bad-extension",
    );
  });
  await t.step("a zero-length field cannot loop forever", () => {
    assert.equal(parsePacket(withTrailer([0, 0, 0, 0, ...Array(28).fill(0)])), "bad-extension");
  });
  await t.step("NTPv4: a whole SHA256 MAC (ntpdig's 36 octets) where no field can be", () => {
    for (const keyId of [3, 0x00010003]) { // type 0 / a field length of 3
      const mac = [keyId >>> 24, (keyId >>> 16) & 0xff, (keyId >>> 8) & 0xff, keyId & 0xff];
      const p = parsePacket(withTrailer([...mac, ...Array(32).fill(5)]));
      assert.ok(typeof p !== "string", `key ${keyId}`);
      assert.deepEqual([p.extensions, p.macLength], [[], 36]);
    }
    // Key ID 36: type 0 and a field length that spans the trailer: still the MAC.
    const p = parsePacket(withTrailer([0, 0, 0, 36, ...Array(32).fill(5)]));
    assert.ok(typeof p !== "string" && p.macLength === 36 && p.extensions.length === 0);
    // A real field of that length stays a field.
    const f = parsePacket(withTrailer([0x01, 0x04, 0x00, 0x24, ...Array(32).fill(0)]));
    assert.ok(typeof f !== "string" && f.macLength === 0 && f.extensions.length === 1);
  });
  await t.step("a trailer that is neither field nor MAC is rejected", () => {
    assert.equal(parsePacket(withTrailer(Array(8).fill(0))), "bad-extension");
  });
  await t.step("NTPv3 takes all after the header as a MAC (chrony), 4 or 20 to 68 octets", () => {
    const field = [0x01, 0x04, 0x00, 0x20, ...Array(28).fill(0)];
    const b = withTrailer(field);
    b[0] = (3 << 3) | 3;
    const p = parsePacket(b);
    assert.ok(typeof p !== "string");
    assert.deepEqual([p.extensions, p.macLength], [[], 32]);
    for (const len of [8, 16, 72]) {
      const c = withTrailer(Array(len).fill(1));
      c[0] = (3 << 3) | 3;
      assert.equal(parsePacket(c), "bad-extension", `${len}`);
    }
  });
});

Deno.test("parsePacket() rejects short packets and versions outside 1..4", () => {
  assert.equal(parsePacket(new Uint8Array(47)), "short");
  const b = hex(CHRONY_REQUEST);
  for (const v of [0, 5, 7]) {
    b[0] = (v << 3) | 3;
    assert.equal(parsePacket(b), "bad-version");
  }
});

Deno.test("refids render as ntpq shows them", () => {
  assert.equal(formatRefid(asciiRefid("LOCL"), 1), "LOCL");
  assert.equal(formatRefid(asciiRefid("RATE"), 0), "RATE");
  assert.equal(formatRefid(0x7f000001, 2), "127.0.0.1");
  assert.equal(formatRefid(asciiRefid("LOCL"), 8), "LOCL");
});
