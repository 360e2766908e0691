/**
 * Does scraping the status server slow NTP serving? Measures the NTP max
 * rate (highest rate answered at >= 99 %, to ~1 %: `findMaxRate` in
 * tests/helpers/ntpload.ts) of one
 * edge-time process with and without `GET /status` fetched at 2000 req/s
 * concurrently, alternating the two conditions `--runs` times, and prints
 * the medians and the change. Issue 6 asks for a drop of at most 5 %.
 *
 *   deno run -A bench/status_impact.ts [--workers N] [--seconds S] [--runs N]
 *                                      [--sockets N] [--scrape-rate R] [--json]
 *
 * The scraper is bench/scrape.c over 4 keep-alive TCP connections (a
 * monitoring system scrapes from another machine; here its CPU is as small
 * as it can be); it reports the rate it really achieved.
 * Everything shares this machine's cores, so the figures say how much the
 * status server costs the NTP workers on the same host.
 */
import { parseArgs } from "node:util";
import { freeTcpPort, freeUdpPort, startEdgeTime } from "../tests/helpers/edge_time.ts";
import { buildC, buildNtpload, findMaxRate, loadTargetToml } from "../tests/helpers/ntpload.ts";

const HELP = `Usage: deno run -A bench/status_impact.ts [--workers N] [--seconds S] [--runs N]
                                              [--sockets N] [--scrape-rate R] [--json]
  --workers N       edge-time server workers (default 1)
  --seconds S       seconds per ntpload step (default 2)
  --sockets N       ntpload source sockets (default 16, as deno task bench)
  --runs N          runs of each condition, alternating (default 2)
  --scrape-rate R   GET /status per second while scraping (default 2000)
  --json            print one JSON object instead of a table`;

interface Scraper {
  stop(): Promise<{ sent: number; ok: number; seconds: number }>;
}

/**
 * bench/scrape.c fetching /status at `rate` a second over `conns`
 * keep-alive connections until stopped. It is C so that its own CPU, which
 * a real scraper would spend on another machine, takes as little as
 * possible from the two being measured.
 */
async function startScraper(port: number, rate: number, conns = 4): Promise<Scraper> {
  const bin = await buildC(new URL("scrape.c", import.meta.url).pathname, "scrape");
  const child = new Deno.Command(bin, {
    args: [String(port), String(rate), "86400", String(conns), "/status"],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  return {
    async stop() {
      try {
        child.kill("SIGTERM");
      } catch { /* exited: its output says why */ }
      const out = await child.output();
      const line = new TextDecoder().decode(out.stdout).trim();
      if (!line.startsWith("{")) {
        throw new Error(`scrape: ${new TextDecoder().decode(out.stderr).trim()}`);
      }
      return JSON.parse(line);
    },
  };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      workers: { type: "string", default: "1" },
      seconds: { type: "string", default: "2" },
      sockets: { type: "string", default: "16" },
      runs: { type: "string", default: "2" },
      "scrape-rate": { type: "string", default: "2000" },
      json: { type: "boolean", default: false },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) return console.log(HELP), 0;
  const workers = Number(values.workers), seconds = Number(values.seconds);
  const sockets = Number(values.sockets);
  const runs = Number(values.runs), scrapeRate = Number(values["scrape-rate"]);
  if (!(workers >= 0 && seconds > 0 && runs >= 1 && scrapeRate > 0 && sockets >= 1)) {
    console.error(
      "status_impact: --workers >= 0, --seconds > 0, --runs >= 1, --scrape-rate > 0, --sockets >= 1",
    );
    return 2;
  }
  const bin = await buildNtpload();
  const port = await freeUdpPort();
  const statusPort = freeTcpPort();
  const et = await startEdgeTime(loadTargetToml(port, statusPort, workers));
  const log = (m: string) => values.json || console.error(m);
  const base: number[] = [], scraped: number[] = [];
  const scrapes: { rate: number; ok: number; sent: number }[] = [];
  let driver = "";
  try {
    const st = await (await fetch(`http://127.0.0.1:${statusPort}/status`)).json();
    driver = `${st.driver}, ${st.workers} worker(s)`;
    // Warm-up (JIT, caches) for both paths.
    const w = await startScraper(statusPort, scrapeRate);
    await new Deno.Command(bin, {
      args: ["-p", String(port), "-r", "20000", "-d", "1", "127.0.0.1"],
      stdout: "null",
    }).output();
    await w.stop();
    for (let i = 0; i < runs; i++) {
      log(`run ${i + 1}/${runs}: ramp without scraping ...`);
      base.push((await findMaxRate(bin, port, { seconds, sockets })).max);
      log(`  max ${base.at(-1)}/s; ramp with /status at ${scrapeRate}/s ...`);
      const s = await startScraper(statusPort, scrapeRate);
      scraped.push((await findMaxRate(bin, port, { seconds, sockets })).max);
      const r = await s.stop();
      scrapes.push({ rate: r.ok / r.seconds, ok: r.ok, sent: r.sent });
      log(`  max ${scraped.at(-1)}/s; scraper answered ${(r.ok / r.seconds).toFixed(0)}/s`);
    }
  } finally {
    await et.stop();
  }
  const mb = median(base), ms = median(scraped);
  const change = (ms - mb) / mb * 100;
  const result = {
    command: `deno run -A bench/status_impact.ts ${Deno.args.join(" ")}`.trim(),
    driver,
    cores: navigator.hardwareConcurrency,
    seconds_per_step: seconds,
    sockets,
    runs,
    max_rate_without: base,
    max_rate_with_status: scraped,
    scrape_rate_achieved: scrapes.map((s) => Math.round(s.rate)),
    median_without: mb,
    median_with_status: ms,
    change_percent: +change.toFixed(1),
    within_5_percent: change >= -5,
  };
  if (values.json) {
    console.log(JSON.stringify(result));
  } else {
    console.log(
      `edge-time ${driver}, ${result.cores} cores, ntpload -d ${seconds} -s ${sockets}`,
    );
    console.log("| condition | max NTP rate (runs) | median |");
    console.log("|---|---|---|");
    console.log(`| no scraping | ${base.map((x) => x.toFixed(0)).join(", ")} | ${mb.toFixed(0)} |`);
    console.log(
      `| /status at ${scrapeRate}/s (achieved ${result.scrape_rate_achieved.join(", ")}) | ${
        scraped.map((x) => x.toFixed(0)).join(", ")
      } | ${ms.toFixed(0)} |`,
    );
    console.log(`change: ${change >= 0 ? "+" : ""}${change.toFixed(1)} % (limit −5 %)`);
  }
  return 0;
}

if (import.meta.main) {
  try {
    Deno.exit(await main());
  } catch (e) {
    console.error(`status_impact: ${e instanceof Error ? e.message : String(e)}`);
    Deno.exit(1);
  }
}
