/**
 * Gives back the memory that only start-up needed.
 *
 * The Deno executable is 96 MB; loading and compiling our modules touches
 * ~45 MB of it, of which serving NTP, the engine and the status page then
 * use ~18 MB (the executable's resident pages after this trim and a load
 * run, from /proc/PID/smaps). The rest stays resident, and counted in our
 * RSS, until memory runs short. Once everything has started we ask
 * the kernel to reclaim the executable's pages (madvise MADV_PAGEOUT,
 * Linux 5.4+): clean file pages, so nothing is written; the ones still in
 * use come back on their first touch (a page fault, as at start-up).
 * Pages another process maps too (another deno) are left alone by the
 * kernel. On a small router box this is tens of MB back for other uses.
 */
import { errnoName, libc, readProcFile } from "./libc.ts";

const MADV_RANDOM = 1;
const MADV_PAGEOUT = 21;

export interface TrimResult {
  /** Resident memory (RSS) before and after, in bytes. */
  before: number;
  after: number;
  /** Why nothing could be done, or null. */
  error: string | null;
}

/** The ranges of `/proc/self/maps` text that map `path`, as [start, end) addresses. */
export function mappingsOf(maps: string, path: string): [bigint, bigint][] {
  const out: [bigint, bigint][] = [];
  for (const line of maps.split("\n")) {
    // start-end perms offset dev inode   path (the path may hold spaces)
    const m = /^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ \S+\s+(.*)$/.exec(line);
    if (m && m[3] === path) out.push([BigInt(`0x${m[1]}`), BigInt(`0x${m[2]}`)]);
  }
  return out;
}

/** Asks the kernel to reclaim the pages of our executable (see the header). */
export function dropExecutablePages(): TrimResult {
  const rss = () => Deno.memoryUsage().rss;
  const before = rss();
  try {
    const exe = Deno.realPathSync(Deno.execPath());
    const ranges = mappingsOf(readProcFile("/proc/self/maps"), exe);
    if (ranges.length === 0) return { before, after: before, error: `${exe} is not mapped` };
    const c = libc();
    for (const [start, end] of ranges) {
      const at = Deno.UnsafePointer.create(start), length = end - start;
      // No read-ahead or fault-around here: a page comes back only if touched.
      c.madvise(at, length, MADV_RANDOM);
      if (c.madvise(at, length, MADV_PAGEOUT) !== 0) {
        return { before, after: rss(), error: `madvise: ${errnoName(c.errno())}` };
      }
    }
    return { before, after: rss(), error: null };
  } catch (e) {
    return { before, after: before, error: e instanceof Error ? e.message : String(e) };
  }
}
