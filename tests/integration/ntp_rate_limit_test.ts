import assert from "assert";
import { newClientAddress, parseIp, setClientAddress } from "../../lib/ntp/address.ts";
import { ENTRY_BYTES, RateLimiter, rateLimitTableBytes } from "../../lib/ntp/rate_limit.ts";

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

Deno.test("RateLimiter: limiters over one shared table are one limiter (any worker count)", () => {
  const opts = { intervalS: 2, burst: 8, tableSize: 65536 };
  const table = new SharedArrayBuffer(rateLimitTableBytes(opts.tableSize));
  const c = addr("192.0.2.1");
  for (const workers of [1, 2, 3, 8]) {
    const t0 = 1000 * workers; // a fresh episode: far beyond the last one's tokens
    const limiters = Array.from({ length: workers }, () => new RateLimiter(opts, table));
    const seen = { pass: 0, kod: 0, drop: 0 };
    // 20 requests at once, each to the next "worker", as SO_REUSEPORT spreads source ports.
    for (let i = 0; i < 20; i++) seen[limiters[i % workers]!.check(c, t0 + i * 1e-5, true)]++;
    assert.deepEqual(seen, { pass: 8, kod: 1, drop: 11 }, `${workers} limiters`);
  }
});

Deno.test("RateLimiter: private tables (the old per-worker state) give each its own burst", () => {
  // What the shared table fixes: two workers with their own tables answer 16.
  const opts = { intervalS: 2, burst: 8, tableSize: 64 };
  const limiters = [new RateLimiter(opts), new RateLimiter(opts)];
  const c = addr("192.0.2.1");
  let pass = 0;
  for (let i = 0; i < 20; i++) pass += limiters[i % 2]!.check(c, 100, true) === "pass" ? 1 : 0;
  assert.equal(pass, 16);
});

Deno.test("RateLimiter: a table smaller than table_size needs is refused", () => {
  const bytes = rateLimitTableBytes(1024);
  assert.equal(new RateLimiter({ intervalS: 2, burst: 8, tableSize: 1000 }).capacity, 1024);
  assert.throws(
    () => new RateLimiter({ intervalS: 2, burst: 8, tableSize: 1024 }, new ArrayBuffer(bytes - 1)),
    RangeError,
  );
  assert.equal(bytes, 1024 * ENTRY_BYTES);
});

Deno.test({
  name: "RateLimiter: workers racing on one client in one shared table grant the burst once",
  sanitizeResources: false,
  sanitizeOps: false,
}, async () => {
  // Every check of every worker at one instant: exactly `burst` pass and one KoD, whatever
  // the interleaving. Without the set lock two workers read the same state and both pass.
  const opts = { intervalS: 3600, burst: 1000, tableSize: 16 };
  const table = new SharedArrayBuffer(rateLimitTableBytes(opts.tableSize));
  const start = new SharedArrayBuffer(8);
  const go = new Int32Array(start);
  const workers = [0, 1, 2].map(() =>
    new Worker(new URL("../helpers/rate_limit_worker.ts", import.meta.url), { type: "module" })
  );
  try {
    const results = workers.map((w) =>
      new Promise<{ pass: number; kod: number; drop: number }>((resolve, reject) => {
        w.onmessage = (e) => resolve(e.data);
        w.onerror = (e) => reject(e);
      })
    );
    for (const w of workers) {
      w.postMessage({ table, start, opts, ip: "198.51.100.7", n: 20_000, now: 5000 });
    }
    // Release them together once all three are waiting (polled, with a deadline).
    for (const end = Date.now() + 30_000; Atomics.load(go, 1) < workers.length;) {
      if (Date.now() > end) throw new Error("workers did not start");
      await new Promise((r) => setTimeout(r, 5));
    }
    Atomics.store(go, 0, 1);
    Atomics.notify(go, 0);
    const seen = await Promise.all(results);
    const sum = (k: "pass" | "kod" | "drop") => seen.reduce((s, r) => s + r[k], 0);
    assert.equal(sum("pass"), 1000);
    assert.equal(sum("kod"), 1);
    assert.equal(sum("drop"), 3 * 20_000 - 1001);
  } finally {
    for (const w of workers) w.terminate();
  }
});

Deno.test("RateLimiter: a request checked late (older receive time) is not penalised by the lag", () => {
  // Worker A checks the request received at 101, then worker B, behind by a second,
  // the one received at 100: both fit a burst of 2, whatever the order they are checked in.
  const rl = new RateLimiter({ intervalS: 10, burst: 2 });
  const c = addr("192.0.2.1");
  assert.equal(rl.check(c, 101, false), "pass");
  assert.equal(rl.check(c, 100, false), "pass");
  assert.equal(rl.check(c, 100.5, false), "drop");
});
