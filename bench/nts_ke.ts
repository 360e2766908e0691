/**
 * NTS-KE handshake benchmark: key exchanges per second of edge-time's
 * NTS-KE server against chronyd's, in one run, with the project's load
 * generator `bench/ntske_load.c` (OpenSSL, T threads of whole exchanges:
 * TCP, TLS 1.3 with ALPN ntske/1 and certificate verification, request,
 * response to End of Message, key export).
 *
 * Both servers use one certificate (EC P-256, made by the run with the
 * openssl CLI) and run side by side; after a warm-up each is loaded in
 * turns, `--runs` times, and the median rate is kept. chronyd runs with
 * -x (never touches the clock) and its default of one NTS-KE helper
 * process; edge-time serves NTS-KE on its main thread.
 *
 *   deno task bench:nts [--seconds S] [--runs N] [--threads T] [--json]
 *
 * Needs cc, the OpenSSL headers (libssl-dev) and chronyd.
 */
import { checkedArgs, numberOption, parseArgs, UsageError } from "./cli_options.ts";
import { freeTcpPort, freeUdpPort, startEdgeTime } from "../tests/helpers/edge_time.ts";
import { chronyAvailable, startChronyd } from "../tests/helpers/chrony.ts";
import { makeTestPki } from "../tests/helpers/certs.ts";
import { waitForTcp } from "../tests/helpers/tls_peer.ts";
import { buildC } from "../tests/helpers/ntpload.ts";
import { CookieKeyring } from "../lib/nts/cookie.ts";
import { installOpensslSiv } from "../lib/io/openssl_siv.ts";
import { AEAD_AES_SIV_CMAC_256 } from "../lib/nts/ke_records.ts";

const HELP = `Usage: deno task bench:nts [--seconds S] [--runs N] [--threads T] [--json]

Benchmarks NTS-KE key exchanges per second: edge-time against chronyd on loopback.
  --seconds S   seconds per load run (default 5)
  --runs N      runs per server, in turns, median kept (default 3)
  --threads T   ntske_load client threads (default 4)
  --json        print one JSON object instead of a table`;

interface LoadResult {
  ke_per_s: number;
  ok: number;
  failed: number;
  seconds: number;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function load(
  bin: string,
  port: number,
  o: { seconds: number; threads: number; ca: string },
): Promise<LoadResult> {
  const args = ["-p", String(port), "-t", String(o.threads), "-d", String(o.seconds)];
  const r = await new Deno.Command(bin, {
    args: [...args, "-c", o.ca, "--json", "127.0.0.1"],
    stderr: "piped",
  }).output();
  const out = new TextDecoder().decode(r.stdout).trim();
  try {
    return JSON.parse(out) as LoadResult;
  } catch {
    throw new Error(`ntske_load printed no result: ${new TextDecoder().decode(r.stderr)}`);
  }
}

/**
 * Milliseconds edge-time's main thread spends making one key exchange's 8
 * cookies (lib/nts/cookie.ts), in this process: the part of a key exchange
 * that is not TLS.
 */
function cookieMsPerKe(): { ms: number; siv: string } {
  const siv = installOpensslSiv(); // as the app does
  const ring = new CookieKeyring([crypto.getRandomValues(new Uint8Array(32))], 2);
  const c2s = new Uint8Array(32), s2c = new Uint8Array(32);
  for (let i = 0; i < 200; i++) ring.makeCookies(AEAD_AES_SIV_CMAC_256, c2s, s2c, 8);
  const n = 1000, t0 = performance.now();
  for (let i = 0; i < n; i++) ring.makeCookies(AEAD_AES_SIV_CMAC_256, c2s, s2c, 8);
  return { ms: (performance.now() - t0) / n, siv };
}

async function rssKb(pid: number): Promise<number> {
  const s = await Deno.readTextFile(`/proc/${pid}/status`).catch(() => "");
  return Number(/VmRSS:\s+(\d+)/.exec(s)?.[1] ?? 0);
}

async function main(): Promise<void> {
  const { values } = checkedArgs(() =>
    parseArgs({
      args: Deno.args,
      options: {
        seconds: { type: "string" },
        runs: { type: "string" },
        threads: { type: "string" },
        json: { type: "boolean" },
        help: { type: "boolean" },
      },
      strict: true,
      allowPositionals: false,
    })
  );
  if (values.help) return console.log(HELP);
  const seconds = values.seconds === undefined
    ? 5
    : numberOption("seconds", values.seconds, 0.5, 3600);
  const runs = values.runs === undefined
    ? 3
    : Math.round(numberOption("runs", values.runs, 1, 100));
  const threads = values.threads === undefined
    ? 4
    : Math.round(numberOption("threads", values.threads, 1, 256));
  const noChrony = chronyAvailable();
  if (noChrony) throw new Error(`bench:nts needs chronyd: ${noChrony}`);

  const bin = await buildC(
    new URL("ntske_load.c", import.meta.url).pathname,
    "ntske_load",
    ["-lssl", "-lcrypto", "-lpthread"],
  );
  const pki = await makeTestPki();
  const { cert, key } = await pki.issue("bench", ["DNS:localhost", "IP:127.0.0.1"]);
  const ourKe = freeTcpPort(), chronyKe = freeTcpPort();
  const ntpPort = await freeUdpPort(), chronyNtp = await freeUdpPort();
  const et = await startEdgeTime(`[server]
listen = ["127.0.0.1:${ntpPort}"]
local_stratum = 8
workers = 1
[clock]
control = false
driftfile = ""
[status]
listen = ""
[nts]
ke_listen = ["127.0.0.1:${ourKe}"]
certificate = "${cert}"
private_key = "${key}"
`);
  const chronyd = await startChronyd([
    `ntsserverkey ${key}`,
    `ntsservercert ${cert}`,
    `ntsport ${chronyKe}`,
    `port ${chronyNtp}`,
    "bindaddress 127.0.0.1",
    "allow 127.0.0.1", // chronyd applies its NTP access rules to NTS-KE too
    "user root", // its command socket (the helper waits for it) needs the dir owned by its user
    "local stratum 8",
  ]);
  try {
    await waitForTcp(ourKe, 30000);
    await waitForTcp(chronyKe, 30000);
    const o = { threads, ca: pki.caCert };
    await load(bin, ourKe, { ...o, seconds: 1 }); // warm-up: JIT, page cache
    await load(bin, chronyKe, { ...o, seconds: 1 });
    const ours: LoadResult[] = [], theirs: LoadResult[] = [];
    for (let i = 0; i < runs; i++) {
      ours.push(await load(bin, ourKe, { ...o, seconds }));
      theirs.push(await load(bin, chronyKe, { ...o, seconds }));
    }
    const chronyPid = Number((await Deno.readTextFile(`${chronyd.dir}/chronyd.pid`)).trim());
    const result = {
      date: new Date().toISOString(),
      seconds,
      runs,
      threads,
      edge_time: {
        ke_per_s: median(ours.map((r) => r.ke_per_s)),
        runs: ours.map((r) => r.ke_per_s),
        failed: ours.reduce((n, r) => n + r.failed, 0),
        rss_kb: await rssKb(et.child.pid),
      },
      chronyd: {
        ke_per_s: median(theirs.map((r) => r.ke_per_s)),
        runs: theirs.map((r) => r.ke_per_s),
        failed: theirs.reduce((n, r) => n + r.failed, 0),
        rss_kb: await rssKb(chronyPid),
      },
      ratio: 0,
      cookies: cookieMsPerKe(),
    };
    result.ratio = result.edge_time.ke_per_s / result.chronyd.ke_per_s;
    if (values.json) return console.log(JSON.stringify(result));
    const f = (x: number) => x.toFixed(0).padStart(8);
    console.log(
      `NTS-KE key exchanges/s, ${threads} client threads, ${runs} x ${seconds} s each, median`,
    );
    console.log(`server      KE/s    failed  runs`);
    console.log(
      `edge-time ${f(result.edge_time.ke_per_s)} ${String(result.edge_time.failed).padStart(6)}  ${
        result.edge_time.runs.map((x) => x.toFixed(0)).join(" ")
      }`,
    );
    console.log(
      `chronyd   ${f(result.chronyd.ke_per_s)} ${String(result.chronyd.failed).padStart(6)}  ${
        result.chronyd.runs.map((x) => x.toFixed(0)).join(" ")
      }`,
    );
    console.log(`ratio edge-time / chronyd: ${result.ratio.toFixed(2)}`);
    console.log(
      `edge-time: 8 cookies (AES-SIV-CMAC-256 from ${result.cookies.siv}, lib/nts/cookie.ts) take ${
        result.cookies.ms.toFixed(3)
      } ms of the main thread per key exchange`,
    );
  } finally {
    await et.stop();
    await chronyd.stop();
    await pki.remove();
  }
}

if (import.meta.main) {
  try {
    await main();
  } catch (e) {
    console.error(`bench:nts: ${e instanceof Error ? e.message : e}`);
    Deno.exit(e instanceof UsageError ? 2 : 1);
  }
}
