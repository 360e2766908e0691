/**
 * Bad surroundings with real binaries: no `ip`, no `birdc`, BIRD not
 * running, an include path that cannot be written. Each is one clear error
 * line, retried with growing delays, and NTP keeps being served. Each case
 * runs in its own namespace (edge-time would put the VIP on lo).
 */
import assert from "assert";
import { type EdgeTimeProcess, startEdgeTime } from "../helpers/edge_time.ts";
import { buildNtpload } from "../helpers/ntpload.ts";
import { deleteNetns, labId, makeNetns, sh, waitFor } from "../helpers/netns.ts";

const INTERVAL_MS = 200;

function toml(dir: string, include: string): string {
  return `
[server]
listen = ["127.0.0.1:123"]
workers = 1
local_stratum = 8
rate_limit = { interval_s = 0 }
[status]
listen = ""
[anycast]
mode = "node"
addresses = ["192.0.2.123/32"]
drain_file = "${dir}/drain"
[anycast.health]
interval_ms = ${INTERVAL_MS}
[anycast.bird]
include_file = "${include}"
birdc = ["birdc", "-s", "${dir}/no-bird.ctl"]
`;
}

/** A PATH holding only `tools` (symlinks to the real ones). */
async function pathWith(dir: string, tools: string[]): Promise<string> {
  const bin = `${dir}/bin`;
  await Deno.mkdir(bin, { recursive: true });
  for (const t of tools) {
    const real = (await sh(["sh", "-c", `command -v ${t}`])).stdout.trim();
    await Deno.symlink(real, `${bin}/${t}`);
  }
  return bin;
}

interface Case {
  name: string;
  tools: string[];
  include: (dir: string) => string;
  error: RegExp;
}

const CASES: Case[] = [
  {
    name: "missing ip",
    tools: ["birdc", "sysctl"],
    include: (d) => `${d}/anycast.conf`,
    error: /ERROR\s+anycast: ip -j addr show dev lo failed: cannot run "ip": not found in PATH/,
  },
  {
    name: "missing birdc",
    tools: ["ip", "sysctl"],
    include: (d) => `${d}/anycast.conf`,
    error: /ERROR\s+anycast: birdc -s \S+ configure failed: cannot run "birdc": not found in PATH/,
  },
  {
    name: "BIRD not running",
    tools: ["ip", "birdc", "sysctl"],
    include: (d) => `${d}/anycast.conf`,
    error:
      /ERROR\s+anycast: birdc -s \S+ configure failed: Unable to connect to server control socket \(\S+no-bird\.ctl\): No such file or directory/,
  },
  {
    name: "bad include path",
    tools: ["ip", "birdc", "sysctl"],
    include: () => "/nonexistent-eta-dir/edge-time-anycast.conf",
    error:
      /ERROR\s+anycast: Cannot write the BIRD include file: Cannot write \/nonexistent-eta-dir\/edge-time-anycast\.conf: no such file or directory/,
  },
];

Deno.test({
  name: "anycast failures are one error line each, retried with backoff, NTP unaffected",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    const ntpload = await buildNtpload();
    const id = labId();
    const dir = await Deno.makeTempDir({ prefix: `${id}-` });
    const spaces: string[] = [];
    const procs: EdgeTimeProcess[] = [];
    try {
      // Start all cases at once (each in its own namespace), then check each.
      const started = await Promise.all(CASES.map(async (c, i) => {
        const ns = await makeNetns(`${id}-e${i}`);
        spaces.push(ns);
        const d = `${dir}/c${i}`;
        await Deno.mkdir(d);
        const PATH = await pathWith(d, c.tools);
        const p = await startEdgeTime(toml(d, c.include(d)), { netns: ns, env: { PATH } });
        procs.push(p);
        return { c, ns, p };
      }));
      // Several retries (0.4 s, 0.8 s, 1.6 s apart): wait for the third
      // error line of every case. The deadline is for a case that never
      // retries; the steps below then say which.
      const errorLines = (p: EdgeTimeProcess) => p.logs().filter((l) => / ERROR /.test(l)).length;
      await waitFor(
        () => Promise.resolve(started.every(({ p }) => errorLines(p) >= 3)),
        30_000,
        50,
      );
      for (const { c, ns, p } of started) {
        await t.step(c.name, async () => {
          const logs = p.logs();
          const errors = logs.filter((l) => / ERROR /.test(l));
          assert.ok(errors.length >= 2, `expected retries:\n${logs.join("\n")}`);
          for (const e of errors) assert.match(e, c.error);
          const delays = errors.map((e) => Number(/retrying in ([\d.]+) s/.exec(e)?.[1]));
          for (let i = 1; i < delays.length; i++) {
            assert.ok(delays[i]! > delays[i - 1]!, `${delays}`);
          }
          assert.ok(!logs.some((l) => /^\s+at /.test(l)), "no stack trace");
          // NTP serving unaffected.
          const r = await sh([
            "ip",
            "netns",
            "exec",
            ns,
            ntpload,
            "-r",
            "50",
            "-d",
            "1",
            "--json",
            "127.0.0.1",
          ]);
          const step = JSON.parse(r.stdout.trim().split("\n").pop()!) as { loss: number };
          assert.equal(step.loss, 0, r.stdout);
          console.log(
            `${c.name}: ${errors.length} error line(s), retry delays ${
              delays.join(", ")
            } s; first:\n  ${errors[0]}`,
          );
        });
      }
    } finally {
      for (const p of procs) await p.stop("SIGKILL").catch(() => {});
      for (const ns of spaces) await deleteNetns(ns);
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
