/**
 * The peer engine: the coordinator that owns the engine's state and calls
 * its units. Pure: every call takes the raw time `now` (Unix seconds read
 * from the system clock by the driver) and a random source, and returns
 * actions for the driver (lib/io/engine_driver.ts, lib/sim/) to carry out.
 *
 * Pipeline, one step per file as in chrony: source.ts (protocol, reach,
 * poll; RFC 5905 §9–10) → filter.ts (clock filter, §10) → select.ts
 * (intersection, cluster) → system.ts (candidates, selection, combine,
 * system variables; §11.2) → discipline.ts (regression) → clock.ts (Clock
 * seam). Beside it: associations.ts (mobilise, pool refill, resolve,
 * reload), orphan.ts and fallback.ts (orphan mode, local stratum),
 * peer_pull.ts (the peer pull policy), leap_smear.ts (leap second and
 * smear), stats.ts (loopstats/peerstats lines).
 */
import { formatRefid, Leap, Mode, type NtpPacket, parsePacket } from "../ntp/packet.ts";
import { isSynchronised, MAXSTRAT, type SystemState, unsyncedState } from "../ntp/system_state.ts";
import { majorityLeapOf } from "../ntp/leap.ts";
import type { MacCheck } from "../contracts.ts";
import type { AuthKeys } from "../auth/keys.ts";
import { checkMac } from "../auth/mac.ts";
import type { Action } from "./actions.ts";
import {
  AssociationSet,
  dedupe,
  RESOLVE_RETRY_S,
  sourceEndpoint,
  sourceKey,
  splitHostPort,
} from "./associations.ts";
import { type Clock, correctionValue } from "./clock.ts";
import { Discipline } from "./discipline.ts";
import { chooseFallback, fallbackVars, orphanEnabled, REFID_LOCL } from "./fallback.ts";
import type { Sample } from "./filter.ts";
import { LeapKeeper } from "./leap_smear.ts";
import { applyReconfig, type EngineOptions, type EngineReconfig } from "./options.ts";
import { fallbackConfig, followable } from "./orphan.ts";
import { admitBroadcast } from "./broadcast.ts";
import { PEER_PULL, PULL_BOUND } from "./peer_pull.ts";
import { canonicalIp, refidOfAddress } from "./refid.ts";
import type { EngineCounters, EngineReport, SourceReport } from "./report.ts";
import { type Candidate, type Selection, selectSources } from "./select.ts";
import {
  Association,
  type EngineSource,
  type SourceAction,
  sourceId,
  type Transmit,
} from "./source.ts";
import { loopstatsLine, peerstatsLine, peerStatusWord, SELECT_CODE, statsTime } from "./stats.ts";
import {
  candidateOf,
  classifyCandidates,
  clockStateOf,
  followedVars,
  planClockUpdate,
  pollStep,
  predictedOffset,
  selectFollowable,
  sourceReportOf,
  type SystemVars,
  tallyOf,
} from "./system.ts";

export type { Action, EngineOptions, EngineReconfig, EngineSource, SystemVars };
export { PEER_PULL, PULL_BOUND, RESOLVE_RETRY_S, sourceKey, splitHostPort };

/** Wait after start before the first clock update unless every source has answered. */
export const GATHER_S = 4;
/** Seconds within which the peers hear of our orphan parent claim (see `Association.announce`). */
export const ANNOUNCE_SPREAD_S = 1;

const NO_MAC: MacCheck = { kind: "none" };

/** The engine. */
export class Engine {
  readonly opts: EngineOptions;
  readonly clock: Clock;
  readonly discipline: Discipline;
  readonly #set: AssociationSet;
  /** Association id → association (the association set's map). */
  readonly associations: Map<string, Association>;
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
    broadcast_received: 0,
    broadcast_unauthenticated: 0,
    broadcast_bad_mac: 0,
    broadcast_bad_mode: 0,
    broadcast_full: 0,
  };
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
  /** Our system variables while synchronised (`systemVars` gives the ones in force). */
  #vars: SystemVars = {
    leap: Leap.unsync,
    stratum: MAXSTRAT,
    refid: 0,
    refTime: 0,
    rootDelay: 0,
    rootDisp: 0,
  };
  /** Leap indicator of the majority of the selectable sources at the last selection. */
  #selectableVote: number = Leap.none;
  /** The vote in force: taken from the selection that set our variables. */
  #vote: number = Leap.none;
  /** The leap second armed, carried out and smeared (leap_smear.ts). */
  readonly #leapKeeper = new LeapKeeper();
  #jitter = 0;
  #lastOffset = 0;
  #lastSampleT = -Infinity;
  #updateInterval = 0;
  #sysPoll: number;
  #goodUpdates = 0;
  #logged = new Set<string>();
  #keys: AuthKeys = { keys: new Map(), trusted: new Set() };
  #out: Action[] = [];
  #rand: () => number = Math.random;
  #lastNow = 0;

  constructor(opts: EngineOptions, clock: Clock, now: number) {
    this.opts = { ...opts, sources: dedupe(opts.sources) };
    this.clock = clock;
    this.#set = new AssociationSet(opts.defaultPort ?? 123, (a) => {
      if (a && this.#sysPeer === a) this.#sysPeer = null;
    });
    this.associations = this.#set.map;
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
    for (const cfg of this.opts.sources) this.#set.mobilize(cfg, now, this.#sysPoll, this.#rand);
    // The fallback (local_stratum) holds from the first packet we send or serve.
    this.#settle(now);
  }

  /**
   * A reload (SIGHUP) at raw time `now`: sources are matched by `sourceKey`.
   * Removed ones are demobilised; added ones mobilised (names resolved);
   * changed ones (iburst, prefer, polls, max_sources) keep their
   * associations and take the new options; kept ones are not touched, so
   * their reach, clock filter, regression and poll survive
   * (associations.ts). Thresholds, `min_sources` and the orphan settings
   * apply from the next update.
   */
  reconfigure(next: EngineReconfig, now: number): Action[] {
    this.#lastNow = Math.max(this.#lastNow, now);
    const before = this.opts.sources;
    const after = dedupe(next.sources);
    this.#set.reconfigure(
      before,
      after,
      now,
      { poll: this.#sysPoll, peer: this.#sysPeer, rand: this.#rand },
      this.#out,
    );
    this.opts.sources = after;
    const o = this.opts;
    const orphanBefore = { stratum: o.orphanStratum, enabled: orphanEnabled(fallbackConfig(o)) };
    // A reload rereads the leap file: warn about its expiry again only when it changed.
    if (
      next.leapTable !== undefined &&
      JSON.stringify(next.leapTable) !== JSON.stringify(o.leapTable ?? null)
    ) this.#logged.delete("leapfile-expired");
    applyReconfig(o, next);
    this.discipline.opts.stepThreshold = next.stepThreshold;
    this.discipline.opts.panicThreshold = next.panicThreshold;
    if (
      next.orphanStratum !== orphanBefore.stratum ||
      orphanEnabled(fallbackConfig(o)) !== orphanBefore.enabled
    ) {
      if (this.orphan) {
        // Re-elect under the new settings; with orphan mode off an orphan has no time to serve.
        const wasParent = this.#orphanParent;
        this.#orphanParent = this.#orphanChild = false;
        this.#logged.delete("orphan");
        if (wasParent) this.#setSynced(false);
      }
    }
    this.#set.resolveDue(this.opts.sources, now, this.#out);
    this.#update(now, null);
    return this.#flush();
  }

  /** Raw time of the next timer the driver must call `handleTimer` at. */
  nextTimer(): number {
    let t = this.#started + GATHER_S;
    if (t <= this.#lastNow) t = Infinity;
    for (const a of this.associations.values()) t = Math.min(t, a.nextPoll);
    for (const p of this.#set.pending) t = Math.min(t, p.at);
    // An armed leap: be there at its midnight (carry it out, then clear the flag).
    if (this.#leapKeeper.pending) t = Math.min(t, this.#rawAt(this.#leapKeeper.leapAt));
    // Orphan mode and holdover are re-evaluated at least every few seconds.
    return Math.min(t, this.#lastNow + 8);
  }

  /** The timer fired at raw time `now`: poll due sources, re-run selection. */
  handleTimer(now: number, rand: () => number = Math.random): Action[] {
    this.#rand = rand;
    this.#lastNow = now;
    this.#set.resolveDue(this.opts.sources, now, this.#out);
    const ctx = this.#context();
    for (const a of [...this.associations.values()]) {
      if (a.nextPoll > now) continue;
      this.#set.take(a.handleTimer(now, ctx), this.opts.sources, now, this.#out);
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
    // The MAC is checked against the keys in force (the association decides whether it needs one).
    const mac: MacCheck = p.macLength > 0
      ? checkMac(this.#keys.keys, this.#keys.trusted, bytes, bytes.length, p.version)
      : NO_MAC;
    this.#incoming(a, p, t4, sent, mac);
    return this.#flush();
  }

  /** The symmetric keys packets are checked with (key file reread, trusted keys changed). */
  setKeys(keys: AuthKeys): void {
    this.#keys = keys;
    // Broadcast listeners check with the same keys (broadcast.ts `admitBroadcast`).
    this.opts.checkMac = (bytes, length, version) =>
      checkMac(keys.keys, keys.trusted, bytes, length, version);
  }

  /**
   * A packet heard at raw time `t4` on the listener of broadcast source
   * `source` (its `sourceKey`), from `host:port`. It must be mode 5 and
   * authenticated with the source's key (unless the source is `insecure`;
   * broadcast.ts `admitBroadcast`); anything else is counted and dropped,
   * and never mobilises. The first admitted broadcast of a server
   * mobilises an association for it (at most `max_sources` per source),
   * which calibrates the delay with client/server exchanges and then
   * takes a sample from each broadcast (source.ts `handleBroadcast`).
   * Packets from our own address (`localRefid`: a looped-back broadcast)
   * are ignored.
   */
  handleBroadcast(
    source: string,
    host: string,
    port: number,
    bytes: Uint8Array,
    t4: number,
    rand: () => number = Math.random,
  ): Action[] {
    this.#rand = rand;
    this.#lastNow = Math.max(this.#lastNow, t4);
    const cfg = this.opts.sources.find((s) => s.kind === "broadcast" && sourceKey(s) === source);
    if (!cfg) return this.#flush();
    const p = parsePacket(bytes);
    if (typeof p === "string") {
      this.counters.malformed++;
      return this.#flush();
    }
    const mac = this.opts.checkMac?.(bytes, bytes.length, p.version) ?? { kind: "none" };
    const verdict = admitBroadcast(p, mac, {
      key: cfg.key ?? 0,
      insecure: cfg.insecure ?? false,
    });
    if (verdict !== "ok") {
      const counter = verdict === "mode"
        ? "broadcast_bad_mode"
        : verdict === "unauthenticated"
        ? "broadcast_unauthenticated"
        : "broadcast_bad_mac";
      this.counters[counter]++;
      this.#log(
        `broadcast-${verdict} ${source}`,
        "warning",
        `Broadcast listener ${cfg.address}: ${
          verdict === "mode"
            ? `mode ${p.mode} packet`
            : verdict === "unauthenticated"
            ? "packet without a MAC"
            : "packet with a failing MAC"
        } from ${host} dropped (counted; logged once)`,
      );
      return this.#flush();
    }
    const ip = canonicalIp(host);
    if (refidOfAddress(ip) === this.opts.localRefid) return this.#flush(); // our own, looped back
    this.counters.broadcast_received++;
    const id = sourceId(ip, port);
    let a = this.associations.get(id);
    if (!a) {
      if (this.#set.members(source).length >= cfg.maxSources) {
        this.counters.broadcast_full++;
        this.#log(
          `broadcast-full ${source}`,
          "warning",
          `Broadcast listener ${cfg.address}: ${cfg.maxSources} servers heard already (max_sources); ${id} not followed`,
        );
        return this.#flush();
      }
      this.#set.add(cfg, ip, port, "", t4, this.#sysPoll, this.#rand);
      a = this.associations.get(id)!;
      this.#out.push({
        kind: "log",
        level: "info",
        message: `${id}: broadcast server heard on ${cfg.address}: calibrating the delay`,
      });
    } else if (a.opts.kind !== "broadcast") {
      // A configured server or peer at that address: its own exchanges decide.
      return this.#flush();
    }
    const authenticated = mac.kind === "ok" && mac.keyId === (a.opts.key ?? 0);
    this.#received(a, () => a.handleBroadcast(p, t4, this.#context(), authenticated), t4);
    return this.#flush();
  }

  #incoming(
    a: Association,
    p: NtpPacket,
    recv: number,
    sent: Transmit | null,
    mac: MacCheck,
  ): void {
    this.#received(a, () => a.handleIncoming(p, recv, sent, this.#context(), mac), recv);
  }

  /** Runs an association's handling of a packet received at raw time `recv`, then selection. */
  #received(
    a: Association,
    handle: () => { actions: SourceAction[]; fresh: boolean },
    recv: number,
  ): void {
    const before = { ...a.counters };
    const r = handle();
    this.counters.bogus += a.counters.bogus - before.bogus;
    this.counters.replay += a.counters.replay - before.replay;
    this.counters.kod_rate += a.counters.kodRate - before.kodRate;
    this.counters.kod_deny += a.counters.kodDeny - before.kodDeny;
    this.#set.take(r.actions, this.opts.sources, recv, this.#out);
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
            select: SELECT_CODE[tallyOf(this.#selection, this.#sysPeer, a)] ?? 0,
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
    this.#set.addResolved(cfg, addresses, now, this.#sysPoll, this.#rand);
    const key = sourceKey(cfg);
    if (cfg.kind !== "pool" && this.#set.members(key).length === 0) {
      // Every address is another source's association already: say so once, never silently.
      const { port } = sourceEndpoint(cfg, this.#set.defaultPort);
      const taken = addresses.map((ip) => sourceId(canonicalIp(ip), port))
        .find((id) => this.#set.map.has(id));
      if (taken !== undefined) {
        const other = this.#set.origin.get(taken)?.replace(/^\S+ /, "") ?? taken;
        this.#log(
          `duplicate ${key}`,
          "warning",
          `Source ${cfg.address}: its address ${taken} is already source ${other}; skipped (looked up again every ${RESOLVE_RETRY_S} s)`,
        );
      }
    }
    return this.#flush();
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

  /** The leap second and smear (leap_smear.ts), after every update at raw time `now`. */
  #leapTick(now: number): void {
    this.#vars.leap = this.#leapKeeper.tick(now, {
      served: (t) => this.#served(t),
      clock: this.clock,
      discipline: this.discipline,
      associations: this.associations.values(),
      table: this.opts.leapTable ?? null,
      smearWindow: this.opts.leapSmear ?? 0,
      following: this.#synced && !this.#local,
      synced: this.#synced,
      vote: this.#orphanParent ? Leap.none : this.#vote,
      leap: this.#vars.leap,
      log: (level, message, once) => {
        if (once) this.#log(once, level, message);
        else this.#out.push({ kind: "log", level, message });
      },
    });
  }

  #flush(): Action[] {
    this.#out.push({ kind: "setTimer", at: this.nextTimer() });
    const out = this.#out;
    this.#out = [];
    return out;
  }

  /** Residual of a filter sample against our correction now in force, seconds. */
  #residual(s: Sample): number {
    return s.y - correctionValue(this.discipline.model, s.t);
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
  systemVars(): SystemVars {
    const local = this.opts.localStratum ?? 0;
    if (this.#local && local > 0) {
      return fallbackVars({ kind: "local", stratum: local, refid: REFID_LOCL }, this.#localRefTime);
    }
    if (!this.#synced) {
      const { leap, stratum, refid, refTime, rootDelay, rootDisp } = unsyncedState(0);
      return { leap, stratum, refid, refTime, rootDelay, rootDisp };
    }
    return { ...this.#vars };
  }

  /**
   * The SystemState the server workers answer clients with: `clockState()`
   * plus the leap smear under way, and — whenever `leapSmear` is on — LI 0
   * instead of a leap (a smearing server never announces the leap: its
   * clients must not insert it themselves).
   */
  systemState(): SystemState {
    return this.#leapKeeper.served(this.clockState(), this.opts.leapSmear ?? 0);
  }

  /**
   * Our system state on UTC, without the smear: what our own packets to
   * sources and peers are stamped with (they stay on UTC and are told of
   * the leap).
   */
  clockState(): SystemState {
    return clockStateOf(this.systemVars(), this.opts.precision, this.discipline.model, this.clock);
  }

  /** True while serving as an orphan (parent or child). */
  get orphan(): boolean {
    return this.#orphanParent || this.#orphanChild;
  }

  /** True when the orphan election made us the parent. */
  get orphanParent(): boolean {
    return this.#orphanParent;
  }

  /** Candidate view of an association at `now`, or null when it is not fit (system.ts). */
  #candidate(a: Association, now: number): Candidate | null {
    return candidateOf(a, now, {
      residual: (s) => this.#residual(s),
      precision: this.opts.precision,
      localRefid: this.opts.localRefid,
      freq: this.discipline.freq,
      model: this.discipline.model,
    });
  }

  /** The source's regression-predicted offset against our correction at `now`. */
  #predicted(a: Association, now: number): number | null {
    return predictedOffset(a, now, this.discipline.freq, this.discipline.model);
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

  /**
   * Selection (system.ts) over the fit candidates, the orphan election
   * (orphan.ts, fallback.ts) when no real source is selected, and the
   * clock update (combine, peer pull, discipline) when `fresh` brought a
   * new sample of a combined source or of a pulling peer.
   */
  #select(now: number, fresh: string | null): void {
    const orphanOn = orphanEnabled(fallbackConfig(this.opts));
    const v = this.systemVars();
    const ourStratum = isSynchronised(v) ? v.stratum : MAXSTRAT;
    const { normal, orphans, pullOnly, votes, electionOnly } = classifyCandidates(
      this.associations.values(),
      (a) => this.#candidate(a, now),
      {
        orphanOn,
        orphanStratum: this.opts.orphanStratum,
        followable: (a) =>
          followable(a, this.#served(now), ourStratum, this.orphan, this.opts.orphanWait),
      },
    );
    for (const a of this.associations.values()) {
      // candidateOf's loop test (RFC 5905 fit()): say why such a source is never selected.
      if (
        a.state === "active" && a.reach !== 0 && a.stratum > 1 && a.stratum < MAXSTRAT &&
        this.opts.localRefid !== 0 && a.refid === this.opts.localRefid
      ) {
        this.#log(
          `loop ${a.id}`,
          "warning",
          `${a.id}: its refid is our own address: it follows us, or both use one address ` +
            `(loopback): never selected`,
        );
      }
    }
    for (const a of electionOnly) {
      // Answering, yet never followed: say why, once per association.
      this.#log(
        `election-only ${a.id}`,
        "info",
        `${a.id}: peer at stratum ${a.stratum} is at or above clock.orphan_stratum ${this.opts.orphanStratum}: ` +
          `it takes part in the orphan election only (follow it as kind = "server", or raise orphan_stratum)`,
      );
    }
    // Hold the first update until every source had a chance to answer, so a
    // lone fast falseticker cannot set the clock.
    const gathering = this.discipline.updates === 0 && now < this.#started + GATHER_S &&
      [...this.associations.values()].some((a) => a.state === "active" && a.filter.output === null);
    this.#selectableVote = majorityLeapOf(votes);
    let sel = selectFollowable(
      normal,
      pullOnly,
      this.opts.minSources,
      this.#sysPeer?.id ?? null,
    );
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
        fallbackConfig(this.opts),
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
          // Tell the peers now: every node that claims parent meanwhile
          // only steps down when it hears a lower refid.
          for (const a of this.associations.values()) {
            a.announce(now, ANNOUNCE_SPREAD_S, this.#rand);
          }
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
      this.#vars = fallbackVars(
        { kind: "orphan-parent", stratum: this.opts.orphanStratum, refid: this.opts.localRefid },
        this.#served(now),
      );
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
    this.#clockUpdate(now, fresh, sel, peer, gathering);
  }

  /**
   * A fresh sample from any combined source drives the discipline: the
   * update system.ts `planClockUpdate` decides (the combined prediction,
   * pulled toward the peers) becomes the new correction.
   */
  #clockUpdate(
    now: number,
    fresh: string | null,
    sel: Selection,
    peer: Association,
    gathering: boolean,
  ): void {
    const plan = planClockUpdate({
      now,
      fresh,
      sel,
      associations: this.associations,
      discipline: this.discipline,
      residual: (s) => this.#residual(s),
      lastSampleT: this.#lastSampleT,
      orphanChild: this.#orphanChild,
      gathering,
    });
    if (!plan) {
      // Announce a stratum only once the clock has been set: peers that
      // saw us "synchronised" with the start-up error would take it as time.
      if (this.discipline.updates > 0) this.#refreshVars(sel, peer);
      return;
    }
    if (plan.freshCombined) this.#lastSampleT = plan.newest;
    const prevUpdate = this.discipline.lastUpdate;
    const res = this.discipline.update(now, plan.y, plan.freq, plan.skew);
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
    if (plan.freshCombined) this.#vars.refTime = this.#served(now);
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

  /** Our variables from the system peer (system.ts `followedVars`), the leap from the vote. */
  #refreshVars(sel: Selection, peer: Association): void {
    if (peer.stratum + 1 >= MAXSTRAT) {
      // Following a stratum-15 server would make us 16: unsynchronised
      // everywhere (isSynchronised), never "stratum 16, leap 0".
      this.#setSynced(false);
      return;
    }
    this.#setSynced(true);
    // The leap indicator itself is decided by #leapTick (the date rule).
    this.#vote = this.#selectableVote;
    if (this.#vars.leap === Leap.unsync) this.#vars.leap = Leap.none;
    Object.assign(this.#vars, followedVars(peer, sel.systemPeer!, this.#jitter, this.#lastOffset));
  }

  #setSynced(v: boolean): void {
    if (v !== this.#synced) {
      this.#synced = v;
      this.clock.setSync(v, this.#vars.rootDelay / 2 + this.#vars.rootDisp, this.#jitter);
    }
  }

  /** The system poll after an update with `offset` seconds (system.ts `pollStep`). */
  #adjustPoll(offset: number): void {
    const p = pollStep(offset, this.#jitter, this.associations.values(), this.#goodUpdates);
    this.#goodUpdates = p.good;
    if (p.step !== 0) this.#setSysPoll(this.#sysPoll + p.step);
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

  /** The `sourceKey` of the configured source association `id` came from, if any. */
  sourceOf(id: string): string | undefined {
    return this.#set.origin.get(id);
  }

  /** Status for `/status` and `edge-time peers`, at raw time `now`. */
  report(now: number): EngineReport {
    const v = this.systemVars();
    const ctx = this.#context();
    const sources: SourceReport[] = [...this.associations.values()].map((a) =>
      sourceReportOf(
        a,
        now,
        ctx.residual,
        this.opts.precision,
        tallyOf(this.#selection, this.#sysPeer, a),
      )
    );
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
