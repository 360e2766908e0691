/**
 * The layering rule, checked: which folder of lib/ may import which
 * (docs/design/architecture.md). Prints one line per import a layer must
 * not make, `lib/x/y.ts:LINE: imports lib/io (status may import …)`, and
 * exits 1 when there is any; part of `deno task check`.
 *
 *   deno run --allow-read scripts/check_imports.ts
 */

/**
 * What each layer of lib/ may import besides itself. `contracts` (shapes
 * that cross layers) and `log` may be imported by every layer. `io` and the
 * composition roots (app.ts, reload.ts, and anycast/mod.ts, which wires the
 * anycast command to its drivers) may import anything.
 */
export const ALLOWED: Record<string, readonly string[]> = {
  ntp: [],
  auth: ["ntp"],
  config: ["ntp"],
  engine: ["ntp", "auth"],
  sim: ["ntp", "engine"],
  status: ["ntp", "engine", "config", "anycast"],
  anycast: ["ntp", "config"],
  nts: ["ntp"],
};
const EVERYONE = ["contracts", "log", "version"];
/** Files that wire drivers to the core; exempt from the rule. */
const ROOTS = new Set(["lib/anycast/mod.ts"]);

/** The layer of a path under lib/: its folder, or a root file's name without `.ts`. */
export function layerOf(path: string): string | null {
  const m = /^lib\/([^/]+)(\/|\.ts$)/.exec(path);
  return m ? m[1]!.replace(/\.ts$/, "") : null;
}

/** Joins a relative import to the importing file's path (POSIX, no `..` above the root). */
function resolve(from: string, spec: string): string {
  const parts = from.split("/").slice(0, -1);
  for (const p of spec.split("/")) {
    if (p === "..") parts.pop();
    else if (p !== ".") parts.push(p);
  }
  return parts.join("/");
}

/**
 * The violations in `files` (paths relative to the repository root, with
 * their text): one line each, `PATH:LINE: imports lib/X (Y may import …)`.
 */
export function checkImports(files: { path: string; text: string }[]): string[] {
  const out: string[] = [];
  for (const { path, text } of files) {
    const layer = layerOf(path);
    const allowed = layer === null ? null : ALLOWED[layer];
    if (!allowed || ROOTS.has(path)) continue;
    text.split("\n").forEach((line, i) => {
      for (const m of line.matchAll(/(?:from|import)\s*\(?\s*"(\.{1,2}\/[^"]+)"/g)) {
        const target = layerOf(resolve(path, m[1]!));
        if (target === null || target === layer) continue;
        if (allowed.includes(target) || EVERYONE.includes(target)) continue;
        const may = [...allowed, ...EVERYONE].join(", ");
        out.push(`${path}:${i + 1}: imports lib/${target} (${layer} may import ${may})`);
      }
    });
  }
  return out;
}

async function* walk(dir: string): AsyncGenerator<string> {
  for await (const e of Deno.readDir(dir)) {
    const p = `${dir}/${e.name}`;
    if (e.isDirectory) yield* walk(p);
    else if (e.isFile && p.endsWith(".ts")) yield p;
  }
}

if (import.meta.main) {
  const files: { path: string; text: string }[] = [];
  for await (const path of walk("lib")) files.push({ path, text: await Deno.readTextFile(path) });
  const bad = checkImports(files);
  for (const line of bad) console.error(line);
  if (bad.length > 0) Deno.exit(1);
}
