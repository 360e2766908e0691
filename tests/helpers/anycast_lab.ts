/**
 * Configs and probes shared by the anycast lab tests and bench/failover.ts:
 * BIRD configs for router and nodes, edge-time configs for each role,
 * ntpload from a namespace, and a node's `server.answered` counter.
 */
import type { NtploadStep } from "./ntpload.ts";
import { type Lab, sh } from "./netns.ts";

export const VIP = "192.0.2.123/32";
export const INTERVAL_MS = 500;
export const RISE = 2;
export const FALL = 2;
const SNIPPET = new URL("../../appliance/bird-anycast.conf", import.meta.url);
/** Status port of the node servers, inside their own namespaces. */
export const NODE_STATUS_PORT = 8123;

/** Router BIRD: one eBGP session per node, kernel protocol with `merge paths on`. */
export function routerBird(lab: Lab): string {
  const peers = lab.nodes.map((_, i) => `
protocol bgp n${i + 1} {
  local ${lab.routerAddr(i)} as 65000;
  neighbor ${lab.nodeAddr(i)} as ${65001 + i};
  connect delay time 1; connect retry time 1; error wait time 1, 2;
  ipv4 { import all; export none; };
}`).join("\n");
  return `router id 10.0.0.1;
protocol device { scan time 5; }
protocol kernel { ipv4 { import none; export all; }; merge paths on; }
${peers}
`;
}

/** Node BIRD: the shipped appliance snippet (include path rewritten) and a session to the router. */
export async function nodeBird(lab: Lab, i: number, include: string): Promise<string> {
  const snippet = (await Deno.readTextFile(SNIPPET)).replace(
    `include "/etc/bird/edge-time-anycast.conf";`,
    `include "${include}";`,
  );
  return `router id ${lab.nodeAddr(i)};
${snippet}
protocol device { scan time 5; }
protocol bgp uplink {
  local ${lab.nodeAddr(i)} as ${65001 + i};
  neighbor ${lab.routerAddr(i)} as 65000;
  connect delay time 1; connect retry time 1; error wait time 1, 2;
  ipv4 { import none; export filter edge_time_export4; };
}
`;
}

const HEALTH = `[anycast.health]
interval_ms = ${INTERVAL_MS}
rise = ${RISE}
fall = ${FALL}`;

/** edge-time on a BIRD node: local stratum 8, announces the VIP while healthy. */
export function birdNodeToml(dir: string, socket: string): string {
  return `
[server]
listen = ["0.0.0.0:123"]
local_stratum = 8
[status]
listen = ""
[anycast]
mode = "node"
addresses = ["${VIP}"]
interface = "lo"
drain_file = "${dir}/drain"
${HEALTH}
[anycast.bird]
include_file = "${dir}/edge-time-anycast.conf"
birdc = ["birdc", "-s", "${socket}"]
`;
}

/** edge-time on an ECMP node: holds the VIP on lo, no BIRD; no rate limit (one busy client). */
export const ECMP_NODE_TOML = `
[server]
listen = ["0.0.0.0:123"]
local_stratum = 8
workers = 1
rate_limit = { interval_s = 0 }
[status]
listen = "127.0.0.1:${NODE_STATUS_PORT}"
[anycast]
mode = "node"
addresses = ["${VIP}"]
interface = "lo"
${HEALTH}
[anycast.bird]
include_file = ""
`;

/** edge-time on the router: one multipath route for the VIP over the healthy nodes. */
export function ROUTER_TOML(nodes: string[]): string {
  return `
[server]
listen = ["127.0.0.1:123"]
workers = 1
local_stratum = 8
[status]
listen = ""
[anycast]
mode = "router"
${HEALTH}
[anycast.router]
vip = "${VIP}"
nodes = [${nodes.map((n) => `"${n}"`).join(", ")}]
hash_policy = "l4"
`;
}

/** A node's `server.answered` from its status page, read inside its namespace. */
export async function answeredIn(ns: string): Promise<number> {
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
  return (JSON.parse(r.stdout) as { server: { answered: number } }).server.answered;
}

/** Runs one ntpload step from namespace `ns` to the VIP. */
export async function ntploadIn(
  ns: string,
  bin: string,
  o: { rate: number; seconds: number; sockets: number },
): Promise<NtploadStep> {
  const r = await sh([
    "ip",
    "netns",
    "exec",
    ns,
    bin,
    "-r",
    String(o.rate),
    "-d",
    String(o.seconds),
    "-s",
    String(o.sockets),
    "--json",
    VIP.split("/")[0]!,
  ]);
  const line = r.stdout.trim().split("\n").pop() ?? "";
  try {
    return JSON.parse(line) as NtploadStep;
  } catch {
    throw new Error(`ntpload printed no JSON (exit ${r.code}): ${r.stderr.trim()}`);
  }
}
