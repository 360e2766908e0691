import assert from "assert";
import {
  decodeMessage,
  encodeRecords,
  type KeRecord,
  readU16s,
  rec,
  RecordType,
  u16Body,
} from "../../lib/nts/ke_records.ts";

const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
const fromHex = (s: string) => new Uint8Array(s.match(/../g)!.map((h) => parseInt(h, 16)));

Deno.test("encodeRecords() writes every RFC 8915 §4 record type with its critical bit", async (t) => {
  const cases: [string, KeRecord, string][] = [
    ["End of Message", rec.endOfMessage(), "80000000"],
    ["Next Protocol NTPv4", rec.nextProtocol([0]), "800100020000"],
    ["Error bad request", rec.error(1), "800200020001"],
    ["Warning", rec.warning(7), "800300020007"],
    ["AEAD 30, 15", rec.aead([30, 15]), "80040004001e000f"],
    ["New Cookie (not critical)", rec.cookie(fromHex("deadbeef")), "00050004deadbeef"],
    ["NTPv4 Server", rec.server("a.b"), "80060003612e62"],
    ["NTPv4 Port 1123", rec.port(1123), "800700020463"],
  ];
  for (const [name, r, want] of cases) {
    await t.step(name, () => {
      const bytes = encodeRecords([r]);
      assert.equal(hex(bytes), want);
      // and back
      const m = decodeMessage(encodeRecords([r, rec.endOfMessage()]));
      assert.equal(m.kind, "message");
      if (m.kind !== "message") return;
      if (r.type !== RecordType.END_OF_MESSAGE) {
        assert.equal(m.records[0]!.type, r.type);
        assert.equal(m.records[0]!.critical, r.critical);
        assert.deepEqual(m.records[0]!.body, r.body);
      }
    });
  }
});

Deno.test("decodeMessage() waits for End of Message across partial reads", () => {
  const msg = encodeRecords([rec.nextProtocol([0]), rec.aead([15]), rec.endOfMessage()]);
  for (let cut = 0; cut < msg.length; cut++) {
    assert.equal(decodeMessage(msg.subarray(0, cut)).kind, "partial", `cut at ${cut}`);
  }
  const m = decodeMessage(msg);
  assert.equal(m.kind, "message");
  if (m.kind === "message") {
    assert.equal(m.length, msg.length);
    assert.deepEqual(m.records.map((r) => r.type), [1, 4, 0]);
  }
});

Deno.test("decodeMessage() stops at End of Message; later bytes are not part of it", () => {
  const msg = encodeRecords([rec.nextProtocol([0]), rec.endOfMessage(), rec.error(2)]);
  const m = decodeMessage(msg);
  assert.equal(m.kind, "message");
  if (m.kind === "message") assert.equal(m.length, 10);
});

Deno.test("decodeMessage() refuses an End of Message with a body and an oversized message", () => {
  const eomBody = fromHex("8000000100");
  assert.equal(decodeMessage(eomBody).kind, "invalid");
  const big = encodeRecords([{ critical: false, type: 99, body: new Uint8Array(20000) }]);
  const m = decodeMessage(big.subarray(0, 100));
  assert.equal(m.kind, "invalid"); // the header already says it will not fit
  // A stream of small records that never ends is cut at the limit too.
  const many = encodeRecords(
    Array.from({ length: 5000 }, () => ({ critical: false, type: 99, body: new Uint8Array(0) })),
  );
  assert.equal(decodeMessage(many, 16384).kind, "invalid");
});

Deno.test("u16Body() and readU16s() are big-endian; an odd body is null", () => {
  assert.equal(hex(u16Body([1, 0xabcd])), "0001abcd");
  assert.deepEqual(readU16s(fromHex("000f001e")), [15, 30]);
  assert.equal(readU16s(fromHex("000f00")), null);
  assert.deepEqual(readU16s(new Uint8Array(0)), []);
});
