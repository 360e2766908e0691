/** "host:port" and "[v6]:port" socket addresses, as written in the config. */
import { parseIp } from "../ntp/address.ts";

export interface SocketAddress {
  hostname: string;
  port: number;
  family: 4 | 6;
}

/** Parses a listen address; the port is required. Returns an error message on failure. */
export function parseSocketAddress(text: string): SocketAddress | string {
  const bracketed = /^\[([^\]]+)\]:(\d+)$/.exec(text);
  let host: string;
  let port: string;
  if (bracketed) {
    host = bracketed[1]!;
    port = bracketed[2]!;
  } else {
    const colon = text.lastIndexOf(":");
    if (colon < 0 || text.indexOf(":") !== colon) {
      if (text.includes(":") && parseIp(text)) {
        return `"${text}" needs a port: write "[${text}]:123"`;
      }
      return `"${text}" needs a port`;
    }
    host = text.slice(0, colon);
    port = text.slice(colon + 1);
  }
  const bytes = parseIp(host);
  if (!bytes) return `"${host}" in "${text}" is not an IP address`;
  if (!/^\d{1,5}$/.test(port) || Number(port) > 65535) {
    return `"${text}" has a port outside 0..65535`;
  }
  return { hostname: host, port: Number(port), family: bytes.length === 4 ? 4 : 6 };
}

/** Splits "host", "host:port" or "[v6]:port" into a host and an optional port (sources). */
export function splitHostPort(text: string, defaultPort: number): { host: string; port: number } {
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(text);
  if (bracketed) return { host: bracketed[1]!, port: Number(bracketed[2] ?? defaultPort) };
  const first = text.indexOf(":");
  if (first >= 0 && first === text.lastIndexOf(":")) {
    return { host: text.slice(0, first), port: Number(text.slice(first + 1)) };
  }
  return { host: text, port: defaultPort };
}
