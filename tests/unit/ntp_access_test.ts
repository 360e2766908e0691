import assert from "assert";
import { AccessList, type Cidr, parseCidr } from "../../lib/ntp/access.ts";
import { formatIp, newClientAddress, parseIp, setClientAddress } from "../../lib/ntp/address.ts";

const cidrs = (...s: string[]) => s.map((x) => parseCidr(x) as Cidr);

function addr(ip: string) {
  const c = newClientAddress();
  const b = parseIp(ip)!;
  setClientAddress(c, b, 0, b.length as 4 | 16, 1000);
  return c;
}

Deno.test("parseIp()/formatIp() handle IPv4, IPv6 and embedded IPv4", async (t) => {
  await t.step("compressed IPv6 round-trips per RFC 5952", () => {
    for (const s of ["::1", "2001:db8::1", "fe80::1:2:3:4", "::", "1:2:3:4:5:6:7:8"]) {
      assert.equal(formatIp(parseIp(s)!), s);
    }
  });
  await t.step("invalid text is rejected", () => {
    for (const s of ["1.2.3", "256.1.1.1", "1::2::3", "12345::", "a.b.c.d", "1:2:3:4:5:6:7:8:9"]) {
      assert.equal(parseIp(s), null, s);
    }
  });
  await t.step("IPv4-mapped IPv6 clients are treated as IPv4", () => {
    const c = addr("::ffff:192.0.2.7");
    assert.equal(c.family, 4);
    assert.equal(c.words[0], 0xc0000207);
  });
});

Deno.test("AccessList: the most specific prefix wins, deny on a tie", async (t) => {
  await t.step("deny inside allow", () => {
    const acl = new AccessList(cidrs("10.0.0.0/8"), cidrs("10.1.0.0/16"));
    assert.equal(acl.allows(addr("10.2.3.4")), true);
    assert.equal(acl.allows(addr("10.1.3.4")), false);
    assert.equal(acl.allows(addr("192.0.2.1")), false);
  });
  await t.step("allow inside deny (an exception)", () => {
    const acl = new AccessList(cidrs("10.1.0.0/16"), cidrs("10.0.0.0/8"));
    assert.equal(acl.allows(addr("10.1.3.4")), true);
    assert.equal(acl.allows(addr("10.2.3.4")), false);
  });
  await t.step("same prefix in both lists denies", () => {
    const acl = new AccessList(cidrs("10.0.0.0/8"), cidrs("10.0.0.0/8"));
    assert.equal(acl.allows(addr("10.0.0.1")), false);
  });
  await t.step("IPv6 prefixes do not match IPv4 clients and vice versa", () => {
    const acl = new AccessList(cidrs("::/0"), []);
    assert.equal(acl.allows(addr("2001:db8::5")), true);
    assert.equal(acl.allows(addr("192.0.2.1")), false);
  });
  await t.step("IPv6 /64 deny", () => {
    const acl = new AccessList(cidrs("::/0"), cidrs("2001:db8:1:2::/64"));
    assert.equal(acl.allows(addr("2001:db8:1:2::99")), false);
    assert.equal(acl.allows(addr("2001:db8:1:3::99")), true);
  });
});

Deno.test("parseCidr() reports bad prefixes", () => {
  assert.match(parseCidr("10.0.0.0/33") as string, /prefix length outside 0..32/);
  assert.match(parseCidr("nope/8") as string, /not an IP address/);
  assert.deepEqual((parseCidr("::1") as Cidr).prefix, 128);
});
