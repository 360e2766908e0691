/**
 * Node mode against real BIRD 2 and ip in a namespace lab: edge-time in
 * node namespaces announces 192.0.2.123/32 over BGP only while healthy;
 * the router's BIRD (kernel protocol with `merge paths on`) installs it
 * as a multipath route. What the test checks is order and outcome; how
 * long each step takes at the router's kernel table is printed here and
 * measured by bench/failover.ts. The waits are deadlines for a step that
 * never happens, not figures.
 */
import assert from "assert";
import { includeText } from "../../lib/anycast/plan.ts";
import { type EdgeTimeProcess, startEdgeTime } from "../helpers/edge_time.ts";
import { type Bird, buildLab, routeNexthops, waitFor } from "../helpers/netns.ts";
import {
  birdNodeToml,
  INTERVAL_MS,
  nodeBird,
  RISE,
  routerBird,
  VIP,
} from "../helpers/anycast_lab.ts";

/** Deadline for a route change that should come; waitFor returns as soon as it does. */
const ROUTE_DEADLINE_MS = 30_000;

async function established(bird: Bird, proto: string): Promise<boolean> {
  const r = await bird.birdc("show", "protocols", proto);
  return /Established/.test(r.stdout);
}

Deno.test({
  name: "anycast node mode announces through BIRD only while healthy",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    const lab = await buildLab({ nodes: 2 });
    const procs: EdgeTimeProcess[] = [];
    try {
      const router = await lab.startBird(lab.router, "router", routerBird(lab));
      const nodeDirs: string[] = [];
      for (let i = 0; i < 2; i++) {
        const dir = `${lab.dir}/n${i + 1}`;
        await Deno.mkdir(dir);
        // An operator installs the withdrawn include with the snippet: BIRD will not start without it.
        await Deno.writeTextFile(`${dir}/edge-time-anycast.conf`, includeText([]));
        await lab.startBird(
          lab.nodes[i]!,
          `n${i + 1}`,
          await nodeBird(lab, i, `${dir}/edge-time-anycast.conf`),
        );
        nodeDirs.push(dir);
      }
      const up = await waitFor(
        async () => (await established(router, "n1")) && (await established(router, "n2")),
        15_000,
        100,
      );
      assert.ok(up >= 0, "BGP sessions did not come up");
      const n1 = lab.nodeAddr(0), n2 = lab.nodeAddr(1);
      const figures: Record<string, number> = {};
      let p1!: EdgeTimeProcess;

      await t.step(
        "announce: the /32 appears in the router's kernel table once healthy",
        async () => {
          const starts = [0, 1].map((i) =>
            startEdgeTime(birdNodeToml(nodeDirs[i]!, `${lab.dir}/n${i + 1}.ctl`), {
              netns: lab.nodes[i]!,
            })
          );
          const started = await Promise.all(starts);
          procs.push(...started);
          p1 = started[0]!;
          await p1.waitForLog(/Anycast health: unhealthy → healthy/, 10_000);
          const tHealthy = performance.now();
          const ms = await waitFor(
            async () => (await routeNexthops(lab.router, VIP)).includes(n1),
            ROUTE_DEADLINE_MS,
          );
          assert.ok(ms >= 0, `route via ${n1} never appeared:\n${p1.logs().join("\n")}`);
          figures.announce_after_healthy_ms = performance.now() - tHealthy;
          // Both nodes announce: BIRD's merge paths makes one multipath kernel route.
          const both = await waitFor(
            async () => (await routeNexthops(lab.router, VIP)).join() === [n1, n2].sort().join(),
            ROUTE_DEADLINE_MS,
          );
          assert.ok(both >= 0, `no multipath route: ${await routeNexthops(lab.router, VIP)}`);
        },
      );

      await t.step("drain file: withdrawn, the other node stays", async () => {
        const t0 = performance.now();
        await Deno.writeTextFile(`${nodeDirs[0]}/drain`, "");
        const ms = await waitFor(
          async () => !(await routeNexthops(lab.router, VIP)).includes(n1),
          ROUTE_DEADLINE_MS,
        );
        assert.ok(ms >= 0, "route not withdrawn after drain");
        figures.withdraw_after_drain_ms = performance.now() - t0;
        assert.deepEqual(await routeNexthops(lab.router, VIP), [n2], "the other node stays");
      });

      await t.step("drain removed: back after `rise` checks", async () => {
        const t0 = performance.now();
        await Deno.remove(`${nodeDirs[0]}/drain`);
        const ms = await waitFor(
          async () => (await routeNexthops(lab.router, VIP)).includes(n1),
          ROUTE_DEADLINE_MS,
        );
        assert.ok(ms >= 0, "route not back after removing the drain file");
        figures.announce_after_undrain_ms = performance.now() - t0;
        // Not at once: the first good check can come at once, the `rise`-th
        // one (RISE-1) intervals later. (A lower bound: load only adds to it.)
        assert.ok(
          figures.announce_after_undrain_ms >= (RISE - 1) * INTERVAL_MS - 50,
          `back after ${figures.announce_after_undrain_ms.toFixed(0)} ms`,
        );
      });

      await t.step("SIGTERM: withdrawn before the process exits", async () => {
        const t0 = performance.now();
        const stopped = p1.stop("SIGTERM");
        const ms = await waitFor(
          async () => !(await routeNexthops(lab.router, VIP)).includes(n1),
          ROUTE_DEADLINE_MS,
          10,
        );
        assert.ok(ms >= 0, "route not withdrawn after SIGTERM");
        figures.withdraw_after_sigterm_ms = performance.now() - t0;
        assert.equal(await stopped, 0);
        // The withdrawal is part of the stop sequence: logged before the app's last line.
        const logs = p1.logs();
        const withdrawn = logs.findIndex((l) => /Anycast withdrawn in \d+ ms/.test(l));
        const last = logs.findIndex((l) => / INFO +app: Stopped$/.test(l));
        assert.ok(withdrawn >= 0 && last > withdrawn, logs.join("\n"));
        const addrs = await lab.exec(lab.nodes[0]!, ["ip", "-j", "addr", "show", "dev", "lo"]);
        assert.ok(!addrs.stdout.includes("192.0.2.123"), "the address left lo");
      });

      console.log("anycast node mode timings (ms):");
      for (const [k, v] of Object.entries(figures)) {
        console.log(`  ${k.padEnd(28)} ${v.toFixed(0)}`);
      }
    } finally {
      for (const p of procs) await p.stop("SIGKILL").catch(() => {});
      await lab.close();
    }
  },
});
