/**
 * Headless Debian chromium loads the status page from a running appliance
 * (local stratum, real NTP traffic), the test checks the DOM for the
 * banner, sources table and chart, and saves screenshots (desktop and
 * phone width) under tests/artifacts/. A second page rendered from fake
 * sources with a day of history is shot too, to see the chart with data.
 */
import assert from "assert";
import { queryServer } from "../../lib/io/query_client.ts";
import { handleStatusRequest } from "../../lib/status/handler.ts";
import { History } from "../../lib/status/history.ts";
import { freeTcpPort, freeUdpPort, localServerToml, startEdgeTime } from "../helpers/edge_time.ts";
import { fakeAnycast, fakeEngine, fakeModel, T0 } from "../helpers/status_fixture.ts";

const ARTIFACTS = new URL("../artifacts/", import.meta.url).pathname;

function which(cmd: string): string | null {
  for (const dir of (Deno.env.get("PATH") ?? "/usr/bin:/bin").split(":")) {
    try {
      if (Deno.statSync(`${dir}/${cmd}`).isFile) return `${dir}/${cmd}`;
    } catch { /* not here */ }
  }
  return null;
}

const chromium = which("chromium");
if (chromium === null) {
  console.log(
    "browser_test: chromium not installed; run scripts/setup.sh test (apt-get install chromium)",
  );
}

/** Runs headless chromium with the flags a root container needs; bounded to 60 s. */
async function runChromium(args: string[]): Promise<string> {
  const profile = await Deno.makeTempDir({ prefix: "edge-time-status-chromium-" });
  try {
    const cmd = new Deno.Command(chromium!, {
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        `--user-data-dir=${profile}`,
        ...args,
      ],
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(60_000),
    });
    const out = await cmd.output();
    const stdout = new TextDecoder().decode(out.stdout);
    if (!out.success) {
      throw new Error(
        `chromium exited ${out.code}: ${new TextDecoder().decode(out.stderr).slice(-500)}`,
      );
    }
    return stdout;
  } finally {
    await Deno.remove(profile, { recursive: true }).catch(() => {});
  }
}

async function screenshot(url: string, file: string, size: string): Promise<void> {
  await Deno.remove(file).catch(() => {});
  await runChromium([`--window-size=${size}`, `--screenshot=${file}`, url]);
  const st = await Deno.stat(file);
  assert.ok(st.size > 10_000, `${file} is only ${st.size} bytes`);
}

Deno.test({
  name: "status page in headless chromium: table and chart present, screenshots saved",
  ignore: chromium === null,
  async fn(t) {
    await Deno.mkdir(ARTIFACTS, { recursive: true });
    const ntpPort = await freeUdpPort();
    const httpPort = freeTcpPort();
    const app = await startEdgeTime(localServerToml(ntpPort, httpPort, "workers = 1"));
    try {
      await app.waitForLog(/Status page on/);
      for (let i = 0; i < 3; i++) await queryServer("127.0.0.1", ntpPort, { timeoutMs: 1000 });
      const url = `http://127.0.0.1:${httpPort}/`;

      await t.step(
        "the DOM has the banner, tracking, sources table, legend and chart",
        async () => {
          const dom = await runChromium(["--dump-dom", url]);
          assert.match(dom, /<div class="banner ok" id="health">Healthy — stratum 8/);
          assert.match(dom, /<table id="sources">/);
          assert.match(dom, /<code>\*<\/code> system peer/);
          assert.match(dom, /<svg id="history-chart"[^>]*viewBox=/);
          assert.match(dom, /Offset \(symmetric log scale\)/);
          assert.match(dom, /<table id="server">/);
          assert.match(dom, /<td class="l">answered<\/td><td>[^<]+<\/td><td>3<\/td>/);
          assert.match(dom, /Anycast is off/);
        },
      );
      await t.step("screenshots of the live page, desktop and phone width", async () => {
        await screenshot(url, `${ARTIFACTS}status_page.png`, "1000,1500");
        await screenshot(url, `${ARTIFACTS}status_page_phone.png`, "390,1900");
      });
    } finally {
      assert.equal(await app.stop(), 0);
    }

    await t.step("a page with three sources and a day of history, for the eye", async () => {
      const history = new History();
      const { model, state } = fakeModel({ now: T0 - 86400, anycast: fakeAnycast(false) }, {
        history,
      });
      // A day at one sample per 16 s: the system wanders around ±20 µs, one source
      // steps away by 40 ms for an hour (a falseticker), one is noisy.
      for (let i = 0; i < 5400; i++) {
        const tt = i * 16;
        const e = fakeEngine({
          ref_time: state.now,
          offset_s: 20e-6 * Math.sin(tt / 3000) + 2e-6 * Math.sin(tt / 97),
        });
        e.sources[0]!.offset_s = e.system.offset_s + 5e-6 * Math.sin(tt / 500);
        e.sources[0]!.jitter_s = 8e-6 + 4e-6 * Math.sin(tt / 7000) ** 2;
        e.sources[1]!.offset_s = -300e-6 + 150e-6 * Math.sin(tt / 900);
        e.sources[1]!.jitter_s = 120e-6 + 80e-6 * Math.abs(Math.sin(tt / 1300));
        const bad = tt > 40_000 && tt < 43_600;
        e.sources[2]! = {
          ...e.sources[2]!,
          reach: 0o377,
          when_s: 3,
          offset_s: bad ? 0.04 : -2e-6,
          jitter_s: bad ? 0.004 : 3e-6,
        };
        state.engine = e;
        model.sample();
        state.now += 16;
      }
      const html = await handleStatusRequest(new Request("http://x/"), model).text();
      const file = `${ARTIFACTS}status_page_sample.html`;
      await Deno.writeTextFile(file, html);
      await screenshot(`file://${file}`, `${ARTIFACTS}status_page_sample.png`, "1000,1600");
      await screenshot(`file://${file}`, `${ARTIFACTS}status_page_sample_phone.png`, "390,2000");
      const dom = await runChromium(["--dump-dom", `file://${file}`]);
      assert.equal((dom.match(/<polyline /g) ?? []).length >= 8, true);
    });
  },
});
