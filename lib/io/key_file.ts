/**
 * Reads `auth.keyfile` (ntpd `ntp.keys` format) for the app; parsing is
 * pure (lib/auth/keys.ts). Errors never contain a key.
 */
import { type AuthKeys, type KeyTable, parseKeyFile } from "../auth/keys.ts";
import { type Config, missingSourceKeys } from "../config/mod.ts";
import type { WorkerKeys } from "./server_worker.ts";

/** What a key file gave: its keys and one line per problem. */
export interface LoadedKeys {
  keys: KeyTable;
  /** `FILE:LINE: …` per bad line, or one `FILE: cannot read: …`. */
  errors: string[];
  /** False when the file could not be read at all (a reload keeps the old keys then). */
  read: boolean;
  /** Set when other users may read the file (ntpd and chronyd warn too). */
  warning?: string;
}

/** Reads and parses the key file at `path`; `""` = no key file, no keys. */
export function loadKeyFile(path: string): LoadedKeys {
  if (path === "") return { keys: new Map(), errors: [], read: true };
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (e) {
    const why = e instanceof Deno.errors.NotFound
      ? "no such file"
      : e instanceof Error
      ? e.message
      : String(e);
    return { keys: new Map(), errors: [`${path}: cannot read: ${why}`], read: false };
  }
  const parsed = { ...parseKeyFile(text, path), read: true };
  let mode: number | null = null;
  try {
    mode = Deno.statSync(path).mode;
  } catch { /* read a moment ago: a race with a rename; no warning then */ }
  if (mode !== null && (mode & 0o004) !== 0) {
    return {
      ...parsed,
      warning: `${path}: readable by every user (mode ${
        (mode & 0o777).toString(8).padStart(4, "0")
      }); whoever reads it can authenticate as your servers and peers: chmod 600`,
    };
  }
  return parsed;
}

/**
 * The keys `config` asks for (`auth.keyfile`, `auth.trusted_keys`) and
 * every problem, one line each: the key file's own (`FILE:LINE: …`), then
 * sources whose `key` the file lacks (`CONFIG:LINE: source[i].key: …`,
 * `configText`/`configFile` being the config's). `keys` is null when the
 * file could not be read.
 */
export function readKeys(
  config: Config,
  configText: string,
  configFile: string,
): { keys: AuthKeys | null; errors: string[]; warning?: string } {
  const loaded = loadKeyFile(config.auth.keyfile);
  if (!loaded.read) return { keys: null, errors: loaded.errors };
  const warning = loaded.warning === undefined ? {} : { warning: loaded.warning };
  const keys = { keys: loaded.keys, trusted: new Set(config.auth.trustedKeys) };
  const ids = new Set(loaded.keys.keys());
  return {
    keys,
    errors: [...loaded.errors, ...missingSourceKeys(config, ids, configText, configFile)],
    ...warning,
  };
}

/** One log line about the keys in force: how many, their IDs and types, which are trusted. */
export function describeKeys(file: string, k: AuthKeys): string {
  const list = [...k.keys.values()].map((key) =>
    `${key.id} ${key.type}${k.trusted.has(key.id) ? "" : " (untrusted)"}`
  );
  return `Keys from ${file}: ${list.length === 0 ? "none" : list.join(", ")}`;
}

/** The keys as plain data for the server workers (postMessage). */
export function workerKeys(k: AuthKeys): WorkerKeys {
  return { keys: [...k.keys.values()], trusted: [...k.trusted] };
}

/** Whether two key sets hold the same keys and trust the same IDs. */
export function sameKeys(a: AuthKeys, b: AuthKeys): boolean {
  if (a.keys.size !== b.keys.size || a.trusted.size !== b.trusted.size) return false;
  for (const id of a.trusted) if (!b.trusted.has(id)) return false;
  for (const [id, k] of a.keys) {
    const o = b.keys.get(id);
    if (!o || o.type !== k.type || o.secret.length !== k.secret.length) return false;
    for (let i = 0; i < k.secret.length; i++) if (o.secret[i] !== k.secret[i]) return false;
  }
  return true;
}
