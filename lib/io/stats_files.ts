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

/**
 * Reads a driftfile (ntpd: one number, ppm; chrony: "ppm skew"; the first
 * field counts). `ppm` is null when there is none, with a one-line
 * `warning` when the file is missing, unreadable or not a frequency: the
 * engine then starts at 0 ppm.
 */
export async function readDrift(
  path: string,
): Promise<{ ppm: number | null; warning: string | null }> {
  if (path === "") return { ppm: null, warning: null };
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    const why = e instanceof Deno.errors.NotFound
      ? "not found"
      : `unreadable (${e instanceof Error ? e.message : e})`;
    return { ppm: null, warning: `Driftfile ${path} ${why}; starting at 0 ppm` };
  }
  const first = text.trim().split(/\s+/)[0] ?? "";
  const v = first === "" ? NaN : Number(first);
  if (!Number.isFinite(v) || Math.abs(v) >= 500) {
    const shown = JSON.stringify(text.trim().slice(0, 40));
    return {
      ppm: null,
      warning: `Driftfile ${path}: ${shown} is not a frequency in ppm; starting at 0 ppm`,
    };
  }
  return { ppm: v, warning: null };
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
