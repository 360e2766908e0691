/**
 * Finds the line on which each key of a TOML document is set, so that
 * validation errors can say `FILE:LINE:`. smol-toml gives positions only
 * for syntax errors; this scanner runs after a successful parse and only
 * needs to understand table headers, keys, inline tables and values that
 * span lines.
 *
 * Paths look like `server.rate_limit.interval_s` and `source[1].address`
 * (array-of-tables entries are numbered from 0).
 */

/** Strips a trailing comment, respecting quoted strings. */
function stripComment(line: string): string {
  let quote = "";
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]!;
    if (quote) {
      if (ch === "\\" && quote === '"') i++;
      else if (ch === quote) quote = "";
    } else if (ch === '"' || ch === "'") quote = ch;
    else if (ch === "#") return line.slice(0, i);
  }
  return line;
}

/** Net bracket depth change of a value fragment, ignoring brackets in strings. */
function depthChange(fragment: string): number {
  let depth = 0;
  let quote = "";
  for (let i = 0; i < fragment.length; i++) {
    const ch = fragment[i]!;
    if (quote) {
      if (ch === "\\" && quote === '"') i++;
      else if (ch === quote) quote = "";
    } else if (ch === '"' || ch === "'") quote = ch;
    else if (ch === "[" || ch === "{") depth++;
    else if (ch === "]" || ch === "}") depth--;
  }
  return depth;
}

function unquoteKey(key: string): string {
  const parts = key.match(/"[^"]*"|'[^']*'|[^.\s]+/g) ?? [];
  return parts.map((k) => k.replace(/^["'](.*)["']$/, "$1")).join(".");
}

const KEY_RE =
  /^\s*((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*=/;

/** Maps each key path to its 1-based line number. */
export function locateKeys(text: string): Map<string, number> {
  const lines = text.split("\n");
  const found = new Map<string, number>();
  const arrayCounts = new Map<string, number>();
  let prefix = "";
  let depth = 0; // open brackets of a value continuing from earlier lines
  let inMultiline = ""; // '"""' or "'''" while inside a multi-line string
  for (let n = 0; n < lines.length; n++) {
    const raw = lines[n]!;
    if (inMultiline) {
      if (raw.split(inMultiline).length % 2 === 0) inMultiline = "";
      continue;
    }
    const line = stripComment(raw);
    if (depth > 0) {
      depth += depthChange(line);
      continue;
    }
    const trimmed = line.trim();
    if (!trimmed) continue;
    const arrayHeader = /^\[\[\s*(.+?)\s*\]\]$/.exec(trimmed);
    if (arrayHeader) {
      const name = unquoteKey(arrayHeader[1]!);
      const idx = arrayCounts.get(name) ?? 0;
      arrayCounts.set(name, idx + 1);
      prefix = `${name}[${idx}]`;
      found.set(prefix, n + 1);
      continue;
    }
    const header = /^\[\s*(.+?)\s*\]$/.exec(trimmed);
    if (header) {
      const name = unquoteKey(header[1]!);
      // A sub-table of the latest array entry, like [source.options].
      const parent = [...arrayCounts.keys()].find((a) => name.startsWith(a + "."));
      prefix = parent
        ? `${parent}[${arrayCounts.get(parent)! - 1}]${name.slice(parent.length)}`
        : name;
      if (!found.has(prefix)) found.set(prefix, n + 1);
      continue;
    }
    const key = KEY_RE.exec(line);
    if (!key) continue;
    const path = (prefix ? prefix + "." : "") + unquoteKey(key[1]!);
    found.set(path, n + 1);
    const value = line.slice(key[0].length);
    for (const q of ['"""', "'''"]) {
      if (value.split(q).length === 2) inMultiline = q;
    }
    // Keys of an inline table on this line: rate_limit = { interval_s = 2 }.
    if (value.trim().startsWith("{")) {
      for (const m of value.matchAll(/[{,]\s*([A-Za-z0-9_-]+)\s*=/g)) {
        found.set(`${path}.${m[1]}`, n + 1);
      }
    }
    depth = Math.max(0, depthChange(value));
  }
  return found;
}

/** The line of `path`, or of its nearest ancestor that was written in the file. */
export function lineOf(lines: Map<string, number>, path: string): number {
  let p = path;
  for (;;) {
    const n = lines.get(p);
    if (n !== undefined) return n;
    const cut = Math.max(p.lastIndexOf("."), p.lastIndexOf("["));
    if (cut <= 0) return 1;
    p = p.slice(0, cut);
  }
}
