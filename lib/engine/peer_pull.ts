/**
 * Peer pull: the policy by which a node that follows external upstreams
 * also moves toward its symmetric peers at the same stratum (siblings that
 * follow the same kind of upstreams). Not in RFC 5905: a deviation, see
 * docs/design/architecture.md ("Peer pull").
 *
 * Each clock update moves a fraction `PEER_PULL` of the way toward the
 * mean offset of those peers, and the move is bounded by `PULL_BOUND`
 * times the combined upstreams' mean jitter.
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
 *
 * Pure: the engine (engine.ts) calls these with its selection.
 */
import type { Sample } from "./filter.ts";
import type { Selection } from "./select.ts";
import type { Association } from "./source.ts";

/** Fraction of the difference to the peers' mean offset applied per update (β). */
export const PEER_PULL = 0.8;
/** Bound of the pull, in units of the combined upstreams' mean jitter. */
export const PULL_BOUND = 2;

/** The peers' pull: their mean offset (seconds) and their association ids. */
export interface PeerPull {
  offset: number;
  ids: string[];
}

/**
 * The mean offset of the symmetric peers that selection kept as backups
 * (truechimers one stratum below the combined upstreams), each from the
 * lowest-delay of its three newest filter samples (`residual`: the
 * sample's offset against our correction, seconds), or null when there
 * is none or when we follow a peer or a `prefer` source.
 */
export function peerPull(
  sel: Selection,
  associations: ReadonlyMap<string, Association>,
  residual: (s: Sample) => number,
): PeerPull | null {
  if (sel.combined.some((c) => associations.get(c.id)?.opts.kind === "peer")) return null;
  if (sel.combined.some((c) => c.prefer)) return null;
  let n = 0, sum = 0;
  const ids: string[] = [];
  for (const c of sel.survivors) {
    if (sel.combined.includes(c)) continue;
    const a = associations.get(c.id);
    if (!a || a.opts.kind !== "peer") continue;
    const recent = a.filter.stages.slice(0, 3).sort((x, y) => x.delay - y.delay)[0];
    if (!recent) continue;
    n++;
    sum += residual(recent);
    ids.push(a.id);
  }
  return n > 0 ? { offset: sum / n, ids } : null;
}

/** The pull's bound, seconds: `PULL_BOUND` times the combined sources' mean jitter. */
export function pullBound(sel: Selection): number {
  return PULL_BOUND * sel.combined.reduce((m, c) => m + c.jitter, 0) /
    Math.max(1, sel.combined.length);
}

/** The move toward the peers for a difference `diff` (seconds): `PEER_PULL` of it, within ±`bound`. */
export function pullStep(diff: number, bound: number): number {
  return Math.max(-bound, Math.min(bound, PEER_PULL * diff));
}
