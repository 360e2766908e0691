/** What the anycast helper reports to `/status`, `/metrics` and `/healthz`. */

export interface AnycastTransition {
  /** Unix seconds. */
  at: number;
  from: string;
  to: string;
  reason: string;
  /** What flipped: "gate" (node mode) or a node address (router mode). */
  subject?: string;
}

export interface AnycastReport {
  mode: "off" | "node" | "router";
  /** "announced", "withdrawn", "draining", … (mode-specific). */
  state: string;
  healthy: boolean;
  /** Why the gate is unhealthy, "" when healthy. */
  reason: string;
  announced: string[];
  /** Router mode: the nexthops currently in the multipath route. */
  nexthops: string[];
  /** Last transitions, newest last (at most 100). */
  transitions: AnycastTransition[];
  /** The last failed apply's one-line error, "" when the last apply worked. */
  error?: string;
  /** Router mode: the healthy nodes with their last check's reason ("" = good). */
  nodes?: { address: string; healthy: boolean; reason: string }[];
}
