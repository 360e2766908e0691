/**
 * Loads TOML configuration text into a typed, validated `Config`.
 * Every problem is reported at once, one line each, as
 * `FILE:LINE: key: message`; nothing here throws to the caller.
 */
import { parse as parseToml } from "toml";
import { lineOf, locateKeys } from "./locate.ts";
import { camel, type Config, SCHEMA, type SourceConfig, type Spec } from "./schema.ts";
import { DEFAULT_CONFIG_TOML } from "./default_config.ts";
import {
  parseSocketAddress,
  parseSourceAddress,
  sourceIdentity,
  splitHostPort,
} from "./socket_address.ts";
import { parseBroadcastAddress } from "../ntp/broadcast.ts";
import { parseCidr } from "../ntp/access.ts";
import { formatIp, parseIp } from "../ntp/address.ts";

export type { BroadcastConfig, Config, SourceConfig } from "./schema.ts";
export { DEFAULT_CONFIG_TOML };

export type LoadResult = { ok: true; config: Config } | { ok: false; errors: string[] };

interface Problem {
  path: string;
  message: string;
  /** Key whose line to show, when `path` itself may be absent from the file. */
  at?: string;
  /** Another key the message refers to: its line is appended as ` (line N)`. */
  lineOf?: string;
}

function describe(v: unknown): string {
  if (Array.isArray(v)) return "an array";
  if (v !== null && typeof v === "object") return "a table";
  if (typeof v === "string") return `"${v}"`;
  return String(v);
}

function validate(spec: Spec, value: unknown, path: string, problems: Problem[]): unknown {
  const fail = (message: string) => {
    problems.push({ path, message });
    return undefined;
  };
  switch (spec.type) {
    case "bool":
      if (value === undefined) return spec.default;
      return typeof value === "boolean"
        ? value
        : fail(`expected true or false, got ${describe(value)}`);
    case "int":
    case "number": {
      if (value === undefined) return spec.default;
      const n = typeof value === "bigint" ? Number(value) : value;
      if (typeof n !== "number" || Number.isNaN(n)) {
        return fail(`expected a number, got ${describe(value)}`);
      }
      if (spec.type === "int" && !Number.isInteger(n)) {
        return fail(`expected a whole number, got ${n}`);
      }
      if (n < spec.min || n > spec.max) return fail(`${n} is outside ${spec.min}..${spec.max}`);
      return n;
    }
    case "string":
    case "enum": {
      if (value === undefined && spec.type === "string" && spec.required) {
        return fail("is required");
      }
      if (value === undefined) return spec.default;
      if (typeof value !== "string") return fail(`expected a string, got ${describe(value)}`);
      if (spec.type === "enum") {
        return spec.values.includes(value)
          ? value
          : fail(`"${value}" is not one of ${spec.values.map((v) => `"${v}"`).join(", ")}`);
      }
      const err = spec.check?.(value as never);
      return err ? fail(err) : value;
    }
    case "strings": {
      if (value === undefined) return [...spec.default];
      if (!Array.isArray(value)) {
        return fail(`expected an array of strings, got ${describe(value)}`);
      }
      if (spec.nonEmpty && value.length === 0) return fail("must not be empty");
      const out: string[] = [];
      value.forEach((item, i) => {
        if (typeof item !== "string") {
          problems.push({
            path: `${path}[${i}]`,
            message: `expected a string, got ${describe(item)}`,
          });
          return;
        }
        const err = spec.check?.(item as never);
        if (err) problems.push({ path, message: err });
        else out.push(item);
      });
      return out;
    }
    case "ints": {
      if (value === undefined) return [...spec.default];
      if (!Array.isArray(value)) {
        return fail(`expected an array of numbers, got ${describe(value)}`);
      }
      const out: number[] = [];
      value.forEach((item, i) => {
        const n = typeof item === "bigint" ? Number(item) : item;
        if (typeof n !== "number" || !Number.isInteger(n) || n < spec.min || n > spec.max) {
          problems.push({
            path: `${path}[${i}]`,
            message: `expected a whole number in ${spec.min}..${spec.max}, got ${describe(item)}`,
          });
        } else if (out.includes(n)) problems.push({ path, message: `${n} is listed twice` });
        else out.push(n);
      });
      return out;
    }
    case "table": {
      if (value === undefined) value = {};
      if (value === null || typeof value !== "object" || Array.isArray(value)) {
        return fail(`expected a table, got ${describe(value)}`);
      }
      return validateFields(spec.fields, value as Record<string, unknown>, path, problems);
    }
    case "tables": {
      if (value === undefined) return [];
      if (!Array.isArray(value)) return fail(`expected [[${path}]] tables, got ${describe(value)}`);
      return value.map((entry, i) =>
        validate({ type: "table", fields: spec.fields }, entry, `${path}[${i}]`, problems)
      );
    }
  }
}

function validateFields(
  fields: Record<string, Spec>,
  table: Record<string, unknown>,
  path: string,
  problems: Problem[],
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const join = (k: string) => (path ? `${path}.${k}` : k);
  for (const key of Object.keys(table)) {
    if (!(key in fields)) {
      const known = Object.keys(fields).join(", ");
      problems.push({ path: join(key), message: `unknown key (known here: ${known})` });
    }
  }
  for (const [key, spec] of Object.entries(fields)) {
    out[camel(key)] = validate(spec, table[key], join(key), problems);
  }
  return out;
}

/** Reports entries of `list` whose `identity` repeats an earlier one's, as `"X" is listed twice`. */
function listedTwice(
  list: unknown,
  path: string,
  identity: (s: string) => string | null,
  problems: Problem[],
): void {
  if (!Array.isArray(list)) return;
  const seen = new Set<string>();
  for (const item of list) {
    if (typeof item !== "string") continue;
    const id = identity(item);
    if (id === null) continue;
    if (seen.has(id)) problems.push({ path, message: `"${item}" is listed twice` });
    seen.add(id);
  }
}

/** Canonical text of an IP or CIDR's address part, for duplicate checks. */
function ipIdentity(s: string): string | null {
  const c = parseCidr(s);
  return typeof c === "string" ? null : `${formatIp(c.bytes)}/${c.prefix}`;
}

/**
 * Broadcast: a `[[source]] kind = "broadcast"` listens on a broadcast or
 * multicast address (no name, no unicast IPv6); without a key both it and
 * a `[[broadcast]]` entry need `insecure = true` (BCP 223 / RFC 8633:
 * unauthenticated broadcast lets anyone on the LAN set the clock).
 */
function broadcastChecks(c: Config, problems: Problem[]): void {
  const sources = Array.isArray(c.source) ? c.source : [];
  sources.forEach((s, i) => {
    if (s === undefined) return;
    if (s.kind !== "broadcast") {
      // The other kinds talk to one server: a unicast address.
      const r = typeof s.address === "string" ? parseSourceAddress(s.address) : null;
      if (typeof r === "string") problems.push({ path: `source[${i}].address`, message: r });
      return;
    }
    if (typeof s.address === "string") {
      const { host } = splitHostPort(s.address, 123);
      const b = parseBroadcastAddress(host);
      if (typeof b === "string") {
        problems.push({ path: `source[${i}].address`, message: `kind "broadcast": ${b}` });
      }
    }
    if (!s.insecure && s.key === 0) {
      problems.push({
        path: `source[${i}].insecure`,
        message: 'kind "broadcast" needs a key (or insecure = true, not advised: BCP 223)',
        at: `source[${i}].kind`,
      });
    }
  });
  const entries = Array.isArray(c.broadcast) ? c.broadcast : [];
  entries.forEach((b, i) => {
    if (b === undefined) return;
    if (b.key === 0 && b.insecure === false) {
      problems.push({
        path: `broadcast[${i}].key`,
        message: "a key is required (or insecure = true, not advised: BCP 223)",
        at: `broadcast[${i}].address`,
      });
    } else if (typeof b.key === "number" && b.key !== 0 && c.auth?.keyfile === "") {
      problems.push({ path: `broadcast[${i}].key`, message: `key ${b.key} needs auth.keyfile` });
    }
  });
  const seen = new Map<string, number>();
  entries.forEach((b, i) => {
    const ip = typeof b?.address === "string" ? parseIp(b.address) : null;
    if (!ip) return;
    const first = seen.get(formatIp(ip));
    if (first === undefined) seen.set(formatIp(ip), i);
    else {
      problems.push({
        path: `broadcast[${i}].address`,
        message: `same address as broadcast[${first}]`,
        lineOf: `broadcast[${first}].address`,
      });
    }
  });
}

/**
 * Checks that involve more than one key. Runs on a partly validated config
 * too (a key that failed validation is undefined), so that every problem
 * of a file is reported in one pass.
 */
function crossChecks(c: Config, problems: Problem[]): void {
  const sources = Array.isArray(c.source) ? c.source : [];
  const firstOf = new Map<string, number>();
  sources.forEach((s, i) => {
    if (s === undefined) return;
    if (s.maxPoll !== undefined && s.minPoll !== undefined && s.maxPoll < s.minPoll) {
      problems.push({
        path: `source[${i}].max_poll`,
        message: `${s.maxPoll} is below min_poll ${s.minPoll}`,
      });
    }
    authChecks(c, s, i, problems);
    if (s.nts === true && s.kind !== undefined && s.kind !== "server") {
      problems.push({
        path: `source[${i}].nts`,
        message: `NTS needs kind "server" (a ${s.kind} has no NTS-KE of its own)`,
      });
    }
    // One association per address, whatever the kinds: a second entry for
    // the same host and port (after normalisation) is an error, not a replacement.
    if (s.nts !== true && typeof s.caFile === "string" && s.caFile !== "") {
      // A CA file is for the NTS-KE's TLS: without NTS it would be a silent no-op.
      problems.push({ path: `source[${i}].ca_file`, message: "only for nts = true" });
    }
    // An NTS source is its NTS-KE server, host and nts_port (as the engine names its
    // association): two KE ports on one host are two sources, a KE port that is another
    // source's NTP port is one association twice.
    const address = typeof s.address === "string" ? sourceIdentity(s.address) : null;
    if (address === null) return;
    const id = s.nts === true ? `${address.split(" ")[0]} ${s.ntsPort}` : address;
    const first = firstOf.get(id);
    if (first === undefined) firstOf.set(id, i);
    else {
      problems.push({
        path: `source[${i}].address`,
        message: `same source as source[${first}]`,
        lineOf: `source[${first}].address`,
      });
    }
  });
  broadcastChecks(c, problems);
  listedTwice(c.server?.listen, "server.listen", (l) => {
    const a = parseSocketAddress(l);
    return typeof a === "string" ? null : `${formatIp(parseIp(a.hostname)!)} ${a.port}`;
  }, problems);
  const n = c.nts;
  if (n !== undefined && Array.isArray(n.keListen) && n.keListen.length > 0) {
    for (const key of ["certificate", "private_key"] as const) {
      if ((key === "certificate" ? n.certificate : n.privateKey) === "") {
        problems.push({
          path: `nts.${key}`,
          message: "the NTS-KE server (ke_listen) needs it",
          at: "nts.ke_listen",
        });
      }
    }
  }
  listedTwice(n?.keListen, "nts.ke_listen", (l) => {
    const a = parseSocketAddress(l);
    return typeof a === "string" ? null : `${formatIp(parseIp(a.hostname)!)} ${a.port}`;
  }, problems);
  const a = c.anycast;
  if (a === undefined) return;
  listedTwice(a.addresses, "anycast.addresses", ipIdentity, problems);
  listedTwice(a.router?.nodes, "anycast.router.nodes", ipIdentity, problems);
  if (a.mode === "node" && Array.isArray(a.addresses) && a.addresses.length === 0) {
    problems.push({
      path: "anycast.addresses",
      message: 'mode "node" needs at least one address',
      at: "anycast.mode",
    });
  }
  if (a.mode === "router" && a.router !== undefined) {
    if (a.router.vip === "") {
      problems.push({
        path: "anycast.router.vip",
        message: 'mode "router" needs a vip',
        at: "anycast.mode",
      });
    }
    if (Array.isArray(a.router.nodes) && a.router.nodes.length === 0) {
      problems.push({
        path: "anycast.router.nodes",
        message: 'mode "router" needs at least one node',
        at: "anycast.mode",
      });
    }
  }
}

/**
 * A source's `key` must be trusted (`auth.trusted_keys`) and needs a key
 * file; `require_auth` needs a `key`. Whether the file holds the key is
 * checked when it is read (lib/auth/load.ts `checkSourceKeys`).
 */
function authChecks(c: Config, s: SourceConfig, i: number, problems: Problem[]): void {
  const trusted = Array.isArray(c.auth?.trustedKeys) ? c.auth.trustedKeys : null;
  if (s.requireAuth === true && s.key === 0) {
    problems.push({ path: `source[${i}].require_auth`, message: "needs a key (source key = N)" });
  }
  if (typeof s.key !== "number" || s.key === 0) return;
  if (s.nts === true) {
    problems.push({
      path: `source[${i}].key`,
      message: "a source is authenticated by NTS or by a symmetric key, not both",
    });
  }
  if (c.auth?.keyfile === "") {
    problems.push({ path: `source[${i}].key`, message: `key ${s.key} needs auth.keyfile` });
  } else if (trusted && !trusted.includes(s.key)) {
    problems.push({
      path: `source[${i}].key`,
      message: `key ${s.key} is not in auth.trusted_keys`,
    });
  }
}

/** Parses and validates config text; `file` names it in error lines. */
export function loadConfig(text: string, file: string): LoadResult {
  let doc: Record<string, unknown>;
  try {
    doc = parseToml(text) as Record<string, unknown>;
  } catch (e) {
    const err = e as { line?: number; message?: string };
    const msg = String(err.message ?? e).split("\n")[0]!.replace(/^Invalid TOML document: /, "");
    return { ok: false, errors: [`${file}:${err.line ?? 1}: invalid TOML: ${msg}`] };
  }
  const problems: Problem[] = [];
  const config = validateFields(SCHEMA, doc, "", problems) as unknown as Config;
  crossChecks(config, problems);
  if (problems.length > 0) {
    const lines = locateKeys(text);
    return {
      ok: false,
      errors: problems
        .map((p) => ({ line: lineOf(lines, p.at ?? p.path), p }))
        .sort((a, b) => a.line - b.line)
        .map(({ line, p }) =>
          `${file}:${line}: ${p.path}: ${p.message}${
            p.lineOf === undefined ? "" : ` (line ${lineOf(lines, p.lineOf)})`
          }`
        ),
    };
  }
  return { ok: true, config };
}

/**
 * The sources and `[[broadcast]]` entries whose `key` the key file does
 * not hold, one line each,
 * `FILE:LINE: source[i].key: key N is not in KEYFILE` (`text`/`file`: the
 * config). `keyIds`: the IDs the key file holds.
 */
export function missingSourceKeys(
  config: Config,
  keyIds: ReadonlySet<number>,
  text: string,
  file: string,
): string[] {
  const lines = locateKeys(text);
  const missing = (path: string, key: number) =>
    key === 0 || keyIds.has(key)
      ? []
      : [`${file}:${lineOf(lines, path)}: ${path}: key ${key} is not in ${config.auth.keyfile}`];
  return [
    ...config.source.flatMap((s, i) => missing(`source[${i}].key`, s.key)),
    ...config.broadcast.flatMap((b, i) => missing(`broadcast[${i}].key`, b.key)),
  ];
}

/** The embedded default configuration, validated. */
export function defaultConfig(): Config {
  const r = loadConfig(DEFAULT_CONFIG_TOML, "<embedded default>");
  if (!r.ok) throw new Error(`Embedded default config is invalid: ${r.errors.join("; ")}`);
  return r.config;
}
