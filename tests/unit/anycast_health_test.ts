import assert from "assert";
import {
  HealthGate,
  healthReason,
  keepTransition,
  MAX_TRANSITIONS,
} from "../../lib/anycast/health.ts";
import type { HealthInputs } from "../../lib/anycast/health.ts";
import { queryReply } from "../helpers/fixtures.ts";

const good: HealthInputs = {
  leap: 0,
  stratum: 2,
  offsetS: 0.001,
  drain: false,
  selfQuery: queryReply(),
};
const opts = { maxOffsetMs: 10 };

Deno.test("healthReason() is empty only for good time", async (t) => {
  await t.step("good", () => assert.equal(healthReason(good, opts), ""));
  await t.step("a local_stratum state (leap 0, stratum 8) is synchronised", () => {
    assert.equal(healthReason({ ...good, stratum: 8 }, opts), "");
  });
  const cases: [string, Partial<HealthInputs>, RegExp][] = [
    [
      "unsynchronised state",
      { leap: 3, stratum: 16 },
      /^not synchronised \(leap 3, stratum 16\)$/,
    ],
    // Behind a stratum-15 upstream we are 16: the wire says LI 3, so must the gate.
    ["stratum 16 with leap 0", { stratum: 16 }, /^not synchronised \(leap 0, stratum 16\)$/],
    ["stratum 0", { stratum: 0 }, /^not synchronised/],
    ["offset beyond max_offset_ms", { offsetS: -0.0125 }, /^offset 12\.500 ms exceeds 10 ms$/],
    ["offset NaN", { offsetS: NaN }, /offset NaN ms exceeds/],
    ["leap 3", { leap: 3 }, /^not synchronised \(leap 3, stratum 2\)$/],
    ["drain file", { drain: true }, /^drain file present$/],
    [
      "self-query timeout",
      { selfQuery: "no reply from 192.0.2.123:123 within 400 ms" },
      /self-query: no reply/,
    ],
    [
      "self-query rejected by checkReply",
      { selfQuery: "kiss-o'-death RATE" },
      /^self-query: kiss-o'-death RATE$/,
    ],
    [
      "self-query offset",
      { selfQuery: queryReply({ offset: 0.02 }) },
      /^self-query: offset 20\.000 ms exceeds 10 ms$/,
    ],
  ];
  for (const [name, over, re] of cases) {
    await t.step(name, () => assert.match(healthReason({ ...good, ...over }, opts), re));
  }
});

Deno.test("HealthGate rises after `rise` good checks and falls after `fall` bad ones", async (t) => {
  await t.step("rise/fall hysteresis", () => {
    const g = new HealthGate({ rise: 2, fall: 3 });
    assert.equal(g.update(1, ""), null);
    assert.equal(g.healthy, false);
    const up = g.update(2, "");
    assert.deepEqual(up, {
      at: 2,
      subject: "gate",
      from: "unhealthy",
      to: "healthy",
      reason: "2 good check(s) in a row",
    });
    assert.equal(g.update(3, "x"), null);
    assert.equal(g.update(4, "x"), null);
    assert.equal(g.update(5, ""), null, "a good check resets the fall count");
    assert.equal(g.update(6, "x"), null);
    assert.equal(g.update(7, "x"), null);
    const down = g.update(8, "offset 12 ms exceeds 10 ms");
    assert.equal(down?.to, "unhealthy");
    assert.equal(down?.reason, "offset 12 ms exceeds 10 ms");
    assert.equal(g.reason, "offset 12 ms exceeds 10 ms");
  });
  await t.step("a drain withdraws at once", () => {
    const g = new HealthGate({ rise: 1, fall: 5 });
    g.update(1, "");
    assert.equal(g.update(2, "drain file present", { immediate: true })?.to, "unhealthy");
  });
  await t.step("transitions keep the newest 100", () => {
    const list: number[] = [];
    for (let i = 0; i < 150; i++) keepTransition(list, i);
    assert.equal(list.length, MAX_TRANSITIONS);
    assert.equal(list[0], 50);
    assert.equal(list.at(-1), 149);
  });
});
