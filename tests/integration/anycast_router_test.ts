/**
 * Router mode in a namespace lab: edge-time in the router namespace keeps
 * one multipath route for the VIP on the nodes that answer NTP well, with
 * the L4 multipath hash; three edge-time servers hold the VIP on lo. A
 * client sends ntpload traffic from many source ports; every node gets a
 * fair share, and a node killed with SIGKILL leaves the route, after which
 * the client loses (almost) nothing. How soon it leaves is printed here and
 * measured by bench/failover.ts.
 */
import assert from "assert";
import { type EdgeTimeProcess, startEdgeTime } from "../helpers/edge_time.ts";
import { buildNtpload } from "../helpers/ntpload.ts";
import { buildLab, routeNexthops, waitFor } from "../helpers/netns.ts";
import { answeredIn, ECMP_NODE_TOML, ntploadIn, ROUTER_TOML, VIP } from "../helpers/anycast_lab.ts";

Deno.test({
  name: "anycast router mode spreads load over healthy nodes and drops a dead one",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    const ntpload = await buildNtpload();
    const lab = await buildLab({ nodes: 3 });
    const procs: EdgeTimeProcess[] = [];
    try {
      const nodes = lab.nodes.map((_, i) => lab.nodeAddr(i));
      procs.push(
        ...await Promise.all(lab.nodes.map((ns) => startEdgeTime(ECMP_NODE_TOML, { netns: ns }))),
      );
      const router = await startEdgeTime(ROUTER_TOML(nodes), { netns: lab.router });
      procs.push(router);

      await t.step("the route holds all three nodes, with the L4 hash", async () => {
        const ms = await waitFor(
          async () => (await routeNexthops(lab.router, VIP)).length === 3,
          30_000,
        );
        assert.ok(ms >= 0, `no 3-way route:\n${router.logs().join("\n")}`);
        const h = await lab.exec(lab.router, [
          "sysctl",
          "-n",
          "net.ipv4.fib_multipath_hash_policy",
          "net.ipv6.fib_multipath_hash_policy",
        ]);
        assert.deepEqual(h.stdout.trim().split("\n"), ["1", "1"]);
      });

      await t.step("a node's /status carries its anycast report", async () => {
        const r = await lab.exec(lab.nodes[0]!, ["curl", "-sf", "http://127.0.0.1:8123/status"]);
        const a = JSON.parse(r.stdout).anycast;
        assert.equal(a.mode, "node");
        assert.equal(a.state, "holding");
        assert.equal(a.healthy, true);
        assert.equal(a.transitions.at(-1).to, "healthy");
        const hz = await lab.exec(lab.nodes[0]!, ["curl", "-s", "http://127.0.0.1:8123/healthz"]);
        assert.match(hz.stdout, /^ok/);
      });

      await t.step("each node answers within ±25 % of a fair share", async () => {
        const before = await Promise.all(lab.nodes.map((ns) => answeredIn(ns)));
        const r = await ntploadIn(lab.client, ntpload, { rate: 2000, seconds: 2, sockets: 512 });
        const after = await Promise.all(lab.nodes.map((ns) => answeredIn(ns)));
        const share = after.map((a, i) => a - before[i]!);
        const total = share.reduce((a, b) => a + b, 0);
        console.log(
          `ntpload: loss ${(r.loss * 100).toFixed(2)} %; answered per node: ${share.join(" / ")}`,
        );
        assert.ok(total > 0);
        for (const s of share) {
          assert.ok(Math.abs(s - total / 3) <= 0.25 * total / 3, `unfair: ${share}`);
        }
        assert.ok(r.loss < 0.01, `loss ${r.loss}`);
      });

      await t.step(
        "SIGKILL one node: it leaves the route, then loss < 1 %",
        async () => {
          const t0 = performance.now();
          await procs[2]!.stop("SIGKILL");
          // A deadline for a node that never leaves, not a figure.
          const ms = await waitFor(
            async () => !(await routeNexthops(lab.router, VIP)).includes(nodes[2]!),
            30_000,
          );
          assert.ok(ms >= 0, "the dead node stayed in the route");
          const leftMs = performance.now() - t0;
          assert.deepEqual(await routeNexthops(lab.router, VIP), nodes.slice(0, 2));
          const r = await ntploadIn(lab.client, ntpload, { rate: 2000, seconds: 2, sockets: 512 });
          console.log(
            `dead node left the route after ${leftMs.toFixed(0)} ms; loss afterwards ${
              (r.loss * 100).toFixed(2)
            } %`,
          );
          assert.ok(r.loss < 0.01, `loss ${r.loss}`);
        },
      );
    } finally {
      for (const p of procs) await p.stop("SIGKILL").catch(() => {});
      await lab.close();
    }
  },
});
