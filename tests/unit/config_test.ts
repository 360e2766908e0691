import assert from "assert";
import { DEFAULT_CONFIG_TOML, defaultConfig, loadConfig } from "../../lib/config/mod.ts";
import { lineOf, locateKeys } from "../../lib/config/locate.ts";
import { parseSocketAddress, splitHostPort } from "../../lib/config/socket_address.ts";

function errors(text: string): string[] {
  const r = loadConfig(text, "edge.toml");
  return r.ok ? [] : r.errors;
}

Deno.test("an empty file is valid and gives every default", () => {
  const r = loadConfig("", "empty.toml");
  assert.ok(r.ok);
  assert.deepEqual(r.config.server.listen, ["0.0.0.0:123", "[::]:123"]);
  assert.equal(r.config.server.workers, 0);
  assert.deepEqual(r.config.server.rateLimit, {
    intervalS: 2,
    burst: 8,
    kod: true,
    tableSize: 65536,
  });
  assert.equal(r.config.clock.stepThresholdMs, 128);
  assert.equal(r.config.clock.orphanStratum, 7);
  assert.equal(r.config.status.listen, "127.0.0.1:8123");
  assert.equal(r.config.anycast.mode, "off");
  assert.deepEqual(r.config.source, []);
});

Deno.test("the embedded default config is valid and serves from a pool", () => {
  const c = defaultConfig();
  assert.equal(c.source[0]?.kind, "pool");
  assert.ok(DEFAULT_CONFIG_TOML.includes("[server]"));
});

Deno.test("errors name FILE:LINE: key and say what is wrong", async (t) => {
  const cases: [string, string][] = [
    ['[server]\nlisten = ["1.2.3.4"]', 'edge.toml:2: server.listen: "1.2.3.4" needs a port'],
    [
      '[server]\nlisten = ["::1"]',
      'edge.toml:2: server.listen: "::1" needs a port: write "[::1]:123"',
    ],
    [
      '[server]\nlisten = ["example:123"]',
      'edge.toml:2: server.listen: "example" in "example:123" is not an IP address',
    ],
    ['[server]\nworkers = "four"', 'edge.toml:2: server.workers: expected a number, got "four"'],
    ["[server]\nworkers = 1.5", "edge.toml:2: server.workers: expected a whole number, got 1.5"],
    ["[server]\nlocal_stratum = 16", "edge.toml:2: server.local_stratum: 16 is outside 0..15"],
    ["[clock]\ncontrol = 1", "edge.toml:2: clock.control: expected true or false, got 1"],
    [
      '\n\n[server]\nallow = ["10.0.0.0/40"]',
      'edge.toml:4: server.allow: "10.0.0.0/40" has a prefix length outside 0..32',
    ],
    [
      "[srever]\n",
      "edge.toml:1: srever: unknown key (known here: server, clock, source, broadcast, auth, nts, status, stats, log, anycast)",
    ],
    [
      "[server]\nrate_limit = { interval_s = 2, brust = 3 }",
      "edge.toml:2: server.rate_limit.brust: unknown key (known here: interval_s, burst, kod, table_size)",
    ],
    [
      '[[source]]\naddress = "a"\n[[source]]\naddress = "b"\nkind = "peeer"',
      'edge.toml:5: source[1].kind: "peeer" is not one of "server", "pool", "peer", "broadcast"',
    ],
    [
      '[[source]]\naddress = "a"\nmin_poll = 8\nmax_poll = 6',
      "edge.toml:4: source[0].max_poll: 6 is below min_poll 8",
    ],
    ['[anycast]\nmode = "router"', 'edge.toml:2: anycast.router.vip: mode "router" needs a vip'],
    ['[status]\nlisten = "localhost"', 'edge.toml:2: status.listen: "localhost" needs a port'],
  ];
  for (const [text, want] of cases) {
    await t.step(want, () => assert.ok(errors(text).includes(want), errors(text).join("\n")));
  }
});

Deno.test("every error is reported at once, in line order", () => {
  const e = errors('[server]\nworkers = -1\nbogus = true\n\n[clock]\nstep_threshold_ms = "x"\n');
  assert.deepEqual(e.map((l) => l.split(":")[1]), ["2", "3", "6"]);
});

Deno.test("broken TOML syntax gets FILE:LINE too", () => {
  const e = errors('[server]\nlisten = ["127.0.0.1:123",\nworkers = 2\n');
  assert.equal(e.length, 1);
  assert.match(e[0]!, /^edge\.toml:3: invalid TOML: /);
  assert.ok(!e[0]!.includes("\n"));
});

Deno.test("locateKeys() finds keys in tables, arrays of tables, inline tables and multi-line values", () => {
  const text = [
    "# comment [not.a.table]",
    "[server]",
    "listen = [",
    '  "127.0.0.1:123",  # ] not the end',
    "]",
    "rate_limit = { interval_s = 2, burst = 3 }",
    "[[source]]",
    'address = "a"',
    "[[source]]",
    'address = "b"',
    '"quoted.key" = 1',
    'notes = """',
    "x = 1",
    '"""',
    "after = 2",
  ].join("\n");
  const lines = locateKeys(text);
  assert.equal(lines.get("server.listen"), 3);
  assert.equal(lines.get("server.rate_limit.burst"), 6);
  assert.equal(lines.get("source[1].address"), 10);
  assert.equal(lines.get("source[1].quoted.key"), 11);
  assert.equal(lines.get("source[1].x"), undefined);
  assert.equal(lines.get("source[1].after"), 15);
  assert.equal(lineOf(lines, "source[0].kind"), 7);
});

Deno.test("socket addresses need a port; IPv6 is bracketed", () => {
  assert.deepEqual(parseSocketAddress("[::1]:123"), { hostname: "::1", port: 123, family: 6 });
  assert.equal(parseSocketAddress("0.0.0.0:0"), '"0.0.0.0:0": port 0 is out of range');
  assert.equal(parseSocketAddress("1.2.3.4:99999"), '"1.2.3.4:99999": port 99999 is out of range');
  assert.deepEqual(splitHostPort("ntp.example:1123", 123), { host: "ntp.example", port: 1123 });
  assert.deepEqual(splitHostPort("2001:db8::1", 123), { host: "2001:db8::1", port: 123 });
  assert.deepEqual(splitHostPort("[2001:db8::1]:5", 123), { host: "2001:db8::1", port: 5 });
});
