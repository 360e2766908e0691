/**
 * The anycast health gate: is this node's *time* good enough to attract
 * clients? Pure: every input arrives as a plain value (the runtime reads
 * the system state, does the self-query and stats the drain file), and
 * `now` is an argument. Rise/fall hysteresis keeps one bad sample from
 * flapping a BGP announcement.
 */
import type { QueryResult } from "../ntp/query.ts";
import { isSynchronised } from "../ntp/system_state.ts";
import type { AnycastTransition } from "./report.ts";

/** Transitions kept for the status page. */
export const MAX_TRANSITIONS = 100;

/** What the node knows about its own time at one check. */
export interface HealthInputs {
  /** Leap indicator of the system state the server answers with. */
  leap: number;
  /** Stratum of that state (16 = unsynchronised). */
  stratum: number;
  /** Offset of the system clock from the engine's best estimate of true time, seconds. */
  offsetS: number;
  /** The drain file exists. */
  drain: boolean;
  /** The self-query to the service address: its result, or the error message. */
  selfQuery: QueryResult | string;
}

/**
 * Why the node is unhealthy, or "" when it is healthy. Checks in order of
 * severity: drain, then `isSynchronised` on the served state (so a
 * stratum-16 state is "not synchronised (leap 0, stratum 16)"), then the
 * offset, then the self-query.
 */
export function healthReason(inp: HealthInputs, opts: { maxOffsetMs: number }): string {
  if (inp.drain) return "drain file present";
  if (!isSynchronised(inp)) {
    return `not synchronised (leap ${inp.leap}, stratum ${inp.stratum})`;
  }
  const offMs = Math.abs(inp.offsetS) * 1e3;
  if (!(offMs <= opts.maxOffsetMs)) {
    return `offset ${offMs.toFixed(3)} ms exceeds ${opts.maxOffsetMs} ms`;
  }
  return queryReason(inp.selfQuery, "self-query", opts);
}

/**
 * Why one NTP query is not good time, "" when it is. `r` is the error of
 * the query (no reply, or a reply that failed `checkReply`: kiss-o'-death,
 * unsynchronised, zero timestamps …) or a checked result, whose offset
 * must be within `maxOffsetMs`. Used for the node's self-query and for the
 * router's checks of each node.
 */
export function queryReason(
  r: QueryResult | string,
  what: string,
  opts: { maxOffsetMs: number },
): string {
  if (typeof r === "string") return `${what}: ${r}`;
  const offMs = Math.abs(r.offset) * 1e3;
  if (!(offMs <= opts.maxOffsetMs)) {
    return `${what}: offset ${offMs.toFixed(3)} ms exceeds ${opts.maxOffsetMs} ms`;
  }
  return "";
}

export interface GateOptions {
  rise: number;
  fall: number;
  /** Shown in transitions ("gate", or a node address in router mode). */
  subject?: string;
}

/** A gate transition, as kept for status. */
export interface GateTransition extends AnycastTransition {
  subject: string;
}

/**
 * Rise/fall hysteresis over a stream of check results. Starts unhealthy
 * ("starting"): a node announces only after `rise` good checks. A drain
 * withdraws at once: the operator asked for it, there is nothing to smooth.
 */
export class HealthGate {
  healthy = false;
  /** The last check's reason ("" when it was good); "starting" before the first. */
  reason = "starting";
  #good = 0;
  #bad = 0;
  readonly #opts: GateOptions;

  constructor(opts: GateOptions) {
    this.#opts = opts;
  }

  /**
   * Feeds one check (`reason` "" = good) taken at `now` (Unix seconds).
   * Returns the transition when the gate flipped, else null.
   */
  update(now: number, reason: string, opts: { immediate?: boolean } = {}): GateTransition | null {
    this.reason = reason;
    if (reason === "") {
      this.#good++;
      this.#bad = 0;
    } else {
      this.#bad++;
      this.#good = 0;
    }
    const flipUp = !this.healthy && this.#good >= this.#opts.rise;
    const flipDown = this.healthy && (this.#bad >= this.#opts.fall || opts.immediate === true);
    if (!flipUp && !flipDown) return null;
    this.healthy = flipUp;
    return {
      at: now,
      subject: this.#opts.subject ?? "gate",
      from: flipUp ? "unhealthy" : "healthy",
      to: flipUp ? "healthy" : "unhealthy",
      reason: flipUp ? `${this.#good} good check(s) in a row` : reason,
    };
  }
}

/** Appends `t` and keeps the newest `MAX_TRANSITIONS`. */
export function keepTransition<T>(list: T[], t: T): void {
  list.push(t);
  if (list.length > MAX_TRANSITIONS) list.splice(0, list.length - MAX_TRANSITIONS);
}
