/**
 * Access control: `allow` and `deny` CIDR lists. As in chrony, the most
 * specific matching prefix decides; on a tie, deny wins. An address that
 * matches nothing is denied.
 */
import type { ClientAddress } from "./address.ts";
import { parseIp } from "./address.ts";

interface Rule {
  family: 4 | 6;
  net: Uint32Array;
  mask: Uint32Array;
  prefix: number;
  allow: boolean;
}

/** A parsed CIDR prefix. */
export interface Cidr {
  family: 4 | 6;
  bytes: Uint8Array;
  prefix: number;
}

/** Parses "10.0.0.0/8", "2001:db8::/32" or a bare address (full length). */
export function parseCidr(text: string): Cidr | string {
  const slash = text.indexOf("/");
  const addr = slash >= 0 ? text.slice(0, slash) : text;
  const bytes = parseIp(addr);
  if (!bytes) return `"${text}" is not an IP address or CIDR prefix`;
  const max = bytes.length * 8;
  let prefix = max;
  if (slash >= 0) {
    const p = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(p) || Number(p) > max) {
      return `"${text}" has a prefix length outside 0..${max}`;
    }
    prefix = Number(p);
  }
  return { family: bytes.length === 4 ? 4 : 6, bytes, prefix };
}

function toWords(bytes: Uint8Array): Uint32Array {
  const w = new Uint32Array(4);
  for (let i = 0; i < bytes.length; i++) w[i >> 2]! |= bytes[i]! << (24 - 8 * (i & 3));
  for (let i = 0; i < 4; i++) w[i] = w[i]! >>> 0;
  return w;
}

function maskWords(prefix: number): Uint32Array {
  const m = new Uint32Array(4);
  for (let i = 0; i < 4; i++) {
    const bits = Math.max(0, Math.min(32, prefix - 32 * i));
    m[i] = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
  }
  return m;
}

export class AccessList {
  readonly #rules: Rule[];

  constructor(allow: Cidr[], deny: Cidr[]) {
    const rule = (c: Cidr, ok: boolean): Rule => {
      const mask = maskWords(c.prefix);
      const net = toWords(c.bytes).map((w, i) => (w & mask[i]!) >>> 0);
      return { family: c.family, net, mask, prefix: c.prefix, allow: ok };
    };
    // Most specific first; deny before allow at equal length.
    this.#rules = [...allow.map((c) => rule(c, true)), ...deny.map((c) => rule(c, false))]
      .sort((a, b) => b.prefix - a.prefix || Number(a.allow) - Number(b.allow));
  }

  /** True when `client` may be served. */
  allows(client: ClientAddress): boolean {
    const w = client.words;
    outer: for (const r of this.#rules) {
      if (r.family !== client.family) continue;
      for (let i = 0; i < 4; i++) {
        if (((w[i]! & r.mask[i]!) >>> 0) !== r.net[i]) continue outer;
      }
      return r.allow;
    }
    return false;
  }
}
