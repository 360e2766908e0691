/**
 * Soak: runs edge-time for N minutes at 50 % of its measured maximum rate
 * (ntpload --ramp first, or --rate), scraping /status every second, and
 * checks what an appliance must do for months: RSS growth < 5 % (after
 * warm-up vs end), zero crashes, answered >= 99.9 %.
 *
 *   deno run -A bench/soak.ts [--minutes 10] [--rate N] [--warmup 60] [--json]
 *
 * Exit status 0 when every target is met.
 */
import { parseArgs } from "node:util";
import { buildNtpload, runNtpload } from "../tests/helpers/ntpload.ts";
import {
  freeTcpPort,
  freeUdpPort,
  localServerToml,
  startEdgeTime,
} from "../tests/helpers/edge_time.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    minutes: { type: "string", default: "10" },
    rate: { type: "string" },
    warmup: { type: "string", default: "60" },
    chunk: { type: "string", default: "30" },
    json: { type: "boolean", default: false },
  },
});
const minutes = Number(values.minutes);
const warmupS = Number(values.warmup);
const chunkS = Number(values.chunk);

function rssKiB(pid: number): number {
  try {
    const m = Deno.readTextFileSync(`/proc/${pid}/status`).match(/^VmRSS:\s+(\d+) kB/m);
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

const ntpload = await buildNtpload();
const port = await freeUdpPort();
const statusPort = freeTcpPort();
const et = await startEdgeTime(
  localServerToml(port, statusPort, "rate_limit = { interval_s = 0, burst = 8, kod = false }"),
);
const pid = et.child.pid;
let exited: number | null = null;
et.child.status.then((s) => exited = s.code);

let maxRate = 0;
let rate = Number(values.rate ?? 0);
if (!rate) {
  const o = await new Deno.Command(ntpload, {
    args: [
      "-p",
      String(port),
      "-r",
      "5000",
      "-d",
      "2",
      "-s",
      "64",
      "--ramp",
      "--json",
      "127.0.0.1",
    ],
  }).output();
  const last = new TextDecoder().decode(o.stdout).trim().split("\n").pop() ?? "{}";
  maxRate = JSON.parse(last).max_rate_answered ?? 0;
  if (!maxRate) throw new Error(`ntpload --ramp found no rate: ${last}`);
  rate = Math.round(maxRate / 2);
  // Let the ramp's overload drain before the clock starts.
  await new Promise((r) => setTimeout(r, 2000));
}
console.error(
  `soak: ${minutes} min at ${rate} req/s (max ${maxRate || "not measured"}), pid ${pid}`,
);

// Scrape /status once a second for the whole run.
const rss: { t: number; kib: number }[] = [];
let scrapes = 0, scrapeFailures = 0;
const t0 = performance.now();
const scraper = setInterval(async () => {
  rss.push({ t: (performance.now() - t0) / 1000, kib: rssKiB(pid) });
  try {
    const r = await fetch(`http://127.0.0.1:${statusPort}/status`);
    await r.json();
    if (r.ok) scrapes++;
    else scrapeFailures++;
  } catch {
    scrapeFailures++;
  }
}, 1000);

let sent = 0, unanswered = 0;
const end = t0 + minutes * 60_000;
while (performance.now() < end && exited === null) {
  const secs = Math.max(1, Math.min(chunkS, Math.round((end - performance.now()) / 1000)));
  const s = await runNtpload("127.0.0.1", port, { rate, seconds: secs, sockets: 64 });
  const n = Math.round(s.sent_per_s * secs);
  sent += n;
  unanswered += Math.round(s.loss * n);
}
clearInterval(scraper);
const rssEnd = rssKiB(pid);
const crashed = exited !== null;
const code = await et.stop();

const afterWarmup = rss.find((p) => p.t >= warmupS)?.kib ?? rss[0]?.kib ?? 0;
const peak = Math.max(...rss.map((p) => p.kib));
const growth = afterWarmup ? (rssEnd - afterWarmup) / afterWarmup : 0;
const answeredFrac = sent ? (sent - unanswered) / sent : 0;
const result = {
  minutes,
  rate,
  max_rate: maxRate,
  sent,
  answered_fraction: Number(answeredFrac.toFixed(6)),
  rss_after_warmup_mib: Number((afterWarmup / 1024).toFixed(1)),
  rss_end_mib: Number((rssEnd / 1024).toFixed(1)),
  rss_peak_mib: Number((peak / 1024).toFixed(1)),
  rss_growth_pct: Number((growth * 100).toFixed(2)),
  status_scrapes: scrapes,
  status_scrape_failures: scrapeFailures,
  crashes: crashed ? 1 : 0,
  exit_code: code,
};
const pass = !crashed && code === 0 && growth < 0.05 && answeredFrac >= 0.999;
if (values.json) console.log(JSON.stringify({ ...result, pass }));
else {
  console.log(`| figure | value | target |
|---|---|---|
| duration | ${minutes} min at ${rate} req/s (50 % of max ${maxRate || "n/a"}) | |
| requests sent | ${sent} | |
| answered | ${(answeredFrac * 100).toFixed(3)} % | >= 99.9 % |
| RSS after ${warmupS} s warm-up → end | ${result.rss_after_warmup_mib} → ${result.rss_end_mib} MiB (peak ${result.rss_peak_mib}) | |
| RSS growth | ${result.rss_growth_pct} % | < 5 % |
| /status scrapes ok / failed | ${scrapes} / ${scrapeFailures} | every second |
| crashes | ${result.crashes} (exit ${code} on SIGTERM) | 0 |
| verdict | ${pass ? "PASS" : "FAIL"} | |`);
}
Deno.exit(pass ? 0 : 1);
