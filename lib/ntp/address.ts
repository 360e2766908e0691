/**
 * Client addresses on the packet path, as plain words so that access
 * checks and rate-limit lookups allocate nothing.
 */

/**
 * A remote address. For IPv4, `words[0]` holds the address and the other
 * words are 0; for IPv6, `words` is the address as four big-endian words.
 * IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) are stored as IPv4.
 */
export interface ClientAddress {
  family: 4 | 6;
  words: Uint32Array;
  port: number;
}

export function newClientAddress(): ClientAddress {
  return { family: 4, words: new Uint32Array(4), port: 0 };
}

/** Fills `into` from raw address bytes (4 or 16) and a port. */
export function setClientAddress(
  into: ClientAddress,
  bytes: Uint8Array,
  offset: number,
  length: 4 | 16,
  port: number,
): void {
  const w = into.words;
  into.port = port;
  const word = (i: number) =>
    ((bytes[offset + i]! << 24) | (bytes[offset + i + 1]! << 16) | (bytes[offset + i + 2]! << 8) |
      bytes[offset + i + 3]!) >>> 0;
  if (length === 4) {
    into.family = 4;
    w[0] = word(0);
    w[1] = w[2] = w[3] = 0;
    return;
  }
  const w0 = word(0), w1 = word(4), w2 = word(8), w3 = word(12);
  if (w0 === 0 && w1 === 0 && w2 === 0xffff) {
    into.family = 4;
    w[0] = w3;
    w[1] = w[2] = w[3] = 0;
    return;
  }
  into.family = 6;
  w[0] = w0;
  w[1] = w1;
  w[2] = w2;
  w[3] = w3;
}

/**
 * Parses a textual IPv4 (dotted quad, no leading zeros) or IPv6 address
 * into 4 or 16 bytes, or null.
 */
export function parseIp(text: string): Uint8Array | null {
  if (text.includes(":")) return parseIpv6(text);
  return parseIpv4(text);
}

function parseIpv4(text: string): Uint8Array | null {
  const parts = text.split(".");
  if (parts.length !== 4) return null;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const p = parts[i]!;
    // No leading zeros: "010" is octal to inet_aton and invalid to inet_pton.
    if (!/^(?:0|[1-9]\d{0,2})$/.test(p)) return null;
    const n = Number(p);
    if (n > 255) return null;
    out[i] = n;
  }
  return out;
}

function parseIpv6(text: string): Uint8Array | null {
  let s = text;
  const zone = s.indexOf("%");
  if (zone >= 0) s = s.slice(0, zone);
  // An embedded IPv4 tail (::ffff:1.2.3.4) becomes two hex groups.
  const lastColon = s.lastIndexOf(":");
  const tail = s.slice(lastColon + 1);
  if (tail.includes(".")) {
    const v4 = parseIpv4(tail);
    if (!v4) return null;
    s = s.slice(0, lastColon + 1) + ((v4[0]! << 8) | v4[1]!).toString(16) + ":" +
      ((v4[2]! << 8) | v4[3]!).toString(16);
  }
  const halves = s.split("::");
  if (halves.length > 2) return null;
  const head = halves[0] ? halves[0].split(":") : [];
  const rest = halves.length === 2 && halves[1] ? halves[1].split(":") : [];
  const missing = 8 - head.length - rest.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return null;
  const groups = [...head, ...Array(halves.length === 2 ? missing : 0).fill("0"), ...rest];
  const out = new Uint8Array(16);
  for (let i = 0; i < 8; i++) {
    const g = groups[i]!;
    if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return null;
    const n = parseInt(g, 16);
    out[i * 2] = n >> 8;
    out[i * 2 + 1] = n & 0xff;
  }
  return out;
}

/** Formats 4 or 16 address bytes as text (IPv6 compressed per RFC 5952). */
export function formatIp(bytes: Uint8Array): string {
  if (bytes.length === 4) return Array.from(bytes).join(".");
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((bytes[i]! << 8) | bytes[i + 1]!);
  let bestStart = -1, bestLen = 0;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i > 1) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(":");
  return hex.slice(0, bestStart).join(":") + "::" + hex.slice(bestStart + bestLen).join(":");
}
