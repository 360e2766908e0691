/**
 * The files an NTS config names, checked the way they are used: the
 * NTS-KE certificate and key (lib/io/openssl.ts `TlsContext.server`, as
 * the KE listener loads them), the master key file (lib/io/nts_keys.ts
 * `loadNtsKeys`, as the server does) and each NTS source's `ca_file`
 * (`TlsContext.client`, as a key exchange loads it). `check-config` and
 * `run` (main.ts `readConfig`) refuse a config whose files fail; a reload
 * keeps the files in force instead (each part says so in one line).
 */
import type { Config } from "../config/mod.ts";
import { lineOf, locateKeys } from "../config/locate.ts";
import { NTS_KE_ALPN } from "../nts/ke_records.ts";
import { TlsContext } from "./openssl.ts";
import { loadNtsKeys, localSecret } from "./nts_keys.ts";

/** What the NTS files of a config gave: one line per problem, and warnings (readable secrets). */
export interface NtsFileCheck {
  /** `CONFIG:LINE: nts.certificate: FILE: …`, `MASTERKEY:LINE: …`, `CONFIG:LINE: source[i].ca_file: …`. */
  errors: string[];
  warnings: string[];
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/**
 * Loads `certificate` and `privateKey` as the NTS-KE server does; null
 * when they serve, else which key is at fault and OpenSSL's one line
 * (naming the file): missing, not PEM, not matching, expired, not yet valid.
 */
export function checkKeCertificate(
  certificate: string,
  privateKey: string,
): { key: "certificate" | "private_key"; error: string } | null {
  try {
    TlsContext.server({ certificate, privateKey }, NTS_KE_ALPN).free();
    return null;
  } catch (e) {
    const error = message(e);
    const key = error.startsWith(`${privateKey}:`) && !error.startsWith(`${certificate}:`)
      ? "private_key"
      : "certificate";
    return { key, error };
  }
}

/** Loads CA file `caFile` as a key exchange does; null when it loads, else one line naming it. */
export function checkCaFile(caFile: string): string | null {
  try {
    TlsContext.client(NTS_KE_ALPN, caFile).free();
    return null;
  } catch (e) {
    return message(e);
  }
}

/**
 * The `ca_file` problems of `config`'s NTS sources, one line each,
 * `CONFIG:LINE: source[i].ca_file: FILE: …` (`text`/`file`: the config's).
 */
export function checkCaFiles(config: Config, text: string, file: string): string[] {
  const lines = locateKeys(text);
  const out: string[] = [];
  config.source.forEach((s, i) => {
    if (!s.nts || s.caFile === "") return;
    const error = checkCaFile(s.caFile);
    const path = `source[${i}].ca_file`;
    if (error !== null) out.push(`${file}:${lineOf(lines, path)}: ${path}: ${error}`);
  });
  return out;
}

/**
 * Every NTS file of `config` (`text`/`file`: the config's own text and
 * name, for line numbers), checked with the code that uses it. A master
 * key file others may read is a warning, as a readable `auth.keyfile` is.
 */
export async function checkNtsFiles(
  config: Config,
  text: string,
  file: string,
): Promise<NtsFileCheck> {
  const lines = locateKeys(text);
  const at = (path: string) => `${file}:${lineOf(lines, path)}: ${path}`;
  const errors: string[] = [];
  const warnings: string[] = [];
  const n = config.nts;
  if (n.keListen.length > 0 && n.certificate !== "" && n.privateKey !== "") {
    const bad = checkKeCertificate(n.certificate, n.privateKey);
    if (bad) errors.push(`${at(`nts.${bad.key}`)}: ${bad.error}`);
  }
  if (n.masterKeyFile !== "") {
    const r = await loadNtsKeys(config, localSecret());
    if ("error" in r) {
      // A line of the file says `FILE:LINE: …` itself; an unreadable file is named by its key.
      errors.push(
        r.error.startsWith("nts.master_key_file: ")
          ? `${at("nts.master_key_file")}: ${r.error.slice("nts.master_key_file: ".length)}`
          : r.error,
      );
    } else if (r.warning) warnings.push(r.warning);
  }
  errors.push(...checkCaFiles(config, text, file));
  return { errors, warnings };
}
