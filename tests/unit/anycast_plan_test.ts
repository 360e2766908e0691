import assert from "assert";
import {
  canonicalCidr,
  formatAction,
  includeText,
  parseAddrJson,
  parseBirdReply,
  parseIncludeText,
  parseRouteJson,
  planNode,
  planRouter,
} from "../../lib/anycast/plan.ts";

const fixture = (name: string) =>
  Deno.readTextFileSync(new URL(`../fixtures/anycast/${name}`, import.meta.url));

const NODE = {
  addresses: ["192.0.2.123/32", "2001:DB8::123/128"],
  interface: "lo",
  includeFile: "/etc/bird/edge-time-anycast.conf",
  birdc: ["birdc", "-s", "/run/bird.ctl"],
};
const ANNOUNCED = includeText(NODE.addresses);
const WITHDRAWN = includeText([]);

Deno.test("parseRouteJson() reads both ip -j route shapes", async (t) => {
  await t.step("single gateway", () => {
    assert.deepEqual(parseRouteJson(fixture("ip_route_single.json")), ["10.0.1.2"]);
  });
  await t.step("nexthops array", () => {
    assert.deepEqual(parseRouteJson(fixture("ip_route_multipath.json")), ["10.0.1.2", "10.0.2.2"]);
  });
  await t.step("IPv6: skips the local route of an address on lo", () => {
    assert.deepEqual(parseRouteJson(fixture("ip6_route_multipath.json")), [
      "2001:db8:1::2",
      "2001:db8:1::3",
    ]);
  });
  await t.step("no route", () => assert.equal(parseRouteJson(fixture("ip_route_none.json")), null));
  await t.step("malformed JSON throws", () => assert.throws(() => parseRouteJson("[{")));
});

Deno.test("parseAddrJson() lists address/len of an interface", () => {
  assert.deepEqual(parseAddrJson(fixture("ip_addr_lo.json")), [
    "127.0.0.1/8",
    "192.0.2.123/32",
    "2001:db8::123/128",
    "::1/128",
  ]);
});

Deno.test("canonicalCidr() writes RFC 5952 text with a prefix length", () => {
  assert.equal(canonicalCidr("2001:DB8:0:0::123"), "2001:db8::123/128");
  assert.equal(canonicalCidr("192.0.2.123"), "192.0.2.123/32");
  assert.equal(canonicalCidr("2001:db8:0:1:0:0:0:1/64"), "2001:db8:0:1::1/64");
});

Deno.test("includeText() defines both sets, empty when withdrawn", () => {
  assert.match(ANNOUNCED, /define EDGE_TIME_ANYCAST4 = \[ 192\.0\.2\.123\/32 \];/);
  assert.match(ANNOUNCED, /define EDGE_TIME_ANYCAST6 = \[ 2001:db8::123\/128 \];/);
  assert.match(WITHDRAWN, /define EDGE_TIME_ANYCAST4 = \[ \];\ndefine EDGE_TIME_ANYCAST6 = \[ \];/);
  assert.deepEqual(parseIncludeText(ANNOUNCED), ["192.0.2.123/32", "2001:db8::123/128"]);
  assert.deepEqual(parseIncludeText(WITHDRAWN), []);
});

Deno.test("parseBirdReply() judges birdc -v replies", async (t) => {
  await t.step("0003 Reconfigured is success", () => {
    assert.deepEqual(
      parseBirdReply({ code: 0, stdout: fixture("birdc_configure_ok.txt"), stderr: "" }),
      {
        ok: true,
      },
    );
  });
  for (
    const code of [
      "0004 Reconfiguration in progress",
      "0005 Reconfiguration already in progress, queueing new config",
    ]
  ) {
    await t.step(`${code.slice(0, 4)} is success`, () => {
      assert.equal(
        parseBirdReply({ code: 0, stdout: `0001 BIRD ready.\n${code}\n`, stderr: "" }).ok,
        true,
      );
    });
  }
  await t.step("8002 carries BIRD's own message", () => {
    const r = parseBirdReply({ code: 1, stdout: fixture("birdc_configure_error.txt"), stderr: "" });
    assert.equal(r.ok, false);
    assert.match(
      (r as { message: string }).message,
      /Unable to open included file .*nonexist\.conf/,
    );
  });
  await t.step("9001 is failure", () => {
    assert.equal(parseBirdReply({ code: 0, stdout: "9001 syntax error\n", stderr: "" }).ok, false);
  });
  await t.step("non-zero exit with stderr (BIRD not running)", () => {
    const r = parseBirdReply({
      code: 1,
      stdout: "",
      stderr:
        "Unable to connect to server control socket (/run/bird.ctl): No such file or directory\n",
    });
    assert.deepEqual(r, {
      ok: false,
      message:
        "Unable to connect to server control socket (/run/bird.ctl): No such file or directory",
    });
  });
  await t.step("8001 Network not found from show route", () => {
    assert.equal(
      parseBirdReply({ code: 0, stdout: fixture("birdc_show_route_missing.txt"), stderr: "" }).ok,
      false,
    );
    assert.equal(
      parseBirdReply({ code: 0, stdout: fixture("birdc_show_route.txt"), stderr: "" }).ok,
      true,
    );
  });
});

Deno.test("planNode() plans the commands between two states", async (t) => {
  const lines = (a: ReturnType<typeof planNode>) => a.map(formatAction);
  await t.step("fresh node, healthy: address, include, configure, confirm", () => {
    const a = planNode(NODE, { held: ["127.0.0.1/8"], include: null, configured: null }, {
      hold: true,
      announce: true,
    });
    assert.deepEqual(lines(a).map((l) => l.split("\n")[0]), [
      "ip addr replace 192.0.2.123/32 dev lo",
      "ip addr replace 2001:db8::123/128 dev lo",
      "cat > /etc/bird/edge-time-anycast.conf <<'EOF'  # atomically: temp file + rename",
      "birdc -s /run/bird.ctl configure",
      "birdc -s /run/bird.ctl show route 192.0.2.123/32",
      "birdc -s /run/bird.ctl show route 2001:db8::123/128",
    ]);
  });
  await t.step("idempotent: nothing when the state already matches", () => {
    const held = ["192.0.2.123/32", "2001:db8::123/128"];
    assert.deepEqual(
      planNode(NODE, { held, include: ANNOUNCED, configured: ANNOUNCED }, {
        hold: true,
        announce: true,
      }),
      [],
    );
    assert.deepEqual(
      planNode(NODE, { held, include: WITHDRAWN, configured: WITHDRAWN }, {
        hold: true,
        announce: false,
      }),
      [],
    );
  });
  await t.step(
    "file right but BIRD never accepted it (earlier failure, or start): configure only",
    () => {
      const a = planNode(NODE, {
        held: ["192.0.2.123/32", "2001:db8::123/128"],
        include: WITHDRAWN,
        configured: null,
      }, { hold: true, announce: false });
      assert.deepEqual(lines(a), ["birdc -s /run/bird.ctl configure"]);
    },
  );
  await t.step("withdraw on exit: BIRD first, then the addresses", () => {
    const a = planNode(NODE, {
      held: ["192.0.2.123/32", "2001:db8::123/128"],
      include: ANNOUNCED,
      configured: ANNOUNCED,
    }, { hold: false, announce: false });
    const l = lines(a);
    assert.match(l[0]!, /^cat > /);
    assert.match(l[0]!, /ANYCAST4 = \[ \]/);
    assert.deepEqual(l.slice(1), [
      "birdc -s /run/bird.ctl configure",
      "ip addr del 192.0.2.123/32 dev lo",
      "ip addr del 2001:db8::123/128 dev lo",
    ]);
  });
  await t.step('include_file = "": only the address', () => {
    const a = planNode(
      { ...NODE, includeFile: "" },
      { held: [], include: null, configured: null },
      {
        hold: true,
        announce: true,
      },
    );
    assert.deepEqual(lines(a), [
      "ip addr replace 192.0.2.123/32 dev lo",
      "ip addr replace 2001:db8::123/128 dev lo",
    ]);
  });
});

Deno.test("planRouter() keeps the multipath route equal to the healthy set", async (t) => {
  const cfg = { vip: "192.0.2.123/32", hashPolicy: "l4" as const };
  const l4 = { v4: "1", v6: "1" };
  await t.step("three healthy nodes, no route, L3 hash", () => {
    const a = planRouter(cfg, { nexthops: null, hashPolicy: { v4: "0", v6: "0" } }, [
      "10.0.1.2",
      "10.0.2.2",
      "10.0.3.2",
    ]);
    assert.deepEqual(a.map(formatAction), [
      "sysctl -w net.ipv4.fib_multipath_hash_policy=1 net.ipv6.fib_multipath_hash_policy=1",
      "ip route replace 192.0.2.123/32 proto static nexthop via 10.0.1.2 weight 1 nexthop via 10.0.2.2 weight 1 nexthop via 10.0.3.2 weight 1",
    ]);
  });
  await t.step("same set in another order: nothing", () => {
    assert.deepEqual(
      planRouter(cfg, { nexthops: ["10.0.2.2", "10.0.1.2"], hashPolicy: l4 }, [
        "10.0.1.2",
        "10.0.2.2",
      ]),
      [],
    );
  });
  await t.step("one node left", () => {
    const a = planRouter(cfg, { nexthops: ["10.0.1.2", "10.0.2.2"], hashPolicy: l4 }, ["10.0.2.2"]);
    assert.deepEqual(a.map(formatAction), [
      "ip route replace 192.0.2.123/32 proto static nexthop via 10.0.2.2 weight 1",
    ]);
  });
  await t.step("none healthy: the route goes", () => {
    const a = planRouter(cfg, { nexthops: ["10.0.2.2"], hashPolicy: l4 }, []);
    assert.deepEqual(a.map(formatAction), ["ip route del 192.0.2.123/32 proto static"]);
    assert.deepEqual(planRouter(cfg, { nexthops: null, hashPolicy: l4 }, []), []);
  });
  await t.step("hash l3 on an L4 router: sets 0", () => {
    const a = planRouter({ ...cfg, hashPolicy: "l3" }, { nexthops: ["10.0.1.2"], hashPolicy: l4 }, [
      "10.0.1.2",
    ]);
    assert.deepEqual(a.map(formatAction), [
      "sysctl -w net.ipv4.fib_multipath_hash_policy=0 net.ipv6.fib_multipath_hash_policy=0",
    ]);
  });
  await t.step("IPv6 VIP uses ip -6; hash l3 already 0: no sysctl", () => {
    const a = planRouter({ vip: "2001:db8::123/128", hashPolicy: "l3" }, {
      nexthops: null,
      hashPolicy: { v4: "0", v6: "0" },
    }, ["2001:db8:1::2"]);
    assert.deepEqual(a.map(formatAction), [
      "ip -6 route replace 2001:db8::123/128 proto static nexthop via 2001:db8:1::2 weight 1",
    ]);
  });
});
