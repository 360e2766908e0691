/**
 * What a configuration reload (SIGHUP) has to change, worked out from the
 * old and the new config alone. Pure: the app carries the plan out, so
 * every "rebind or not" decision is testable without a socket.
 *
 * The rule is to disturb as little as possible: server sockets are rebound
 * only when `server.listen`, `server.workers` or `server.driver` changed;
 * access and rate-limit changes go to the running workers; sources are
 * matched by kind and address, so an unchanged source keeps its state
 * (reach, filter, poll) while others come and go.
 */
import type { Config, SourceConfig } from "./config/mod.ts";

/** Sources matched by identity (`kind` + `address`). */
export interface SourceChanges {
  added: SourceConfig[];
  removed: SourceConfig[];
  /** Same identity, other options changed (iburst, prefer, polls, max_sources). */
  changed: { before: SourceConfig; after: SourceConfig }[];
  /** Identical in both; their state must be kept. */
  kept: SourceConfig[];
}

/** What to do for a reload; `changed` lists the top-level key paths that differ. */
export interface ReloadPlan {
  /** Start a new server pool, then stop the old one (listen, workers or driver changed). */
  rebindServer: boolean;
  /** Send new access/rate-limit options to the running workers. */
  reconfigureServer: boolean;
  /** `server.local_stratum` changed: republish the system state. */
  localStratum: boolean;
  logLevel: boolean;
  /** `status.listen` changed: restart the status server. */
  status: boolean;
  /** Anything under `clock` changed: hand the new clock options to the engine. */
  clock: boolean;
  stats: boolean;
  anycast: boolean;
  /** `[[broadcast]]` changed: reopen the broadcast server's destinations. */
  broadcast: boolean;
  sources: SourceChanges;
  /** Dotted key paths whose value changed, for the log line. */
  changed: string[];
}

/** Identity of a source across reloads (an NTS source's KE port included, as the engine's). */
export function sourceKey(s: SourceConfig): string {
  return `${s.kind} ${s.address.toLowerCase()}${s.nts ? ` nts ${s.ntsPort}` : ""}`;
}

function same(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** Dotted paths of every leaf that differs between `a` and `b` (arrays compare whole). */
function diffPaths(a: unknown, b: unknown, path: string, out: string[]): void {
  const isTable = (v: unknown) => v !== null && typeof v === "object" && !Array.isArray(v);
  if (isTable(a) && isTable(b)) {
    const ra = a as Record<string, unknown>, rb = b as Record<string, unknown>;
    for (const k of new Set([...Object.keys(ra), ...Object.keys(rb)])) {
      diffPaths(ra[k], rb[k], path ? `${path}.${k}` : k, out);
    }
  } else if (!same(a, b)) out.push(path);
}

/** Matches the sources of two configs by `sourceKey`. */
export function diffSources(before: SourceConfig[], after: SourceConfig[]): SourceChanges {
  const old = new Map(before.map((s) => [sourceKey(s), s]));
  const out: SourceChanges = { added: [], removed: [], changed: [], kept: [] };
  const seen = new Set<string>();
  for (const s of after) {
    const k = sourceKey(s);
    if (seen.has(k)) continue; // a duplicate line adds nothing
    seen.add(k);
    const o = old.get(k);
    if (!o) out.added.push(s);
    else if (same(o, s)) out.kept.push(s);
    else out.changed.push({ before: o, after: s });
  }
  for (const [k, s] of old) if (!seen.has(k)) out.removed.push(s);
  return out;
}

/** Works out what a reload from `before` to `after` must change. */
export function planReload(before: Config, after: Config): ReloadPlan {
  const b = before.server, a = after.server;
  const changed: string[] = [];
  diffPaths(before, after, "", changed);
  const sources = diffSources(before.source, after.source);
  return {
    rebindServer: !same(b.listen, a.listen) || b.workers !== a.workers || b.driver !== a.driver,
    reconfigureServer: !same(b.allow, a.allow) || !same(b.deny, a.deny) ||
      b.denyKod !== a.denyKod || !same(b.rateLimit, a.rateLimit),
    localStratum: b.localStratum !== a.localStratum,
    logLevel: before.log.level !== after.log.level,
    status: before.status.listen !== after.status.listen,
    clock: !same(before.clock, after.clock),
    stats: !same(before.stats, after.stats),
    anycast: !same(before.anycast, after.anycast),
    broadcast: !same(before.broadcast, after.broadcast),
    sources,
    changed: changed.map(snake),
  };
}

/** True when the plan changes nothing at all. */
export function isNoop(p: ReloadPlan): boolean {
  return p.changed.length === 0;
}

/** camelCase path → the snake_case key operators wrote in the file. */
function snake(path: string): string {
  return path.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

/** One log line summarising a plan, e.g. `server.allow changed; sources +1 -0 ~0`. */
export function describePlan(p: ReloadPlan): string {
  if (isNoop(p)) return "no change";
  const keys = p.changed.filter((k) => !k.startsWith("source")).join(", ");
  const s = p.sources;
  const src = s.added.length + s.removed.length + s.changed.length > 0
    ? `sources +${s.added.length} -${s.removed.length} ~${s.changed.length} =${s.kept.length}`
    : "";
  const what = [keys && `changed: ${keys}`, src].filter(Boolean).join("; ");
  return `${what}${p.rebindServer ? "; rebinding server sockets" : ""}`;
}
