import assert from "assert";
import { loadConfig } from "../../lib/config/mod.ts";
import type { Config } from "../../lib/config/mod.ts";
import { describePlan, diffSources, isNoop, planReload, sourceKey } from "../../lib/reload.ts";

function config(toml: string): Config {
  const r = loadConfig(toml, "test.toml");
  if (!r.ok) throw new Error(r.errors.join("\n"));
  return r.config;
}

const BASE = `
[server]
listen = ["127.0.0.1:1123"]
allow = ["0.0.0.0/0"]

[[source]]
address = "a.example"

[[source]]
address = "b.example"
kind = "peer"
`;

Deno.test("planReload() rebinds server sockets only when listen, workers or driver change", async (t) => {
  const base = config(BASE);
  await t.step("identical config is a no-op", () => {
    const p = planReload(base, config(BASE));
    assert.ok(isNoop(p));
    assert.equal(p.rebindServer, false);
    assert.equal(describePlan(p), "no change");
  });
  await t.step("allow change reconfigures without rebinding", () => {
    const p = planReload(base, config(BASE.replace('"0.0.0.0/0"]', '"10.0.0.0/8"]')));
    assert.equal(p.rebindServer, false);
    assert.equal(p.reconfigureServer, true);
    assert.deepEqual(p.changed, ["server.allow"]);
  });
  await t.step("rate limit change reconfigures without rebinding", () => {
    const p = planReload(base, config(BASE + "\n[server.rate_limit]\nburst = 2\n"));
    assert.equal(p.rebindServer, false);
    assert.equal(p.reconfigureServer, true);
    assert.deepEqual(p.changed, ["server.rate_limit.burst"]);
  });
  for (
    const [what, next] of [
      ["listen", BASE.replace("1123", "1124")],
      ["workers", BASE.replace("[server]", "[server]\nworkers = 3")],
      ["driver", BASE.replace("[server]", '[server]\ndriver = "portable"')],
    ]
  ) {
    await t.step(`${what} change rebinds`, () => {
      const p = planReload(base, config(next!));
      assert.equal(p.rebindServer, true);
      assert.equal(p.reconfigureServer, false);
      assert.match(describePlan(p), /rebinding server sockets/);
    });
  }
  await t.step("log level, status listen, clock, stats and anycast are flagged", () => {
    const p = planReload(
      base,
      config(
        BASE +
          `
[log]
level = "debug"
[status]
listen = "127.0.0.1:9999"
[clock]
control = false
[stats]
dir = "/tmp/x"
`,
      ),
    );
    assert.deepEqual(
      [p.logLevel, p.status, p.clock, p.stats, p.anycast, p.rebindServer],
      [true, true, true, true, false, false],
    );
    assert.deepEqual(p.changed.sort(), [
      "clock.control",
      "log.level",
      "stats.dir",
      "status.listen",
    ]);
  });
  await t.step("local_stratum is flagged", () => {
    const p = planReload(base, config(BASE.replace("[server]", "[server]\nlocal_stratum = 8")));
    assert.equal(p.localStratum, true);
    assert.deepEqual(p.changed, ["server.local_stratum"]);
  });
});

Deno.test("diffSources() keeps unchanged sources and matches by kind and address", async (t) => {
  const base = config(BASE).source;
  await t.step("a source added keeps the others", () => {
    const next = config(BASE + '\n[[source]]\naddress = "c.example"\n').source;
    const d = diffSources(base, next);
    assert.deepEqual(d.added.map(sourceKey), ["server c.example"]);
    assert.deepEqual(d.kept.map(sourceKey), ["server a.example", "peer b.example"]);
    assert.equal(d.removed.length + d.changed.length, 0);
  });
  await t.step("a source removed keeps the others", () => {
    const next = config(`[[source]]\naddress = "a.example"\n`).source;
    const d = diffSources(base, next);
    assert.deepEqual(d.removed.map(sourceKey), ["peer b.example"]);
    assert.deepEqual(d.kept.map(sourceKey), ["server a.example"]);
  });
  await t.step("changed options of the same source are 'changed', not remove+add", () => {
    const next =
      config(BASE.replace('address = "a.example"', 'address = "A.example"\nprefer = true'))
        .source;
    const d = diffSources(base, next);
    assert.equal(d.changed.length, 1);
    assert.equal(d.changed[0]!.after.prefer, true);
    assert.deepEqual(d.kept.map(sourceKey), ["peer b.example"]);
  });
  await t.step("a kind change is remove + add", () => {
    const next = config(BASE.replace('kind = "peer"', 'kind = "server"')).source;
    const d = diffSources(base, next);
    assert.deepEqual(d.added.map(sourceKey), ["server b.example"]);
    assert.deepEqual(d.removed.map(sourceKey), ["peer b.example"]);
  });
  await t.step("the plan summarises source changes", () => {
    const p = planReload(config(BASE), config(BASE + '\n[[source]]\naddress = "c.example"\n'));
    assert.equal(describePlan(p), "sources +1 -0 ~0 =2");
  });
});
