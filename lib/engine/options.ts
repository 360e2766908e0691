/**
 * The engine's options (from `[clock]`, `[server]` and `[[source]]`) and
 * the part of them a reload may change (`Engine.reconfigure`).
 */
import type { LeapTable } from "../ntp/leap.ts";
import type { EngineSource } from "./source.ts";
import type { BroadcastMac } from "./broadcast.ts";

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
  /**
   * Checks the MAC of a packet heard on a broadcast listener (`bytes[0..length)`,
   * NTP `version`) against the keys in force (lib/auth/mac.ts `checkMac`);
   * absent = no keys: every packet counts as carrying no MAC.
   */
  checkMac?: (bytes: Uint8Array, length: number, version: number) => BroadcastMac;
}

/** What `reconfigure` can change on a running engine (the live part of `[clock]`, and sources). */
export type EngineReconfig =
  & Pick<
    EngineOptions,
    "sources" | "stepThreshold" | "panicThreshold" | "orphanStratum" | "orphanWait" | "minSources"
  >
  & Partial<
    Pick<
      EngineOptions,
      "stats" | "localRefid" | "localStratum" | "leapTable" | "leapSmear" | "checkMac"
    >
  >;

/**
 * Applies the options of a reload (`next`) to `o`, in place: thresholds,
 * `min_sources`, the orphan settings and the optional ones given. The
 * sources are matched by the association set (associations.ts); a new
 * smear window applies from the next leap (one under way keeps its own).
 */
export function applyReconfig(o: EngineOptions, next: EngineReconfig): void {
  o.stepThreshold = next.stepThreshold;
  o.panicThreshold = next.panicThreshold;
  o.minSources = next.minSources;
  o.orphanWait = next.orphanWait;
  if (next.stats !== undefined) o.stats = next.stats;
  if (next.localRefid !== undefined) o.localRefid = next.localRefid;
  o.orphanStratum = next.orphanStratum;
  if (next.localStratum !== undefined) o.localStratum = next.localStratum;
  if (next.leapSmear !== undefined) o.leapSmear = next.leapSmear;
  if (next.leapTable !== undefined) o.leapTable = next.leapTable;
  if (next.checkMac !== undefined) o.checkMac = next.checkMac;
}
