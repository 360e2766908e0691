/**
 * The NTS-KE server's session logic (RFC 8915 §4): plaintext bytes of the
 * request in, the response out, with the keys and cookies it needs asked
 * of the caller. Pure; the driver (lib/io/nts_ke_listener.ts) runs TLS.
 */
import type { NtsKeCounters } from "../contracts.ts";
import { AccessList, type Cidr, parseCidr } from "../ntp/access.ts";
import { newClientAddress, parseIp, setClientAddress } from "../ntp/address.ts";
import { COOKIES_PER_KE, negotiateServer, serverResponse } from "./ke_negotiate.ts";
import {
  aeadKeyLength,
  decodeMessage,
  encodeRecords,
  ErrorCode,
  MAX_MESSAGE_BYTES,
  rec,
} from "./ke_records.ts";

/**
 * Makes `count` cookies for a client that negotiated `aeadId` with keys
 * `c2s` and `s2c` (lib/nts/cookie.ts). Throws when it cannot.
 */
export type MakeCookies = (
  aeadId: number,
  c2s: Uint8Array,
  s2c: Uint8Array,
  count: number,
) => Uint8Array[];

/** What a server session needs from outside. */
export interface KeServerOptions {
  /** AEAD IDs the NTP side can use, any order (the client's order decides). */
  supportedAeads: readonly number[];
  makeCookies: MakeCookies;
  /** The TLS exporter of this connection: (AEAD ID, direction) → key (RFC 8915 §5.1). */
  exportKey(aeadId: number, direction: "c2s" | "s2c", length: number): Uint8Array;
  /** NTPv4 Server Negotiation record, when set. */
  ntpServer?: string | undefined;
  /** NTPv4 Port Negotiation record, when set and not 123. */
  ntpPort?: number | undefined;
}

/** How a session ended, for the counters. */
export type KeOutcome =
  | { kind: "ok"; aeadId: number; cookies: number }
  | { kind: "error"; code: number; reason: string }
  | { kind: "no-protocol" }
  | { kind: "no-aead" };

/** The session's answer to the bytes received so far. */
export type KeStep =
  | { kind: "partial" }
  | { kind: "response"; bytes: Uint8Array; outcome: KeOutcome };

/**
 * Answers the request in `received` (all plaintext so far): "partial" until
 * End of Message has arrived, then the response bytes and the outcome.
 * A malformed or oversized message is Error 1 (bad request); a failure to
 * make keys or cookies is Error 2 (internal server error).
 */
export function answerRequest(received: Uint8Array, o: KeServerOptions): KeStep {
  const m = decodeMessage(received, MAX_MESSAGE_BYTES);
  if (m.kind === "partial") return { kind: "partial" };
  const errorStep = (code: number, reason: string): KeStep => ({
    kind: "response",
    bytes: encodeRecords([rec.error(code), rec.endOfMessage()]),
    outcome: { kind: "error", code, reason },
  });
  if (m.kind === "invalid") return errorStep(ErrorCode.BAD_REQUEST, m.reason);
  const d = negotiateServer(m.records, o.supportedAeads);
  if (d.kind === "error") return errorStep(d.code, d.reason);
  if (d.kind !== "ok") {
    return { kind: "response", bytes: encodeRecords(serverResponse(d)), outcome: d };
  }
  let cookies: Uint8Array[];
  try {
    const len = aeadKeyLength(d.aeadId);
    const c2s = o.exportKey(d.aeadId, "c2s", len);
    const s2c = o.exportKey(d.aeadId, "s2c", len);
    cookies = o.makeCookies(d.aeadId, c2s, s2c, COOKIES_PER_KE);
    if (cookies.length === 0) throw new Error("no cookies made");
  } catch (e) {
    return errorStep(
      ErrorCode.INTERNAL_SERVER_ERROR,
      `cannot make keys or cookies: ${e instanceof Error ? e.message : e}`,
    );
  }
  const bytes = encodeRecords(
    serverResponse(d, { cookies, ntpServer: o.ntpServer, ntpPort: o.ntpPort }),
  );
  return {
    kind: "response",
    bytes,
    outcome: { kind: "ok", aeadId: d.aeadId, cookies: cookies.length },
  };
}

export type { NtsKeCounters };

/** Zeroed counters. */
export function newKeCounters(): NtsKeCounters {
  return {
    connections: 0,
    handshakes: 0,
    recordErrors: 0,
    refused: 0,
    tlsFailures: 0,
    cookies: 0,
    busy: 0,
    denied: 0,
  };
}

/** Adds one session's outcome to `c`. */
export function countOutcome(c: NtsKeCounters, o: KeOutcome): void {
  if (o.kind === "ok") {
    c.handshakes++;
    c.cookies += o.cookies;
  } else if (o.kind === "error") c.recordErrors++;
  else c.refused++;
}

/** Days before its end that the certificate in use is warned about. */
export const CERT_WARN_DAYS = 14;

/** What has been said about one loaded certificate, so each notice is said once. */
export type CertNoticeState = "none" | "warning" | "error";

/**
 * The notice due for the certificate `file` in use, valid until `notAfter`,
 * at `now` (both Unix seconds), given what was already said: an error once
 * it has expired (clients refuse it), a warning once it is within
 * CERT_WARN_DAYS of its end; null when nothing new is due.
 */
export function certificateNotice(
  file: string,
  notAfter: number,
  now: number,
  said: CertNoticeState,
): { level: "warning" | "error"; message: string } | null {
  const when = new Date(notAfter * 1000).toISOString().replace(/\.\d+Z$/, "Z");
  if (now >= notAfter) {
    if (said === "error") return null;
    return {
      level: "error",
      message:
        `${file}: certificate expired at ${when}; clients refuse it: renew it and send SIGHUP`,
    };
  }
  const days = (notAfter - now) / 86400;
  if (days < CERT_WARN_DAYS && said === "none") {
    const n = Math.max(1, Math.floor(days));
    return {
      level: "warning",
      message: `${file}: certificate expires in ${n} day${
        n === 1 ? "" : "s"
      } (${when}): renew it and send SIGHUP`,
    };
  }
  return null;
}

/**
 * Whether a client at `ip` (text, as the socket reports it; IPv4-mapped
 * IPv6 counts as IPv4) may make a key exchange: the NTP server's own
 * `allow`/`deny` rule (lib/ntp/access.ts), as chronyd applies its NTP
 * access rules to NTS-KE. Prefixes that do not parse are skipped (the
 * config validator has refused them already).
 */
export function keAccess(
  allow: readonly string[],
  deny: readonly string[],
): (ip: string) => boolean {
  const cidrs = (list: readonly string[]) =>
    list.map(parseCidr).filter((c): c is Cidr => typeof c !== "string");
  const list = new AccessList(cidrs(allow), cidrs(deny));
  const addr = newClientAddress();
  return (ip) => {
    const bytes = parseIp(ip.replace(/^\[(.*)\]$/, "$1").replace(/%.*$/, ""));
    if (bytes === null) return false;
    setClientAddress(addr, bytes, 0, bytes.length === 4 ? 4 : 16, 0);
    return list.allows(addr);
  };
}
