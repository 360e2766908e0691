/** The history ring: bounded memory, rates from counter deltas, jitter, chart buckets. */
import assert from "assert";
import { DEFAULT_CAPACITY, History } from "../../lib/status/history.ts";
import { symlog } from "../../lib/status/chart.ts";
import { fakeCounters, fakeEngine, T0 } from "../helpers/status_fixture.ts";
import type { EngineReport, SourceReport } from "../../lib/engine/report.ts";

function withSources(addresses: string[], offset = 1e-3): EngineReport {
  const e = fakeEngine();
  const base = e.sources[0]!;
  e.sources = addresses.map((address): SourceReport => ({ ...base, address, offset_s: offset }));
  return e;
}

Deno.test("History holds 24 h at one sample per 16 s and no more", async (t) => {
  await t.step("default capacity is 5400 samples", () => {
    assert.equal(DEFAULT_CAPACITY, 5400);
    const h = new History();
    assert.equal(h.bytes, 5400 * 56);
  });
  await t.step("the ring wraps: length and bytes stop growing", () => {
    const h = new History({ capacity: 10, maxSources: 2 });
    for (let i = 0; i < 25; i++) h.add(T0 + i * 16, withSources(["a", "b"]), fakeCounters());
    assert.equal(h.length, 10);
    const bytes = h.bytes;
    for (let i = 25; i < 100; i++) h.add(T0 + i * 16, withSources(["a", "b"]), fakeCounters());
    assert.equal(h.bytes, bytes);
    // The chart sees only what is still in the ring.
    const s = h.series(T0 + 99 * 16, 100 * 16, 200);
    assert.equal(s.system.offset_s.filter((v) => v !== null).length, 10);
  });
  await t.step("more sources than slots are counted, not stored", () => {
    const h = new History({ capacity: 10, maxSources: 2 });
    h.add(T0, withSources(["a", "b", "c"]), fakeCounters());
    assert.equal(h.droppedSources, 1);
    assert.deepEqual(h.series(T0, 100, 10).sources.map((l) => l.label), ["a", "b"]);
  });
  await t.step("a slot is reused once its source's samples have left the ring", () => {
    const h = new History({ capacity: 4, maxSources: 1 });
    h.add(T0, withSources(["old"]), fakeCounters());
    for (let i = 1; i <= 4; i++) h.add(T0 + i, withSources([]), fakeCounters());
    h.add(T0 + 5, withSources(["new"]), fakeCounters());
    assert.equal(h.droppedSources, 0);
    assert.deepEqual(h.series(T0 + 5, 10, 10).sources.map((l) => l.label), ["new"]);
  });
  await t.step("sources with no valid sample are not plotted", () => {
    const h = new History({ capacity: 4 });
    h.add(T0, fakeEngine(), fakeCounters());
    // The fixture's third source has reach 0 and when -1.
    assert.deepEqual(h.series(T0, 100, 10).sources.map((l) => l.label), [
      "192.0.2.1",
      "ntp-b.example.net",
    ]);
  });
});

Deno.test("History.rates() are counter deltas over the window", async (t) => {
  const h = new History({ capacity: 100 });
  await t.step("null before any sample", () => {
    assert.equal(h.rates(T0, fakeCounters()), null);
  });
  h.add(T0, fakeEngine(), fakeCounters(1));
  await t.step("null within the first second", () => {
    assert.equal(h.rates(T0 + 0.5, fakeCounters(2)), null);
  });
  await t.step("from the oldest sample while the ring is young", () => {
    const r = h.rates(T0 + 5, fakeCounters(2))!;
    assert.equal(r.window_s, 5);
    assert.equal(r.received_per_s, 200);
    assert.equal(r.answered_per_s, 190);
    assert.equal(r.kod_per_s, 3);
    assert.equal(r.dropped_per_s, 35 / 5);
  });
  await t.step("from the newest sample at least 10 s old", () => {
    for (let i = 1; i <= 4; i++) h.add(T0 + i * 16, fakeEngine(), fakeCounters(1 + i));
    // Samples at +48 (scale 4) and +64 (scale 5); at +70 the +48 one is the newest ≥ 10 s old.
    const r = h.rates(T0 + 70, fakeCounters(6))!;
    assert.equal(r.window_s, 22);
    assert.equal(r.received_per_s, 2000 / 22);
  });
  await t.step("a counter reset gives 0, not a negative rate", () => {
    assert.equal(h.rates(T0 + 100, fakeCounters(0))!.received_per_s, 0);
  });
});

Deno.test("History.systemJitter follows ntpd's exponential average of update differences", () => {
  const h = new History({ capacity: 10 });
  const at = (refTime: number, offset: number) =>
    h.add(refTime, fakeEngine({ ref_time: refTime, offset_s: offset }), fakeCounters());
  at(T0, 0);
  assert.equal(h.systemJitter, 0);
  at(T0 + 64, 8e-6);
  assert.ok(Math.abs(h.systemJitter - Math.sqrt(64e-12 / 8)) < 1e-15);
  const j = h.systemJitter;
  // The same clock update sampled again is not a new difference.
  h.add(T0 + 80, fakeEngine({ ref_time: T0 + 64, offset_s: 8e-6 }), fakeCounters());
  assert.equal(h.systemJitter, j);
});

Deno.test("History.series() buckets means across the span; symlog is symmetric", () => {
  const h = new History({ capacity: 100 });
  h.add(T0, withSources(["a"], 2e-3), fakeCounters());
  h.add(T0 + 10, withSources(["a"], 4e-3), fakeCounters());
  h.add(T0 + 50, withSources(["a"], -1e-3), fakeCounters());
  const s = h.series(T0 + 60, 60, 3);
  assert.deepEqual(s.sources[0]!.offset_s.map((v) => v === null ? null : +v.toFixed(6)), [
    0.003,
    null,
    -0.001,
  ]);
  assert.equal(symlog(-1e-3), -symlog(1e-3));
  assert.equal(symlog(0), 0);
  assert.ok(Math.abs(symlog(1e-3) - 3) < 0.001);
});
