import assert from "assert";
import { NtsSources } from "../../lib/io/nts_sources.ts";
import type { NtsKeOptions, NtsKeResult } from "../../lib/io/nts_ke_client.ts";
import { CookieKeyring } from "../../lib/nts/cookie.ts";

const ring = new CookieKeyring([new Uint8Array(32).fill(5)], 2);

function fakeKe(calls: NtsKeOptions[], fail = false) {
  return (o: NtsKeOptions): Promise<NtsKeResult> => {
    calls.push(o);
    if (fail) {
      return Promise.reject(new Error(`NTS-KE with ${o.host}:${o.port}: connection refused`));
    }
    const c2s = new Uint8Array(32).fill(1), s2c = new Uint8Array(32).fill(2);
    return Promise.resolve({
      aeadId: 15,
      c2s,
      s2c,
      cookies: ring.makeCookies(15, c2s, s2c, 8),
      ntpServer: o.host,
      ntpPort: 10123,
    });
  };
}

const header = () => {
  const h = new Uint8Array(48);
  h[0] = 0x23;
  return h;
};
const tick = () => new Promise((r) => setTimeout(r, 0));

Deno.test("NTS sources: KE on the first poll, one cookie a poll, a new KE when the jar is empty", async () => {
  const calls: NtsKeOptions[] = [];
  const lines: string[] = [];
  const n = new NtsSources(fakeKe(calls), (_l, line) => lines.push(line));
  n.track("ntp.example:123", { host: "ntp.example", port: 4460, caFile: "/ca.pem" });
  assert.equal(n.request("ntp.example:123", header(), "192.0.2.1"), null, "no cookies yet");
  await tick();
  assert.equal(calls.length, 1);
  assert.equal(calls[0]!.host, "ntp.example");
  assert.equal(calls[0]!.caFile, "/ca.pem");
  assert.deepEqual(calls[0]!.aeads, [15, 30]);
  assert.deepEqual(n.endpoint("ntp.example:123"), { host: "192.0.2.1", port: 10123 });
  assert.match(lines[0]!, /NTS-KE done \(AEAD 15, 8 cookies\), NTP to 192\.0\.2\.1:10123/);
  // A server that never answers: 8 requests use the 8 cookies, the 9th starts a KE.
  for (let i = 0; i < 8; i++) assert.ok(n.request("ntp.example:123", header(), "192.0.2.1"));
  assert.equal(n.report("ntp.example:123")!.cookies, 0);
  assert.equal(n.request("ntp.example:123", header(), "192.0.2.1"), null);
  await tick();
  assert.equal(calls.length, 2);
  assert.equal(n.report("ntp.example:123")!.key_exchanges, 2);
  assert.equal(n.report("ntp.example:123")!.cookies, 8);
});

Deno.test("NTS sources: a failed KE is retried no sooner than the back-off", async () => {
  const calls: NtsKeOptions[] = [];
  let now = 1000;
  const n = new NtsSources(fakeKe(calls, true), () => {}, () => now);
  n.track("a", { host: "a", port: 4460, caFile: "" });
  n.request("a", header(), "192.0.2.1");
  await tick();
  assert.equal(n.report("a")!.state, "failed");
  assert.match(n.report("a")!.error, /connection refused/);
  n.request("a", header(), "192.0.2.1");
  await tick();
  assert.equal(calls.length, 1, "within the back-off");
  now += 16;
  n.request("a", header(), "192.0.2.1");
  await tick();
  assert.equal(calls.length, 2);
  assert.equal("caFile" in calls[0]!, false, "the system trust store");
});

Deno.test("NTS sources: replies that do not verify never reach the engine", async () => {
  const n = new NtsSources(fakeKe([]), () => {});
  n.track("a", { host: "a", port: 4460, caFile: "" });
  n.request("a", header(), "192.0.2.1");
  await tick();
  const r = n.request("a", header(), "192.0.2.1")!;
  r.seal(r.bytes);
  const plain = new Uint8Array(48);
  plain[0] = 0x24;
  assert.equal(n.accept("a", plain), null);
  assert.equal(n.report("a")!.rejected, 1);
  assert.equal(n.accept("unknown", plain), null);
});
