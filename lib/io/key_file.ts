/**
 * Reads `auth.keyfile` (ntpd `ntp.keys` format) for the app; parsing is
 * pure (lib/auth/keys.ts). Errors never contain a key.
 */
import { type KeyTable, parseKeyFile } from "../auth/keys.ts";

/** What a key file gave: its keys and one line per problem. */
export interface LoadedKeys {
  keys: KeyTable;
  /** `FILE:LINE: …` per bad line, or one `FILE: cannot read: …`. */
  errors: string[];
  /** False when the file could not be read at all (a reload keeps the old keys then). */
  read: boolean;
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
  return { ...parseKeyFile(text, path), read: true };
}
