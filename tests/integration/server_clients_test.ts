/**
 * Real NTP clients measure edge-time on loopback: chronyd (-Q, one-shot,
 * never touching the clock) and ntpsec's ntpdate. Client and server share
 * the kernel clock, so the true offset is zero and |offset| is our error.
 * How large it is depends on the load; what holds under any load is that
 * our receive and transmit stamps lie within the client's round trip
 * (t1 <= t2 <= t3 <= t4), which is |offset| <= delay / 2: a stamp taken
 * too early, too late or on another clock breaks it.
 */
import assert from "assert";
import { chronyAvailable, chronydMeasure } from "../helpers/chrony.ts";
import { freeTcpPort, freeUdpPort, startEdgeTime } from "../helpers/edge_time.ts";

/** Slack for the clients' printed rounding and a stamp's last nanosecond. */
const SLACK_S = 1e-6;

function config(port: number, driver: string, extra = ""): string {
  return `[server]
listen = ["127.0.0.1:${port}", "[::1]:${port}"]
local_stratum = 8
driver = "${driver}"
workers = 1
rate_limit = { interval_s = 0 }
[clock]
control = false
[status]
listen = "127.0.0.1:${freeTcpPort()}"
${extra}`;
}

for (const driver of ["ffi", "portable"]) {
  Deno.test({
    name: `chronyd measures edge-time (${driver} driver) within its round trip on loopback`,
    ignore: chronyAvailable() !== null,
    async fn() {
      const port = await freeUdpPort();
      const et = await startEdgeTime(config(port, driver));
      try {
        for (const host of ["127.0.0.1", "::1"]) {
          const { offset, samples, output } = await chronydMeasure(
            `server ${host} port ${port} iburst maxsamples 4`,
          );
          console.log(
            `chronyd -Q via ${host}: offset ${(offset * 1e6).toFixed(1)} µs; samples ` +
              samples.map((x) => `${(x.offset * 1e6).toFixed(1)}±${(x.delay * 5e5).toFixed(1)}`)
                .join(" ") +
              " µs",
          );
          assert.ok(samples.length > 0, output);
          for (const x of samples) {
            assert.ok(Math.abs(x.offset) <= x.delay / 2 + SLACK_S, output);
          }
        }
      } finally {
        await et.stop();
      }
    },
  });
}

function ntpdateMissing(): string | null {
  try {
    new Deno.Command("ntpdate", { args: ["-h"], stdout: "null", stderr: "null" }).outputSync();
  } catch {
    return "ntpdate (ntpsec-ntpdate) is not installed";
  }
  try {
    new Deno.Command("ip", { args: ["netns", "list"], stdout: "null", stderr: "null" })
      .outputSync();
  } catch {
    return "ip (iproute2) is not installed";
  }
  return Deno.uid() === 0 ? null : "needs root to make a network namespace";
}

const whyNoNtpdate = ntpdateMissing();
if (whyNoNtpdate) console.log(`ntpdate test cannot run here: ${whyNoNtpdate}`);

Deno.test({
  // ntpdate only speaks to port 123, so edge-time runs in a namespace of its own.
  name: "ntpdate -q (ntpsec) measures edge-time on port 123 within its round trip",
  ignore: whyNoNtpdate !== null,
  async fn() {
    const ns = `etq-${crypto.randomUUID().slice(0, 8)}`;
    const ip = (...a: string[]) => new Deno.Command("ip", { args: a }).outputSync();
    ip("netns", "add", ns);
    ip("-n", ns, "link", "set", "lo", "up");
    const et = await startEdgeTime(
      config(123, "ffi").replace(/listen = "127.0.0.1:\d+"/, 'listen = ""'),
      {
        netns: ns,
      },
    );
    try {
      const out = await new Deno.Command("ip", {
        args: ["netns", "exec", ns, "ntpdate", "-q", "127.0.0.1"],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
      // e.g. "2026-11-25 09:30:01.123 (+0000) +0.000012 +/- 0.000045 127.0.0.1 s8 no-leap"
      // "+/-" is ntpdig's synchronisation distance, delay / 2 + 2^precision + …
      const m = /([+-]\d+\.\d+) \+\/- (\d+\.\d+) 127\.0\.0\.1 s(\d+)/.exec(text);
      assert.ok(m, text);
      console.log(
        `ntpdate: offset ${(Number(m[1]) * 1e6).toFixed(1)} ± ${
          (Number(m[2]) * 1e6).toFixed(1)
        } µs, stratum ${m[3]}`,
      );
      assert.ok(Math.abs(Number(m[1])) <= Number(m[2]) + SLACK_S, text);
      assert.equal(m[3], "8");
    } finally {
      await et.stop();
      ip("netns", "del", ns);
    }
  },
});
