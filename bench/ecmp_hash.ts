/**
 * L3 or L4 multipath hash for anycast router mode, measured: builds the
 * namespace lab of tests/integration/anycast_router_test.ts (router + 3 edge-time
 * nodes holding one VIP on lo, edge-time in router mode keeping the ECMP
 * route) once per hash policy, adds 64 client addresses to the client
 * namespace and sends NTP client requests to the VIP, each from a fresh
 * socket (a new source port per request, as chrony and ntpd-rs do).
 *
 * Per policy (`net.ipv4.fib_multipath_hash_policy` 0 = l3, 1 = l4):
 *
 *   (a) stickiness: per client address, the share of its requests on its
 *       busiest node (100 % = every request on one node)
 *   (b) balance over the 64 clients: max/min requests per node
 *   (c) rate limit: one client at 3× its allowed rate; how many requests
 *       get a normal reply, a KoD RATE, nothing
 *   (d) interleaved mode: a chronyd client with `xleave` through the
 *       router; the nodes' `server.interleaved` counters against the
 *       replies chronyd received
 *
 * Every node serves a different `local_stratum` (5, 6, 7), so a reply says
 * which node answered. The nodes limit at `interval_s = 0.1`, `burst = 8`
 * (the default 2 s scaled down 20×, so a run takes seconds, not minutes).
 * All traffic stays inside the lab's namespaces; the lab is torn down
 * whatever happens.
 *
 * Run as root:  deno task bench:ecmp [--requests N] [--json FILE]
 */
import dgram from "node:dgram";
import { parseArgs } from "node:util";
import { type EdgeTimeProcess, startEdgeTime } from "../tests/helpers/edge_time.ts";
import { buildLab, type Lab, must, routeNexthops, sh, waitFor } from "../tests/helpers/netns.ts";
import { NODE_STATUS_PORT, ROUTER_TOML, VIP } from "../tests/helpers/anycast_lab.ts";
import { startChronydIn } from "../tests/helpers/wan_lab.ts";

const VIP_ADDR = VIP.split("/")[0]!;
const CLIENTS = 64;
const NODES = 3;
const BASE_STRATUM = 5;
const RATE_INTERVAL_S = 0.1;
const RATE_BURST = 8;
/** Client addresses: 10.0.100.10 … .73 spread, .200 rate-limit probe, .201 chronyd. */
const clientAddr = (k: number) => `10.0.100.${10 + k}`;
const RATE_ADDR = "10.0.100.200";
const XLEAVE_ADDR = "10.0.100.201";

type Policy = "l3" | "l4";
/** One request's outcome: the answering node (0-based), "kod" or "lost". */
type Outcome = number | "kod" | "lost";

interface ProbeJob {
  vip: string;
  timeoutMs: number;
  clients: { src: string; count: number; gapMs: number }[];
}

// ---------------------------------------------------------------- probe side

/** One NTP client request from a fresh socket on `src`; resolves with its outcome. */
function ask(src: string, vip: string, timeoutMs: number): Promise<Outcome> {
  return new Promise((resolve) => {
    const s = dgram.createSocket("udp4");
    const req = new Uint8Array(48);
    req[0] = 0x23; // LI 0, VN 4, mode 3
    crypto.getRandomValues(req.subarray(40, 48));
    let done = false;
    const finish = (o: Outcome) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.close();
      resolve(o);
    };
    const timer = setTimeout(() => finish("lost"), timeoutMs);
    s.on("error", () => finish("lost"));
    s.on("message", (m: Uint8Array) => {
      if (m.length < 48 || (m[0]! & 7) !== 4) return;
      for (let i = 0; i < 8; i++) if (m[24 + i] !== req[40 + i]) return;
      if (m[1] === 0) return finish("kod");
      finish(m[1]! - BASE_STRATUM);
    });
    s.bind({ address: src, port: 0 }, () => s.send(req, 123, vip));
  });
}

async function probe(job: ProbeJob): Promise<Outcome[][]> {
  return await Promise.all(job.clients.map(async (c) => {
    const out: Promise<Outcome>[] = [];
    for (let i = 0; i < c.count; i++) {
      out.push(ask(c.src, job.vip, job.timeoutMs));
      await new Promise((r) => setTimeout(r, c.gapMs));
    }
    return await Promise.all(out);
  }));
}

/** Runs this file in probe mode inside the client namespace. */
async function probeIn(lab: Lab, job: ProbeJob): Promise<Outcome[][]> {
  const r = await sh([
    "ip",
    "netns",
    "exec",
    lab.client,
    Deno.execPath(),
    "run",
    "--allow-all",
    new URL(import.meta.url).pathname,
    "--probe",
    JSON.stringify(job),
  ]);
  if (r.code !== 0) throw new Error(`probe exit ${r.code}: ${r.stderr.trim()}`);
  return JSON.parse(r.stdout) as Outcome[][];
}

// ---------------------------------------------------------------- lab side

function nodeToml(i: number): string {
  return `
[server]
listen = ["0.0.0.0:123"]
local_stratum = ${BASE_STRATUM + i}
workers = 1
rate_limit = { interval_s = ${RATE_INTERVAL_S}, burst = ${RATE_BURST} }
[status]
listen = "127.0.0.1:${NODE_STATUS_PORT}"
[anycast]
mode = "node"
addresses = ["${VIP}"]
interface = "lo"
[anycast.health]
interval_ms = 500
rise = 2
fall = 2
[anycast.bird]
include_file = ""
`;
}

interface Counters {
  answered: number;
  interleaved: number;
  kod_rate: number;
  rate_limited: number;
}

async function countersIn(ns: string): Promise<Counters> {
  const r = await sh([
    "ip",
    "netns",
    "exec",
    ns,
    "curl",
    "-sf",
    "--max-time",
    "2",
    `http://127.0.0.1:${NODE_STATUS_PORT}/status`,
  ]);
  if (r.code !== 0) throw new Error(`status of ${ns}: curl exit ${r.code}`);
  return (JSON.parse(r.stdout) as { server: Counters }).server;
}

export interface PolicyFigures {
  policy: Policy;
  sysctl: string;
  requestsPerClient: number;
  /** Per node: requests of the 64 clients it answered. */
  nodeLoad: number[];
  balance: number;
  /** Per client: share of its requests on its busiest node (0…1). */
  stickMin: number;
  stickMedian: number;
  stickMax: number;
  /** Clients with every request on one node. */
  sticky: number;
  spreadLost: number;
  rate: { sent: number; answered: number; kod: number; lost: number; perNode: number[] };
  xleave: {
    rx: number;
    interleaved: number;
    last: string;
  };
}

async function runPolicy(policy: Policy, requests: number): Promise<PolicyFigures> {
  const lab = await buildLab({ nodes: NODES });
  const procs: EdgeTimeProcess[] = [];
  const stops: (() => Promise<unknown>)[] = [];
  try {
    for (let k = 0; k < CLIENTS; k++) {
      await must(["ip", "-n", lab.client, "addr", "add", `${clientAddr(k)}/24`, "dev", "uplink"]);
    }
    for (const a of [RATE_ADDR, XLEAVE_ADDR]) {
      await must(["ip", "-n", lab.client, "addr", "add", `${a}/24`, "dev", "uplink"]);
    }
    // A fresh namespace hashes on L3 (0); set it explicitly for l3, edge-time sets 1 for l4.
    if (policy === "l3") {
      await must([
        "ip",
        "netns",
        "exec",
        lab.router,
        "sysctl",
        "-qw",
        "net.ipv4.fib_multipath_hash_policy=0",
        "net.ipv6.fib_multipath_hash_policy=0",
      ]);
    }
    const nodes = lab.nodes.map((_, i) => lab.nodeAddr(i));
    procs.push(
      ...await Promise.all(lab.nodes.map((ns, i) => startEdgeTime(nodeToml(i), { netns: ns }))),
    );
    const router = await startEdgeTime(
      ROUTER_TOML(nodes).replace(`hash_policy = "l4"`, `hash_policy = "${policy}"`),
      { netns: lab.router },
    );
    procs.push(router);
    const up = await waitFor(
      async () => (await routeNexthops(lab.router, VIP)).length === NODES,
      30_000,
    );
    if (up < 0) throw new Error(`no ${NODES}-way route:\n${router.logs().join("\n")}`);
    const sysctl = (await lab.exec(lab.router, [
      "sysctl",
      "-n",
      "net.ipv4.fib_multipath_hash_policy",
    ])).stdout.trim();
    if (sysctl !== (policy === "l3" ? "0" : "1")) {
      throw new Error(`hash policy ${policy} but fib_multipath_hash_policy = ${sysctl}`);
    }

    // (a), (b): 64 clients, `requests` each, every 150 ms (below the 10/s allowed).
    const spread = await probeIn(lab, {
      vip: VIP_ADDR,
      timeoutMs: 1000,
      clients: Array.from(
        { length: CLIENTS },
        (_, k) => ({ src: clientAddr(k), count: requests, gapMs: 150 }),
      ),
    });
    const nodeLoad = Array<number>(NODES).fill(0);
    const stick: number[] = [];
    let spreadLost = 0;
    for (const outs of spread) {
      const per = Array<number>(NODES).fill(0);
      for (const o of outs) {
        if (typeof o === "number") per[o]!++;
        else spreadLost++;
      }
      per.forEach((n, i) => nodeLoad[i]! += n);
      const got = per.reduce((a, b) => a + b, 0);
      if (got > 0) stick.push(Math.max(...per) / got);
    }
    stick.sort((a, b) => a - b);

    // (c): one client at 3× its allowed rate (30/s against 1 per 0.1 s) for 10 s.
    const rateOuts = (await probeIn(lab, {
      vip: VIP_ADDR,
      timeoutMs: 1000,
      clients: [{ src: RATE_ADDR, count: 300, gapMs: (RATE_INTERVAL_S * 1000) / 3 }],
    }))[0]!;
    const ratePerNode = Array<number>(NODES).fill(0);
    for (const o of rateOuts) if (typeof o === "number") ratePerNode[o]!++;

    // (d): chronyd with xleave, polling every 0.5 s for 20 s.
    const before = await Promise.all(lab.nodes.map(countersIn));
    const chrony = await startChronydIn(lab.client, [
      `server ${VIP_ADDR} iburst xleave minpoll -1 maxpoll -1`,
      `bindacqaddress ${XLEAVE_ADDR}`,
      "port 0",
    ]);
    stops.push(() => chrony.stop());
    await new Promise((r) => setTimeout(r, 20_000));
    const nd = await chrony.chronyc("ntpdata", VIP_ADDR);
    await chrony.stop();
    stops.pop();
    const after = await Promise.all(lab.nodes.map(countersIn));
    const field = (name: string) => nd.match(new RegExp(`^${name}\\s*:\\s*(.*)$`, "m"))?.[1] ?? "?";
    const interleaved = after.reduce((a, c, i) => a + c.interleaved - before[i]!.interleaved, 0);

    return {
      policy,
      sysctl,
      requestsPerClient: requests,
      nodeLoad,
      balance: Math.max(...nodeLoad) / Math.max(1, Math.min(...nodeLoad)),
      stickMin: stick[0] ?? 0,
      stickMedian: stick[Math.floor(stick.length / 2)] ?? 0,
      stickMax: stick.at(-1) ?? 0,
      sticky: stick.filter((s) => s === 1).length,
      spreadLost,
      rate: {
        sent: rateOuts.length,
        answered: ratePerNode.reduce((a, b) => a + b, 0),
        kod: rateOuts.filter((o) => o === "kod").length,
        lost: rateOuts.filter((o) => o === "lost").length,
        perNode: ratePerNode,
      },
      xleave: { rx: Number(field("Total RX")), interleaved, last: field("Interleaved") },
    };
  } finally {
    for (const s of stops) await s().catch(() => {});
    for (const p of procs) await p.stop("SIGKILL").catch(() => {});
    await lab.close();
  }
}

const pct = (x: number) => `${(x * 100).toFixed(0)} %`;

function table(all: PolicyFigures[]): string {
  const rows: [string, (f: PolicyFigures) => string][] = [
    ["fib_multipath_hash_policy", (f) => f.sysctl],
    [
      `(a) per-client share on its busiest node: min / median / max`,
      (f) => `${pct(f.stickMin)} / ${pct(f.stickMedian)} / ${pct(f.stickMax)}`,
    ],
    [`(a) clients with all requests on one node`, (f) => `${f.sticky} / ${CLIENTS}`],
    [`(b) requests per node, ${CLIENTS} clients`, (f) => f.nodeLoad.join(" / ")],
    [`(b) balance max/min`, (f) => f.balance.toFixed(2)],
    [`(b) unanswered`, (f) => String(f.spreadLost)],
    [
      `(c) 3× rate: answered / KoD / silent of sent`,
      (f) => `${f.rate.answered} / ${f.rate.kod} / ${f.rate.lost} of ${f.rate.sent}`,
    ],
    [`(c) answered per node`, (f) => f.rate.perNode.join(" / ")],
    [
      `(d) chronyd xleave: interleaved replies / received`,
      (f) =>
        `${f.xleave.interleaved} / ${f.xleave.rx} (${
          pct(f.xleave.interleaved / Math.max(1, f.xleave.rx))
        })`,
    ],
    [`(d) chronyc ntpdata Interleaved (last)`, (f) => f.xleave.last],
  ];
  const w = Math.max(...rows.map(([k]) => k.length));
  const cols = all.map((f) => Math.max(f.policy.length, ...rows.map(([, g]) => g(f).length)));
  const line = (k: string, vs: string[]) =>
    `| ${k.padEnd(w)} | ${vs.map((v, i) => v.padEnd(cols[i]!)).join(" | ")} |`;
  return [
    line("measure", all.map((f) => f.policy)),
    `|${"-".repeat(w + 2)}|${cols.map((c) => "-".repeat(c + 2)).join("|")}|`,
    ...rows.map(([k, g]) => line(k, all.map(g))),
  ].join("\n");
}

if (import.meta.main) {
  if (Deno.args[0] === "--probe") {
    console.log(JSON.stringify(await probe(JSON.parse(Deno.args[1]!) as ProbeJob)));
    Deno.exit(0);
  }
  const { values } = parseArgs({
    args: Deno.args,
    options: { requests: { type: "string" }, json: { type: "string" } },
  });
  const requests = Number(values.requests ?? 32);
  if (!(requests >= 1 && requests <= 1000)) {
    console.error("ecmp_hash: --requests must be 1…1000");
    Deno.exit(2);
  }
  if ((await sh(["id", "-u"])).stdout.trim() !== "0") {
    console.error("ecmp_hash: needs root (ip netns)");
    Deno.exit(2);
  }
  const all: PolicyFigures[] = [];
  for (const p of ["l3", "l4"] as const) {
    all.push(await runPolicy(p, requests));
    console.error(`${p} done`);
  }
  console.log(
    `ECMP hash, ${NODES} nodes, ${CLIENTS} client addresses × ${requests} requests (fresh source port each); ` +
      `rate limit ${RATE_INTERVAL_S} s / burst ${RATE_BURST}; ${new Date().toISOString()}`,
  );
  console.log(table(all));
  if (values.json) await Deno.writeTextFile(values.json, JSON.stringify(all, null, 2) + "\n");
}
