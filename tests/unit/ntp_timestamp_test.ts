import assert from "assert";
import {
  addSeconds,
  diff,
  fromUnix,
  fromUnixSeconds,
  NTP_UNIX_OFFSET,
  readShort,
  readTimestamp,
  toShort,
  toUnixSeconds,
  writeTimestamp,
  writeUnixTime,
} from "../../lib/ntp/timestamp.ts";

Deno.test("fromUnix() places the Unix epoch at NTP second 2208988800", () => {
  assert.equal(fromUnix(0, 0), BigInt(NTP_UNIX_OFFSET) << 32n);
  assert.equal(fromUnix(0, 500_000_000), (BigInt(NTP_UNIX_OFFSET) << 32n) | 0x80000000n);
});

Deno.test("diff() is signed and era-safe across the 2036 rollover", async (t) => {
  // 2036-02-07T06:28:16Z is NTP second 2^32: era 1 starts, seconds wrap to 0.
  const rollover = 2_085_978_496;
  const before = fromUnix(rollover - 1, 0);
  const after = fromUnix(rollover + 1, 0);
  await t.step("timestamps wrap to small values after the rollover", () => {
    assert.equal(after >> 32n, 1n);
  });
  await t.step("after - before is +2 s, not -2^32 s", () => {
    assert.equal(diff(after, before), 2);
    assert.equal(diff(before, after), -2);
  });
  await t.step("toUnixSeconds() picks the era nearest the pivot", () => {
    assert.equal(toUnixSeconds(after, rollover), rollover + 1);
    assert.equal(toUnixSeconds(before, rollover), rollover - 1);
  });
  await t.step("addSeconds() wraps at 2^64", () => {
    assert.equal(addSeconds(before, 2), after);
  });
});

Deno.test("diff() keeps sub-nanosecond resolution for small offsets", () => {
  const a = fromUnix(1_800_000_000, 123_456_789);
  const b = fromUnix(1_800_000_000, 123_456_000);
  assert.ok(Math.abs(diff(a, b) - 789e-9) < 1e-9);
});

Deno.test("writeUnixTime() applies a correction and carries into seconds", async (t) => {
  const buf = new Uint8Array(8);
  const view = new DataView(buf.buffer);
  await t.step("positive carry", () => {
    writeUnixTime(view, 0, 100, 900_000_000, 0.2);
    assert.ok(Math.abs(diff(readTimestamp(view, 0), fromUnixSeconds(101.1))) < 1e-9);
  });
  await t.step("negative correction borrows", () => {
    writeUnixTime(view, 0, 100, 100_000_000, -0.2);
    assert.ok(Math.abs(diff(readTimestamp(view, 0), fromUnixSeconds(99.9))) < 1e-9);
  });
});

Deno.test("readTimestamp()/writeTimestamp() round-trip", () => {
  const view = new DataView(new ArrayBuffer(8));
  const ts = 0xdeadbeef_01234567n;
  writeTimestamp(view, 0, ts);
  assert.equal(readTimestamp(view, 0), ts);
});

Deno.test("toShort() encodes 16.16 seconds and saturates", () => {
  assert.equal(toShort(1.5), 0x00018000);
  assert.equal(toShort(-1), 0);
  assert.equal(toShort(1e9), 0xffffffff);
  const view = new DataView(new ArrayBuffer(4));
  view.setUint32(0, toShort(0.25));
  assert.equal(readShort(view, 0), 0.25);
});
