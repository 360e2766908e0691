/**
 * Source selection (RFC 5905 §11.2, A.5.5): the intersection algorithm
 * (Marzullo, as refined by Mills) separates truechimers from
 * falsetickers; combine averages all truechimers at the best stratum,
 * weighted by root distance (chrony's way: no cluster pruning to NMIN).
 */

/** Distance threshold, seconds (RFC 5905 MAXDIST); also the stratum weight. */
export const MAXDIST = 1.5;
/** Floor of the root distance, seconds (ntpd's mindist). */
export const MINDIST = 0.001;

/** What selection needs to know about a source. */
export interface Candidate {
  id: string;
  /** Offset against our clock, seconds. */
  offset: number;
  /** Root distance λ, seconds: half-width of the correctness interval. */
  rootDist: number;
  stratum: number;
  /** Peer jitter, seconds. */
  jitter: number;
  prefer: boolean;
  leap: number;
  /** Combine weight; default 1 / rootDist (RFC 5905). */
  weight?: number;
}

/** Outcome of intersection and combine. */
export interface Selection {
  /** Ids that failed the intersection (tally `x`). */
  falsetickers: string[];
  /** Truechimers whose interval misses the system peer's (tally `-`). */
  outliers: string[];
  /** Truechimers in metric order, best stratum first (tally `+`/`*`/`-`/`#`). */
  survivors: Candidate[];
  /** Survivors combined into the system offset (others are backups, tally `#`). */
  combined: Candidate[];
  systemPeer: Candidate | null;
  offset: number;
  /** System jitter, seconds (RFC 5905 Ψ_s). */
  jitter: number;
  /** Leap indicator voted by the majority of combined sources. */
  leap: number;
}

/**
 * The intersection algorithm: the largest interval consistent with a
 * majority of correctness intervals. Returns `[low, high]` or null when no
 * majority agrees.
 */
export function intersect(cands: readonly Candidate[]): [number, number] | null {
  const n = cands.length;
  if (n === 0) return null;
  const edges: { v: number; type: number }[] = [];
  for (const c of cands) {
    edges.push({ v: c.offset - c.rootDist, type: -1 });
    edges.push({ v: c.offset, type: 0 });
    edges.push({ v: c.offset + c.rootDist, type: 1 });
  }
  edges.sort((a, b) => a.v - b.v || a.type - b.type);
  for (let allow = 0; 2 * allow < n; allow++) {
    let found = 0, chime = 0, low = Infinity, high = -Infinity;
    for (const e of edges) {
      chime -= e.type;
      if (chime >= n - allow) {
        low = e.v;
        break;
      }
      if (e.type === 0) found++;
    }
    chime = 0;
    for (let i = edges.length - 1; i >= 0; i--) {
      const e = edges[i]!;
      chime += e.type;
      if (chime >= n - allow) {
        high = e.v;
        break;
      }
      if (e.type === 0) found++;
    }
    if (found > allow) continue;
    if (high >= low) return [low, high];
  }
  return null;
}

/** Selection metric: lower is better (stratum first, then root distance). */
export function metric(c: Candidate): number {
  return c.stratum * MAXDIST + c.rootDist;
}

/**
 * Runs intersection and combine. `previous` is the current system
 * peer's id, kept while it survives at the best stratum (no clock hopping).
 * `minSources`: fewer truechimers than this selects nothing.
 */
export function selectSources(
  cands: readonly Candidate[],
  opts: { minSources?: number; previous?: string | null } = {},
): Selection {
  const none: Selection = {
    falsetickers: [],
    outliers: [],
    survivors: [],
    combined: [],
    systemPeer: null,
    offset: 0,
    jitter: 0,
    leap: 0,
  };
  const iv = intersect(cands);
  if (!iv) return { ...none, falsetickers: cands.map((c) => c.id) };
  const [low, high] = iv;
  // A truechimer's interval overlaps the intersection (ntpd 4.2.8).
  const truechimers = cands.filter((c) =>
    c.offset + c.rootDist >= low && c.offset - c.rootDist <= high
  );
  const falsetickers = cands.filter((c) => !truechimers.includes(c)).map((c) => c.id);
  if (truechimers.length < (opts.minSources ?? 1)) return { ...none, falsetickers };

  // Only truechimers at the best stratum are combined; the
  // rest are backups (tally `#`). Without this, symmetric peers at stratum
  // n+1, which agree with us by construction, would outvote and prune the
  // upstream servers and a cluster could end up following itself.
  const sorted = [...truechimers].sort((a, b) => metric(a) - metric(b));
  const best = sorted[0]!.stratum;
  const survivors = sorted.filter((c) => c.stratum === best);
  const backups = sorted.filter((c) => c.stratum !== best);
  // No ntpd-style cluster pruning down to NMIN: like chrony, every
  // truechimer at the best stratum is combined. Pruning drops the "worst"
  // of servers that agree within their error bounds, and when two are
  // nearly tied node-local noise decides which one goes, so nodes (or one
  // node over time) combine different sets and their offsets jump by the
  // servers' real disagreement. Only a source whose correctness interval
  // does not even overlap the system peer's is an outlier (tally `-`), as
  // chrony's combine limit marks a source that disagrees with the selected one.
  let systemPeer = survivors[0]!;
  const prev = opts.previous ? survivors.find((c) => c.id === opts.previous) : undefined;
  if (prev) systemPeer = prev;
  const outliers = survivors.filter((c) =>
    !c.prefer && Math.abs(c.offset - systemPeer.offset) > c.rootDist + systemPeer.rootDist
  ).map((c) => c.id);
  const combined = survivors.filter((c) => !outliers.includes(c.id));
  const prefer = survivors.find((c) => c.prefer) ?? backups.find((c) => c.prefer);
  if (prefer) systemPeer = prefer;

  let offset: number, jitter: number;
  if (prefer) {
    // ntpd: a surviving prefer peer alone sets the clock.
    offset = prefer.offset;
    jitter = prefer.jitter;
  } else {
    let w = 0, sum = 0;
    for (const c of combined) {
      const wi = c.weight ?? 1 / Math.max(c.rootDist, MINDIST);
      w += wi;
      sum += wi * c.offset;
    }
    offset = sum / w;
    let sq = 0;
    for (const c of combined) {
      sq += (c.offset - systemPeer.offset) ** 2 * (c.weight ?? 1 / Math.max(c.rootDist, MINDIST));
    }
    jitter = Math.sqrt(sq / w + systemPeer.jitter ** 2);
  }
  const used = prefer ? [prefer] : combined;
  return {
    falsetickers,
    outliers,
    survivors: [...survivors, ...backups],
    combined: used,
    systemPeer,
    offset,
    jitter,
    leap: majorityLeap(used),
  };
}

/** The leap indicator most of `cands` announce (ties and none: 0). */
export function majorityLeap(cands: readonly Candidate[]): number {
  const count = [0, 0, 0];
  for (const c of cands) if (c.leap < 3) count[c.leap]!++;
  if (count[1]! * 2 > cands.length) return 1;
  if (count[2]! * 2 > cands.length) return 2;
  return 0;
}
