/**
 * The system process (RFC 5905 §11.2): the candidates the associations
 * offer, selection over them (select.ts: intersection, cluster), the
 * combine of the survivors into one offset and frequency, and the system
 * variables we announce (RFC 5905 §11.1 with §11.2.3 root distance).
 * Pure: the engine (engine.ts) passes its associations and clock state.
 */
import { formatRefid, Leap } from "../ntp/packet.ts";
import { MAXSTRAT, PHI, type SystemState, unsyncedState } from "../ntp/system_state.ts";
import { type Clock, type Correction, correctionValue } from "./clock.ts";
import { combineFrequencies, type Discipline, type FrequencyEstimate } from "./discipline.ts";
import { isOrphanParent } from "./orphan.ts";
import { peerPull, pullBound, pullStep } from "./peer_pull.ts";
import type { Sample } from "./filter.ts";
import { refidOfAddress } from "./refid.ts";
import type { SourceReport, Tally } from "./report.ts";
import { type Candidate, MAXDIST, MINDIST, type Selection, selectSources } from "./select.ts";
import type { Association } from "./source.ts";

/**
 * Our system variables (RFC 5905 §11.1): what server replies and our
 * symmetric packets carry. Times are Unix seconds (`refTime`, 0 = never),
 * `rootDelay`/`rootDisp` seconds, `refid` a u32.
 */
export type SystemVars = Pick<
  SystemState,
  "leap" | "stratum" | "refid" | "refTime" | "rootDelay" | "rootDisp"
>;

/** What `candidateOf` needs from the system. */
export interface CandidateContext {
  /** Residual of a filter sample against our correction (seconds). */
  residual(s: Sample): number;
  /** Our clock precision, log2 seconds. */
  precision: number;
  /** Our own refid, for loop detection; 0 = unknown. */
  localRefid: number;
  /** The discipline's frequency (s/s) and correction model. */
  freq: number;
  model: Correction;
}

/**
 * The regression-predicted offset of association `a` against our
 * correction at raw time `now` (seconds), or null without a prediction.
 */
export function predictedOffset(
  a: Association,
  now: number,
  freq: number,
  model: Correction,
): number | null {
  const p = a.stats.predict(now, freq);
  return p ? p.y - correctionValue(model, now) : null;
}

/**
 * Candidate view of an association at raw time `now` (RFC 5905 §11.2.1
 * fit(): reachable, synchronised, no loop, root distance below MAXDIST),
 * or null when it is not fit.
 */
export function candidateOf(a: Association, now: number, ctx: CandidateContext): Candidate | null {
  // No reply to the last three polls: unfit (RFC 5905 poll() adds a MAXDISP
  // sample to the filter for the same effect).
  if (
    a.state !== "active" || (a.reach & 7) === 0 || a.leap === Leap.unsync || a.stratum >= MAXSTRAT
  ) {
    return null;
  }
  const f = a.filter.evaluate(now, ctx.residual, ctx.precision);
  if (!f) return null;
  // Loop: the source is synchronised to us.
  if (a.stratum > 1 && a.refid === ctx.localRefid && ctx.localRefid !== 0) {
    return null;
  }
  const rootDist = Math.max(
    MINDIST,
    (a.rootDelay + f.delay) / 2 + a.rootDisp + f.disp + f.jitter + PHI * (now - f.sample.t),
  );
  if (rootDist >= MAXDIST + PHI * 2 ** a.hpoll) return null;
  const offset = predictedOffset(a, now, ctx.freq, ctx.model) ?? f.offset;
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

/** The fit candidates of one selection, sorted by their part in it. */
export interface Classified {
  /** Candidates for selection. */
  normal: Candidate[];
  /** Symmetric peers that announce themselves orphan parents (orphan.ts). */
  orphans: { a: Association; c: Candidate }[];
  /** Peers that count in the intersection and pull, but are not followed. */
  pullOnly: Set<string>;
  /** Leap indicators of the candidates that could be followed. */
  votes: number[];
  /** Peers at or above the orphan stratum that are no orphan parent: never followed. */
  electionOnly: Association[];
}

/**
 * Sorts the fit candidates of `associations` (`candidate`: the candidate
 * view, null when unfit): peers that are not `followable` only pull, and
 * with orphan mode on (`orphanOn`), symmetric peers at or above
 * `orphanStratum` take part in the orphan election only.
 */
export function classifyCandidates(
  associations: Iterable<Association>,
  candidate: (a: Association) => Candidate | null,
  rules: { orphanOn: boolean; orphanStratum: number; followable: (a: Association) => boolean },
): Classified {
  const normal: Candidate[] = [];
  const orphans: { a: Association; c: Candidate }[] = [];
  const pullOnly = new Set<string>();
  const votes: number[] = [];
  const electionOnly: Association[] = [];
  for (const a of associations) {
    const c = candidate(a);
    if (!c) continue;
    // Heard broadcast servers are siblings in a discovery cluster: the peer rules apply to them.
    const sibling = a.opts.kind === "peer" || a.opts.kind === "broadcast";
    if (sibling && !rules.followable(a)) pullOnly.add(a.id);
    // Symmetric peers at or above the orphan stratum take part in the orphan
    // election only (that also ends the stratum count-up of peers that lost
    // their upstream together); servers at any stratum are ordinary sources.
    if (rules.orphanOn && sibling && a.stratum >= rules.orphanStratum) {
      if (isOrphanParent(a, rules.orphanStratum)) orphans.push({ a, c });
      else electionOnly.push(a);
      continue;
    }
    // Leap votes: every selectable source that could be followed (not a sibling that only pulls).
    if (!pullOnly.has(a.id)) votes.push(c.leap);
    normal.push(c);
  }
  return { normal, orphans, pullOnly, votes, electionOnly };
}

/**
 * Selection (select.ts) over `normal`, where the ids in `pullOnly` (peers
 * that count in the intersection and pull, but are not followed) may not
 * be combined: when any is, selection runs again over the followable
 * truechimers, and surviving pull-only peers stay backups (tally `#`).
 * `previous`: the current system peer's id, for its hysteresis.
 */
export function selectFollowable(
  normal: Candidate[],
  pullOnly: ReadonlySet<string>,
  minSources: number,
  previous: string | null,
): Selection | null {
  let sel = normal.length > 0 ? selectSources(normal, { minSources, previous }) : null;
  if (sel && sel.combined.some((c) => pullOnly.has(c.id))) {
    // Follow only followable sources; pull-only peers that survived stay
    // backups (tally `#`) and still pull.
    const backups = sel.survivors.filter((c) => pullOnly.has(c.id));
    const follow = normal.filter((c) => !pullOnly.has(c.id) && !sel!.falsetickers.includes(c.id));
    const inner = follow.length > 0 ? selectSources(follow, { minSources, previous }) : null;
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
  return sel;
}

/** The combine (RFC 5905 §11.2.3, on regression predictions) of a selection. */
export interface Combined {
  /** Sum of the weights (1/s) of the sources that had a prediction; 0 = none. */
  weight: number;
  /** Weighted mean offset, seconds (0 when `weight` is 0). */
  offset: number;
  /** Raw time of the newest sample among them, -Infinity when none. */
  newest: number;
  /** Combined frequency (s/s) and its skew, or null without estimates. */
  freq: { freq: number; skew: number } | null;
}

/**
 * Combines the selection's `combined` sources at raw time `now`: each
 * source's regression prediction against `modelFreq` (the discipline's
 * frequency, s/s), weighted by its candidate weight (or 1/root distance).
 */
export function combine(
  sel: Selection,
  associations: ReadonlyMap<string, Association>,
  now: number,
  modelFreq: number,
): Combined {
  let w = 0, rSum = 0, newest = -Infinity;
  const freqs: FrequencyEstimate[] = [];
  for (const c of sel.combined) {
    const a = associations.get(c.id)!;
    const p = a.stats.predict(now, modelFreq);
    if (!p) continue;
    newest = Math.max(newest, a.lastSample);
    const wi = c.weight ?? 1 / c.rootDist;
    w += wi;
    rSum += wi * c.offset;
    if (a.stats.hasFreq) freqs.push({ freq: p.freq, err: a.stats.fit!.bErr });
  }
  return {
    weight: w,
    offset: w > 0 ? rSum / w : 0,
    newest,
    freq: combineFrequencies(freqs),
  };
}

/**
 * The system variables taken from the system peer `peer` (candidate `c`)
 * besides the leap indicator: stratum one more, its address as refid,
 * root delay and dispersion grown by its filter's and by `jitter` and
 * `lastOffset` (our system jitter and last offset, seconds).
 */
export function followedVars(
  peer: Association,
  c: Candidate,
  jitter: number,
  lastOffset: number,
): Pick<SystemVars, "stratum" | "refid" | "rootDelay" | "rootDisp"> {
  const f = peer.filter.output;
  return {
    stratum: Math.min(MAXSTRAT, peer.stratum + 1),
    refid: refidOfAddress(peer.opts.host),
    rootDelay: peer.rootDelay + (f?.delay ?? 0),
    rootDisp: peer.rootDisp + (f?.disp ?? 0) + Math.max(jitter, c.jitter) + Math.abs(lastOffset),
  };
}

/** The tally code (as ntpq shows it) of association id `id` in selection `sel`. */
export function tallyOf(sel: Selection | null, sysPeer: Association | null, a: Association): Tally {
  const s = sel;
  if (!s) return " ";
  if (sysPeer === a) return "*";
  if (s.falsetickers.includes(a.id)) return "x";
  if (s.outliers.includes(a.id)) return "-";
  if (s.combined.some((c) => c.id === a.id)) return "+";
  if (s.survivors.some((c) => c.id === a.id)) return "#";
  return " ";
}

/**
 * Our system state on UTC (what our own packets are stamped with): the
 * system variables `v`, our `precision` (log2 s) and the correction
 * `model` (zero when `clock` steers the kernel).
 */
export function clockStateOf(
  v: SystemVars,
  precision: number,
  model: Correction,
  clock: Pick<Clock, "steersKernel">,
): SystemState {
  const s = unsyncedState(precision);
  const m = model;
  return {
    ...s,
    leap: v.leap,
    stratum: v.stratum,
    refid: v.refid,
    refTime: v.refTime,
    rootDelay: v.rootDelay,
    rootDisp: v.rootDisp,
    corrOffset: clock.steersKernel ? 0 : m.offset,
    corrFreq: clock.steersKernel ? 0 : m.freq,
    corrEpoch: clock.steersKernel ? 0 : m.epoch,
  };
}

/**
 * One row of `edge-time peers` for association `a` at raw time `now`
 * (seconds; `residual` and `precision` as for the clock filter).
 */
export function sourceReportOf(
  a: Association,
  now: number,
  residual: (s: Sample) => number,
  precision: number,
  tally: Tally,
): SourceReport {
  const f = a.filter.evaluate(now, residual, precision);
  return {
    tally,
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
    ...(a.opts.key === 0 ? {} : { key: a.opts.key, authenticated: a.authenticated }),
    ...(a.opts.kind === "broadcast" && a.bdelay !== null ? { broadcast_delay_s: a.bdelay } : {}),
    counters: { ...a.counters },
  };
}

/** A clock update to apply (RFC 5905 §11.3 clock_update, on the regression model). */
export interface ClockUpdate {
  /** The discipline's new correction at `now`, seconds. */
  y: number;
  /** Frequency (s/s) and its skew. */
  freq: number;
  skew: number;
  /** A new upstream sample (it sets the reference time); false: a peer pull only. */
  freshCombined: boolean;
  /** Raw time of the newest combined sample. */
  newest: number;
}

/** What `planClockUpdate` reads of the engine at one selection. */
export interface UpdateInputs {
  /** Raw time, Unix seconds. */
  now: number;
  /** Id of the association that just gave a new sample, or null. */
  fresh: string | null;
  sel: Selection;
  associations: ReadonlyMap<string, Association>;
  discipline: Pick<Discipline, "freq" | "model" | "updates">;
  /** Residual of a filter sample against our correction, seconds. */
  residual(s: Sample): number;
  /** Raw time of the newest sample an update used. */
  lastSampleT: number;
  /** We follow an orphan parent. */
  orphanChild: boolean;
  /** Still waiting for every source's first sample (GATHER_S). */
  gathering: boolean;
}

/**
 * The clock update of one selection, or null when there is none: the
 * combined prediction (`combine`) moved toward the peers (peer_pull.ts),
 * applied only for a new sample of a combined source (or, for an orphan
 * child that never set its clock, the parent's samples it has); in
 * holdover a new sample of a pulling peer alone nudges the correction
 * toward the peers and keeps the frequency.
 */
export function planClockUpdate(i: UpdateInputs): ClockUpdate | null {
  const { now, fresh, sel, discipline } = i;
  const modelFreq = discipline.freq;
  const comb = combine(sel, i.associations, now, modelFreq);
  const w = comb.weight, newest = comb.newest, combinedFreq = comb.freq;
  let offset = comb.offset;
  const pull = peerPull(sel, i.associations, i.residual);
  const bound = pullBound(sel);
  if (pull && w > 0) offset += pullStep(pull.offset - offset, bound);
  // Only a new sample from a combined source updates the clock. Not a
  // change of the combined set alone: when an upstream drops out (or a
  // pruned one comes back) with no new measurement, re-combining stale
  // predictions of sources with different errors would shift the clock.
  // An orphan child that never set its clock may also start from the
  // parent's samples it already has, when the election is decided.
  const freshCombined = newest > i.lastSampleT &&
    ((discipline.updates === 0 && i.orphanChild) ||
      sel.combined.some((c) => c.id === fresh));
  // A new sample from a pulling peer re-applies the same upstream estimate
  // with a new pull, but only in holdover (no upstream sample for
  // `HOLDOVER_POLLS` of its polls): then the peers keep the cluster
  // together as the clocks drift. While upstream samples come, every such
  // nudge would add the peers' measurement bias once more (a peer's
  // basic-mode t3 is read before its send, so peers read each other a few
  // µs behind) and the nudges summed to a common offset of the whole
  // cluster (docs/design/architecture.md, "Peer pull"). It is no upstream
  // update: the reference time, which tells peers how fresh our upstream
  // is, stays.
  const holdover = now - newest > HOLDOVER_POLLS * 2 ** longestPoll(sel, i.associations);
  const freshPull = !freshCombined && fresh !== null && pull !== null &&
    pull.ids.includes(fresh) && discipline.updates > 0 && holdover;
  if (i.gathering || (!freshCombined && !freshPull) || w === 0) return null;
  // A pull-only update nudges the offset toward the peers and keeps the
  // frequency: the upstream estimate has not changed.
  const nudge = freshPull && pull ? pullStep(pull.offset, bound) : offset;
  return {
    y: correctionValue(discipline.model, now) + nudge,
    freq: freshPull ? modelFreq : combinedFreq?.freq ?? modelFreq,
    skew: combinedFreq?.skew ?? 1e-5,
    freshCombined,
    newest,
  };
}

/** Upstream polls without a sample after which a peer's sample alone nudges the clock (`planClockUpdate`). */
export const HOLDOVER_POLLS = 2;

/** The longest poll exponent among the combined sources (RFC hpoll), 0 when none. */
function longestPoll(sel: Selection, associations: ReadonlyMap<string, Association>): number {
  return sel.combined.reduce((m, c) => Math.max(m, associations.get(c.id)?.hpoll ?? 0), 0);
}

/**
 * The system poll update (RFC 5905 §11.3 poll adjustment, by offsets):
 * after a clock update with `offset` (seconds) against our `jitter`
 * (seconds, at least 1 µs), a run of `good` updates within 3× that noise
 * grows by one and at 4 lengthens the poll (`step` +1, run restarts) once
 * every reachable association has 6 regression points; an offset beyond
 * 6× the noise shortens it (`step` −1, run restarts).
 */
export function pollStep(
  offset: number,
  jitter: number,
  associations: Iterable<Association>,
  good: number,
): { good: number; step: -1 | 0 | 1 } {
  const noise = Math.max(jitter, 1e-6);
  const enough = [...associations].every((a) => a.reach === 0 || a.stats.points.length >= 6);
  if (Math.abs(offset) < 3 * noise && enough) {
    if (++good >= 4) return { good: 0, step: 1 };
    return { good, step: 0 };
  } else if (Math.abs(offset) > 6 * noise) {
    return { good: 0, step: -1 };
  }
  return { good, step: 0 };
}
