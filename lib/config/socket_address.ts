/**
 * Addresses as written in the config: listen addresses ("host:port",
 * "[v6]:port") and source addresses ("host", "host:port", "[v6]:port" or a
 * bare IPv6 address). These parsers are the one place that decides what
 * an address may look like: `check-config`, `run` and a reload all reach
 * them through `loadConfig`, so nothing that passes here can fail later
 * for its syntax. Each returns the parsed value or a one-line message.
 */
import { formatIp, parseIp } from "../ntp/address.ts";

export interface SocketAddress {
  hostname: string;
  port: number;
  family: 4 | 6;
}

/** A source address split and checked; `ip` is true when `host` is an IP literal. */
export interface SourceAddress {
  host: string;
  port: number;
  ip: boolean;
}

/** The NTP port a source address without one uses. */
export const NTP_PORT = 123;

/**
 * Checks the text after the colon: a decimal port in 1..65535.
 * Returns the port or an error message such as `port 99999 is out of range`.
 */
export function checkPort(text: string): number | string {
  if (text === "") return 'the port after ":" is missing';
  if (!/^\d+$/.test(text)) return `port "${text}" is not a number`;
  const n = Number(text);
  if (n < 1 || n > 65535) return `port ${text.replace(/^0+(?=\d)/, "")} is out of range`;
  return n;
}

/** An IP literal of either family as the config accepts it: no zone index (`%eth0`). */
function checkIp(host: string): Uint8Array | string {
  if (host.includes("%")) return `"${host}": zone indexes (%) are not supported`;
  return parseIp(host) ?? `"${host}" is not an IP address`;
}

/**
 * Parses a listen address; the port is required and must be 1..65535.
 * Returns `{hostname, port, family}` or a one-line error message naming
 * the address.
 */
export function parseSocketAddress(text: string): SocketAddress | string {
  const bracketed = /^\[([^\]]*)\](?::(.*))?$/.exec(text);
  let host: string;
  let port: string;
  if (bracketed) {
    host = bracketed[1]!;
    if (bracketed[2] === undefined) return `"${text}" needs a port: write "${text}:123"`;
    port = bracketed[2];
    const ip = checkIp(host);
    if (typeof ip === "string") {
      return host.includes("%") ? ip : `"${text}": "${host}" is not an IPv6 address`;
    }
    if (ip.length === 4) {
      return `"${text}": brackets are for IPv6 addresses; write "${host}:${port}"`;
    }
  } else {
    if (text.includes("[") || text.includes("]")) return `"${text}" has unbalanced brackets`;
    const colon = text.lastIndexOf(":");
    if (colon < 0 || text.indexOf(":") !== colon) {
      if (text.includes(":") && parseIp(text)) {
        return `"${text}" needs a port: write "[${text}]:123"`;
      }
      return `"${text}" needs a port`;
    }
    host = text.slice(0, colon);
    port = text.slice(colon + 1);
    const ip = checkIp(host);
    if (typeof ip === "string") {
      return host.includes("%") ? ip : `"${host}" in "${text}" is not an IP address`;
    }
  }
  const p = checkPort(port);
  if (typeof p === "string") return `"${text}": ${p}`;
  return { hostname: host, port: p, family: parseIp(host)!.length === 4 ? 4 : 6 };
}

/**
 * True for a DNS name a resolver can look up: labels of letters, digits,
 * `-` and `_` (1..63 characters, no `-` at either end), at most 253
 * characters, one trailing dot allowed, and a last label that is not all
 * digits (so "1.2.3.256" is a bad IP address, not a name).
 */
export function isHostName(text: string): boolean {
  const name = text.endsWith(".") ? text.slice(0, -1) : text;
  if (name === "" || name.length > 253) return false;
  const labels = name.split(".");
  if (!labels.every((l) => /^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/.test(l))) {
    return false;
  }
  return !/^\d+$/.test(labels.at(-1)!);
}

/** Why an IP cannot be a source (unspecified, broadcast, multicast), or null. */
function notUnicast(ip: Uint8Array): string | null {
  if (ip.every((b) => b === 0)) return "the unspecified address";
  if (ip.length === 4) {
    if (ip.every((b) => b === 255)) return "the broadcast address";
    if (ip[0]! >= 224 && ip[0]! <= 239) return "a multicast address";
    return null;
  }
  return ip[0] === 0xff ? "a multicast address" : null;
}

/**
 * Parses a `[[source]]` address: "host", "host:port", "[v6]", "[v6]:port"
 * or a bare IPv6 address; the port defaults to 123 and must be 1..65535;
 * a host is a unicast IPv4/IPv6 literal (no zone index) or a DNS name
 * (`isHostName`).
 * With `group`, multicast and broadcast addresses pass too (a `broadcast`
 * source listens on one; the config's cross checks hold the other kinds
 * to unicast).
 * Returns the parts or a one-line message such as `port 99999 is out of range`.
 */
export function parseSourceAddress(text: string, group = false): SourceAddress | string {
  if (text.trim() === "") return "must not be empty";
  if (/\s/.test(text)) return `"${text}" contains white space`;
  let host: string;
  let portText: string | undefined;
  const bracketed = /^\[([^\]]*)\](?::(.*))?$/.exec(text);
  if (bracketed) {
    host = bracketed[1]!;
    portText = bracketed[2];
    const ip = checkIp(host);
    if (typeof ip === "string" || ip.length === 4) {
      if (host.includes("%")) return ip as string;
      const plain = `${host}${portText === undefined ? "" : `:${portText}`}`;
      return parseIp(host) || isHostName(host)
        ? `"${text}": brackets are for IPv6 addresses; write "${plain}"`
        : `"${text}": "${host}" is not an IPv6 address`;
    }
  } else if (text.includes("[") || text.includes("]")) {
    return `"${text}" has unbalanced brackets`;
  } else {
    const colons = text.split(":").length - 1;
    const colon = colons > 1 ? -1 : text.indexOf(":");
    // Only a bare IPv6 address has more than one colon; with a port it needs brackets.
    host = colon < 0 ? text : text.slice(0, colon);
    portText = colon < 0 ? undefined : text.slice(colon + 1);
    if (host === "") return `"${text}" has no host before ":"`;
    if (host.includes("%")) return `"${host}": zone indexes (%) are not supported`;
    if (colons > 1 && !parseIp(host)) {
      return `"${text}" is not an IPv6 address (an IPv6 address with a port is written "[ADDR]:PORT")`;
    }
    if (!parseIp(host) && !isHostName(host)) {
      return /^[\d.]+$/.test(host)
        ? `"${host}" is not an IP address`
        : `"${host}" is not a valid host name`;
    }
  }
  const bytes = parseIp(host);
  if (bytes !== null && !group) {
    const why = notUnicast(bytes);
    if (why !== null) return `"${host}" is ${why}, not a server's address`;
  }
  let port = NTP_PORT;
  if (portText !== undefined) {
    const p = checkPort(portText);
    if (typeof p === "string") return p;
    port = p;
  }
  return { host, port, ip: parseIp(host) !== null };
}

/**
 * The identity of a source address for duplicate detection: an IP in its
 * canonical form or a lower-case name without a trailing dot, and the
 * port, e.g. `127.0.0.1 123`, `::1 123`, `ntp.example 123`. Null when the
 * address does not parse.
 */
export function sourceIdentity(text: string): string | null {
  const a = parseSourceAddress(text);
  if (typeof a === "string") return null;
  const ip = parseIp(a.host);
  const host = ip ? formatIp(ip) : a.host.toLowerCase().replace(/\.$/, "");
  return `${host} ${a.port}`;
}

/**
 * Splits "host", "host:port" or "[v6]:port" into a host and an optional
 * port (the `query` argument). The port is NaN when not a number; callers
 * check it.
 */
export function splitHostPort(text: string, defaultPort: number): { host: string; port: number } {
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(text);
  if (bracketed) return { host: bracketed[1]!, port: Number(bracketed[2] ?? defaultPort) };
  const first = text.indexOf(":");
  if (first >= 0 && first === text.lastIndexOf(":")) {
    return { host: text.slice(0, first), port: Number(text.slice(first + 1)) };
  }
  return { host: text, port: defaultPort };
}
