/**
 * The cookie secrets of this node (lib/nts/cookie.ts): read from `[nts]
 * master_key_file` (the fleet's), or one random secret made once per
 * process. Read at start and at every reload; a file that cannot be used
 * is one error line and the keys in force stay.
 */
import type { Config } from "../config/mod.ts";
import { parseMasterKeys } from "../nts/master_key.ts";

/** What the server workers and the NTS-KE need to make and open cookies (structured-cloneable). */
export interface NtsKeys {
  /** First one makes cookies; all open them. */
  secrets: Uint8Array[];
  /** `nts.cookie_key_days`. */
  acceptDays: number;
  /** Where they came from, for the log: the file, or "a random key of this process". */
  origin: string;
}

/** Whether this node answers NTS requests: a master key file, or an NTS-KE server, is configured. */
export function ntsServing(c: Config): boolean {
  return c.nts.masterKeyFile !== "" || c.nts.keListen.length > 0;
}

/** A random secret for a node without a master key file (made once per process). */
export function localSecret(): Uint8Array {
  return crypto.getRandomValues(new Uint8Array(32));
}

/**
 * The keys `c` asks for: the master key file's secrets, or `local`. An
 * error is one line naming the file (and line); `warning` says when the
 * file can be read by other users.
 */
export async function loadNtsKeys(
  c: Config,
  local: Uint8Array,
): Promise<{ keys: NtsKeys; warning?: string } | { error: string }> {
  const file = c.nts.masterKeyFile;
  const acceptDays = c.nts.cookieKeyDays;
  if (file === "") {
    return { keys: { secrets: [local], acceptDays, origin: "a random key of this process" } };
  }
  let text: string;
  let mode: number | null = null;
  try {
    text = await Deno.readTextFile(file);
    mode = (await Deno.stat(file)).mode;
  } catch (e) {
    const why = e instanceof Deno.errors.NotFound
      ? "no such file"
      : e instanceof Deno.errors.PermissionDenied
      ? "permission denied"
      : e instanceof Error
      ? e.message
      : String(e);
    return { error: `nts.master_key_file: ${file}: ${why}` };
  }
  const secrets = parseMasterKeys(text, file);
  if (typeof secrets === "string") return { error: secrets };
  const keys = { secrets, acceptDays, origin: file };
  if (mode !== null && (mode & 0o007) !== 0) {
    return {
      keys,
      warning: `${file}: readable by other users (mode ${
        (mode & 0o777).toString(8).padStart(4, "0")
      }); whoever reads it can forge this fleet's cookies: chmod 600`,
    };
  }
  return { keys };
}
