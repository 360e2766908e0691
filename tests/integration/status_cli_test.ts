/**
 * `edge-time peers` and `edge-time tracking` against a running appliance,
 * plus the pure formatters they use.
 */
import assert from "assert";
import { formatPeers, formatTracking } from "../../lib/status/text.ts";
import { statusUrl } from "../../lib/status/client.ts";
import { freeTcpPort, freeUdpPort, startEdgeTime } from "../helpers/edge_time.ts";
import { fakeEngine } from "../helpers/status_fixture.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;

async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", MAIN, ...args],
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(30_000),
  }).output();
  const d = new TextDecoder();
  return { code: out.code, stdout: d.decode(out.stdout), stderr: d.decode(out.stderr) };
}

Deno.test("formatPeers() and formatTracking() look like ntpq -p and chronyc tracking", async (t) => {
  const e = fakeEngine();
  await t.step("ntpq columns, ms units, octal reach, tally first", () => {
    const lines = formatPeers(e.sources).trimEnd().split("\n");
    assert.match(lines[0]!, /^ remote\s+refid\s+st t when poll reach\s+delay\s+offset\s+jitter$/);
    assert.match(lines[1]!, /^=+$/);
    assert.equal(lines[1]!.length, lines[0]!.length);
    assert.match(
      lines[3]!,
      /^\+ntp-b\.example\.net\s+198\.51\.100\.7\s+2 p\s+40\s+64\s+17\s+21\.500\s+-0\.310\s+0\.120$/,
    );
    // Every row is as long as the header: the columns line up.
    for (const l of lines.slice(2)) assert.equal(l.length, lines[0]!.length);
  });
  await t.step("chronyc field names and units", () => {
    const text = formatTracking({ ...e.system, jitter_s: 1e-6 });
    assert.match(text, /^Reference ID {4}: 192\.0\.2\.1$/m);
    assert.match(text, /^Frequency {7}: 3\.250 ppm slow$/m);
    assert.match(text, /^Root delay {6}: 0\.001200000 seconds$/m);
    assert.match(text, /^Leap status {5}: Normal$/m);
    assert.match(text, /^Update interval : 64\.0 seconds$/m);
  });
  await t.step("statusUrl() accepts a base URL or the /status URL", () => {
    assert.equal(statusUrl("http://h:8123").href, "http://h:8123/status");
    assert.equal(statusUrl("http://h:8123/").href, "http://h:8123/status");
    assert.equal(statusUrl("http://h:8123/status?format=text").href, "http://h:8123/status");
    assert.throws(() => statusUrl("h:8123"), /only http and https/);
    assert.throws(() => statusUrl("::"), /is not a URL/);
  });
});

Deno.test("edge-time peers and tracking read a running appliance", async (t) => {
  const ntpPort = await freeUdpPort();
  const httpPort = freeTcpPort();
  const app = await startEdgeTime(`
[server]
listen = ["127.0.0.1:${ntpPort}"]
workers = 1
local_stratum = 9
[status]
listen = "127.0.0.1:${httpPort}"
`);
  try {
    await app.waitForLog(/Status page on/);
    const url = `http://127.0.0.1:${httpPort}`;
    await t.step("tracking", async () => {
      const r = await cli(["tracking", "--url", url]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^Reference ID {4}: LOCL$/m);
      assert.match(r.stdout, /^Stratum {9}: 9$/m);
      assert.match(r.stdout, /^Synchronised {4}: yes$/m);
    });
    await t.step("peers (no sources with local stratum)", async () => {
      const r = await cli(["peers", "--url", url]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^ remote\s+refid\s+st t when poll reach/);
      assert.match(r.stdout, /\(no sources\)/);
    });
  } finally {
    assert.equal(await app.stop(), 0);
  }
  await t.step("an unreachable appliance is one line on stderr and exit 1", async () => {
    const r = await cli(["peers", "--url", `http://127.0.0.1:${freeTcpPort()}`]);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, "");
    assert.match(r.stderr, /^edge-time: Cannot reach http:\/\/127\.0\.0\.1:\d+\/status: .+\n$/);
  });
  await t.step("--help names the default URL", async () => {
    const r = await cli(["tracking", "--help"]);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /http:\/\/127\.0\.0\.1:8123/);
  });
});
