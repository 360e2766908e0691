/**
 * The fleet master key file (`[nts] master_key_file`), parsed without I/O.
 *
 * Format: one secret per line as hexadecimal, at least 32 bytes (64 hex
 * digits; `openssl rand -hex 32` makes one); blank lines and lines
 * starting with `#` are ignored, as is text after a `#`. The first secret
 * makes cookies, every listed secret opens them: rotating is adding the
 * new secret below the old one on every node, then moving it to the top,
 * then removing the old one once `cookie_key_days` have passed
 * (docs/guide/nts.md).
 */
import { MIN_SECRET_LENGTH } from "./cookie.ts";

/** Largest number of secrets a file may hold (a rotation needs two). */
export const MAX_SECRETS = 8;

/**
 * The secrets in `text` (the file `file`), first one current; or one error
 * line `FILE:LINE: …` (`FILE: …` when the file holds no secret).
 */
export function parseMasterKeys(text: string, file: string): Uint8Array[] | string {
  const secrets: Uint8Array[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.replace(/#.*/, "").trim();
    if (line === "") continue;
    const where = `${file}:${i + 1}`;
    if (!/^[0-9a-fA-F]+$/.test(line) || line.length % 2 !== 0) {
      return `${where}: a secret must be hexadecimal digits (e.g. from \`openssl rand -hex 32\`)`;
    }
    if (line.length < MIN_SECRET_LENGTH * 2) {
      return `${where}: a secret needs at least ${MIN_SECRET_LENGTH} bytes (${
        MIN_SECRET_LENGTH * 2
      } hex digits), this one has ${line.length / 2}`;
    }
    if (secrets.length === MAX_SECRETS) {
      return `${where}: at most ${MAX_SECRETS} secrets (the first makes cookies, the others are accepted during a rotation)`;
    }
    const bytes = new Uint8Array(line.length / 2);
    for (let j = 0; j < bytes.length; j++) bytes[j] = parseInt(line.slice(j * 2, j * 2 + 2), 16);
    if (secrets.some((s) => s.length === bytes.length && s.every((b, k) => b === bytes[k]))) {
      return `${where}: this secret is listed twice`;
    }
    secrets.push(bytes);
  }
  if (secrets.length === 0) {
    return `${file}: no secret (one hex line, e.g. from \`openssl rand -hex 32\`)`;
  }
  return secrets;
}
