/**
 * Symmetric keys for NTP MACs (RFC 5905 §7.3 and Appendix A; RFC 8573 for
 * AES-CMAC), read from a key file in the ntpd `ntp.keys` format that
 * ntpsec and chrony also read:
 *
 *     # ID  TYPE        KEY
 *     1     MD5         kQ3s6Y9zC2bF            (text: 1 to 20 printable characters)
 *     2     SHA1        4f2e...                 (hex: more than 20 characters, ntpd/ntpsec)
 *     3     AES128CMAC  HEX:00112233...         (chrony's explicit prefixes HEX: / ASCII:)
 *     4     s3cr3t                              (chrony's two-word form: MD5)
 *
 * Types, case-insensitive: `MD5` (and ntpd's `M`), `SHA1` (`SHA-1`),
 * `SHA256` (`SHA-256`), `AES128CMAC` (ntpd; chrony's `AES128`, ntpsec's
 * `AES`, `AES-128`), `AES256CMAC` (chrony's `AES256`, ntpsec's
 * `AES-256`). A CMAC key must be exactly the cipher's key length (16 or 32
 * bytes), as chrony requires (ntpsec pads or truncates, silently changing
 * the key). Key ID 0 is reserved: it marks a crypto-NAK.
 *
 * Pure: the driver (lib/auth/load.ts) reads the file. Errors name the file
 * and line and never echo a key or any other token of a key line, since a
 * mistyped line may put the secret in any column.
 */

/** Key types of RFC 5905 (MD5), ntpd/ntpsec/chrony (SHA1, SHA256) and RFC 8573 (AES-CMAC). */
export type KeyType = "MD5" | "SHA1" | "SHA256" | "AES128CMAC" | "AES256CMAC";

export interface SymmetricKey {
  /** Key ID, 1 to 2^32 - 1, as it travels in the MAC. */
  id: number;
  type: KeyType;
  /** The key bytes; never logged or reported. */
  secret: Uint8Array;
}

/** Keys by ID. */
export type KeyTable = ReadonlyMap<number, SymmetricKey>;

/** The keys in force: the key file's table and the IDs trusted (`auth.trusted_keys`). */
export interface AuthKeys {
  keys: KeyTable;
  trusted: ReadonlySet<number>;
}

/** Type names accepted in a key file (upper-cased) and the type each means. */
const TYPE_NAMES: Record<string, KeyType> = {
  M: "MD5",
  MD5: "MD5",
  SHA1: "SHA1",
  "SHA-1": "SHA1",
  SHA256: "SHA256",
  "SHA-256": "SHA256",
  AES128CMAC: "AES128CMAC",
  AES128: "AES128CMAC",
  AES: "AES128CMAC",
  "AES-128": "AES128CMAC",
  AES256CMAC: "AES256CMAC",
  AES256: "AES256CMAC",
  "AES-256": "AES256CMAC",
};

/** Key length in bytes a CMAC key must have. */
const CMAC_KEY_LENGTH: Partial<Record<KeyType, number>> = { AES128CMAC: 16, AES256CMAC: 32 };

/** Longest text key without a prefix (ntpd: longer keys are hex). */
const MAX_TEXT_KEY = 20;
/** Longest key in bytes (ntpsec reads at most 32 bytes of hex). */
const MAX_KEY_BYTES = 32;
const MAX_KEY_ID = 0xffffffff;

/** The key type a key-file type name means, or null (case-insensitive). */
export function keyTypeOf(name: string): KeyType | null {
  return TYPE_NAMES[name.toUpperCase()] ?? null;
}

function decodeHex(text: string): Uint8Array | null {
  if (text.length === 0 || text.length % 2 !== 0 || !/^[0-9a-fA-F]+$/.test(text)) return null;
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(text.slice(2 * i, 2 * i + 2), 16);
  return out;
}

function isPrintable(text: string): boolean {
  return /^[\x21-\x7e]+$/.test(text);
}

/**
 * Decodes a key token: `HEX:…` / `ASCII:…` (chrony), else text of at most
 * 20 characters or hex beyond that (ntpd, ntpsec). Returns the bytes or
 * the reason, which never contains the token.
 */
function decodeKey(token: string): Uint8Array | string {
  let bytes: Uint8Array | null;
  if (/^HEX:/i.test(token)) {
    bytes = decodeHex(token.slice(4));
    if (!bytes) return "key after HEX: is not an even number of hex digits";
  } else if (/^ASCII:/i.test(token)) {
    const text = token.slice(6);
    if (!text || !isPrintable(text)) return "key after ASCII: is empty or not printable ASCII";
    bytes = new TextEncoder().encode(text);
  } else if (token.length <= MAX_TEXT_KEY) {
    if (!isPrintable(token)) return "text key is not printable ASCII";
    bytes = new TextEncoder().encode(token);
  } else {
    bytes = decodeHex(token);
    if (!bytes) {
      return `a key of more than ${MAX_TEXT_KEY} characters must be hex (ntpd); ` +
        "write ASCII:… for a longer text key (chrony)";
    }
  }
  if (bytes.length > MAX_KEY_BYTES) return `key is longer than ${MAX_KEY_BYTES} bytes`;
  return bytes;
}

/**
 * Parses a key file's text. `file` names it in errors (`FILE:LINE: …`).
 * Bad lines are skipped with an error each; the good keys are kept (a
 * duplicate ID keeps the first). Lines are `ID TYPE KEY` or chrony's
 * `ID KEY` (MD5); `#` starts a comment.
 */
export function parseKeyFile(text: string, file: string): { keys: KeyTable; errors: string[] } {
  const keys = new Map<number, SymmetricKey>();
  const firstLine = new Map<number, number>();
  const errors: string[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const words = raw.replace(/#.*/, "").trim().split(/\s+/).filter((w) => w !== "");
    if (words.length === 0) return;
    const key = parseKeyLine(words);
    const first = typeof key === "string" ? undefined : firstLine.get(key.id);
    if (typeof key === "string") errors.push(`${file}:${i + 1}: ${key}`);
    else if (first !== undefined) {
      errors.push(`${file}:${i + 1}: key ${key.id} is defined again (first on line ${first})`);
    } else {
      firstLine.set(key.id, i + 1);
      keys.set(key.id, key);
    }
  });
  return { keys, errors };
}

/** One key line's words as a key, or why not (without any of its words but the ID). */
function parseKeyLine(words: string[]): SymmetricKey | string {
  if (words.length > 3) return "expected ID TYPE KEY, found more than three words";
  if (words.length === 1) return "expected ID TYPE KEY, found one word";
  const [idText, ...rest] = words as [string, ...string[]];
  const id = /^[0-9]{1,10}$/.test(idText) ? Number(idText) : NaN;
  if (id === 0) return "key ID 0 is reserved (it marks a crypto-NAK)";
  if (!(id >= 1 && id <= MAX_KEY_ID)) return `key ID is not a number from 1 to ${MAX_KEY_ID}`;
  // chrony's `ID KEY` form means MD5; a lone type name there is a key left out, not a secret.
  if (rest.length === 1 && keyTypeOf(rest[0]!)) {
    return `key ${id}: the key is missing after its type (expected ID TYPE KEY)`;
  }
  const type = keyTypeOf(rest.length === 2 ? rest[0]! : "MD5");
  if (!type) {
    return `key ${id}: unknown type (expected MD5, SHA1, SHA256, AES128CMAC or AES256CMAC)`;
  }
  const secret = decodeKey(rest[rest.length - 1]!);
  if (typeof secret === "string") return `key ${id}: ${secret}`;
  const need = CMAC_KEY_LENGTH[type];
  if (need !== undefined && secret.length !== need) {
    return `key ${id}: an ${type} key must be ${need} bytes (${
      2 * need
    } hex digits), not ${secret.length}`;
  }
  return { id, type, secret };
}
