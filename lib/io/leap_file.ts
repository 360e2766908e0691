/**
 * Reads `clock.leapfile` (the IERS/NIST `leap-seconds.list`) for the
 * engine driver; parsing and the rule are pure (lib/ntp/leap.ts).
 */
import { type LeapTable, parseLeapFile } from "../ntp/leap.ts";

/** The table, null when `path` is `""`, or one error line (`FILE:LINE: ...` or `FILE: ...`). */
export function loadLeapFile(path: string): LeapTable | null | string {
  if (path === "") return null;
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (e) {
    return `${path}: cannot read: ${e instanceof Error ? e.message : e}`;
  }
  return parseLeapFile(text, path);
}

/** One line describing a loaded table, for the log. */
export function describeLeapTable(t: LeapTable): string {
  const last = t.leaps.at(-1);
  const expires = new Date(t.expires * 1000).toISOString().slice(0, 10);
  return `Leap seconds from ${t.name}: ${t.leaps.length} leaps${
    last ? `, last before ${new Date(last.at * 1000).toISOString().slice(0, 10)}` : ""
  }, expires ${expires}, ${t.hashVerified ? "SHA-1 verified" : "no #h line (not verified)"}`;
}
