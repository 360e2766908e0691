/**
 * The one config validation (`loadConfig`) that `check-config`, `run` and
 * a reload share: addresses that `run` could not use and duplicate
 * sources are errors with FILE:LINE, and a property test over generated
 * configs checks that exactly the invalid values are reported, each on
 * its own line. The processes themselves are in config_run_test.ts.
 */
import assert from "assert";
import { loadConfig } from "../../lib/config/mod.ts";
import { locateKeys } from "../../lib/config/locate.ts";
import { genConfig, mulberry32 } from "../helpers/config_gen.ts";

function errors(text: string): string[] {
  const r = loadConfig(text, "edge.toml");
  return r.ok ? [] : r.errors;
}

const source = (address: string, extra = "") =>
  `[[source]]\naddress = ${JSON.stringify(address)}\n${extra}`;

Deno.test("source addresses that run cannot use are FILE:LINE errors", async (t) => {
  const cases: [string, string][] = [
    ["127.0.0.1:99999", "port 99999 is out of range"],
    ["127.0.0.1:0", "port 0 is out of range"],
    ["127.0.0.1:abc", 'port "abc" is not a number'],
    ["127.0.0.1:", 'the port after ":" is missing'],
    ["ntp.example:123456789", "port 123456789 is out of range"],
    ["[::1]:70000", "port 70000 is out of range"],
    ["[::1]:", 'the port after ":" is missing'],
    [":123", '":123" has no host before ":"'],
    ["[::1", '"[::1" has unbalanced brackets'],
    ["::1]:123", '"::1]:123" has unbalanced brackets'],
    [
      "[192.0.2.1]:123",
      '"[192.0.2.1]:123": brackets are for IPv6 addresses; write "192.0.2.1:123"',
    ],
    ["[ntp.example]", '"[ntp.example]": brackets are for IPv6 addresses; write "ntp.example"'],
    ["[zz::1]:123", '"[zz::1]:123": "zz::1" is not an IPv6 address'],
    ["1.2.3.256", '"1.2.3.256" is not an IP address'],
    ["12345", '"12345" is not an IP address'],
    ["127.000.0.1", '"127.000.0.1" is not an IP address'],
    ["ntp..example", '"ntp..example" is not a valid host name'],
    ["-ntp.example", '"-ntp.example" is not a valid host name'],
    ["ntp.example/24", '"ntp.example/24" is not a valid host name'],
    ["ntp example", '"ntp example" contains white space'],
    [
      "2001:db8::1:123:",
      '"2001:db8::1:123:" is not an IPv6 address (an IPv6 address with a port is written "[ADDR]:PORT")',
    ],
    ["fe80::1%eth0", '"fe80::1%eth0": zone indexes (%) are not supported'],
    ["0.0.0.0", '"0.0.0.0" is the unspecified address, not a server\'s address'],
    ["[::]", '"::" is the unspecified address, not a server\'s address'],
    ["255.255.255.255", '"255.255.255.255" is the broadcast address, not a server\'s address'],
    ["224.0.1.1", '"224.0.1.1" is a multicast address, not a server\'s address'],
    ["ff05::101", '"ff05::101" is a multicast address, not a server\'s address'],
    ["", "must not be empty"],
  ];
  for (const [address, message] of cases) {
    await t.step(address || "(empty)", () => {
      const text = `[server]\nlisten = ["127.0.0.1:123"]\n\n${source(address)}`;
      assert.deepEqual(errors(text), [`edge.toml:5: source[0].address: ${message}`]);
    });
  }
  await t.step("a [[source]] without an address", () => {
    assert.deepEqual(errors('[[source]]\nkind = "peer"\n'), [
      "edge.toml:1: source[0].address: is required",
    ]);
  });
});

Deno.test("source addresses run can use are accepted", () => {
  for (
    const a of [
      "192.0.2.1",
      "192.0.2.1:1123",
      "192.0.2.1:0123",
      "2001:db8::1",
      "[2001:db8::1]",
      "[2001:db8::1]:123",
      "::ffff:192.0.2.1",
      "ntp.example",
      "NTP.Example.",
      "time-a.example.net:1123",
      "_ntp.example",
      "localhost",
    ]
  ) {
    assert.deepEqual(errors(source(a)), [], a);
  }
});

Deno.test("listen and status addresses that run cannot use are FILE:LINE errors", async (t) => {
  const cases: [string, string][] = [
    ['[server]\nlisten = ["127.0.0.1:99999"]', '"127.0.0.1:99999": port 99999 is out of range'],
    ['[server]\nlisten = ["127.0.0.1:0"]', '"127.0.0.1:0": port 0 is out of range'],
    ['[server]\nlisten = ["127.0.0.1:x"]', '"127.0.0.1:x": port "x" is not a number'],
    ['[server]\nlisten = ["[::1]"]', '"[::1]" needs a port: write "[::1]:123"'],
    ['[server]\nlisten = ["[::1"]', '"[::1" has unbalanced brackets'],
    [
      '[server]\nlisten = ["[127.0.0.1]:123"]',
      '"[127.0.0.1]:123": brackets are for IPv6 addresses; write "127.0.0.1:123"',
    ],
    ['[server]\nlisten = ["localhost:123"]', '"localhost" in "localhost:123" is not an IP address'],
    ['[server]\nlisten = ["[fe80::1%lo]:123"]', '"fe80::1%lo": zone indexes (%) are not supported'],
    ["[server]\nlisten = []", "must not be empty"],
    [
      '[server]\nlisten = ["127.0.0.1:123", "127.0.0.1:0123"]',
      '"127.0.0.1:0123" is listed twice',
    ],
    ['[server]\nlisten = ["[::1]:123", "[0::1]:123"]', '"[0::1]:123" is listed twice'],
  ];
  for (const [text, message] of cases) {
    await t.step(message, () => {
      assert.deepEqual(errors(text), [`edge.toml:2: server.listen: ${message}`]);
    });
  }
  await t.step("status.listen", () => {
    assert.deepEqual(errors('[status]\nlisten = "127.0.0.1:0"'), [
      'edge.toml:2: status.listen: "127.0.0.1:0": port 0 is out of range',
    ]);
    assert.deepEqual(errors('[status]\nlisten = "[::1]:80800"'), [
      'edge.toml:2: status.listen: "[::1]:80800": port 80800 is out of range',
    ]);
  });
  await t.step("anycast interface names and duplicate nodes", () => {
    assert.deepEqual(errors('[anycast]\ninterface = "eth0:1"'), [
      'edge.toml:2: anycast.interface: "eth0:1" is not an interface name',
    ]);
    assert.deepEqual(errors('[anycast]\ninterface = "a-very-long-name0"'), [
      'edge.toml:2: anycast.interface: "a-very-long-name0" is longer than 15 bytes',
    ]);
    assert.deepEqual(
      errors('[anycast.router]\nnodes = ["10.0.0.1", "10.0.0.2", "10.0.0.1"]'),
      ['edge.toml:2: anycast.router.nodes: "10.0.0.1" is listed twice'],
    );
    assert.deepEqual(errors('[anycast.bird]\nbirdc = ["", "-s", "/run/bird.ctl"]'), [
      "edge.toml:2: anycast.bird.birdc: must not be empty",
    ]);
  });
});

Deno.test("duplicate sources are errors naming both lines, whatever their kinds", async (t) => {
  const file = (a: string, b: string, kinds = ["server", "peer"]) =>
    [
      "[server]",
      'listen = ["127.0.0.1:123"]',
      "",
      "[[source]]",
      `address = ${JSON.stringify(a)}`,
      `kind = "${kinds[0]}"`,
      "",
      "[[source]]",
      `address = ${JSON.stringify(b)}`,
      `kind = "${kinds[1]}"`,
    ].join("\n");
  const same = "edge.toml:9: source[1].address: same source as source[0] (line 5)";
  const pairs: [string, string][] = [
    ["192.0.2.1", "192.0.2.1"],
    ["127.0.0.1", "127.0.0.1:123"],
    ["127.0.0.1:123", "127.0.0.1:0123"],
    ["NTP.example.net", "ntp.EXAMPLE.net"],
    ["ntp.example.net", "ntp.example.net.:123"],
    ["[::1]:123", "::1"],
    ["2001:db8::1", "[2001:0db8:0:0::1]"],
  ];
  for (const [a, b] of pairs) {
    await t.step(`${a} / ${b}`, () => assert.deepEqual(errors(file(a, b)), [same]));
  }
  await t.step("a pool and a server of the same name", () => {
    assert.deepEqual(errors(file("pool.ntp.org", "pool.ntp.org", ["pool", "server"])), [same]);
  });
  await t.step("other ports or other hosts are different sources", () => {
    assert.deepEqual(errors(file("127.0.0.1", "127.0.0.1:1123")), []);
    assert.deepEqual(errors(file("127.0.0.1", "127.0.0.2")), []);
    assert.deepEqual(errors(file("ntp.example", "ntp.example.net")), []);
  });
  await t.step("a third copy names the first", () => {
    const text = file("192.0.2.1", "192.0.2.2") + '\n[[source]]\naddress = "192.0.2.1:123"\n';
    assert.deepEqual(errors(text), [
      "edge.toml:12: source[2].address: same source as source[0] (line 5)",
    ]);
  });
  await t.step("reported together with the file's other errors", () => {
    const text = file("192.0.2.1", "192.0.2.1").replace(
      'listen = ["127.0.0.1:123"]',
      "workers = -1",
    );
    assert.deepEqual(errors(text), [
      "edge.toml:2: server.workers: -1 is outside 0..64",
      same,
    ]);
  });
});

Deno.test("property: loadConfig reports exactly the invalid values of generated configs", () => {
  const rand = mulberry32(0x5eed12);
  let accepted = 0, rejected = 0;
  for (let i = 0; i < 600; i++) {
    const g = genConfig(rand, { wide: true });
    let r: ReturnType<typeof loadConfig>;
    try {
      r = loadConfig(g.text, "gen.toml");
    } catch (e) {
      assert.fail(`loadConfig threw on config ${i}: ${e}\n${g.text}`);
    }
    const got = r.ok ? [] : r.errors;
    const lines = locateKeys(g.text);
    const want = g.expected.map((e) => `gen.toml:${lines.get(e.line)}: ${e.path}: `);
    const ctx = `config ${i}:\n${g.text}\ngot:\n${got.join("\n")}`;
    assert.equal(got.length, want.length, ctx);
    for (const w of want) assert.ok(got.some((l) => l.startsWith(w)), `missing ${w}\n${ctx}`);
    for (const l of got) {
      assert.match(l, /^gen\.toml:\d+: [a-z_.\[\]0-9]+: [^\n]+$/, ctx);
    }
    if (r.ok) accepted++;
    else rejected++;
  }
  // The generator mixes enough of both for the property to say something.
  assert.ok(accepted > 100 && rejected > 100, `${accepted} accepted, ${rejected} rejected`);
});
