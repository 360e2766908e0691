/**
 * The configuration: every key, its type, its default and its checks.
 * TOML keys are snake_case; the typed `Config` uses camelCase.
 *
 * The schema is data (`SCHEMA`) walked by one validator, so that every
 * error is found in a single pass and named by its key path.
 */
import { parseCidr } from "../ntp/access.ts";
import { parseSocketAddress, parseSourceAddress } from "./socket_address.ts";

export type SourceKind = "server" | "pool" | "peer";
export type AnycastMode = "off" | "node" | "router";

export interface SourceConfig {
  address: string;
  kind: SourceKind;
  iburst: boolean;
  prefer: boolean;
  minPoll: number;
  maxPoll: number;
  maxSources: number;
  xleave: boolean;
}

export interface Config {
  server: {
    listen: string[];
    workers: number;
    localStratum: number;
    allow: string[];
    deny: string[];
    denyKod: boolean;
    rateLimit: { intervalS: number; burst: number; kod: boolean; tableSize: number };
    driver: "auto" | "ffi" | "portable";
  };
  clock: {
    control: boolean;
    stepThresholdMs: number;
    panicThresholdS: number;
    driftfile: string;
    orphanStratum: number;
    orphanWaitS: number;
    minSources: number;
  };
  source: SourceConfig[];
  status: { listen: string };
  stats: { dir: string };
  log: { level: "debug" | "info" | "warning" | "error" };
  anycast: {
    mode: AnycastMode;
    addresses: string[];
    interface: string;
    drainFile: string;
    health: { intervalMs: number; rise: number; fall: number; maxOffsetMs: number };
    bird: { includeFile: string; birdc: string[] };
    router: { vip: string; nodes: string[]; hashPolicy: "l3" | "l4"; port: number };
  };
}

type Check = (v: never) => string | null;

/** One key's description. `check` returns an error message or null. */
export type Spec =
  | { type: "bool"; default: boolean }
  | { type: "int"; default: number; min: number; max: number }
  | { type: "number"; default: number; min: number; max: number }
  | { type: "string"; default: string; check?: Check; required?: boolean }
  | { type: "enum"; default: string; values: readonly string[] }
  | { type: "strings"; default: string[]; check?: Check; nonEmpty?: boolean }
  | { type: "table"; fields: Record<string, Spec> }
  | { type: "tables"; fields: Record<string, Spec> };

const int = (d: number, min: number, max: number): Spec => ({ type: "int", default: d, min, max });
const num = (d: number, min: number, max: number): Spec => ({
  type: "number",
  default: d,
  min,
  max,
});
const bool = (d: boolean): Spec => ({ type: "bool", default: d });
const str = (d: string, check?: Check): Spec =>
  check ? { type: "string", default: d, check } : { type: "string", default: d };
const strs = (d: string[], check?: Check): Spec =>
  check ? { type: "strings", default: d, check } : { type: "strings", default: d };
const oneOf = (d: string, values: readonly string[]): Spec => ({
  type: "enum",
  default: d,
  values,
});

const socketAddress: Check = ((s: string) => {
  const r = parseSocketAddress(s);
  return typeof r === "string" ? r : null;
}) as Check;
const optionalSocketAddress: Check =
  ((s: string) => s === "" ? null : socketAddress(s as never)) as Check;
const cidr: Check = ((s: string) => {
  const r = parseCidr(s);
  return typeof r === "string" ? r : null;
}) as Check;
const hostAddress: Check = ((s: string) => {
  const c = parseCidr(s);
  return typeof c === "string" || c.prefix !== c.bytes.length * 8
    ? `"${s}" is not an IP address`
    : null;
}) as Check;
const sourceAddress: Check = ((s: string) => {
  const r = parseSourceAddress(s);
  return typeof r === "string" ? r : null;
}) as Check;
/** A Linux interface name (`dev_valid_name`): 1..15 bytes, no "/", ":" or white space. */
const interfaceName: Check = ((s: string) => {
  if (s.trim() === "") return "must not be empty";
  if (s === "." || s === ".." || /[\s/:]/.test(s)) return `"${s}" is not an interface name`;
  if (new TextEncoder().encode(s).length > 15) return `"${s}" is longer than 15 bytes`;
  return null;
}) as Check;
const optionalCidr: Check = ((s: string) => s === "" ? null : cidr(s as never)) as Check;
const nonEmpty: Check = ((s: string) => s.trim() === "" ? "must not be empty" : null) as Check;

export const SCHEMA: Record<string, Spec> = {
  server: {
    type: "table",
    fields: {
      listen: {
        type: "strings",
        default: ["0.0.0.0:123", "[::]:123"],
        check: socketAddress,
        nonEmpty: true,
      },
      workers: int(0, 0, 64),
      local_stratum: int(0, 0, 15),
      allow: strs(["0.0.0.0/0", "::/0"], cidr),
      deny: strs([], cidr),
      deny_kod: bool(false),
      rate_limit: {
        type: "table",
        fields: {
          interval_s: num(2, 0, 3600),
          burst: int(8, 1, 1024),
          kod: bool(true),
          table_size: int(65536, 16, 1 << 24),
        },
      },
      driver: oneOf("auto", ["auto", "ffi", "portable"]),
    },
  },
  clock: {
    type: "table",
    fields: {
      control: bool(true),
      step_threshold_ms: num(128, 0, 1e6),
      panic_threshold_s: num(1000, 0, 1e9),
      driftfile: str("/var/lib/edge-time/drift"),
      orphan_stratum: int(7, 0, 15),
      orphan_wait_s: num(300, 0, 86400),
      min_sources: int(1, 1, 16),
    },
  },
  source: {
    type: "tables",
    fields: {
      address: { type: "string", default: "", check: sourceAddress, required: true },
      kind: oneOf("server", ["server", "pool", "peer"]),
      iburst: bool(true),
      prefer: bool(false),
      min_poll: int(6, 0, 17),
      max_poll: int(10, 0, 17),
      max_sources: int(4, 1, 16),
      xleave: bool(false),
    },
  },
  status: { type: "table", fields: { listen: str("127.0.0.1:8123", optionalSocketAddress) } },
  stats: { type: "table", fields: { dir: str("") } },
  log: { type: "table", fields: { level: oneOf("info", ["debug", "info", "warning", "error"]) } },
  anycast: {
    type: "table",
    fields: {
      mode: oneOf("off", ["off", "node", "router"]),
      addresses: strs([], cidr),
      interface: str("lo", interfaceName),
      drain_file: str("/run/edge-time/drain"),
      health: {
        type: "table",
        fields: {
          interval_ms: int(500, 50, 60000),
          rise: int(2, 1, 100),
          fall: int(2, 1, 100),
          max_offset_ms: num(10, 0, 1e6),
        },
      },
      bird: {
        type: "table",
        fields: {
          include_file: str("/etc/bird/edge-time-anycast.conf"),
          birdc: { type: "strings", default: ["birdc"], nonEmpty: true, check: nonEmpty },
        },
      },
      router: {
        type: "table",
        fields: {
          vip: str("", optionalCidr),
          nodes: strs([], hostAddress),
          hash_policy: oneOf("l4", ["l3", "l4"]),
          port: int(123, 1, 65535),
        },
      },
    },
  },
};

/** snake_case → camelCase. */
export function camel(key: string): string {
  return key.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
}
