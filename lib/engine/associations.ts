/**
 * The association set (RFC 5905 §9.1 mobilisation): the associations of
 * the configured sources, mobilised from addresses or from names the
 * driver resolves (`resolve` actions), pool members refilled when one is
 * lost, and the set changed in place on a reload (`reconfigure`). The
 * engine (engine.ts) owns one and passes the system poll, the system peer
 * and the list its actions go to.
 */
import { parseIp } from "../ntp/address.ts";
import type { Action } from "./actions.ts";
import { canonicalIp } from "./refid.ts";
import { Association, type EngineSource, type SourceAction, sourceId } from "./source.ts";

/** Seconds before a name is resolved again when it gave fewer addresses than wanted. */
export const RESOLVE_RETRY_S = 64;

/**
 * Identity of a source across reloads: kind and address (as lib/reload.ts
 * matches them), and the NTS-KE port of an NTS source (two KE servers on
 * one host are two sources).
 */
export function sourceKey(s: Pick<EngineSource, "kind" | "address" | "ntsPort">): string {
  const nts = s.ntsPort ? ` nts ${s.ntsPort}` : "";
  return `${s.kind} ${s.address.toLowerCase()}${nts}`;
}

/**
 * The name and port an association of `cfg` is known by: the address's
 * (port `defaultPort` when it has none), or for an NTS source the NTS-KE
 * server's name and port. An NTS source's NTP server and port are only
 * known after its key exchange (the driver sends there), so the KE
 * server is what tells two NTS sources apart.
 */
export function sourceEndpoint(
  cfg: Pick<EngineSource, "address" | "ntsPort">,
  defaultPort: number,
): { host: string; port: number } {
  const { host, port } = splitHostPort(cfg.address, defaultPort);
  return { host, port: cfg.ntsPort ? cfg.ntsPort : port };
}

/** Splits "host", "host:port", "[v6]:port" or a bare IPv6 address. */
export function splitHostPort(
  address: string,
  defaultPort: number,
): { host: string; port: number } {
  const m6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(address);
  if (m6) return { host: m6[1]!, port: m6[2] ? Number(m6[2]) : defaultPort };
  const colons = address.split(":").length - 1;
  if (colons === 1) {
    const [h, p] = address.split(":");
    return { host: h!, port: Number(p) };
  }
  return { host: address, port: defaultPort };
}

/** The sources without duplicates (same `sourceKey`: the first one counts). */
export function dedupe(sources: EngineSource[]): EngineSource[] {
  const seen = new Set<string>();
  return sources.filter((s) => !seen.has(sourceKey(s)) && seen.add(sourceKey(s)) !== undefined);
}

/** Number of bits set in `v` (a reach register). */
export function bitCount(v: number): number {
  let n = 0;
  for (let r = v; r; r >>= 1) n += r & 1;
  return n;
}

/** A name waiting to be resolved. */
export interface PendingName {
  /** `sourceKey` of the configured source. */
  key: string;
  name: string;
  port: number;
  /** Raw time at which to resolve. */
  at: number;
}

/** The associations of the configured sources, and the names still to resolve. */
export class AssociationSet {
  /** Association id → association. */
  readonly map = new Map<string, Association>();
  pending: PendingName[] = [];
  /** Association id → `sourceKey` of the configured source it came from. */
  readonly origin = new Map<string, string>();
  /** Per pool (`sourceKey`): members dropped as unreachable, tried last when refilling. */
  readonly dropped = new Map<string, Set<string>>();

  /**
   * `defaultPort`: port of sources given without one; `onDrop`: told of
   * every association forgotten (so the system peer can be cleared).
   */
  constructor(
    readonly defaultPort: number,
    readonly onDrop: (a: Association | undefined) => void,
  ) {}

  /** The associations that came from the configured source with `sourceKey` `key`. */
  members(key: string): Association[] {
    return [...this.map.values()].filter((a) => this.origin.get(a.id) === key);
  }

  /**
   * Starts the associations of a configured source at raw time `now`
   * (poll exponent `sysPoll`), or queues its name to be resolved.
   */
  mobilize(cfg: EngineSource, now: number, sysPoll: number, rand: () => number): void {
    // A broadcast source's associations are mobilised by the servers heard (`add`).
    if (cfg.kind === "broadcast") return;
    const { host, port } = sourceEndpoint(cfg, this.defaultPort);
    // An address another source's association holds (a name of it resolved first) goes
    // through `addResolved` like a name: it is then reported as skipped, never replaced.
    if (
      cfg.kind !== "pool" && parseIp(host) !== null &&
      !this.map.has(sourceId(canonicalIp(host), port))
    ) {
      this.add(cfg, canonicalIp(host), port, "", now, sysPoll, rand);
    } else {
      this.pending.push({ key: sourceKey(cfg), name: host, port, at: now });
    }
  }

  /** Mobilises one association of `cfg` at `host:port` (`pool`: the pool's name, or ""). */
  add(
    cfg: EngineSource,
    host: string,
    port: number,
    pool: string,
    now: number,
    sysPoll: number,
    rand: () => number,
  ): void {
    this.origin.set(sourceId(host, port), sourceKey(cfg));
    const a = new Association(
      {
        host,
        port,
        kind: cfg.kind,
        iburst: cfg.iburst,
        prefer: cfg.prefer,
        minPoll: cfg.minPoll,
        maxPoll: Math.max(cfg.minPoll, cfg.maxPoll),
        pool,
        xleave: cfg.xleave && cfg.kind !== "broadcast",
        key: cfg.key ?? 0,
        requireAuth: cfg.requireAuth ?? false,
      },
      now,
      rand,
    );
    a.setPoll(sysPoll);
    this.map.set(a.id, a);
  }

  /** Forgets an association (demobilised, or its source removed from the config). */
  drop(id: string): void {
    const a = this.map.get(id);
    this.map.delete(id);
    this.origin.delete(id);
    this.onDrop(a);
  }

  /**
   * Addresses resolved for configured source `cfg` at raw time `now`. A
   * pool takes fresh addresses first, then ones it dropped as unreachable
   * (a lone dead address is retried rather than leaving the slot empty);
   * when still short, the name is resolved again after RESOLVE_RETRY_S.
   */
  addResolved(
    cfg: EngineSource,
    addresses: string[],
    now: number,
    sysPoll: number,
    rand: () => number,
  ): void {
    const key = sourceKey(cfg);
    const { host: name, port } = sourceEndpoint(cfg, this.defaultPort);
    let want = (cfg.kind === "pool" ? cfg.maxSources : 1) - this.members(key).length;
    const dropped = this.dropped.get(key) ?? new Set<string>();
    const ips = [...new Set(addresses.map(canonicalIp))]
      .filter((ip) => !this.map.has(sourceId(ip, port)));
    const fresh = ips.filter((ip) => !dropped.has(sourceId(ip, port)));
    const stale = ips.filter((ip) => dropped.has(sourceId(ip, port)));
    for (const ip of [...fresh, ...stale]) {
      if (want <= 0) break;
      dropped.delete(sourceId(ip, port));
      this.add(cfg, ip, port, cfg.kind === "pool" ? name : "", now, sysPoll, rand);
      want--;
    }
    if (want > 0 && !this.pending.some((p) => p.key === key)) {
      this.pending.push({ key, name, port, at: now + RESOLVE_RETRY_S });
    }
  }

  /** Emits (into `out`) `resolve` actions for the names of `sources` whose time has come. */
  resolveDue(sources: EngineSource[], now: number, out: Action[]): void {
    const due = this.pending.filter((p) => p.at <= now);
    this.pending = this.pending.filter((p) => p.at > now);
    for (const p of due) {
      const index = sources.findIndex((s) => sourceKey(s) === p.key);
      const cfg = sources[index];
      if (!cfg) continue;
      const have = this.members(p.key).length;
      const want = (cfg.kind === "pool" ? cfg.maxSources : 1) - have;
      if (want <= 0) continue;
      out.push({
        kind: "resolve",
        name: p.name,
        port: p.port,
        sourceIndex: index,
        source: p.key,
        want,
      });
    }
  }

  /**
   * Passes associations' actions on to `out`; a demobilised pool member
   * is forgotten and its slot refilled from a new lookup of the pool's
   * name at raw time `now` (a denied or unreachable server stays listed).
   */
  take(actions: SourceAction[], sources: EngineSource[], now: number, out: Action[]): void {
    for (const act of actions) {
      if (act.kind === "demobilize") {
        const key = this.origin.get(act.source);
        const a = this.map.get(act.source);
        const cfg = sources.find((s) => sourceKey(s) === key);
        if (a && key && cfg && a.opts.kind === "broadcast") {
          // A heard broadcast server no longer heard is forgotten; it comes back when heard again.
          this.drop(act.source);
          out.push({ kind: "log", level: "info", message: `${act.source}: ${act.reason}` });
        } else if (a && key && cfg && a.opts.pool !== "") {
          // A denied or unreachable server stays listed (state shows why); a pool member goes.
          this.drop(act.source);
          // Replace a lost pool member with a fresh address from a new lookup.
          let d = this.dropped.get(key);
          if (!d) this.dropped.set(key, d = new Set());
          d.add(act.source);
          out.push({
            kind: "log",
            level: "info",
            message: `${act.source}: ${act.reason}, replacing it`,
          });
          this.pending = this.pending.filter((p) => p.key !== key);
          this.pending.push({ key, name: a.opts.pool, port: a.opts.port, at: now });
          this.resolveDue(sources, now, out);
        }
      }
      out.push(act);
    }
  }

  /**
   * A reload at raw time `now`, from sources `before` to `after` (both
   * deduplicated), matched by `sourceKey`: removed ones are demobilised;
   * added ones mobilised (names resolved); changed ones (iburst, prefer,
   * polls, max_sources) keep their associations and take the new options,
   * a pool dropping its least useful members (not `sysPeer`, lowest
   * reach) when fewer are wanted; kept ones are not touched.
   */
  reconfigure(
    before: EngineSource[],
    after: EngineSource[],
    now: number,
    sys: { poll: number; peer: Association | null; rand: () => number },
    out: Action[],
  ): void {
    const old = new Map(before.map((s) => [sourceKey(s), s]));
    const keys = new Set(after.map(sourceKey));
    for (const [key, cfg] of old) {
      if (keys.has(key)) continue;
      for (const a of this.members(key)) {
        this.drop(a.id);
        out.push({ kind: "demobilize", source: a.id, reason: "removed from the config" });
      }
      this.pending = this.pending.filter((p) => p.key !== key);
      this.dropped.delete(key);
      out.push({ kind: "log", level: "info", message: `Source ${cfg.address} removed` });
    }
    for (const cfg of after) {
      const key = sourceKey(cfg);
      const prev = old.get(key);
      if (!prev) {
        this.mobilize(cfg, now, sys.poll, sys.rand);
        out.push({ kind: "log", level: "info", message: `Source ${cfg.address} added` });
        continue;
      }
      if (JSON.stringify(prev) === JSON.stringify(cfg)) continue;
      const list = this.members(key);
      for (const a of list) {
        a.update(
          {
            iburst: cfg.iburst,
            prefer: cfg.prefer,
            minPoll: cfg.minPoll,
            maxPoll: cfg.maxPoll,
            xleave: cfg.xleave && cfg.kind !== "broadcast",
            key: cfg.key ?? 0,
            requireAuth: cfg.requireAuth ?? false,
          },
          now,
        );
        a.setPoll(sys.poll);
      }
      if (cfg.kind === "pool" || cfg.kind === "broadcast") {
        // Fewer members wanted: drop the least useful (not the system peer, lowest reach);
        // a broadcast source's servers are heard again, never looked up.
        const extra = list.length - cfg.maxSources;
        const worst = [...list].sort((x, y) =>
          Number(x === sys.peer) - Number(y === sys.peer) ||
          bitCount(x.reach) - bitCount(y.reach)
        ).slice(0, Math.max(0, extra));
        for (const a of worst) {
          this.drop(a.id);
          out.push({ kind: "demobilize", source: a.id, reason: "max_sources lowered" });
        }
        if (
          cfg.kind === "pool" && list.length < cfg.maxSources &&
          !this.pending.some((p) => p.key === key)
        ) {
          const { host, port } = splitHostPort(cfg.address, this.defaultPort);
          this.pending.push({ key, name: host, port, at: now });
        }
      }
      out.push({ kind: "log", level: "info", message: `Source ${cfg.address} updated` });
    }
  }
}
