/**
 * The peer engine: the set of associations, source selection, the clock
 * discipline, orphan mode and the system variables the server answers
 * with. Pure: every call takes the raw time `now` (Unix seconds read from
 * the system clock by the driver) and a random source, and returns
 * actions for the driver (lib/io/engine_driver.ts, lib/sim/) to carry out.
 *
 * Pipeline, one step per file as in chrony: source.ts (protocol, reach,
 * poll) → filter.ts (clock filter) → select.ts (intersection, cluster,
 * combine) → discipline.ts (regression) → clock.ts (Clock seam).
 */
import { Leap, Mode, type NtpPacket, parsePacket } from "../ntp/packet.ts";
import {
  isSynchronised,
  MAXSTRAT,
  PHI,
  type SystemState,
  unsyncedState,
} from "../ntp/system_state.ts";
import { type Clock, correctionValue } from "./clock.ts";
import {
  chooseFallback,
  type FallbackConfig,
  fallbackVars,
  orphanEnabled,
  REFID_LOCL,
} from "./fallback.ts";
import { combineFrequencies, Discipline, type FrequencyEstimate } from "./discipline.ts";
import type { Sample } from "./filter.ts";
import { canonicalIp, refidOfAddress } from "./refid.ts";
import type { EngineCounters, EngineReport, SourceReport, Tally } from "./report.ts";
import { type Candidate, MAXDIST, MINDIST, type Selection, selectSources } from "./select.ts";
import {
  Association,
  type SourceAction,
  sourceId,
  type SourceKind,
  type Transmit,
} from "./source.ts";
import { loopstatsLine, peerstatsLine, peerStatusWord, SELECT_CODE, statsTime } from "./stats.ts";
import { formatRefid } from "../ntp/packet.ts";
import {
  decideLeap,
  endOfDay,
  type LeapTable,
  leapTableExpired,
  majorityLeapOf,
  smearRamp,
  utcDate,
  utcTime,
} from "../ntp/leap.ts";
import { parseIp } from "../ntp/address.ts";

/** One configured source (the `[[source]]` table). */
export interface EngineSource {
  /** IP address or name ("host" or "host:port"). */
  address: string;
  kind: SourceKind;
  iburst: boolean;
  prefer: boolean;
  minPoll: number;
  maxPoll: number;
  maxSources: number;
  /** Interleaved mode (RFC 9769, chrony `xleave`); server and pool sources. */
  xleave: boolean;
}

/** Engine options (from `[clock]` and `[[source]]`). */
export interface EngineOptions {
  sources: EngineSource[];
  /** Seconds. */
  stepThreshold: number;
  /** Seconds. */
  panicThreshold: number;
  orphanStratum: number;
  /** Seconds. */
  orphanWait: number;
  /**
   * `server.local_stratum` (1..15; 0 or absent = off): the stratum we
   * announce, with refid LOCL, whenever no real source is selected
   * (fallback.ts; chrony's `local stratum`).
   */
  localStratum?: number;
  minSources: number;
  /** Our clock precision, log2 seconds. */
  precision: number;
  /** Our own refid (address): announced as orphan parent, and used for loop detection. */
  localRefid: number;
  /** Frequency from the driftfile in ppm, or null when there is none. */
  driftPpm: number | null;
  /** Default port of sources given without one. */
  defaultPort?: number;
  /** Whether to produce loopstats/peerstats actions. */
  stats?: boolean;
  /** Random source for the first poll times (later calls pass their own). */
  rand?: () => number;
  /**
   * `clock.leapfile`, parsed (lib/ntp/leap.ts): decides leap seconds for the
   * days it covers, over the sources; null or absent = the sources decide.
   */
  leapTable?: LeapTable | null;
  /**
   * `server.leap_smear_s`: the window (seconds, centred on the leap) over
   * which the time served to clients is smeared (lib/ntp/leap.ts
   * `smearRamp`); clients are then never told of the leap (LI 0). 0 or
   * absent = no smear: the leap is announced and served as 23:59:60.
   */
  leapSmear?: number;
}

/** What the engine asks its driver to do. */
export type Action =
  | SourceAction
  | { kind: "setTimer"; at: number }
  | {
    kind: "resolve";
    name: string;
    port: number;
    /** Index of the source in `opts.sources` when the action was made. */
    sourceIndex: number;
    /** The source's identity (`sourceKey`): pass it back to `addResolved`, it survives reloads. */
    source: string;
    want: number;
  }
  | { kind: "stats"; file: "loopstats" | "peerstats"; day: string; line: string };

/**
 * Peer pull: how far each clock update moves toward the mean offset of the
 * symmetric peers at our stratum (siblings that follow the same kind of
 * upstreams), as a fraction of the difference, and the bound of that move
 * in units of the combined upstreams' mean jitter.
 *
 * Why: nodes that follow the same external servers each measure them over
 * their own WAN paths, so each node's combined estimate carries its own
 * noise (tens of µs with 50 µs WAN jitter at 256 s polls), and two nodes
 * disagree by the difference of two such errors. Their LAN peers measure
 * that disagreement to a few µs. Moving a fraction β of the way to the
 * peers' mean is distributed averaging: in a mesh of n nodes the fixed
 * point shrinks differences by (1 − β)/(1 + β/(n − 1)) while the common
 * time stays anchored to the upstreams (the cluster's mean estimate). The
 * bound keeps it to noise-sized corrections, so a cluster that is off
 * together (start-up, a step) converges at the upstreams' pace and a
 * wrong peer cannot drag us beyond the upstreams' own error. The weights
 * are fixed and equal for every peer (no node-local noise decides them).
 */
export const PEER_PULL = 0.8;
export const PULL_BOUND = 2;

/** Wait after start before the first clock update unless every source has answered. */
export const GATHER_S = 4;

/** Seconds before a name is resolved again when it gave fewer addresses than wanted. */
export const RESOLVE_RETRY_S = 64;

/** Identity of a source across reloads: kind and address (as lib/reload.ts matches them). */
export function sourceKey(s: Pick<EngineSource, "kind" | "address">): string {
  return `${s.kind} ${s.address.toLowerCase()}`;
}

/** What `reconfigure` can change on a running engine (the live part of `[clock]`, and sources). */
export type EngineReconfig =
  & Pick<
    EngineOptions,
    "sources" | "stepThreshold" | "panicThreshold" | "orphanStratum" | "orphanWait" | "minSources"
  >
  & Partial<
    Pick<EngineOptions, "stats" | "localRefid" | "localStratum" | "leapTable" | "leapSmear">
  >;

interface PendingName {
  key: string;
  name: string;
  port: number;
  /** Raw time at which to resolve. */
  at: number;
}

/** The engine. */
export class Engine {
  readonly opts: EngineOptions;
  readonly clock: Clock;
  readonly discipline: Discipline;
  readonly associations = new Map<string, Association>();
  readonly counters: EngineCounters = {
    malformed: 0,
    unknown_source: 0,
    bogus: 0,
    replay: 0,
    kod_rate: 0,
    kod_deny: 0,
    panic: 0,
    steps: 0,
    spikes: 0,
    clock_updates: 0,
  };
  #pending: PendingName[] = [];
  /** Association id → `sourceKey` of the configured source it came from. */
  #origin = new Map<string, string>();
  /** Per pool (`sourceKey`): members dropped as unreachable, tried last when refilling. */
  #dropped = new Map<string, Set<string>>();
  #started: number;
  #selection: Selection | null = null;
  #sysPeer: Association | null = null;
  /** Raw time we last had a usable source below the orphan stratum. */
  #lastUpstream: number;
  #synced = false;
  /** Our variables are the `local_stratum` fallback (fallback.ts), from `#localRefTime`. */
  #local = false;
  #localRefTime = 0;
  #orphanParent = false;
  #orphanChild = false;
  #stratum = MAXSTRAT;
  #refid = 0;
  #leap: number = Leap.unsync;
  /** Leap indicator of the majority of the selectable sources at the last selection. */
  #selectableVote: number = Leap.none;
  /** The vote in force: taken from the selection that set our variables. */
  #vote: number = Leap.none;
  /** Leap indicator armed in the clock (setLeap); null before the first call. */
  #armed: number | null = null;
  /** Served Unix time of the midnight the armed leap happens at. */
  #leapAt = 0;
  /** The midnight of the last leap carried out (or seen done by the kernel). */
  #leapDone = 0;
  /**
   * The leap smear under way (`opts.leapSmear`): its leap's midnight `at`,
   * the ramp's bounds on the elapsed scale and the change (+1 insert).
   */
  #smear: { at: number; from: number; to: number; change: 1 | -1 } | null = null;
  #rootDelay = 0;
  #rootDisp = 0;
  #jitter = 0;
  #lastOffset = 0;
  #refTime = 0;
  #lastSampleT = -Infinity;
  #updateInterval = 0;
  #sysPoll: number;
  #goodUpdates = 0;
  #logged = new Set<string>();
  #out: Action[] = [];
  #rand: () => number = Math.random;

  constructor(opts: EngineOptions, clock: Clock, now: number) {
    this.opts = { ...opts, sources: dedupe(opts.sources) };
    this.clock = clock;
    this.#started = now;
    this.#lastUpstream = now;
    if (opts.rand) this.#rand = opts.rand;
    this.discipline = new Discipline({
      stepThreshold: opts.stepThreshold,
      panicThreshold: opts.panicThreshold,
      stepout: 30,
      initialFreq: (opts.driftPpm ?? 0) * 1e-6,
    }, now);
    clock.apply(this.discipline.model, now, 0);
    this.#sysPoll = Math.min(...opts.sources.map((s) => s.minPoll), 17);
    for (const cfg of this.opts.sources) this.#mobilize(cfg, now);
    // The fallback (local_stratum) holds from the first packet we send or serve.
    this.#settle(now);
  }

  /**
   * A reload (SIGHUP) at raw time `now`: sources are matched by `sourceKey`.
   * Removed ones are demobilised; added ones mobilised (names resolved);
   * changed ones (iburst, prefer, polls, max_sources) keep their
   * associations and take the new options; kept ones are not touched, so
   * their reach, clock filter, regression and poll survive. Thresholds,
   * `min_sources` and the orphan settings apply from the next update.
   */
  reconfigure(next: EngineReconfig, now: number): Action[] {
    this.#lastNow = Math.max(this.#lastNow, now);
    const before = new Map(this.opts.sources.map((s) => [sourceKey(s), s]));
    const after = dedupe(next.sources);
    const keys = new Set(after.map(sourceKey));
    const members = (key: string) =>
      [...this.associations.values()].filter((a) => this.#origin.get(a.id) === key);
    for (const [key, cfg] of before) {
      if (keys.has(key)) continue;
      for (const a of members(key)) {
        this.#drop(a.id);
        this.#out.push({ kind: "demobilize", source: a.id, reason: "removed from the config" });
      }
      this.#pending = this.#pending.filter((p) => p.key !== key);
      this.#dropped.delete(key);
      this.#out.push({ kind: "log", level: "info", message: `Source ${cfg.address} removed` });
    }
    this.opts.sources = after;
    for (const cfg of after) {
      const key = sourceKey(cfg);
      const old = before.get(key);
      if (!old) {
        this.#mobilize(cfg, now);
        this.#out.push({ kind: "log", level: "info", message: `Source ${cfg.address} added` });
        continue;
      }
      if (JSON.stringify(old) === JSON.stringify(cfg)) continue;
      const list = members(key);
      for (const a of list) {
        a.update(
          {
            iburst: cfg.iburst,
            prefer: cfg.prefer,
            minPoll: cfg.minPoll,
            maxPoll: cfg.maxPoll,
            xleave: cfg.xleave && cfg.kind !== "peer",
          },
          now,
        );
        a.setPoll(this.#sysPoll);
      }
      if (cfg.kind === "pool") {
        // Fewer members wanted: drop the least useful (not the system peer, lowest reach).
        const extra = list.length - cfg.maxSources;
        const worst = [...list].sort((x, y) =>
          Number(x === this.#sysPeer) - Number(y === this.#sysPeer) ||
          bitCount(x.reach) - bitCount(y.reach)
        ).slice(0, Math.max(0, extra));
        for (const a of worst) {
          this.#drop(a.id);
          this.#out.push({ kind: "demobilize", source: a.id, reason: "max_sources lowered" });
        }
        if (list.length < cfg.maxSources && !this.#pending.some((p) => p.key === key)) {
          const { host, port } = splitHostPort(cfg.address, this.opts.defaultPort ?? 123);
          this.#pending.push({ key, name: host, port, at: now });
        }
      }
      this.#out.push({ kind: "log", level: "info", message: `Source ${cfg.address} updated` });
    }
    const o = this.opts;
    o.stepThreshold = this.discipline.opts.stepThreshold = next.stepThreshold;
    o.panicThreshold = this.discipline.opts.panicThreshold = next.panicThreshold;
    o.minSources = next.minSources;
    o.orphanWait = next.orphanWait;
    if (next.stats !== undefined) o.stats = next.stats;
    if (next.localRefid !== undefined) o.localRefid = next.localRefid;
    const orphanBefore = {
      stratum: o.orphanStratum,
      enabled: orphanEnabled(this.#fallbackConfig()),
    };
    o.orphanStratum = next.orphanStratum;
    if (next.localStratum !== undefined) o.localStratum = next.localStratum;
    // A new smear window applies from the next leap (one under way keeps its own).
    if (next.leapSmear !== undefined) o.leapSmear = next.leapSmear;
    if (next.leapTable !== undefined) {
      // A reload rereads the file: warn about its expiry again only when it changed.
      if (JSON.stringify(next.leapTable) !== JSON.stringify(o.leapTable ?? null)) {
        this.#logged.delete("leapfile-expired");
      }
      o.leapTable = next.leapTable;
    }
    if (
      next.orphanStratum !== orphanBefore.stratum ||
      orphanEnabled(this.#fallbackConfig()) !== orphanBefore.enabled
    ) {
      if (this.orphan) {
        // Re-elect under the new settings; with orphan mode off an orphan has no time to serve.
        const wasParent = this.#orphanParent;
        this.#orphanParent = this.#orphanChild = false;
        this.#logged.delete("orphan");
        if (wasParent) this.#setSynced(false);
      }
    }
    this.#resolveDue(now);
    this.#update(now, null);
    return this.#flush();
  }

  /** Starts the associations of a configured source, or asks for its name to be resolved. */
  #mobilize(cfg: EngineSource, now: number): void {
    const { host, port } = splitHostPort(cfg.address, this.opts.defaultPort ?? 123);
    if (cfg.kind !== "pool" && parseIp(host) !== null) {
      this.#add(cfg, canonicalIp(host), port, "", now);
    } else {
      this.#pending.push({ key: sourceKey(cfg), name: host, port, at: now });
    }
  }

  /** Raw time of the next timer the driver must call `handleTimer` at. */
  nextTimer(): number {
    let t = this.#started + GATHER_S;
    if (t <= this.#lastNow) t = Infinity;
    for (const a of this.associations.values()) t = Math.min(t, a.nextPoll);
    for (const p of this.#pending) t = Math.min(t, p.at);
    // An armed leap: be there at its midnight (carry it out, then clear the flag).
    if (this.#armed === Leap.insert || this.#armed === Leap.delete) {
      t = Math.min(t, this.#rawAt(this.#leapAt));
    }
    // Orphan mode and holdover are re-evaluated at least every few seconds.
    return Math.min(t, this.#lastNow + 8);
  }

  #lastNow = 0;

  /** The timer fired at raw time `now`: poll due sources, re-run selection. */
  handleTimer(now: number, rand: () => number = Math.random): Action[] {
    this.#rand = rand;
    this.#lastNow = now;
    this.#resolveDue(now);
    const ctx = this.#context();
    for (const a of [...this.associations.values()]) {
      if (a.nextPoll > now) continue;
      this.#take(a.handleTimer(now, ctx), now);
    }
    this.#update(now, null);
    return this.#flush();
  }

  /**
   * A packet from `host:port` arrived at raw time `t4` (the kernel's
   * receive timestamp); `sent` is what the driver knows of the last packet
   * it sent to that source (see `Transmit`), null when it sent none. The
   * driver owns both times: the engine never stamps one itself. Packets
   * from unknown senders are counted and dropped.
   */
  handleIncoming(
    host: string,
    port: number,
    bytes: Uint8Array,
    t4: number,
    sent: Transmit | null,
    rand: () => number = Math.random,
  ): Action[] {
    this.#rand = rand;
    this.#lastNow = Math.max(this.#lastNow, t4);
    const p = parsePacket(bytes);
    if (typeof p === "string") {
      this.counters.malformed++;
      return this.#flush();
    }
    const ip = canonicalIp(host);
    let a = this.associations.get(sourceId(ip, port));
    if (!a && (p.mode === Mode.symmetricActive || p.mode === Mode.symmetricPassive)) {
      a = [...this.associations.values()].find((x) => x.opts.kind === "peer" && x.opts.host === ip);
    }
    if (!a) {
      this.counters.unknown_source++;
      return this.#flush();
    }
    this.#incoming(a, p, t4, sent);
    return this.#flush();
  }

  #incoming(a: Association, p: NtpPacket, recv: number, sent: Transmit | null): void {
    const before = { ...a.counters };
    const r = a.handleIncoming(p, recv, sent, this.#context());
    this.counters.bogus += a.counters.bogus - before.bogus;
    this.counters.replay += a.counters.replay - before.replay;
    this.counters.kod_rate += a.counters.kodRate - before.kodRate;
    this.counters.kod_deny += a.counters.kodDeny - before.kodDeny;
    this.#take(r.actions, recv);
    if (r.fresh && this.opts.stats) {
      const { day } = statsTime(this.#served(recv));
      this.#out.push({
        kind: "stats",
        file: "peerstats",
        day,
        line: peerstatsLine(this.#served(recv), {
          address: a.opts.host,
          status: peerStatusWord({
            configured: true,
            reachable: a.reach !== 0,
            select: SELECT_CODE[this.#tally(a)] ?? 0,
          }),
          offset: this.#predicted(a, recv) ?? 0,
          delay: a.filter.stages[0]?.delay ?? 0,
          disp: a.filter.output?.disp ?? 0,
          jitter: a.filter.output?.jitter ?? 0,
        }),
      });
    }
    this.#update(recv, r.fresh ? a.id : null);
  }

  /**
   * Addresses for a name the engine asked to resolve (`resolve` action);
   * `source` is the action's `source` key (or, for drivers that never
   * reconfigure, its `sourceIndex`). An empty list is a failed lookup. A
   * pool takes fresh addresses first, then ones it dropped as unreachable
   * (a lone dead address is retried rather than leaving the slot empty);
   * when still short, the name is resolved again after RESOLVE_RETRY_S.
   */
  addResolved(source: number | string, addresses: string[], now: number): Action[] {
    const cfg = typeof source === "number"
      ? this.opts.sources[source]
      : this.opts.sources.find((s) => sourceKey(s) === source);
    if (!cfg) return this.#flush(); // removed by a reload meanwhile
    const key = sourceKey(cfg);
    const { host: name, port } = splitHostPort(cfg.address, this.opts.defaultPort ?? 123);
    const members = () =>
      [...this.associations.values()].filter((a) => this.#origin.get(a.id) === key);
    let want = (cfg.kind === "pool" ? cfg.maxSources : 1) - members().length;
    const dropped = this.#dropped.get(key) ?? new Set<string>();
    const ips = [...new Set(addresses.map(canonicalIp))]
      .filter((ip) => !this.associations.has(sourceId(ip, port)));
    const fresh = ips.filter((ip) => !dropped.has(sourceId(ip, port)));
    const stale = ips.filter((ip) => dropped.has(sourceId(ip, port)));
    for (const ip of [...fresh, ...stale]) {
      if (want <= 0) break;
      dropped.delete(sourceId(ip, port));
      this.#add(cfg, ip, port, cfg.kind === "pool" ? name : "", now);
      want--;
    }
    if (want > 0 && !this.#pending.some((p) => p.key === key)) {
      this.#pending.push({ key, name, port, at: now + RESOLVE_RETRY_S });
    }
    return this.#flush();
  }

  /** Emits `resolve` actions for names whose time has come. */
  #resolveDue(now: number): void {
    const due = this.#pending.filter((p) => p.at <= now);
    this.#pending = this.#pending.filter((p) => p.at > now);
    for (const p of due) {
      const index = this.opts.sources.findIndex((s) => sourceKey(s) === p.key);
      const cfg = this.opts.sources[index];
      if (!cfg) continue;
      const have = [...this.associations.values()].filter((a) => this.#origin.get(a.id) === p.key)
        .length;
      const want = (cfg.kind === "pool" ? cfg.maxSources : 1) - have;
      if (want <= 0) continue;
      this.#out.push({
        kind: "resolve",
        name: p.name,
        port: p.port,
        sourceIndex: index,
        source: p.key,
        want,
      });
    }
  }

  /** The configured symmetric peers' addresses. */
  peerHosts(): string[] {
    return [...this.associations.values()].filter((a) => a.opts.kind === "peer").map((a) =>
      a.opts.host
    );
  }

  /** Served time at raw time `t`. */
  #served(t: number): number {
    return this.clock.steersKernel ? t : t + correctionValue(this.discipline.model, t);
  }

  /** Raw time at which served time reaches `s` (10 µs after, so a timer never falls short). */
  #rawAt(s: number): number {
    if (this.clock.steersKernel) return s + 1e-5;
    // served(r) = r + offset + freq (r − epoch) = s, solved for r.
    const m = this.discipline.model;
    return (s - m.offset + m.freq * m.epoch) / (1 + m.freq) + 1e-5;
  }

  /**
   * The leap second (lib/ntp/leap.ts, chrony's rule), after every update
   * at raw time `now`: first carries out an armed leap whose midnight has
   * passed — a kernel clock inserts or deletes the second itself; the
   * virtual clock steps its correction by one second (served time repeats
   * 23:59:59, as Linux does) and every stored sample is moved by the same
   * second, since the sources' time scale stepped with ours. Then decides
   * what to announce at the served date (only on 30 June or 31 December:
   * the leap file for the days it covers, else the majority of the
   * selectable sources) and arms the clock's flag on the day, clearing it
   * on any other day (after the leap).
   */
  #leapTick(now: number): void {
    let served = this.#served(now);
    const table = this.opts.leapTable ?? null;
    if (table && leapTableExpired(table, served)) {
      this.#log(
        "leapfile-expired",
        "warning",
        `${table.name}: expired on ${
          utcDate(table.expires)
        }; leap seconds after it come from the sources`,
      );
    }
    const armed = this.#armed;
    if (
      (armed === Leap.insert || armed === Leap.delete) && served >= this.#leapAt &&
      this.#leapDone !== this.#leapAt
    ) {
      this.#leapDone = this.#leapAt;
      const dy = armed === Leap.insert ? -1 : 1;
      const what = armed === Leap.insert ? "inserted" : "deleted";
      if (!this.clock.steersKernel) {
        this.discipline.shift(dy);
        for (const a of this.associations.values()) {
          a.stats.shift(dy);
          a.filter.shift(dy);
        }
        this.clock.apply(this.discipline.model, now, dy);
        served = this.#served(now);
      }
      this.#out.push({
        kind: "log",
        level: "info",
        message: `Leap second ${what} at ${utcDate(this.#leapAt - 1)} ${
          armed === Leap.insert ? "23:59:60" : "23:59:59"
        } UTC${this.clock.steersKernel ? " (by the kernel)" : ""}`,
      });
    }
    const following = this.#synced && !this.#local;
    if (following) {
      this.#leap = decideLeap(served, this.#orphanParent ? Leap.none : this.#vote, table);
    }
    const arm = following && (this.#leap === Leap.insert || this.#leap === Leap.delete)
      ? this.#leap
      : Leap.none;
    if (arm !== this.#armed && !(this.#armed === null && !this.#synced)) this.#arm(arm, served);
    this.#smearTick(served);
  }

  /** Sets the clock's leap flag to `arm` at served time `served`, with its log line. */
  #arm(arm: number, served: number): void {
    const table = this.opts.leapTable ?? null;
    this.clock.setLeap(arm);
    if (arm !== Leap.none) {
      this.#leapAt = endOfDay(served);
      const from = table && this.#leapAt <= table.expires ? table.name : "the sources";
      this.#out.push({
        kind: "log",
        level: "info",
        message: `Leap second (${
          arm === Leap.insert ? "insert" : "delete"
        }) announced and armed for ${utcDate(served)} UTC midnight, from ${from}`,
      });
    } else if (this.#armed === Leap.insert || this.#armed === Leap.delete) {
      this.#out.push({ kind: "log", level: "info", message: "Leap second flag cleared" });
    }
    this.#armed = arm;
  }

  /**
   * The leap smear (`opts.leapSmear`), at served (UTC) time `served`: starts
   * one for an armed leap (centred on its midnight; a leap learned inside
   * the window is smeared from now on, over what is left of the window),
   * ends it once the clock carried the leap out and the window is over, and
   * drops it (a step of the served time, logged) when the leap is withdrawn
   * before its midnight.
   */
  #smearTick(served: number): void {
    const w = this.opts.leapSmear ?? 0;
    const armed = this.#armed;
    const sm = this.#smear;
    if (
      !sm && w > 0 && (armed === Leap.insert || armed === Leap.delete) &&
      this.#leapDone !== this.#leapAt
    ) {
      const at = this.#leapAt;
      const from = Math.max(at - w / 2, served);
      const to = at + w / 2;
      if (from >= at) return; // too late to smear before the midnight: the leap is served as is
      this.#smear = { at, from, to, change: armed === Leap.insert ? 1 : -1 };
      this.#out.push({
        kind: "log",
        level: "info",
        message: `Leap smear for clients from ${utcTime(from)} to ${utcTime(to)} (${
          Math.round(to - from)
        } s, linear); clients are sent LI 0`,
      });
      return;
    }
    if (!sm) return;
    if (this.#leapDone === sm.at) {
      if (served + sm.change >= sm.to) {
        this.#smear = null;
        this.#out.push({ kind: "log", level: "info", message: "Leap smear ended" });
      }
    } else if (armed !== Leap.insert && armed !== Leap.delete && served < sm.at) {
      this.#smear = null;
      const off = smearRamp(sm.from, sm.to, sm.change, served);
      this.#out.push({
        kind: "log",
        level: "warning",
        message: `Leap second withdrawn: smear dropped, served time steps by ${
          (-off).toFixed(3)
        } s`,
      });
    }
  }

  #add(cfg: EngineSource, host: string, port: number, pool: string, now: number): void {
    this.#origin.set(sourceId(host, port), sourceKey(cfg));
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
        xleave: cfg.xleave && cfg.kind !== "peer",
      },
      now,
      this.#rand,
    );
    a.setPoll(this.#sysPoll);
    this.associations.set(a.id, a);
  }

  #take(actions: SourceAction[], now: number): void {
    for (const act of actions) {
      if (act.kind === "demobilize") {
        const key = this.#origin.get(act.source);
        const a = this.associations.get(act.source);
        const cfg = this.opts.sources.find((s) => sourceKey(s) === key);
        if (a && key && cfg && a.opts.pool !== "") {
          // A denied or unreachable server stays listed (state shows why); a pool member goes.
          this.#drop(act.source);
          // Replace a lost pool member with a fresh address from a new lookup.
          let d = this.#dropped.get(key);
          if (!d) this.#dropped.set(key, d = new Set());
          d.add(act.source);
          this.#out.push({
            kind: "log",
            level: "info",
            message: `${act.source}: ${act.reason}, replacing it`,
          });
          this.#pending = this.#pending.filter((p) => p.key !== key);
          this.#pending.push({ key, name: a.opts.pool, port: a.opts.port, at: now });
          this.#resolveDue(now);
        }
      }
      this.#out.push(act);
    }
  }

  /** Forgets an association (demobilised, or its source removed from the config). */
  #drop(id: string): void {
    const a = this.associations.get(id);
    this.associations.delete(id);
    this.#origin.delete(id);
    if (a && this.#sysPeer === a) this.#sysPeer = null;
  }

  #flush(): Action[] {
    this.#out.push({ kind: "setTimer", at: this.nextTimer() });
    const out = this.#out;
    this.#out = [];
    return out;
  }

  #context() {
    const model = () => this.discipline.model;
    const corr = (t: number) => correctionValue(model(), t);
    return {
      served: (t: number) => this.#served(t),
      correction: corr,
      residual: (s: Sample) => s.y - corr(s.t),
      precision: this.opts.precision,
      system: this.systemVars(),
      rand: this.#rand,
    };
  }

  /** Our system variables (what the server and our peer packets say). */
  systemVars(): {
    leap: number;
    stratum: number;
    refid: number;
    refTime: number;
    rootDelay: number;
    rootDisp: number;
  } {
    const local = this.opts.localStratum ?? 0;
    if (this.#local && local > 0) {
      return fallbackVars({ kind: "local", stratum: local, refid: REFID_LOCL }, this.#localRefTime);
    }
    if (!this.#synced) {
      const { leap, stratum, refid, refTime, rootDelay, rootDisp } = unsyncedState(0);
      return { leap, stratum, refid, refTime, rootDelay, rootDisp };
    }
    return {
      leap: this.#leap,
      stratum: this.#stratum,
      refid: this.#refid,
      refTime: this.#refTime,
      rootDelay: this.#rootDelay,
      rootDisp: this.#rootDisp,
    };
  }

  /**
   * The SystemState the server workers answer clients with: `clockState()`
   * plus the leap smear under way, and — whenever `leapSmear` is on — LI 0
   * instead of a leap (a smearing server never announces the leap: its
   * clients must not insert it themselves).
   */
  systemState(): SystemState {
    const s = this.clockState();
    if ((this.opts.leapSmear ?? 0) > 0 && (s.leap === Leap.insert || s.leap === Leap.delete)) {
      s.leap = Leap.none;
    }
    const sm = this.#smear;
    if (sm) {
      if (s.leap === Leap.insert || s.leap === Leap.delete) s.leap = Leap.none;
      s.smearFrom = sm.from;
      s.smearTo = sm.to;
      s.smearChange = sm.change;
      s.smearStepped = this.#leapDone === sm.at ? 1 : 0;
    }
    return s;
  }

  /**
   * Our system state on UTC, without the smear: what our own packets to
   * sources and peers are stamped with (they stay on UTC and are told of
   * the leap).
   */
  clockState(): SystemState {
    const s = unsyncedState(this.opts.precision);
    const v = this.systemVars();
    const m = this.discipline.model;
    return {
      ...s,
      leap: v.leap,
      stratum: v.stratum,
      refid: v.refid,
      refTime: v.refTime,
      rootDelay: v.rootDelay,
      rootDisp: v.rootDisp,
      corrOffset: this.clock.steersKernel ? 0 : m.offset,
      corrFreq: this.clock.steersKernel ? 0 : m.freq,
      corrEpoch: this.clock.steersKernel ? 0 : m.epoch,
    };
  }

  /** True while serving as an orphan (parent or child). */
  get orphan(): boolean {
    return this.#orphanParent || this.#orphanChild;
  }

  /** True when the orphan election made us the parent. */
  get orphanParent(): boolean {
    return this.#orphanParent;
  }

  /** Candidate view of an association at `now`, or null when it is not fit. */
  #candidate(a: Association, now: number): Candidate | null {
    // No reply to the last three polls: unfit (RFC 5905 poll() adds a MAXDISP
    // sample to the filter for the same effect).
    if (
      a.state !== "active" || (a.reach & 7) === 0 || a.leap === Leap.unsync || a.stratum >= MAXSTRAT
    ) {
      return null;
    }
    const ctx = this.#context();
    const f = a.filter.evaluate(now, ctx.residual, this.opts.precision);
    if (!f) return null;
    // Loop: the source is synchronised to us.
    if (a.stratum > 1 && a.refid === this.opts.localRefid && this.opts.localRefid !== 0) {
      return null;
    }
    const rootDist = Math.max(
      MINDIST,
      (a.rootDelay + f.delay) / 2 + a.rootDisp + f.disp + f.jitter + PHI * (now - f.sample.t),
    );
    if (rootDist >= MAXDIST + PHI * 2 ** a.hpoll) return null;
    const offset = this.#predicted(a, now) ?? f.offset;
    // Combine weight from the static part of the distance only: the aging
    // terms grow between polls and would make the combined offset jump
    // whenever one source's sample ages or refreshes.
    const weight = 1 / Math.max(MINDIST, (a.rootDelay + f.delay) / 2 + a.rootDisp);
    return {
      id: a.id,
      offset,
      rootDist,
      weight,
      stratum: a.stratum,
      jitter: f.jitter,
      prefer: a.opts.prefer,
      leap: a.leap,
    };
  }

  /** The source's regression-predicted offset against our correction at `now`. */
  #predicted(a: Association, now: number): number | null {
    const p = a.stats.predict(now, this.discipline.freq);
    return p ? p.y - correctionValue(this.discipline.model, now) : null;
  }

  /** An orphan parent announces the orphan stratum and its own address as refid. */
  #isOrphanParent(a: Association): boolean {
    return this.opts.orphanStratum > 0 && a.stratum === this.opts.orphanStratum &&
      a.refid === refidOfAddress(a.opts.host);
  }

  /** The inputs of the fallback system state (fallback.ts), from the options in force. */
  #fallbackConfig(): FallbackConfig {
    return {
      localStratum: this.opts.localStratum ?? 0,
      orphanStratum: this.opts.orphanStratum,
      orphanWait: this.opts.orphanWait,
      localRefid: this.opts.localRefid,
    };
  }

  /**
   * Selection and, when `fresh` (the source that just gave a new sample) is
   * one of the combined sources, a clock update; then the fallback state
   * whenever no real source gives us our variables.
   */
  #update(now: number, fresh: string | null): void {
    this.#select(now, fresh);
    this.#settle(now);
    this.#leapTick(now);
  }

  /**
   * `local_stratum` (fallback.ts): whenever our variables come from no
   * selected source (nothing selected yet, the clock not yet set from the
   * system peer, holdover, a stratum-15 system peer), we announce the
   * local state with a reference time of now. Orphan mode, when it won,
   * has set its own variables and counts as a source here.
   */
  #settle(now: number): void {
    const tracking = this.#synced && (this.#sysPeer !== null || this.#orphanParent);
    if (tracking || (this.opts.localStratum ?? 0) <= 0) {
      this.#local = false;
      return;
    }
    // Stale upstream variables are no time to tell the kernel about.
    if (this.#synced) this.#setSynced(false);
    this.#local = true;
    this.#localRefTime = this.#served(now);
  }

  #select(now: number, fresh: string | null): void {
    const orphanOn = orphanEnabled(this.#fallbackConfig());
    const normal: Candidate[] = [];
    const orphans: { a: Association; c: Candidate }[] = [];
    /** Peers that count in the intersection and pull, but are not followed. */
    const pullOnly = new Set<string>();
    const v = this.systemVars();
    const ourStratum = isSynchronised(v) ? v.stratum : MAXSTRAT;
    const votes: number[] = [];
    for (const a of this.associations.values()) {
      const c = this.#candidate(a, now);
      if (!c) continue;
      if (a.opts.kind === "peer" && !this.#followable(a, now, ourStratum)) pullOnly.add(a.id);
      // Symmetric peers at or above the orphan stratum take part in the orphan
      // election only (that also ends the stratum count-up of peers that lost
      // their upstream together); servers at any stratum are ordinary sources.
      if (orphanOn && a.opts.kind === "peer" && a.stratum >= this.opts.orphanStratum) {
        if (this.#isOrphanParent(a)) orphans.push({ a, c });
        continue;
      }
      // Leap votes: every selectable source that could be followed (not a sibling that only pulls).
      if (!pullOnly.has(a.id)) votes.push(c.leap);
      normal.push(c);
    }
    // Hold the first update until every source had a chance to answer, so a
    // lone fast falseticker cannot set the clock.
    const gathering = this.discipline.updates === 0 && now < this.#started + GATHER_S &&
      [...this.associations.values()].some((a) => a.state === "active" && a.filter.output === null);
    this.#selectableVote = majorityLeapOf(votes);
    let sel = normal.length > 0
      ? selectSources(normal, {
        minSources: this.opts.minSources,
        previous: this.#sysPeer?.id ?? null,
      })
      : null;
    if (sel && sel.combined.some((c) => pullOnly.has(c.id))) {
      // Follow only followable sources; pull-only peers that survived stay
      // backups (tally `#`) and still pull.
      const backups = sel.survivors.filter((c) => pullOnly.has(c.id));
      const follow = normal.filter((c) => !pullOnly.has(c.id) && !sel!.falsetickers.includes(c.id));
      const inner = follow.length > 0
        ? selectSources(follow, {
          minSources: this.opts.minSources,
          previous: this.#sysPeer?.id ?? null,
        })
        : null;
      sel = {
        falsetickers: [...sel.falsetickers, ...(inner?.falsetickers ?? [])],
        outliers: [...sel.outliers.filter((id) => !pullOnly.has(id)), ...(inner?.outliers ?? [])],
        survivors: [...(inner?.survivors ?? []), ...backups],
        combined: inner?.combined ?? [],
        systemPeer: inner?.systemPeer ?? null,
        offset: inner?.offset ?? 0,
        jitter: inner?.jitter ?? 0,
        leap: inner?.leap ?? 0,
      };
    }
    if (sel && !sel.systemPeer) {
      this.#selection = sel;
      sel = null;
    }
    this.#orphanChild = false;
    if (sel) {
      this.#lastUpstream = now;
      this.#orphanParent = false;
    } else {
      // No real source: the fallback (fallback.ts). Orphan mode, once it may,
      // elects the lowest refid among orphan parents (us included) as the
      // parent and everyone else follows it; `local_stratum` is applied by
      // #settle.
      const f = chooseFallback(
        this.#fallbackConfig(),
        now - this.#lastUpstream,
        orphans.map((o) => o.a.refid),
      );
      if (f.kind === "orphan-child") {
        sel = selectSources([orphans[f.parent]!.c], { minSources: 1 });
        this.#orphanChild = true;
        this.#orphanParent = false;
      } else if (f.kind === "orphan-parent") {
        if (!this.#orphanParent) {
          this.#orphanParent = true;
          this.#log(
            "orphan",
            "info",
            `No source below stratum ${this.opts.orphanStratum}: orphan parent`,
          );
        }
      }
    }
    if (!sel && !this.#orphanParent) {
      this.#selection = this.#selection && normal.length > 0 ? this.#selection : null;
      this.#sysPeer = null;
      return; // holdover: keep the last system variables
    }
    if (!sel) {
      // Orphan parent: free-run, announce the orphan stratum.
      this.#selection = null;
      this.#sysPeer = null;
      this.#setSynced(true);
      const vars = fallbackVars(
        { kind: "orphan-parent", stratum: this.opts.orphanStratum, refid: this.opts.localRefid },
        this.#served(now),
      );
      this.#stratum = vars.stratum;
      this.#refid = vars.refid;
      this.#leap = vars.leap;
      this.#rootDelay = vars.rootDelay;
      this.#rootDisp = vars.rootDisp;
      this.#refTime = vars.refTime;
      return;
    }
    this.#selection = sel;
    const peer = this.associations.get(sel.systemPeer!.id)!;
    this.#sysPeer = peer;
    if (this.#logged.has("orphan") && !this.#orphanChild && !this.#orphanParent) {
      this.#logged.delete("orphan");
      this.#out.push({
        kind: "log",
        level: "info",
        message: "Upstream reachable again: leaving orphan mode",
      });
    }
    // A fresh sample from any combined source drives the discipline: the
    // combined regression prediction becomes the new correction.
    const modelFreq = this.discipline.freq;
    let w = 0, rSum = 0, newest = -Infinity;
    const freqs: FrequencyEstimate[] = [];
    for (const c of sel.combined) {
      const a = this.associations.get(c.id)!;
      const p = a.stats.predict(now, modelFreq);
      if (!p) continue;
      newest = Math.max(newest, a.lastSample);
      const wi = c.weight ?? 1 / c.rootDist;
      w += wi;
      rSum += wi * c.offset;
      if (a.stats.hasFreq) freqs.push({ freq: p.freq, err: a.stats.fit!.bErr });
    }
    const combinedFreq = combineFrequencies(freqs);
    let offset = w > 0 ? rSum / w : 0;
    const pull = this.#peerPull(sel);
    const bound = PULL_BOUND * sel.combined.reduce((m, c) => m + c.jitter, 0) /
      Math.max(1, sel.combined.length);
    if (pull && w > 0) {
      offset += Math.max(-bound, Math.min(bound, PEER_PULL * (pull.offset - offset)));
    }
    // Only a new sample from a combined source updates the clock. Not a
    // change of the combined set alone: when an upstream drops out (or a
    // pruned one comes back) with no new measurement, re-combining stale
    // predictions of sources with different errors would shift the clock.
    // An orphan child that never set its clock may also start from the
    // parent's samples it already has, when the election is decided.
    const freshCombined = newest > this.#lastSampleT &&
      ((this.discipline.updates === 0 && this.#orphanChild) ||
        sel.combined.some((c) => c.id === fresh));
    // A new sample from a pulling peer re-applies the same upstream estimate
    // with a new pull: in holdover (upstream samples stopped) the peers keep
    // the cluster together. It is no upstream update: the reference time,
    // which tells peers how fresh our upstream is, stays.
    const freshPull = !freshCombined && fresh !== null && pull !== null &&
      pull.ids.includes(fresh) && this.discipline.updates > 0;
    if (gathering || (!freshCombined && !freshPull) || w === 0) {
      // Announce a stratum only once the clock has been set: peers that
      // saw us "synchronised" with the start-up error would take it as time.
      if (this.discipline.updates > 0) this.#refreshVars(sel, peer);
      return;
    }
    if (freshCombined) this.#lastSampleT = newest;
    // A pull-only update nudges the offset toward the peers and keeps the
    // frequency: the upstream estimate has not changed.
    const nudge = freshPull && pull
      ? Math.max(-bound, Math.min(bound, PEER_PULL * pull.offset))
      : offset;
    const y = correctionValue(this.discipline.model, now) + nudge;
    const freq = freshPull ? modelFreq : combinedFreq?.freq ?? modelFreq;
    const prevUpdate = this.discipline.lastUpdate;
    const res = this.discipline.update(now, y, freq, combinedFreq?.skew ?? 1e-5);
    if (res.kind === "panic") {
      this.counters.panic++;
      this.#log(
        "panic",
        "warning",
        `Offset ${res.offset.toFixed(3)} s exceeds the panic threshold; not applied`,
      );
      return;
    }
    if (res.kind === "spike") {
      this.counters.spikes++;
      this.#log(
        "spike",
        "warning",
        `Offset ${res.offset.toFixed(3)} s above the step threshold; waiting before a step`,
      );
      return;
    }
    if (res.kind === "step") {
      this.counters.steps++;
      this.#out.push({
        kind: "log",
        level: "warning",
        message: `Clock stepped by ${res.offset.toFixed(6)} s`,
      });
    }
    this.counters.clock_updates++;
    this.#updateInterval = prevUpdate > 0 ? now - prevUpdate : 0;
    this.clock.apply(this.discipline.model, now, res.kind === "step" ? res.offset : 0);
    this.#lastOffset = res.offset;
    this.#jitter = sel.jitter;
    if (freshCombined) this.#refTime = this.#served(now);
    this.#adjustPoll(res.offset);
    this.#refreshVars(sel, peer);
    if (this.opts.stats) {
      const served = this.#served(now);
      this.#out.push({
        kind: "stats",
        file: "loopstats",
        day: statsTime(served).day,
        line: loopstatsLine(served, {
          offset: res.offset,
          freqPpm: this.discipline.freq * 1e6,
          jitter: this.#jitter,
          wanderPpm: this.discipline.skew * 1e6,
          poll: this.#sysPoll,
        }),
      });
    }
  }

  /**
   * Whether a symmetric peer may be followed (become the system peer), or
   * only counts in the intersection and pulls: we follow a peer that is
   * closer to the reference than we are (a lower stratum), or one we
   * `prefer`; while we are an orphan, its clock must also have been updated
   * from its own upstream within `orphan_wait_s`. Peers at our stratum are siblings, not references; and a
   * peer in holdover (its reference time growing old) is no better than we
   * are. Without this rule, peers that lose their upstreams together follow
   * each other and count their strata up (2, 3, … 7) before orphan mode,
   * shifting each node's time at every hop.
   */
  #followable(a: Association, now: number, ourStratum: number): boolean {
    if (a.opts.prefer) return true;
    if (a.stratum >= ourStratum) return false;
    if (!this.orphan) return true;
    const age = this.#served(now) - a.refTime;
    return a.refTime > 0 && age <= Math.max(this.opts.orphanWait, 2 ** a.hpoll);
  }

  /**
   * The mean offset of the symmetric peers that selection kept as backups
   * (truechimers one stratum below the combined upstreams), or null.
   */
  #peerPull(sel: Selection): { offset: number; ids: string[] } | null {
    if (sel.combined.some((c) => this.associations.get(c.id)?.opts.kind === "peer")) return null;
    if (sel.combined.some((c) => c.prefer)) return null;
    let n = 0, sum = 0;
    const ids: string[] = [];
    for (const c of sel.survivors) {
      if (sel.combined.includes(c)) continue;
      const a = this.associations.get(c.id);
      if (!a || a.opts.kind !== "peer") continue;
      const recent = a.filter.stages.slice(0, 3).sort((x, y) => x.delay - y.delay)[0];
      if (!recent) continue;
      n++;
      sum += this.#context().residual(recent);
      ids.push(a.id);
    }
    return n > 0 ? { offset: sum / n, ids } : null;
  }

  #refreshVars(sel: Selection, peer: Association): void {
    const c = sel.systemPeer!;
    const f = peer.filter.output;
    if (peer.stratum + 1 >= MAXSTRAT) {
      // Following a stratum-15 server would make us 16: unsynchronised
      // everywhere (isSynchronised), never "stratum 16, leap 0".
      this.#setSynced(false);
      return;
    }
    this.#setSynced(true);
    // The leap indicator itself is decided by #leapTick (the date rule).
    this.#vote = this.#selectableVote;
    if (this.#leap === Leap.unsync) this.#leap = Leap.none;
    this.#stratum = Math.min(MAXSTRAT, peer.stratum + 1);
    this.#refid = refidOfAddress(peer.opts.host);
    this.#rootDelay = peer.rootDelay + (f?.delay ?? 0);
    this.#rootDisp = peer.rootDisp + (f?.disp ?? 0) + Math.max(this.#jitter, c.jitter) +
      Math.abs(this.#lastOffset);
  }

  #setSynced(v: boolean): void {
    if (v !== this.#synced) {
      this.#synced = v;
      this.clock.setSync(v, this.#rootDelay / 2 + this.#rootDisp, this.#jitter);
    }
  }

  /**
   * Poll adjustment: lengthen the poll after a run of updates whose offset
   * is within the expected noise, shorten it when an offset is well outside.
   */
  #adjustPoll(offset: number): void {
    const noise = Math.max(this.#jitter, 1e-6);
    const enough = [...this.associations.values()].every((a) =>
      a.reach === 0 || a.stats.points.length >= 6
    );
    if (Math.abs(offset) < 3 * noise && enough) {
      if (++this.#goodUpdates >= 4) {
        this.#goodUpdates = 0;
        this.#setSysPoll(this.#sysPoll + 1);
      }
    } else if (Math.abs(offset) > 6 * noise) {
      this.#goodUpdates = 0;
      this.#setSysPoll(this.#sysPoll - 1);
    }
  }

  #setSysPoll(p: number): void {
    this.#sysPoll = Math.max(0, Math.min(17, p));
    for (const a of this.associations.values()) a.setPoll(this.#sysPoll);
  }

  #log(key: string, level: "info" | "warning", message: string): void {
    if (this.#logged.has(key)) return;
    this.#logged.add(key);
    this.#out.push({ kind: "log", level, message });
  }

  #tally(a: Association): Tally {
    const s = this.#selection;
    if (!s) return " ";
    if (this.#sysPeer === a) return "*";
    if (s.falsetickers.includes(a.id)) return "x";
    if (s.outliers.includes(a.id)) return "-";
    if (s.combined.some((c) => c.id === a.id)) return "+";
    if (s.survivors.some((c) => c.id === a.id)) return "#";
    return " ";
  }

  /** Status for `/status` and `edge-time peers`, at raw time `now`. */
  report(now: number): EngineReport {
    const v = this.systemVars();
    const ctx = this.#context();
    const sources: SourceReport[] = [...this.associations.values()].map((a) => {
      const f = a.filter.evaluate(now, ctx.residual, this.opts.precision);
      return {
        tally: this.#tally(a),
        address: a.id,
        kind: a.opts.pool !== "" ? "pool" : a.opts.kind,
        refid: a.stratum >= MAXSTRAT ? "" : formatRefid(a.refid, a.stratum),
        stratum: a.stratum,
        when_s: a.lastSample < 0 ? -1 : Math.max(0, Math.round(now - a.lastSample)),
        poll: a.hpoll,
        reach: a.reach,
        delay_s: f?.delay ?? 0,
        offset_s: f?.offset ?? 0,
        jitter_s: f?.jitter ?? 0,
        state: a.state,
        interleaved: a.interleaved,
        counters: { ...a.counters },
      };
    });
    return {
      system: {
        synchronised: isSynchronised(v),
        leap: v.leap,
        stratum: v.stratum,
        refid: v.leap === Leap.unsync ? "" : formatRefid(v.refid, v.stratum),
        system_peer: this.#sysPeer?.id ?? "",
        ref_time: v.refTime,
        offset_s: this.#lastOffset,
        frequency_ppm: this.discipline.freq * 1e6,
        skew_ppm: this.discipline.skew * 1e6,
        root_delay_s: v.rootDelay,
        root_dispersion_s: v.rootDisp,
        update_interval_s: this.#updateInterval,
        orphan: this.orphan,
      },
      sources,
      counters: { ...this.counters },
    };
  }
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
function dedupe(sources: EngineSource[]): EngineSource[] {
  const seen = new Set<string>();
  return sources.filter((s) => !seen.has(sourceKey(s)) && seen.add(sourceKey(s)) !== undefined);
}

function bitCount(v: number): number {
  let n = 0;
  for (let r = v; r; r >>= 1) n += r & 1;
  return n;
}
