/**
 * NTS-KE negotiation (RFC 8915 §4.1): what a server answers to a request's
 * records, what a client asks and what it makes of the answer. Pure: records
 * in, decisions out; chrony's nts_ke_server.c / nts_ke_client.c and ntpd-rs
 * read a message the same way.
 */
import {
  aeadKeyLength,
  aeadName,
  ErrorCode,
  type KeRecord,
  PROTOCOL_NTPV4,
  readU16s,
  rec,
  RecordType,
} from "./ke_records.ts";

/** Cookies a server hands out per key exchange (RFC 8915 §4.1.6 recommends 8). */
export const COOKIES_PER_KE = 8;

/** The server's decision on a request. */
export type ServerDecision =
  /** Answer with an Error record of this code (§4.1.3), nothing else. */
  | { kind: "error"; code: number; reason: string }
  /** The client offered no protocol we speak: an empty Next Protocol record. */
  | { kind: "no-protocol" }
  /** NTPv4, but no AEAD we support: Next Protocol NTPv4 and an empty AEAD record, no cookies. */
  | { kind: "no-aead" }
  /** NTPv4 with `aeadId`, the first of the client's list we support (its order of preference). */
  | { kind: "ok"; aeadId: number };

/**
 * Reads a client's request (`records`, End of Message last) against the
 * AEADs this server supports. Rules (RFC 8915 §4.1): an unknown critical
 * record is error 0; Error, Warning or New Cookie records in a request,
 * a Next Protocol record that is not critical, empty or odd, not exactly
 * one Next Protocol record, or NTPv4 without exactly one non-empty AEAD
 * record are error 1 (bad request). Non-critical unknown records, and
 * NTPv4 Server/Port records (a client's wish, §4.1.7/§4.1.8), are ignored.
 */
export function negotiateServer(
  records: readonly KeRecord[],
  supportedAeads: readonly number[],
): ServerDecision {
  const bad = (reason: string): ServerDecision => ({
    kind: "error",
    code: ErrorCode.BAD_REQUEST,
    reason,
  });
  let protocolRecords = 0, aeadRecords = 0;
  let protocols: number[] = [];
  let aeads: number[] = [];
  for (const r of records) {
    switch (r.type) {
      case RecordType.END_OF_MESSAGE:
        break;
      case RecordType.NEXT_PROTOCOL: {
        const ids = readU16s(r.body);
        if (!r.critical) return bad("Next Protocol record not critical");
        if (ids === null || ids.length === 0) return bad("Next Protocol record empty or odd");
        protocolRecords++;
        protocols = ids;
        break;
      }
      case RecordType.AEAD_ALGORITHM: {
        const ids = readU16s(r.body);
        if (ids === null || ids.length === 0) return bad("AEAD record empty or odd");
        aeadRecords++;
        aeads = ids;
        break;
      }
      case RecordType.ERROR:
      case RecordType.WARNING:
      case RecordType.NEW_COOKIE:
        return bad(`record type ${r.type} in a request`);
      case RecordType.NTPV4_SERVER:
      case RecordType.NTPV4_PORT:
        break;
      default:
        if (r.critical) {
          return {
            kind: "error",
            code: ErrorCode.UNRECOGNIZED_CRITICAL_RECORD,
            reason: `unrecognized critical record type ${r.type}`,
          };
        }
    }
  }
  if (protocolRecords !== 1) return bad(`${protocolRecords} Next Protocol records`);
  if (!protocols.includes(PROTOCOL_NTPV4)) return { kind: "no-protocol" };
  if (aeadRecords !== 1) return bad(`${aeadRecords} AEAD records with NTPv4`);
  const aeadId = aeads.find((id) => supportedAeads.includes(id) && aeadKeyLength(id) > 0);
  return aeadId === undefined ? { kind: "no-aead" } : { kind: "ok", aeadId };
}

/** What the server adds to an "ok" answer. */
export interface ServerAnswer {
  cookies: readonly Uint8Array[];
  /** NTPv4 Server Negotiation (§4.1.7): omitted when undefined or "". */
  ntpServer?: string | undefined;
  /** NTPv4 Port Negotiation (§4.1.8): omitted when undefined or 123. */
  ntpPort?: number | undefined;
}

/** The response records (End of Message last) for a decision. */
export function serverResponse(d: ServerDecision, answer?: ServerAnswer): KeRecord[] {
  const out: KeRecord[] = [];
  switch (d.kind) {
    case "error":
      out.push(rec.error(d.code));
      break;
    case "no-protocol":
      out.push(rec.nextProtocol([]));
      break;
    case "no-aead":
      out.push(rec.nextProtocol([PROTOCOL_NTPV4]), rec.aead([]));
      break;
    case "ok":
      out.push(rec.nextProtocol([PROTOCOL_NTPV4]), rec.aead([d.aeadId]));
      if (answer?.ntpServer) out.push(rec.server(answer.ntpServer));
      if (answer?.ntpPort !== undefined && answer.ntpPort !== 123) {
        out.push(rec.port(answer.ntpPort));
      }
      for (const c of answer?.cookies ?? []) out.push(rec.cookie(c));
      break;
  }
  out.push(rec.endOfMessage());
  return out;
}

/** A client's request: NTPv4, the AEADs in order of preference, End of Message. */
export function clientRequest(aeads: readonly number[]): KeRecord[] {
  return [rec.nextProtocol([PROTOCOL_NTPV4]), rec.aead(aeads), rec.endOfMessage()];
}

/** A server's answer as the client reads it. */
export type ClientOutcome =
  | {
    ok: true;
    aeadId: number;
    cookies: Uint8Array[];
    /** From NTPv4 Server Negotiation, when sent. */
    ntpServer?: string;
    /** From NTPv4 Port Negotiation, when sent. */
    ntpPort?: number;
    /** Warning codes the server sent. */
    warnings: number[];
  }
  | { ok: false; reason: string };

const ERROR_NAMES: Record<number, string> = {
  [ErrorCode.UNRECOGNIZED_CRITICAL_RECORD]: "unrecognized critical record",
  [ErrorCode.BAD_REQUEST]: "bad request",
  [ErrorCode.INTERNAL_SERVER_ERROR]: "internal server error",
};

/**
 * Reads a server's response to `clientRequest(offered)`. Fails, with one
 * line, on an Error record, an unknown critical record, a Next Protocol
 * other than exactly NTPv4, an AEAD we did not offer or none, a malformed
 * Server or Port record, or no cookies (§4.1).
 */
export function readServerResponse(
  records: readonly KeRecord[],
  offered: readonly number[],
): ClientOutcome {
  const fail = (reason: string): ClientOutcome => ({ ok: false, reason });
  let protocols: number[] | null = null;
  let aeads: number[] | null = null;
  const cookies: Uint8Array[] = [];
  const warnings: number[] = [];
  let ntpServer: string | undefined;
  let ntpPort: number | undefined;
  for (const r of records) {
    switch (r.type) {
      case RecordType.END_OF_MESSAGE:
        break;
      case RecordType.ERROR: {
        const code = readU16s(r.body)?.[0];
        return fail(
          code === undefined
            ? "server sent a malformed Error record"
            : `server sent Error ${code} (${ERROR_NAMES[code] ?? "unknown"})`,
        );
      }
      case RecordType.WARNING: {
        const code = readU16s(r.body)?.[0];
        if (code !== undefined) warnings.push(code);
        break;
      }
      case RecordType.NEXT_PROTOCOL:
        if (protocols !== null) return fail("server sent two Next Protocol records");
        protocols = readU16s(r.body);
        if (protocols === null) return fail("server sent a malformed Next Protocol record");
        break;
      case RecordType.AEAD_ALGORITHM:
        if (aeads !== null) return fail("server sent two AEAD records");
        aeads = readU16s(r.body);
        if (aeads === null) return fail("server sent a malformed AEAD record");
        break;
      case RecordType.NEW_COOKIE:
        if (r.body.length > 0) cookies.push(r.body);
        break;
      case RecordType.NTPV4_SERVER: {
        const name = new TextDecoder().decode(r.body);
        // ASCII host name or address (§4.1.7).
        if (name.length === 0 || !/^[\x21-\x7e]+$/.test(name)) {
          return fail("server sent a malformed NTPv4 Server record");
        }
        ntpServer = name;
        break;
      }
      case RecordType.NTPV4_PORT: {
        const v = readU16s(r.body);
        if (v === null || v.length !== 1) return fail("server sent a malformed NTPv4 Port record");
        ntpPort = v[0]!;
        break;
      }
      default:
        if (r.critical) return fail(`server sent an unrecognized critical record ${r.type}`);
    }
  }
  if (protocols === null) return fail("server sent no Next Protocol record");
  if (protocols.length !== 1 || protocols[0] !== PROTOCOL_NTPV4) {
    return fail(
      protocols.length === 0
        ? "server does not support NTPv4 over NTS"
        : `server chose protocol ${protocols.join(",")}, not NTPv4 (0)`,
    );
  }
  if (aeads === null) return fail("server sent no AEAD record");
  if (aeads.length === 0) {
    return fail(`server supports none of the AEADs offered (${offered.map(aeadName).join(", ")})`);
  }
  if (aeads.length !== 1 || !offered.includes(aeads[0]!)) {
    return fail(`server chose an AEAD we did not offer (${aeads.join(",")})`);
  }
  if (cookies.length === 0) return fail("server sent no cookies");
  return {
    ok: true,
    aeadId: aeads[0]!,
    cookies,
    ...(ntpServer !== undefined ? { ntpServer } : {}),
    ...(ntpPort !== undefined ? { ntpPort } : {}),
    warnings,
  };
}

/** Exporter label of RFC 8915 §5.1. */
export const EXPORTER_LABEL = "EXPORTER-network-time-security";

/**
 * The exporter context of RFC 8915 §5.1: Protocol ID (NTPv4 = 0), AEAD ID,
 * then 0x00 for the client-to-server key or 0x01 for server-to-client.
 */
export function exporterContext(aeadId: number, direction: "c2s" | "s2c"): Uint8Array {
  const out = new Uint8Array(5);
  const v = new DataView(out.buffer);
  v.setUint16(0, PROTOCOL_NTPV4);
  v.setUint16(2, aeadId);
  out[4] = direction === "c2s" ? 0 : 1;
  return out;
}
