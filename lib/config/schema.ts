/**
 * The configuration: every key, its type, its default and its checks.
 * TOML keys are snake_case; the typed `Config` uses camelCase.
 *
 * The schema is data (`SCHEMA`) walked by one validator, so that every
 * error is found in a single pass and named by its key path.
 */
import { parseCidr } from "../ntp/access.ts";
import { isHostName, parseSocketAddress, parseSourceAddress } from "./socket_address.ts";
import { parseIp } from "../ntp/address.ts";
import { parseBroadcastAddress } from "../ntp/broadcast.ts";

export type SourceKind = "server" | "pool" | "peer" | "broadcast";
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
  /** Symmetric key ID (auth.keyfile) for requests and replies; 0 = none. */
  key: number;
  /** Only packets with a valid MAC of `key` count (needs `key`). */
  requireAuth: boolean;
  /** `broadcast` only: listen without authentication (BCP 223 advises against it). */
  insecure: boolean;
  /** `broadcast` only: interface to join the group on, "" = the route's. */
  interface: string;
  /** NTS (RFC 8915): key exchange with the source's name, authenticated packets. */
  nts: boolean;
  /** The source's NTS-KE port. */
  ntsPort: number;
  /** PEM file of CA certificates trusted for the source's NTS-KE; "" = the system's. */
  caFile: string;
}

/** One `[[broadcast]]` entry: where our server sends mode 5 packets, how often, with which key. */
export interface BroadcastConfig {
  address: string;
  intervalS: number;
  key: number;
  ttl: number;
  interface: string;
  insecure: boolean;
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
    leapSmearS: number;
  };
  clock: {
    control: boolean;
    stepThresholdMs: number;
    panicThresholdS: number;
    driftfile: string;
    leapfile: string;
    orphanStratum: number;
    orphanWaitS: number;
    minSources: number;
  };
  source: SourceConfig[];
  auth: { keyfile: string; trustedKeys: number[] };
  broadcast: BroadcastConfig[];
  nts: {
    masterKeyFile: string;
    cookieKeyDays: number;
    keListen: string[];
    certificate: string;
    privateKey: string;
    ntpServer: string;
    ntpPort: number;
  };
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

/**
 * One key's description. `check` returns an error message or null. `doc` is
 * the one-line description docs/guide/configuration.md shows for the key
 * (`deno task docs` renders that page from this table).
 */
export type Spec =
  & (
    | { type: "bool"; default: boolean }
    | { type: "int"; default: number; min: number; max: number }
    | { type: "number"; default: number; min: number; max: number }
    | { type: "string"; default: string; check?: Check; required?: boolean }
    | { type: "enum"; default: string; values: readonly string[] }
    | { type: "strings"; default: string[]; check?: Check; nonEmpty?: boolean }
    | { type: "ints"; default: number[]; min: number; max: number }
    | { type: "table"; fields: Record<string, Spec> }
    | { type: "tables"; fields: Record<string, Spec> }
  )
  & { doc?: string };

const int = (d: number, min: number, max: number, doc: string): Spec => ({
  type: "int",
  default: d,
  min,
  max,
  doc,
});
const num = (d: number, min: number, max: number, doc: string): Spec => ({
  type: "number",
  default: d,
  min,
  max,
  doc,
});
const bool = (d: boolean, doc: string): Spec => ({ type: "bool", default: d, doc });
const str = (d: string, doc: string, check?: Check): Spec =>
  check ? { type: "string", default: d, check, doc } : { type: "string", default: d, doc };
const strs = (d: string[], doc: string, check?: Check): Spec =>
  check ? { type: "strings", default: d, check, doc } : { type: "strings", default: d, doc };
const oneOf = (d: string, values: readonly string[], doc: string): Spec => ({
  type: "enum",
  default: d,
  values,
  doc,
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
  // Groups pass here: only a `broadcast` source may listen on one (mod.ts cross checks).
  const r = parseSourceAddress(s, true);
  return typeof r === "string" ? r : null;
}) as Check;
/** A Linux interface name (`dev_valid_name`): 1..15 bytes, no "/", ":" or white space. */
const interfaceName: Check = ((s: string) => {
  if (s.trim() === "") return "must not be empty";
  if (s === "." || s === ".." || /[\s/:]/.test(s)) return `"${s}" is not an interface name`;
  if (new TextEncoder().encode(s).length > 15) return `"${s}" is longer than 15 bytes`;
  return null;
}) as Check;
const broadcastAddress: Check = ((s: string) => {
  const r = parseBroadcastAddress(s);
  return typeof r === "string" ? r : null;
}) as Check;
const optionalInterface: Check =
  ((s: string) => s === "" ? null : interfaceName(s as never)) as Check;
const optionalCidr: Check = ((s: string) => s === "" ? null : cidr(s as never)) as Check;
/** An NTPv4 Server Negotiation name (RFC 8915 §4.1.7): a DNS name or an IP literal, or "". */
const ntpServerName: Check =
  ((s: string) =>
    s === "" || isHostName(s) || parseIp(s) !== null
      ? null
      : `"${s}" is not a host name or IP address`) as Check;
const nonEmpty: Check = ((s: string) => s.trim() === "" ? "must not be empty" : null) as Check;

export const SCHEMA: Record<string, Spec> = {
  server: {
    type: "table",
    doc: "The NTP server: where it listens, whom it answers, how often.",
    fields: {
      listen: {
        type: "strings",
        default: ["0.0.0.0:123", "[::]:123"],
        check: socketAddress,
        nonEmpty: true,
        doc: "Addresses to serve NTP on: `IPV4:PORT` or `[IPV6]:PORT`, IP literals, each once",
      },
      workers: int(
        0,
        0,
        64,
        "Server worker threads; 0 = one per CPU core (the portable driver runs 1)",
      ),
      local_stratum: int(
        0,
        0,
        15,
        "Stratum served with refid `LOCL` whenever no source is selected (chrony `local`); 0 = off",
      ),
      allow: strs(
        ["0.0.0.0/0", "::/0"],
        "Client prefixes answered; the most specific allow/deny prefix decides, a tie denies",
        cidr,
      ),
      deny: strs([], "Client prefixes refused; a client no prefix matches is refused too", cidr),
      deny_kod: bool(false, "Answer refused clients with KoD `DENY` instead of silence"),
      rate_limit: {
        type: "table",
        doc: "Per-client rate limit, per IPv4 /32 or IPv6 /64.",
        fields: {
          interval_s: num(
            2,
            0,
            3600,
            "Average seconds between a client's requests; 0 turns rate limiting off",
          ),
          burst: int(8, 1, 1024, "Requests a client may send at once before it is limited"),
          kod: bool(
            true,
            "Send KoD `RATE` (at most once per interval per client); false = drop silently",
          ),
          table_size: int(
            65536,
            16,
            1 << 24,
            "Clients remembered, shared by all workers (4-way set-associative; a full set forgets its least recent)",
          ),
        },
      },
      driver: oneOf(
        "auto",
        ["auto", "ffi", "portable"],
        "UDP driver: `ffi` (recvmmsg/sendmmsg, kernel timestamps), `portable` (node:dgram); `auto` = ffi where it works",
      ),
      leap_smear_s: int(
        0,
        0,
        86400,
        "Seconds over which a leap second is smeared for clients (linear, centred on the leap; 86400 = Google's 24 h), sent with LI 0; the clock stays on UTC; 0 = off. Never mix smeared and unsmeared servers (leap-seconds.md)",
      ),
    },
  },
  clock: {
    type: "table",
    doc: "The clock discipline and orphan mode.",
    fields: {
      control: bool(
        true,
        "Steer the kernel clock (adjtimex); false = serve corrected time, never touch the clock",
      ),
      step_threshold_ms: num(
        128,
        0,
        1e6,
        "Offsets above this are stepped once they persist 30 s (or at the first update); 0 = never step",
      ),
      panic_threshold_s: num(
        1000,
        0,
        1e9,
        "Offsets above this are never applied; 0 = no limit",
      ),
      driftfile: str(
        "/var/lib/edge-time/drift",
        'Frequency file: read at start, written hourly and at stop; `""` = none',
      ),
      leapfile: str(
        "",
        'IERS/NIST `leap-seconds.list` (e.g. `/usr/share/zoneinfo/leap-seconds.list`): decides leap seconds over the sources until it expires; reread on reload; `""` = sources only',
      ),
      orphan_stratum: int(
        7,
        0,
        15,
        "Orphan stratum when no source below it is usable (below `local_stratum` only); 0 = off",
      ),
      orphan_wait_s: num(
        300,
        0,
        86400,
        "Seconds without a usable source below `orphan_stratum` before orphan mode starts",
      ),
      min_sources: int(1, 1, 16, "Agreeing sources needed before the clock is updated"),
    },
  },
  source: {
    type: "tables",
    doc:
      "A time source; repeat the table for each. Two entries for one host and port are an error.",
    fields: {
      address: {
        type: "string",
        default: "",
        check: sourceAddress,
        required: true,
        doc: "`HOST`, `HOST:PORT`, `[IPV6]:PORT` or an IPv6 address; port 123 when omitted",
      },
      kind: oneOf(
        "server",
        ["server", "pool", "peer", "broadcast"],
        "`server` (client mode), `pool` (a name whose addresses are followed), `peer` (symmetric; a peer at or above `clock.orphan_stratum` takes part in the orphan election only, never followed), `broadcast` (listen on the group or broadcast `address` for mode 5 packets; each server heard is calibrated with a client exchange, then followed like a peer, orphan election included; needs `key` or `insecure`)",
      ),
      iburst: bool(true, "Four requests 2 s apart at start, so the first sync takes seconds"),
      prefer: bool(false, "System peer whenever it is a truechimer"),
      min_poll: int(6, 0, 17, "Shortest poll interval, log2 seconds (6 = 64 s)"),
      max_poll: int(10, 0, 17, "Longest poll interval, log2 seconds (10 = 1024 s); ≥ `min_poll`"),
      max_sources: int(
        4,
        1,
        16,
        "`pool`: addresses followed at once; `broadcast`: servers heard that are followed at once",
      ),
      xleave: bool(
        false,
        "Interleaved mode (RFC 9769, chrony `xleave`): client mode for `server` and `pool`; symmetric mode for `peer` (chronyd's `peer … xleave`), experimental: see docs/benchmarks/topology.md",
      ),
      key: int(
        0,
        0,
        0xffffffff,
        "Symmetric key ID from `auth.keyfile` (one of `auth.trusted_keys`): requests carry its MAC and replies without a valid one are rejected; 0 = none",
      ),
      require_auth: bool(
        false,
        "Only packets with a valid MAC of `key` count (needs `key`); what a `peer` in an authenticated cluster sets",
      ),
      insecure: bool(
        false,
        "`broadcast` only: accept broadcasts without a MAC (anyone on the LAN can then steer the clock; BCP 223); logged as a warning",
      ),
      interface: str(
        "",
        '`broadcast` only: interface the multicast group is joined on; `""` = the route\'s',
        optionalInterface,
      ),
      nts: bool(
        false,
        "Network Time Security (RFC 8915): NTS-KE with the source's name over TLS, then only authenticated replies count; `server` only (see [nts.md](nts.md))",
      ),
      nts_port: int(
        4460,
        1,
        65535,
        "`nts` only: the source's NTS-KE port (TCP); with the host, the source's identity (two KE ports on one host are two sources)",
      ),
      ca_file: str(
        "",
        "`nts` only (refused without it): PEM file of CA certificates trusted for the source's NTS-KE certificate, loaded by `check-config` and `run`; `\"\"` = the system's trust store",
      ),
    },
  },
  broadcast: {
    type: "tables",
    doc:
      "A broadcast or multicast destination our server sends mode 5 packets to while synchronised (an orphan parent is); repeat the table for each.",
    fields: {
      address: {
        type: "string",
        default: "",
        check: broadcastAddress,
        required: true,
        doc:
          "IPv4 multicast group (`224.0.1.1`), subnet broadcast address (`10.0.0.255`) or IPv6 group (`ff05::101`); sent to port 123 from the server's port",
      },
      interval_s: int(64, 1, 65536, "Seconds between broadcasts (ntpd's 2^6)"),
      key: int(
        0,
        0,
        65535,
        "Key ID from `auth.keyfile` the packets are signed with; required unless `insecure`",
      ),
      ttl: int(1, 1, 255, "Multicast TTL (IPv4) or hop limit (IPv6); 1 = this link only"),
      interface: str(
        "",
        'Interface the packets leave on (multicast: `IP_MULTICAST_IF`); `""` = the route\'s',
        optionalInterface,
      ),
      insecure: bool(
        false,
        "Send without a MAC (clients must then run `insecure` too; BCP 223 advises against it); logged as a warning",
      ),
    },
  },
  auth: {
    type: "table",
    doc:
      "Symmetric-key authentication (ntpd `keys`/`trustedkey`): see [authentication.md](authentication.md).",
    fields: {
      keyfile: str(
        "",
        'Key file in the ntpd `ntp.keys` format (`ID TYPE KEY`), reread on SIGHUP; `""` = no keys',
      ),
      trusted_keys: {
        type: "ints",
        default: [],
        min: 1,
        max: 0xffffffff,
        doc:
          "Key IDs trusted for requests, replies and peers (ntpd `trustedkey`); a key not listed here answers clients with a crypto-NAK",
      },
    },
  },
  nts: {
    type: "table",
    doc: "Network Time Security (RFC 8915): see [nts.md](nts.md).",
    fields: {
      master_key_file: str(
        "",
        'Fleet master key file (hex secrets, first one current): every node with the same file accepts every node\'s cookies; checked by `check-config` and `run`, reread on reload; `""` = a random key of this process (cookies die with it)',
      ),
      cookie_key_days: int(
        2,
        1,
        30,
        "Days (today included) a cookie's key is accepted; clients that stay away longer make a new key exchange",
      ),
      ke_listen: strs(
        [],
        "Addresses of the NTS-KE server (TLS 1.3 on TCP, port 4460 by convention): `IPV4:PORT` or `[IPV6]:PORT`, e.g. `[::]:4460` (both families); `[]` = off",
        socketAddress,
      ),
      certificate: str(
        "",
        "NTS-KE: PEM certificate chain, leaf first (e.g. Let's Encrypt `fullchain.pem`); loaded by `check-config` and `run` (missing, not matching the key, expired: an error), reread on reload; required with `ke_listen`",
      ),
      private_key: str(
        "",
        "NTS-KE: PEM private key of the certificate; reread on reload; required with `ke_listen`",
      ),
      ntp_server: str(
        "",
        'NTS-KE: NTPv4 Server Negotiation record, the host clients send NTS-protected NTP to; `""` = none (clients use the NTS-KE host)',
        ntpServerName,
      ),
      ntp_port: int(
        0,
        0,
        65535,
        "NTS-KE: NTPv4 Port Negotiation record, the port clients send NTP to; 0 = none (clients use 123)",
      ),
    },
  },
  status: {
    type: "table",
    doc: "The status HTTP server (page, JSON, metrics, health).",
    fields: {
      listen: str(
        "127.0.0.1:8123",
        'Address of the status server: `IPV4:PORT` or `[IPV6]:PORT`; `""` turns it off',
        optionalSocketAddress,
      ),
    },
  },
  stats: {
    type: "table",
    doc: "Statistics files in ntpd's format.",
    fields: {
      dir: str("", 'Folder for `loopstats.YYYYMMDD` and `peerstats.YYYYMMDD`; `""` = none'),
    },
  },
  log: {
    type: "table",
    doc: "Logging (to stderr; the journal under systemd).",
    fields: {
      level: oneOf("info", ["debug", "info", "warning", "error"], "Lowest level logged"),
    },
  },
  anycast: {
    type: "table",
    doc: "Anycast and ECMP, steered by time quality: see [anycast.md](anycast.md).",
    fields: {
      mode: oneOf(
        "off",
        ["off", "node", "router"],
        "`node`: hold and announce the addresses while healthy; `router`: route the VIP to healthy nodes",
      ),
      addresses: strs(
        [],
        "Node: service prefixes held on `interface` and announced, e.g. `192.0.2.123/32`; each once",
        cidr,
      ),
      interface: str("lo", "Node: the Linux interface the addresses are held on", interfaceName),
      drain_file: str(
        "/run/edge-time/drain",
        "Node: while this file exists the gate is closed and the addresses withdrawn (maintenance)",
      ),
      health: {
        type: "table",
        doc: "The health gate: a node's own checks (node mode), or each node's (router mode).",
        fields: {
          interval_ms: int(500, 50, 60000, "Milliseconds between health checks"),
          rise: int(2, 1, 100, "Good checks in a row that open the gate"),
          fall: int(2, 1, 100, "Bad checks in a row that close the gate"),
          max_offset_ms: num(10, 0, 1e6, "Largest |offset| that is healthy"),
        },
      },
      bird: {
        type: "table",
        doc: "Node mode's BIRD side.",
        fields: {
          include_file: str(
            "/etc/bird/edge-time-anycast.conf",
            'File of prefix sets BIRD includes, written atomically; `""` = hold the addresses only',
          ),
          birdc: {
            type: "strings",
            default: ["birdc"],
            nonEmpty: true,
            check: nonEmpty,
            doc: 'The birdc command as argv, e.g. `["birdc", "-s", "/run/bird/bird.ctl"]`',
          },
        },
      },
      router: {
        type: "table",
        doc: "Router mode: an ECMP route to the healthy nodes.",
        fields: {
          vip: str(
            "",
            "The service prefix routed to the nodes (required in router mode)",
            optionalCidr,
          ),
          nodes: strs(
            [],
            "Node addresses (IP), queried and used as nexthops; each once",
            hostAddress,
          ),
          hash_policy: oneOf(
            "l3",
            ["l3", "l4"],
            "`l3`: set `fib_multipath_hash_policy = 0` (one client stays on one node: rate limit and interleaved mode work); `l4`: set it to 1 (hash on ports too: better balance for few clients, but each client is spread over all nodes)",
          ),
          port: int(123, 1, 65535, "NTP port the nodes are queried on"),
        },
      },
    },
  },
};

/** snake_case → camelCase. */
export function camel(key: string): string {
  return key.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
}
