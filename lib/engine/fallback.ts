/**
 * The fallback system state: what we announce — in server replies and in
 * our symmetric (peer) packets alike — whenever no real source gives us
 * our system variables. One rule with two inputs:
 *
 * - `server.local_stratum = N` (chrony's `local stratum N`): from the
 *   first packet on, and again at once whenever no real source is
 *   selected (start-up before the first clock update, a lost upstream, a
 *   system peer at stratum 15), the state is leap 0, stratum N, refid
 *   `LOCL`, root delay and dispersion 0, and a reference time that is the
 *   current time (refreshed at every engine update, at least every 8 s).
 *   Symmetric peers at stratum N or above are not followed (a sibling is
 *   no better reference than our own clock), so two nodes at the same
 *   local stratum never follow each other.
 * - orphan mode (`clock.orphan_stratum = O`, `clock.orphan_wait_s`;
 *   RFC 5905's orphan mode as in ntpd): after `orphan_wait_s` without a
 *   real source, peers that also lost theirs elect one parent by lowest
 *   refid; the parent announces stratum O with its own address as refid,
 *   the others follow it (stratum O + 1).
 *
 * Together: a lower stratum is a better claim, so orphan mode takes part
 * only when O is below N (or N is 0); with `local_stratum` at or below
 * `orphan_stratum`, the local state holds for good and no orphan
 * election happens (nor the address refid, which a chronyd on the same
 * address rejects by its loop test). With neither, a node without a
 * source keeps its last variables (holdover) or, never synchronised,
 * announces leap 3, stratum 0.
 *
 * Pure: the engine (engine.ts) calls `chooseFallback` with its clock
 * readings and announces what it returns.
 */
import { asciiRefid, Leap } from "../ntp/packet.ts";
import type { SystemVars } from "./system.ts";

/** Refid of the local fallback, as chrony's `local` announces (ntpd's local clock driver). */
export const REFID_LOCL = asciiRefid("LOCL");

/** The two inputs, from the config. */
export interface FallbackConfig {
  /** `server.local_stratum`: 1..15, 0 = off. */
  localStratum: number;
  /** `clock.orphan_stratum`: 1..15, 0 = off. */
  orphanStratum: number;
  /** `clock.orphan_wait_s`: seconds without a real source before orphan mode. */
  orphanWait: number;
  /** Our refid (our address), announced as orphan parent; 0 = unknown. */
  localRefid: number;
}

/** What to announce when no real source is selected. */
export type Fallback =
  /** Keep the last variables (holdover), or unsynchronised when there were none. */
  | { kind: "none" }
  /** `local_stratum`: leap 0, this stratum, refid LOCL, reference time now. */
  | { kind: "local"; stratum: number; refid: number }
  /** Orphan parent: leap 0, the orphan stratum, our own refid, reference time now. */
  | { kind: "orphan-parent"; stratum: number; refid: number }
  /** Orphan child: follow the orphan parent at index `parent` of the list given. */
  | { kind: "orphan-child"; parent: number };

/** True when orphan mode takes part: `orphan_stratum` set and below `local_stratum` (if set). */
export function orphanEnabled(c: Pick<FallbackConfig, "localStratum" | "orphanStratum">): boolean {
  return c.orphanStratum > 0 && (c.localStratum <= 0 || c.orphanStratum < c.localStratum);
}

/**
 * The fallback when no real source is selected. `sinceUpstream`: seconds
 * since a real source was last selected (or since start); `parents`: the
 * refids of the symmetric peers that announce themselves orphan parents
 * (the orphan stratum with their own address as refid). Orphan mode, when
 * enabled and `orphan_wait_s` has passed, elects the lowest refid, ours
 * included; else `local_stratum`; else none.
 */
export function chooseFallback(
  c: FallbackConfig,
  sinceUpstream: number,
  parents: readonly number[],
): Fallback {
  if (orphanEnabled(c) && sinceUpstream >= c.orphanWait) {
    let best = -1;
    for (let i = 0; i < parents.length; i++) {
      const r = parents[i]!;
      if (c.localRefid !== 0 && r >= c.localRefid) continue;
      if (best < 0 || r < parents[best]!) best = i;
    }
    if (best >= 0) return { kind: "orphan-child", parent: best };
    return { kind: "orphan-parent", stratum: c.orphanStratum, refid: c.localRefid };
  }
  if (c.localStratum > 0) return { kind: "local", stratum: c.localStratum, refid: REFID_LOCL };
  return { kind: "none" };
}

/** The system variables of a local or orphan-parent fallback at served time `now` (Unix s). */
export function fallbackVars(
  f: Extract<Fallback, { kind: "local" | "orphan-parent" }>,
  now: number,
): SystemVars {
  return {
    leap: Leap.none,
    stratum: f.stratum,
    refid: f.refid,
    refTime: now,
    rootDelay: 0,
    rootDisp: 0,
  };
}
