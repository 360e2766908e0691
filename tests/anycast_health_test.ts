import assert from "assert";
import {
  HealthGate,
  healthReason,
  keepTransition,
  MAX_TRANSITIONS,
} from "../lib/anycast/health.ts";
import type { HealthInputs } from "../lib/anycast/health.ts";
import { queryReply } from "./helpers/fixtures.ts";

const good: HealthInputs = {
  synchronised: true,
  localStratum: 0,
  leap: 0,
  offsetS: 0.001,
  drain: false,
  selfQuery: queryReply(),
};
const opts = { maxOffsetMs: 10 };

Deno.test("healthReason() is empty only for good time", async (t) => {
  await t.step("good", () => assert.equal(healthReason(good, opts), ""));
  await t.step("local_stratum counts as synchronised", () => {
    assert.equal(healthReason({ ...good, synchronised: false, localStratum: 8 }, opts), "");
  });
  const cases: [string, Partial<HealthInputs>, RegExp][] = [
    ["not synchronised", { synchronised: false }, /^not synchronised$/],
    ["offset beyond max_offset_ms", { offsetS: -0.0125 }, /^offset 12\.500 ms exceeds 10 ms$/],
    ["offset NaN", { offsetS: NaN }, /offset NaN ms exceeds/],
    ["leap 3", { leap: 3 }, /leap indicator 3/],
    ["drain file", { drain: true }, /^drain file present$/],
    [
      "self-query timeout",
      { selfQuery: "no reply from 192.0.2.123:123 within 400 ms" },
      /self-query: no reply/,
    ],
    [
      "self-query KoD",
      { selfQuery: queryReply({ kiss: "RATE", stratum: 0 }) },
      /kiss-o'-death RATE/,
    ],
    [
      "self-query unsynchronised",
      { selfQuery: queryReply({ stratum: 0, leap: 3 }) },
      /server unsynchronised/,
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
