/**
 * `edge-time anycast plan|apply|withdraw` in a namespace with a real BIRD
 * and a real local NTP server: plan is a dry run, apply holds the address
 * and then announces, withdraw takes everything back.
 */
import assert from "assert";
import { includeText } from "../../lib/anycast/plan.ts";
import { type EdgeTimeProcess, mainArgv, startEdgeTime } from "../helpers/edge_time.ts";
import { deleteNetns, labId, makeNetns, sh } from "../helpers/netns.ts";

const ROOT = new URL("../../", import.meta.url);

Deno.test({
  name: "edge-time anycast plan/apply/withdraw drive ip and BIRD",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    const id = labId();
    const dir = await Deno.makeTempDir({ prefix: `${id}-` });
    const ns = `${id}-cli`;
    let bird: Deno.ChildProcess | null = null;
    let server: EdgeTimeProcess | null = null;
    try {
      await makeNetns(ns);
      const include = `${dir}/edge-time-anycast.conf`;
      const socket = `${dir}/bird.ctl`;
      await Deno.writeTextFile(include, includeText([]));
      const snippet = (await Deno.readTextFile(new URL("appliance/bird-anycast.conf", ROOT)))
        .replace(`include "/etc/bird/edge-time-anycast.conf";`, `include "${include}";`);
      await Deno.writeTextFile(`${dir}/bird.conf`, `router id 10.9.9.9;\n${snippet}\n`);
      bird = new Deno.Command("ip", {
        args: [
          "netns",
          "exec",
          ns,
          "bird",
          "-f",
          "-c",
          `${dir}/bird.conf`,
          "-s",
          socket,
          "-P",
          `${dir}/bird.pid`,
        ],
        stdout: "null",
        stderr: "null",
      }).spawn();
      for (let i = 0; i < 100; i++) {
        if ((await sh(["birdc", "-s", socket, "show", "status"])).code === 0) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      await Deno.writeTextFile(
        `${dir}/edge.toml`,
        `[server]
listen = ["0.0.0.0:123"]
[anycast]
mode = "node"
addresses = ["192.0.2.123/32"]
drain_file = "${dir}/drain"
[anycast.bird]
include_file = "${include}"
birdc = ["birdc", "-s", "${socket}"]
`,
      );
      // The NTP server the CLI's self-query checks (anycast off: the CLI is in charge).
      server = await startEdgeTime(
        `[server]\nlisten = ["0.0.0.0:123"]\nlocal_stratum = 8\n[status]\nlisten = ""\n`,
        {
          netns: ns,
        },
      );
      const cli = (action: string) =>
        sh([
          "ip",
          "netns",
          "exec",
          ns,
          ...mainArgv(),
          "anycast",
          action,
          "--config",
          `${dir}/edge.toml`,
        ]);
      const held = async () =>
        (await sh(["ip", "-n", ns, "-j", "addr", "show", "dev", "lo"])).stdout.includes(
          "192.0.2.123",
        );

      await t.step("plan prints the commands and changes nothing", async () => {
        const r = await cli("plan");
        assert.equal(r.code, 0, r.stderr);
        const lines = r.stdout.trim().split("\n");
        assert.match(lines[0]!, /^# health: bad: 192\.0\.2\.123\/32 not on lo yet/);
        assert.equal(lines[1], "ip addr replace 192.0.2.123/32 dev lo");
        assert.ok(lines.includes(`birdc -s ${socket} configure`));
        assert.equal(await held(), false);
      });
      await t.step("apply holds the address, a second apply announces", async () => {
        const r1 = await cli("apply");
        assert.equal(r1.code, 0, r1.stderr);
        assert.equal(await held(), true);
        const r2 = await cli("apply");
        assert.equal(r2.code, 0, r2.stderr);
        assert.match(r2.stdout, /^# health: good$/m);
        assert.match(await Deno.readTextFile(include), /ANYCAST4 = \[ 192\.0\.2\.123\/32 \]/);
        const show = await sh(["birdc", "-s", socket, "show", "route", "192.0.2.123/32"]);
        assert.match(show.stdout, /blackhole/);
      });
      await t.step("withdraw empties the sets and removes the address", async () => {
        const r = await cli("withdraw");
        assert.equal(r.code, 0, r.stderr);
        assert.match(await Deno.readTextFile(include), /ANYCAST4 = \[ \]/);
        assert.equal(await held(), false);
      });
      await t.step("BIRD gone: one error line, exit 1", async () => {
        bird!.kill("SIGTERM");
        await bird!.status;
        bird = null;
        const r = await cli("withdraw");
        assert.equal(r.code, 1);
        const err = r.stderr.trim().split("\n");
        assert.equal(err.length, 1);
        assert.match(
          err[0]!,
          /^edge-time: birdc -s \S+ configure failed: Unable to connect to server control socket/,
        );
      });
    } finally {
      await server?.stop("SIGKILL");
      if (bird) {
        bird.kill("SIGKILL");
        await bird.status;
      }
      await deleteNetns(ns);
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
