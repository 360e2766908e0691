/**
 * The anycast loop against fakes: a simulated host behind the
 * CommandRunner (addresses, route, sysctl, birdc), an in-memory file store
 * and scripted NTP answers. No subprocess, no socket.
 */
import assert from "assert";
import { defaultConfig } from "../../lib/config/mod.ts";
import {
  type CommandResult,
  FakeCommandRunner,
  FakeFileStore,
} from "../../lib/io/command_runner.ts";
import { type AnycastConfig, AnycastRuntime, planOneShot } from "../../lib/anycast/runtime.ts";
import type { QueryResult } from "../../lib/ntp/query.ts";
import { queryReply } from "../helpers/fixtures.ts";

const INCLUDE = "/etc/bird/edge-time-anycast.conf";
const ok = (stdout = ""): CommandResult => ({ code: 0, stdout, stderr: "" });

/** A host as `ip`, `sysctl` and `birdc` see it. */
class FakeHost {
  held = new Set<string>(["127.0.0.1/8"]);
  route: string[] | null = null;
  hash = ["0", "0"];
  birdUp = true;
  missing = new Set<string>();
  configures = 0;
  runner = new FakeCommandRunner((argv) => this.#run(argv));

  #run(argv: readonly string[]): CommandResult {
    const [cmd, ...a] = argv;
    if (this.missing.has(cmd!)) {
      return { code: 127, stdout: "", stderr: `cannot run "${cmd}": not found in PATH` };
    }
    const s = a.join(" ");
    if (cmd === "ip") {
      if (s.startsWith("-j addr show dev lo")) {
        const info = [...this.held].map((p) => ({
          family: "inet",
          local: p.split("/")[0],
          prefixlen: Number(p.split("/")[1]),
        }));
        return ok(JSON.stringify([{ ifname: "lo", addr_info: info }]));
      }
      if (s.startsWith("-j addr show dev")) {
        return { code: 1, stdout: "", stderr: `Device "${a[4]}" does not exist.\n` };
      }
      if (s.startsWith("addr replace")) return this.held.add(a[2]!), ok();
      if (s.startsWith("addr del")) return this.held.delete(a[2]!), ok();
      if (s.startsWith("-j route show exact")) {
        if (this.route === null) return ok("[]");
        return ok(
          JSON.stringify([{
            dst: "192.0.2.123",
            nexthops: this.route.map((g) => ({ gateway: g })),
          }]),
        );
      }
      if (s.startsWith("route replace")) {
        this.route = a.flatMap((x, i) => a[i - 1] === "via" ? [x] : []);
        return ok();
      }
      if (s.startsWith("route del")) return this.route = null, ok();
    }
    if (cmd === "sysctl") {
      if (a[0] === "-n") return ok(this.hash.join("\n") + "\n");
      if (a[0] === "-w") return this.hash = ["1", "1"], ok();
    }
    if (cmd === "birdc") {
      if (!this.birdUp) {
        return {
          code: 1,
          stdout: "",
          stderr:
            "Unable to connect to server control socket (/run/bird/bird.ctl): No such file or directory\n",
        };
      }
      if (a.includes("configure")) {
        this.configures++;
        return ok(
          "0001 BIRD 2.0.12 ready.\n0002-Reading configuration from /etc/bird/bird.conf\n0003 Reconfigured\n",
        );
      }
      if (a.includes("show")) {
        return ok(
          `0001 BIRD 2.0.12 ready.\n1007-Table master4:\n     ${
            a.at(-1)
          } blackhole [edge_time_anycast4 09:00:00] * (200)\n`,
        );
      }
    }
    return { code: 2, stdout: "", stderr: `unexpected command ${argv.join(" ")}` };
  }
}

function setup(over: (c: AnycastConfig) => void) {
  const cfg = defaultConfig().anycast;
  cfg.mode = "node";
  cfg.addresses = ["192.0.2.123/32"];
  cfg.drainFile = "/run/edge-time/drain";
  cfg.bird.includeFile = INCLUDE;
  cfg.health = { intervalMs: 50, rise: 2, fall: 2, maxOffsetMs: 10 };
  cfg.router = {
    vip: "192.0.2.123/32",
    nodes: ["10.0.1.2", "10.0.2.2", "10.0.3.2"],
    hashPolicy: "l4",
    port: 123,
  };
  over(cfg);
  const host = new FakeHost();
  const files = new FakeFileStore("/nonexistent/");
  const answers = new Map<string, QueryResult | string>();
  const local = { leap: 0, stratum: 8, offsetS: 0 };
  const lines: string[] = [];
  const log = {
    info: (m: string) => lines.push(`INFO ${m}`),
    warn: (m: string) => lines.push(`WARN ${m}`),
    error: (m: string) => lines.push(`ERROR ${m}`),
  };
  let now = 1000;
  const rt = new AnycastRuntime({
    anycast: cfg,
    selfPort: 123,
    local: () => local,
    log,
    now: () => now++,
  }, {
    runner: host.runner,
    files,
    query: (h) => {
      const a = answers.get(h) ?? queryReply();
      return typeof a === "string" ? Promise.reject(new Error(a)) : Promise.resolve(a);
    },
  });
  return { cfg, host, files, answers, lines, rt, local };
}

Deno.test("AnycastRuntime node mode announces, drains and withdraws through BIRD", async (t) => {
  const { host, files, lines, rt } = setup(() => {});
  // Stale state from a crash: the include still announces.
  files.files.set(INCLUDE, "define EDGE_TIME_ANYCAST4 = [ 192.0.2.123/32 ];\n");
  await t.step(
    "start reconciles: holds the address, withdraws the stale announcement",
    async () => {
      await rt.start({ loop: false });
      assert.ok(host.held.has("192.0.2.123/32"));
      assert.match(files.files.get(INCLUDE)!, /ANYCAST4 = \[ \];/);
      assert.equal(host.configures, 1);
      assert.equal(rt.report().state, "withdrawn");
    },
  );
  await t.step("announces after `rise` good checks", async () => {
    await rt.tick();
    assert.equal(rt.report().announced.length, 0, "one good check is not enough");
    await rt.tick();
    const r = rt.report();
    assert.equal(r.state, "announced");
    assert.deepEqual(r.announced, ["192.0.2.123/32"]);
    assert.equal(r.healthy, true);
    assert.match(files.files.get(INCLUDE)!, /ANYCAST4 = \[ 192\.0\.2\.123\/32 \];/);
    assert.ok(host.runner.calls.some((c) => c.join(" ") === "birdc show route 192.0.2.123/32"));
  });
  await t.step("idempotent: a further good check runs no configure", async () => {
    const before = host.configures, writes = files.writes;
    await rt.tick();
    assert.equal(host.configures, before);
    assert.equal(files.writes, writes);
  });
  await t.step("drain file withdraws on the next check", async () => {
    files.files.set("/run/edge-time/drain", "");
    await rt.tick();
    const r = rt.report();
    assert.equal(r.state, "draining");
    assert.deepEqual(r.announced, []);
    assert.match(r.reason, /drain file present/);
    assert.ok(
      lines.some((l) =>
        /^WARN Anycast health: healthy → unhealthy \(drain file present\)$/.test(l)
      ),
    );
  });
  await t.step("removing it announces again after `rise`", async () => {
    files.files.delete("/run/edge-time/drain");
    await rt.tick();
    assert.deepEqual(rt.report().announced, []);
    await rt.tick();
    assert.deepEqual(rt.report().announced, ["192.0.2.123/32"]);
  });
  await t.step("stop() withdraws BIRD first, then removes the address", async () => {
    const n = host.runner.calls.length;
    await rt.stop();
    const after = host.runner.calls.slice(n).map((c) => c.join(" "));
    assert.deepEqual(after.filter((c) => !c.includes("-j")), [
      "birdc configure",
      "ip addr del 192.0.2.123/32 dev lo",
    ]);
    assert.match(files.files.get(INCLUDE)!, /ANYCAST4 = \[ \];/);
    assert.ok(!host.held.has("192.0.2.123/32"));
    assert.equal(rt.report().transitions.at(-1)?.to, "healthy");
  });
});

Deno.test("AnycastRuntime node mode falls after `fall` bad self-queries", async () => {
  const { answers, rt } = setup(() => {});
  await rt.start({ loop: false });
  await rt.tick();
  await rt.tick();
  assert.equal(rt.report().state, "announced");
  answers.set("192.0.2.123", "no reply from 192.0.2.123:123 within 40 ms");
  await rt.tick();
  assert.equal(rt.report().state, "announced", "one bad check is not enough");
  await rt.tick();
  const r = rt.report();
  assert.equal(r.state, "withdrawn");
  assert.match(r.reason, /self-query: no reply/);
  await rt.stop();
});

Deno.test("AnycastRuntime node mode withdraws when the served state is stratum 16", async () => {
  // An upstream at stratum 15 makes us 16: the wire says LI 3, so the gate must close.
  const { rt, local } = setup(() => {});
  await rt.start({ loop: false });
  await rt.tick();
  await rt.tick();
  assert.equal(rt.report().state, "announced");
  local.stratum = 16;
  await rt.tick();
  await rt.tick();
  const r = rt.report();
  assert.equal(r.state, "withdrawn");
  assert.equal(r.healthy, false);
  assert.equal(r.reason, "not synchronised (leap 0, stratum 16)");
  await rt.stop();
});

Deno.test("AnycastRuntime reports failures in one line and retries with backoff", async (t) => {
  await t.step("missing ip", async () => {
    const { host, lines, rt } = setup(() => {});
    host.missing.add("ip");
    await rt.start({ loop: false });
    const errs = lines.filter((l) => l.startsWith("ERROR"));
    assert.deepEqual(errs, [
      `ERROR ip -j addr show dev lo failed: cannot run "ip": not found in PATH (attempt 1; retrying in 0.1 s)`,
    ]);
    assert.match(rt.report().error!, /cannot run "ip"/);
    // Within the backoff: the check runs, the apply does not.
    const n = host.runner.calls.length;
    await rt.tick();
    assert.equal(host.runner.calls.length, n);
    await new Promise((r) => setTimeout(r, 120));
    await rt.tick();
    assert.match(
      lines.filter((l) => l.startsWith("ERROR")).at(-1)!,
      /attempt 2; retrying in 0\.2 s/,
    );
    host.missing.delete("ip");
    await new Promise((r) => setTimeout(r, 220));
    await rt.tick();
    assert.ok(lines.some((l) => l === "INFO Anycast apply works again after 2 failed attempt(s)"));
    assert.equal(rt.report().error, "");
    await rt.stop();
  });
  await t.step("missing birdc", async () => {
    const { host, lines, rt } = setup(() => {});
    host.missing.add("birdc");
    await rt.start({ loop: false });
    assert.match(
      lines.find((l) => l.startsWith("ERROR"))!,
      /^ERROR birdc configure failed: cannot run "birdc": not found in PATH \(attempt 1/,
    );
    await rt.stop();
  });
  await t.step("BIRD not running: BIRD's own message", async () => {
    const { host, lines, rt } = setup(() => {});
    host.birdUp = false;
    await rt.start({ loop: false });
    assert.match(
      lines.find((l) => l.startsWith("ERROR"))!,
      /^ERROR birdc configure failed: Unable to connect to server control socket \(\/run\/bird\/bird.ctl\): No such file or directory \(attempt 1/,
    );
    // BIRD back: the include on disk is right, but BIRD never took it, so configure runs again.
    host.birdUp = true;
    await new Promise((r) => setTimeout(r, 120));
    const before = host.configures;
    await rt.tick();
    assert.equal(host.configures, before + 1);
    await rt.stop();
  });
  await t.step("bad include path", async () => {
    const { lines, rt } = setup((c) => c.bird.includeFile = "/nonexistent/x.conf");
    await rt.start({ loop: false });
    assert.deepEqual(lines.filter((l) => l.startsWith("ERROR")), [
      "ERROR Cannot write the BIRD include file: Cannot write /nonexistent/x.conf: no such file or directory (attempt 1; retrying in 0.1 s)",
    ]);
    await rt.stop();
  });
  await t.step("unknown interface", async () => {
    const { lines, rt } = setup((c) => c.interface = "eth9");
    await rt.start({ loop: false });
    assert.match(
      lines.find((l) => l.startsWith("ERROR"))!,
      /^ERROR ip -j addr show dev eth9 failed: Device "eth9" does not exist\./,
    );
    await rt.stop();
  });
});

Deno.test("AnycastRuntime router mode keeps the ECMP route on the healthy nodes", async (t) => {
  const { host, answers, lines, rt } = setup((c) => c.mode = "router");
  await rt.start({ loop: false });
  await t.step(
    "all nodes healthy after `rise`: one multipath route, L4 hash set and verified",
    async () => {
      await rt.tick();
      assert.equal(host.route, null);
      await rt.tick();
      assert.deepEqual(host.route, ["10.0.1.2", "10.0.2.2", "10.0.3.2"]);
      assert.deepEqual(host.hash, ["1", "1"]);
      assert.ok(
        lines.includes("INFO Multipath hash policy set to L4 (fib_multipath_hash_policy = 1)"),
      );
      const r = rt.report();
      assert.equal(r.state, "routed");
      assert.deepEqual(r.nexthops, ["10.0.1.2", "10.0.2.2", "10.0.3.2"]);
    },
  );
  await t.step("a node that stops answering leaves after `fall`", async () => {
    answers.set("10.0.3.2", "no reply from 10.0.3.2:123 within 40 ms");
    await rt.tick();
    assert.equal(host.route?.length, 3);
    await rt.tick();
    assert.deepEqual(host.route, ["10.0.1.2", "10.0.2.2"]);
    assert.ok(
      lines.some((l) =>
        /^WARN Anycast node 10\.0\.3\.2: healthy → unhealthy \(query: no reply/.test(l)
      ),
    );
  });
  await t.step("a node with bad time leaves too", async () => {
    answers.set("10.0.2.2", queryReply({ offset: 0.5 }));
    await rt.tick();
    await rt.tick();
    assert.deepEqual(host.route, ["10.0.1.2"]);
    assert.match(
      rt.report().nodes!.find((n) => n.address === "10.0.2.2")!.reason,
      /offset 500\.000 ms exceeds 10 ms/,
    );
  });
  await t.step("something resets the hash policy: warned and set back", async () => {
    host.hash = ["0", "1"];
    await rt.tick();
    assert.ok(
      lines.some((l) =>
        l === "WARN net.ipv4.fib_multipath_hash_policy was reset to 0; setting it back to 1"
      ),
    );
    assert.deepEqual(host.hash, ["1", "1"]);
  });
  await t.step("no node healthy: the route is removed", async () => {
    answers.set("10.0.1.2", "server is not synchronised (leap 3, stratum 0)");
    await rt.tick();
    await rt.tick();
    assert.equal(host.route, null);
    const r = rt.report();
    assert.equal(r.state, "no route");
    assert.equal(r.healthy, false);
  });
  await t.step("stop() leaves the route alone (router mode)", async () => {
    answers.clear();
    await rt.tick();
    await rt.tick();
    await rt.stop();
    assert.equal(host.route?.length, 3);
  });
});

Deno.test("planOneShot() plans apply and withdraw for the CLI", async (t) => {
  await t.step("node apply: address missing → hold it first, announce next time", async () => {
    const { cfg, host, files } = setup(() => {});
    const io = { runner: host.runner, files, query: () => Promise.resolve(queryReply()) };
    const p = await planOneShot(cfg, io, { kind: "apply", selfPort: 123 });
    assert.ok(typeof p !== "string");
    assert.match(p.notes[0]!, /not on lo yet/);
    assert.equal(p.actions[0]?.kind, "run");
  });
  await t.step("router withdraw removes the route", async () => {
    const { cfg, host, files } = setup((c) => c.mode = "router");
    host.route = ["10.0.1.2"];
    const io = { runner: host.runner, files, query: () => Promise.resolve(queryReply()) };
    const p = await planOneShot(cfg, io, { kind: "withdraw", selfPort: 123 });
    assert.ok(typeof p !== "string");
    assert.deepEqual(p.actions.map((a) => a.kind === "run" && a.argv.join(" ")), [
      "sysctl -w net.ipv4.fib_multipath_hash_policy=1 net.ipv6.fib_multipath_hash_policy=1",
      "ip route del 192.0.2.123/32 proto static",
    ]);
  });
});
