/**
 * Reference IDs (RFC 5905 §7.3): the IPv4 address of the system peer, or
 * the first four bytes of the MD5 digest of its IPv6 address.
 */
import { createHash } from "node:crypto";
import { formatIp, parseIp } from "../ntp/address.ts";

/** The refid a server synchronised to `address` sends; 0 when `address` is not an IP. */
export function refidOfAddress(address: string): number {
  const ip = parseIp(address);
  if (!ip) return 0;
  if (ip.length === 4) return ((ip[0]! << 24) | (ip[1]! << 16) | (ip[2]! << 8) | ip[3]!) >>> 0;
  const d = createHash("md5").update(ip).digest();
  return ((d[0]! << 24) | (d[1]! << 16) | (d[2]! << 8) | d[3]!) >>> 0;
}

/** Canonical text of an IP address ("::ffff:1.2.3.4" stays IPv6), or the input when not an IP. */
export function canonicalIp(address: string): string {
  const ip = parseIp(address);
  return ip ? formatIp(ip) : address;
}
