/** What a server worker needs from the config, as plain cloneable data. */
import type { Config } from "../config/mod.ts";
import { type Cidr, parseCidr } from "../ntp/access.ts";
import type { RateLimitOptions } from "../ntp/rate_limit.ts";

export interface ServerOptions {
  allow: string[];
  deny: string[];
  denyKod: boolean;
  rateLimit: RateLimitOptions & { kod: boolean };
}

export function serverOptionsFrom(config: Config): ServerOptions {
  const s = config.server;
  return {
    allow: s.allow,
    deny: s.deny,
    denyKod: s.denyKod,
    rateLimit: { ...s.rateLimit },
  };
}

/** Parses CIDR strings already checked by config validation. */
export function cidrs(list: string[]): Cidr[] {
  return list.map(parseCidr).filter((c): c is Cidr => typeof c !== "string");
}
