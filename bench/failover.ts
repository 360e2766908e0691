/**
 * Anycast failover timing, reproducible: builds the namespace lab of
 * tests/anycast_*_test.ts (router, nodes, client; real BIRD 2 and ip) and
 * measures, at the router's kernel table:
 *
 *   node mode (BIRD):  announce after the gate turns healthy, withdraw
 *                      after the drain file appears, announce after it goes
 *                      (`rise` checks), withdraw after SIGTERM
 *   router mode (ECMP): a SIGKILLed node leaving the multipath route, the
 *                      loss of a client stream across that failover, and
 *                      the loss after it
 *
 * Run as root:  deno run -A bench/failover.ts [--runs N]
 * Prints min / median / max over N runs (default 3) as a table.
 */
import { parseArgs } from "node:util";
import { includeText } from "../lib/anycast/plan.ts";
import { type EdgeTimeProcess, startEdgeTime } from "../tests/helpers/edge_time.ts";
import { buildNtpload } from "../tests/helpers/ntpload.ts";
import { buildLab, routeNexthops, sh, waitFor } from "../tests/helpers/netns.ts";
import {
  birdNodeToml,
  ECMP_NODE_TOML,
  FALL,
  INTERVAL_MS,
  nodeBird,
  ntploadIn,
  RISE,
  ROUTER_TOML,
  routerBird,
  VIP,
} from "../tests/helpers/anycast_lab.ts";

type Figures = Record<string, number>;

async function nodeRun(): Promise<Figures> {
  const lab = await buildLab({ nodes: 1 });
  const procs: EdgeTimeProcess[] = [];
  const f: Figures = {};
  try {
    const router = await lab.startBird(lab.router, "router", routerBird(lab));
    const dir = `${lab.dir}/n1`;
    await Deno.mkdir(dir);
    await Deno.writeTextFile(`${dir}/edge-time-anycast.conf`, includeText([]));
    await lab.startBird(
      lab.nodes[0]!,
      "n1",
      await nodeBird(lab, 0, `${dir}/edge-time-anycast.conf`),
    );
    const up = await waitFor(
      async () => /Established/.test((await router.birdc("show", "protocols", "n1")).stdout),
      15_000,
      100,
    );
    if (up < 0) throw new Error("BGP session did not come up");
    const n1 = lab.nodeAddr(0);
    const has = async () => (await routeNexthops(lab.router, VIP)).includes(n1);
    const p = await startEdgeTime(birdNodeToml(dir, `${lab.dir}/n1.ctl`), { netns: lab.nodes[0]! });
    procs.push(p);
    await p.waitForLog(/Anycast health: unhealthy → healthy/, 10_000);
    let t0 = performance.now();
    if (await waitFor(has, 5000, 10) < 0) throw new Error("no announce");
    f["node: announce after healthy"] = performance.now() - t0;
    t0 = performance.now();
    await Deno.writeTextFile(`${dir}/drain`, "");
    if (await waitFor(async () => !(await has()), 5000, 10) < 0) throw new Error("no withdraw");
    f["node: withdraw after drain"] = performance.now() - t0;
    t0 = performance.now();
    await Deno.remove(`${dir}/drain`);
    if (await waitFor(has, 6000, 10) < 0) throw new Error("no re-announce");
    f[`node: announce after undrain (rise ${RISE})`] = performance.now() - t0;
    t0 = performance.now();
    const stopped = p.stop("SIGTERM");
    if (await waitFor(async () => !(await has()), 3000, 10) < 0) throw new Error("no withdraw");
    f["node: withdraw after SIGTERM"] = performance.now() - t0;
    await stopped;
    return f;
  } finally {
    for (const p of procs) await p.stop("SIGKILL").catch(() => {});
    await lab.close();
  }
}

async function routerRun(ntpload: string): Promise<Figures> {
  const lab = await buildLab({ nodes: 3 });
  const procs: EdgeTimeProcess[] = [];
  const f: Figures = {};
  try {
    const nodes = lab.nodes.map((_, i) => lab.nodeAddr(i));
    procs.push(
      ...await Promise.all(lab.nodes.map((ns) => startEdgeTime(ECMP_NODE_TOML, { netns: ns }))),
    );
    const t0 = performance.now();
    procs.push(await startEdgeTime(ROUTER_TOML(nodes), { netns: lab.router }));
    if (
      await waitFor(async () => (await routeNexthops(lab.router, VIP)).length === 3, 10_000) < 0
    ) {
      throw new Error("no 3-way route");
    }
    f[`router: all nodes routed after start (rise ${RISE})`] = performance.now() - t0;
    // A 4 s client stream; node 3 dies 1 s into it.
    const stream = ntploadIn(lab.client, ntpload, { rate: 2000, seconds: 4, sockets: 512 });
    await new Promise((r) => setTimeout(r, 1000));
    const t1 = performance.now();
    await procs[2]!.stop("SIGKILL");
    const left = await waitFor(
      async () => !(await routeNexthops(lab.router, VIP)).includes(nodes[2]!),
      5000,
      10,
    );
    if (left < 0) throw new Error("dead node stayed in the route");
    f[`router: SIGKILLed node leaves route (fall ${FALL})`] = performance.now() - t1;
    f["router: loss % over 4 s stream with the failover"] = (await stream).loss * 100;
    f["router: loss % after the failover"] =
      (await ntploadIn(lab.client, ntpload, { rate: 2000, seconds: 2, sockets: 512 })).loss * 100;
    return f;
  } finally {
    for (const p of procs) await p.stop("SIGKILL").catch(() => {});
    await lab.close();
  }
}

if (import.meta.main) {
  const { values } = parseArgs({ args: Deno.args, options: { runs: { type: "string" } } });
  const runs = Number(values.runs ?? 3);
  if ((await sh(["id", "-u"])).stdout.trim() !== "0") {
    console.error("failover: needs root (ip netns, bird)");
    Deno.exit(2);
  }
  const ntpload = await buildNtpload();
  const all: Figures[] = [];
  for (let i = 0; i < runs; i++) {
    all.push({ ...(await nodeRun()), ...(await routerRun(ntpload)) });
    console.error(`run ${i + 1}/${runs} done`);
  }
  const keys = Object.keys(all[0]!);
  const w = Math.max(...keys.map((k) => k.length));
  console.log(`anycast failover, health interval ${INTERVAL_MS} ms, ${runs} run(s); times in ms`);
  console.log(`| ${"measure".padEnd(w)} |    min | median |    max |`);
  console.log(`|${"-".repeat(w + 2)}|-------:|-------:|-------:|`);
  for (const k of keys) {
    const v = all.map((f) => f[k]!).sort((a, b) => a - b);
    const fmt = (x: number) => (k.includes("%") ? x.toFixed(2) : x.toFixed(0)).padStart(6);
    console.log(
      `| ${k.padEnd(w)} | ${fmt(v[0]!)} | ${fmt(v[Math.floor(v.length / 2)]!)} | ${
        fmt(v.at(-1)!)
      } |`,
    );
  }
}
