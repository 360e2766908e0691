/**
 * Orphan mode (RFC 5905 §11.2.4, as in ntpd) and which symmetric peers
 * may be followed: the parts of the election the engine runs over its
 * associations. The rule itself (when orphan mode takes part, who is
 * elected, what the parent announces) is `chooseFallback` in fallback.ts.
 * Pure: the engine (engine.ts) passes its options and clock readings.
 */
import type { FallbackConfig } from "./fallback.ts";
import { refidOfAddress } from "./refid.ts";
import type { Association } from "./source.ts";

/** The engine options the orphan and fallback rules read. */
export interface OrphanOptions {
  localStratum?: number;
  orphanStratum: number;
  /** Seconds. */
  orphanWait: number;
  localRefid: number;
}

/** The inputs of the fallback system state (fallback.ts), from the options in force. */
export function fallbackConfig(opts: OrphanOptions): FallbackConfig {
  return {
    localStratum: opts.localStratum ?? 0,
    orphanStratum: opts.orphanStratum,
    orphanWait: opts.orphanWait,
    localRefid: opts.localRefid,
  };
}

/**
 * Whether association `a` announces itself an orphan parent: the orphan
 * stratum (`orphanStratum`, 0 = off) with its own address as refid.
 */
export function isOrphanParent(a: Association, orphanStratum: number): boolean {
  return orphanStratum > 0 && a.stratum === orphanStratum &&
    a.refid === refidOfAddress(a.opts.host);
}

/**
 * Whether a symmetric peer may be followed (become the system peer), or
 * only counts in the intersection and pulls: we follow a peer that is
 * closer to the reference than we are (a lower stratum than `ourStratum`),
 * or one we `prefer`; while we are an `orphan`, its clock must also have
 * been updated from its own upstream within `orphanWait` seconds (its
 * reference time against `servedNow`, our served Unix time). Peers at our
 * stratum are siblings, not references; and a peer in holdover (its
 * reference time growing old) is no better than we are. Without this
 * rule, peers that lose their upstreams together follow each other and
 * count their strata up (2, 3, … 7) before orphan mode, shifting each
 * node's time at every hop.
 */
export function followable(
  a: Association,
  servedNow: number,
  ourStratum: number,
  orphan: boolean,
  orphanWait: number,
): boolean {
  if (a.opts.prefer) return true;
  if (a.stratum >= ourStratum) return false;
  if (!orphan) return true;
  const age = servedNow - a.refTime;
  return a.refTime > 0 && age <= Math.max(orphanWait, 2 ** a.hpoll);
}
