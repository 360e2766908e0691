import assert from "assert";
import { newClientAddress, parseIp, setClientAddress } from "../lib/ntp/address.ts";
import { RateLimiter } from "../lib/ntp/rate_limit.ts";

function addr(ip: string) {
  const c = newClientAddress();
  const b = parseIp(ip)!;
  setClientAddress(c, b, 0, b.length as 4 | 16, 1000);
  return c;
}

Deno.test("RateLimiter lets a burst through, then one request per interval", () => {
  const rl = new RateLimiter({ intervalS: 2, burst: 3 });
  const c = addr("192.0.2.1");
  const at0 = [0, 0, 0, 0].map(() => rl.check(c, 100, false));
  assert.deepEqual(at0, ["pass", "pass", "pass", "drop"]);
  assert.equal(rl.check(c, 101, false), "drop");
  assert.equal(rl.check(c, 102, false), "pass");
  assert.equal(rl.check(c, 102.5, false), "drop");
});

Deno.test("RateLimiter sends at most one KoD per interval", () => {
  const rl = new RateLimiter({ intervalS: 4, burst: 1 });
  const c = addr("192.0.2.1");
  const seen = [0, 0.1, 0.2, 0.3, 4.2, 4.3].map((t) => rl.check(c, 1000 + t, true));
  assert.deepEqual(seen, ["pass", "kod", "drop", "drop", "pass", "kod"]);
});

Deno.test("RateLimiter keys IPv6 clients by /64", () => {
  const rl = new RateLimiter({ intervalS: 10, burst: 1 });
  assert.equal(rl.check(addr("2001:db8:1:2::1"), 0, false), "pass");
  assert.equal(rl.check(addr("2001:db8:1:2::ffff"), 0, false), "drop");
  assert.equal(rl.check(addr("2001:db8:1:3::1"), 0, false), "pass");
});

Deno.test("RateLimiter memory is bounded; a flood evicts the least recently seen", () => {
  const rl = new RateLimiter({ intervalS: 10, burst: 1, tableSize: 64 });
  assert.equal(rl.capacity, 64);
  const victim = addr("198.51.100.1");
  assert.equal(rl.check(victim, 0, false), "pass");
  assert.equal(rl.check(victim, 0.1, false), "drop");
  // 10 000 distinct sources later, the table has forgotten the victim …
  for (let i = 0; i < 10_000; i++) {
    rl.check(addr(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`), 1, false);
  }
  // … so it is treated as new (lenient), never wrongly denied.
  assert.equal(rl.check(victim, 1.2, false), "pass");
});

Deno.test("RateLimiter with interval 0 is disabled", () => {
  const rl = new RateLimiter({ intervalS: 0, burst: 1 });
  const c = addr("192.0.2.1");
  for (let i = 0; i < 100; i++) assert.equal(rl.check(c, 0, true), "pass");
  assert.equal(rl.enabled, false);
});
