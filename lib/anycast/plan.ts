/**
 * The anycast planner: current state + desired state → the list of
 * actions (argv commands and one atomic file write) that gets from one to
 * the other. Pure: the state comes in as parsed values, the actions go
 * out to the applier (apply.ts), which runs them through the
 * `CommandRunner`. `edge-time anycast plan` prints them.
 *
 * Also the parsers for what `ip -j` and `birdc -v` print.
 */
import { parseCidr } from "../ntp/access.ts";
import { formatIp } from "../ntp/address.ts";

/**
 * One step. `check` says how the applier judges a command: "exit" (code 0),
 * "birdc" (BIRD reply codes, failure on 8xxx/9xxx), "confirm" (a birdc
 * query whose failure is only a warning).
 */
export type Action =
  | { kind: "run"; argv: string[]; check: "exit" | "birdc" | "confirm" }
  | { kind: "write"; path: string; text: string };

/** An action as a shell line, e.g. `ip addr replace 192.0.2.123/32 dev lo`. */
export function formatAction(a: Action): string {
  if (a.kind === "run") return a.argv.map(shellQuote).join(" ");
  return `cat > ${shellQuote(a.path)} <<'EOF'  # atomically: temp file + rename\n${a.text}EOF`;
}

function shellQuote(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replaceAll("'", `'\\''`)}'`;
}

/** Canonical "address/len" text: lower case, prefix length always written. */
export function canonicalCidr(text: string): string {
  const c = parseCidr(text);
  if (typeof c === "string") return text;
  return `${formatIp(c.bytes)}/${c.prefix}`;
}

/** True for an IPv6 prefix or address. */
export function isV6(text: string): boolean {
  return text.includes(":");
}

/** The include file BIRD reads: two prefix sets, empty when withdrawn. */
export function includeText(announced: readonly string[]): string {
  const set = (ps: string[]) => ps.length === 0 ? "[ ]" : `[ ${ps.join(", ")} ]`;
  const v4 = announced.filter((p) => !isV6(p)).map(canonicalCidr);
  const v6 = announced.filter(isV6).map(canonicalCidr);
  return "# Written by edge-time (anycast node mode); do not edit.\n" +
    `define EDGE_TIME_ANYCAST4 = ${set(v4)};\n` +
    `define EDGE_TIME_ANYCAST6 = ${set(v6)};\n`;
}

/** The prefixes an include file announces (what `includeText` wrote), [] when unreadable. */
export function parseIncludeText(text: string | null): string[] {
  if (text === null) return [];
  const out: string[] = [];
  for (const m of text.matchAll(/define EDGE_TIME_ANYCAST[46] = \[([^\]]*)\]/g)) {
    for (const p of m[1]!.split(",")) if (p.trim() !== "") out.push(p.trim());
  }
  return out;
}

/** "addr/len" of every address in `ip -j addr show` output; throws on malformed JSON. */
export function parseAddrJson(text: string): string[] {
  const links = JSON.parse(text) as { addr_info?: { local?: string; prefixlen?: number }[] }[];
  const out: string[] = [];
  for (const l of links) {
    for (const a of l.addr_info ?? []) {
      if (a.local !== undefined && a.prefixlen !== undefined) {
        out.push(canonicalCidr(`${a.local}/${a.prefixlen}`));
      }
    }
  }
  return out;
}

/**
 * The gateways of the route in `ip -j route show exact VIP` output, null
 * when there is none. Handles both shapes: one `gateway`, or a `nexthops`
 * array (multipath). Routes without a gateway (the IPv6 local route of an
 * address on `lo`) are not ours and are skipped.
 */
export function parseRouteJson(text: string): string[] | null {
  const routes = JSON.parse(text) as {
    gateway?: string;
    nexthops?: { gateway?: string }[];
  }[];
  for (const r of routes) {
    if (r.gateway !== undefined) return [r.gateway];
    if (r.nexthops) return r.nexthops.flatMap((n) => n.gateway === undefined ? [] : [n.gateway]);
  }
  return null;
}

/**
 * Judges a `birdc -v` reply: codes 0003 (reconfigured), 0004 (reconfiguration
 * in progress), 0005 (queued) and other 0xxx/1xxx lines are success; an
 * 8xxx/9xxx line or a non-zero exit is failure with BIRD's own message.
 */
export function parseBirdReply(
  r: { code: number; stdout: string; stderr: string },
): { ok: true } | { ok: false; message: string } {
  const lines = r.stdout.split("\n");
  const bad = lines.find((l) => /^[89]\d{3}[ -]/.test(l));
  if (bad) return { ok: false, message: bad.slice(5).trim() };
  if (r.code !== 0) {
    const msg = (r.stderr.trim() || r.stdout.trim() || `exit code ${r.code}`).split("\n").pop()!;
    return { ok: false, message: msg };
  }
  return { ok: true };
}

/** The node's side of the world, as read by the applier. */
export interface NodeState {
  /** Addresses on the interface, canonical "addr/len". */
  held: string[];
  /** The include file's text, null when absent. */
  include: string | null;
  /** The include text BIRD last accepted from us; null when unknown (at start). */
  configured: string | null;
}

/** The node-mode keys the planner needs (config `[anycast]` and `[anycast.bird]`). */
export interface NodePlanConfig {
  addresses: string[];
  interface: string;
  includeFile: string;
  birdc: string[];
}

/**
 * Actions that make the node hold (`hold`) the addresses on its interface
 * and announce (`announce`) them through BIRD. Announcing: addresses
 * first, then BIRD; withdrawing: BIRD first, then the addresses, so that
 * traffic never follows a route to an address nobody holds.
 */
export function planNode(
  cfg: NodePlanConfig,
  cur: NodeState,
  want: { hold: boolean; announce: boolean },
): Action[] {
  const held = new Set(cur.held);
  const addrs = cfg.addresses.map(canonicalCidr);
  const ip: Action[] = [];
  for (const a of addrs) {
    if (want.hold && !held.has(a)) {
      ip.push({
        kind: "run",
        argv: ["ip", "addr", "replace", a, "dev", cfg.interface],
        check: "exit",
      });
    } else if (!want.hold && held.has(a)) {
      ip.push({ kind: "run", argv: ["ip", "addr", "del", a, "dev", cfg.interface], check: "exit" });
    }
  }
  const bird: Action[] = [];
  if (cfg.includeFile !== "") {
    const text = includeText(want.announce ? addrs : []);
    if (cur.include !== text) bird.push({ kind: "write", path: cfg.includeFile, text });
    if (cur.include !== text || cur.configured !== text) {
      bird.push({ kind: "run", argv: [...cfg.birdc, "configure"], check: "birdc" });
      if (want.announce) {
        for (const a of addrs) {
          bird.push({ kind: "run", argv: [...cfg.birdc, "show", "route", a], check: "confirm" });
        }
      }
    }
  }
  return want.hold ? [...ip, ...bird] : [...bird, ...ip];
}

/** The router's side of the world. */
export interface RouterState {
  /** Gateways of the VIP route, null when there is no route. */
  nexthops: string[] | null;
  /** `fib_multipath_hash_policy` values, null when unread. */
  hashPolicy: { v4: string | null; v6: string | null };
}

export interface RouterPlanConfig {
  vip: string;
  hashPolicy: "l3" | "l4";
}

/** The sysctl keys of the multipath hash (0 = L3, 1 = L4). */
export const HASH_KEYS = [
  "net.ipv4.fib_multipath_hash_policy",
  "net.ipv6.fib_multipath_hash_policy",
] as const;

/** The `fib_multipath_hash_policy` value of a hash policy: 0 = L3, 1 = L4. */
export function hashValue(policy: "l3" | "l4"): "0" | "1" {
  return policy === "l4" ? "1" : "0";
}

/**
 * Actions that make the VIP route's nexthops equal `healthy` (in that
 * order), or delete the route when none is healthy, and set the multipath
 * hash to the configured policy (0 for l3, 1 for l4; see
 * docs/benchmarks/ecmp.md for why l3 is the default).
 */
export function planRouter(
  cfg: RouterPlanConfig,
  cur: RouterState,
  healthy: readonly string[],
): Action[] {
  const out: Action[] = [];
  const want = hashValue(cfg.hashPolicy);
  if (cur.hashPolicy.v4 !== want || cur.hashPolicy.v6 !== want) {
    out.push({
      kind: "run",
      argv: ["sysctl", "-w", ...HASH_KEYS.map((k) => `${k}=${want}`)],
      check: "exit",
    });
  }
  const fam = isV6(cfg.vip) ? ["-6"] : [];
  const vip = canonicalCidr(cfg.vip);
  if (healthy.length === 0) {
    if (cur.nexthops !== null) {
      out.push({
        kind: "run",
        argv: ["ip", ...fam, "route", "del", vip, "proto", "static"],
        check: "exit",
      });
    }
    return out;
  }
  const same = cur.nexthops !== null && cur.nexthops.length === healthy.length &&
    healthy.every((n) => cur.nexthops!.includes(n));
  if (!same) {
    const hops = healthy.flatMap((n) => ["nexthop", "via", n, "weight", "1"]);
    out.push({
      kind: "run",
      argv: ["ip", ...fam, "route", "replace", vip, "proto", "static", ...hops],
      check: "exit",
    });
  }
  return out;
}
