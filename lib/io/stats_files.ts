/**
 * Writes ntpd-format statistics (`loopstats.YYYYMMDD`, `peerstats.YYYYMMDD`)
 * and the driftfile. Lines are formatted by lib/engine/stats.ts.
 */

/** Appends `line` to `<dir>/<file>.<day>`, creating the directory; errors are returned, not thrown. */
export async function appendStats(
  dir: string,
  file: string,
  day: string,
  line: string,
): Promise<string | null> {
  try {
    await Deno.mkdir(dir, { recursive: true });
    await Deno.writeTextFile(`${dir}/${file}.${day}`, line + "\n", { append: true });
    return null;
  } catch (e) {
    return `Cannot write ${dir}/${file}.${day}: ${e instanceof Error ? e.message : e}`;
  }
}

/** Reads a driftfile (one number, ppm, as ntpd writes it); null when absent or unreadable. */
export async function readDrift(path: string): Promise<number | null> {
  if (path === "") return null;
  try {
    const v = Number((await Deno.readTextFile(path)).trim().split(/\s+/)[0]);
    return Number.isFinite(v) && Math.abs(v) < 500 ? v : null;
  } catch {
    return null;
  }
}

/** Writes the driftfile atomically (temp file + rename). */
export async function writeDrift(path: string, ppm: number): Promise<string | null> {
  if (path === "") return null;
  try {
    const dir = path.slice(0, path.lastIndexOf("/"));
    if (dir) await Deno.mkdir(dir, { recursive: true });
    await Deno.writeTextFile(`${path}.tmp`, `${ppm.toFixed(3)}\n`);
    await Deno.rename(`${path}.tmp`, path);
    return null;
  } catch (e) {
    return `Cannot write driftfile ${path}: ${e instanceof Error ? e.message : e}`;
  }
}
