/**
 * NTS-KE records (RFC 8915 §4): the codec. A record is a 16-bit word (the
 * critical bit, then a 15-bit type), a 16-bit body length and the body; a
 * message is records up to and including End of Message. Pure: bytes in,
 * values out.
 */

/** Record types (RFC 8915 §4, IANA "Network Time Security Key Establishment Record Types"). */
export const RecordType = {
  END_OF_MESSAGE: 0,
  NEXT_PROTOCOL: 1,
  ERROR: 2,
  WARNING: 3,
  AEAD_ALGORITHM: 4,
  NEW_COOKIE: 5,
  NTPV4_SERVER: 6,
  NTPV4_PORT: 7,
} as const;

/** Error codes of the Error record (RFC 8915 §4.1.3). */
export const ErrorCode = {
  UNRECOGNIZED_CRITICAL_RECORD: 0,
  BAD_REQUEST: 1,
  INTERNAL_SERVER_ERROR: 2,
} as const;

/** NTS Next Protocol IDs (RFC 8915 §7.7): 0 is NTPv4. */
export const PROTOCOL_NTPV4 = 0;

/** AEAD algorithm IDs (IANA AEAD registry) NTS uses. */
export const AEAD_AES_SIV_CMAC_256 = 15;
export const AEAD_AES_128_GCM_SIV = 30;

/** Key length in bytes of the C2S and S2C keys for an AEAD (RFC 5297, RFC 8452); 0 if unknown. */
export function aeadKeyLength(aeadId: number): number {
  if (aeadId === AEAD_AES_SIV_CMAC_256) return 32;
  if (aeadId === AEAD_AES_128_GCM_SIV) return 16;
  return 0;
}

/** Name of an AEAD ID for logs and status. */
export function aeadName(aeadId: number): string {
  if (aeadId === AEAD_AES_SIV_CMAC_256) return "AEAD_AES_SIV_CMAC_256";
  if (aeadId === AEAD_AES_128_GCM_SIV) return "AEAD_AES_128_GCM_SIV";
  return `AEAD ${aeadId}`;
}

/** NTS-KE's well-known TCP port (RFC 8915 §7.1) and its ALPN protocol ID (§7.2). */
export const NTS_KE_PORT = 4460;
export const NTS_KE_ALPN = "ntske/1";

/** Largest NTS-KE message either side accepts (chrony's limit): a bigger one is a bad request. */
export const MAX_MESSAGE_BYTES = 16384;

/** One record: its critical bit, type and body. */
export interface KeRecord {
  critical: boolean;
  type: number;
  body: Uint8Array;
}

/** Encodes records into one message (the caller ends it with End of Message). */
export function encodeRecords(records: readonly KeRecord[]): Uint8Array {
  const size = records.reduce((n, r) => n + 4 + r.body.length, 0);
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  let at = 0;
  for (const r of records) {
    if (r.type < 0 || r.type > 0x7fff) throw new RangeError(`Record type ${r.type} out of range`);
    if (r.body.length > 0xffff) throw new RangeError(`Record body of ${r.body.length} bytes`);
    view.setUint16(at, (r.critical ? 0x8000 : 0) | r.type);
    view.setUint16(at + 2, r.body.length);
    out.set(r.body, at + 4);
    at += 4 + r.body.length;
  }
  return out;
}

/** Body of 16-bit big-endian values (Next Protocol, AEAD, Error, Warning, Port). */
export function u16Body(values: readonly number[]): Uint8Array {
  const out = new Uint8Array(values.length * 2);
  const view = new DataView(out.buffer);
  values.forEach((v, i) => view.setUint16(i * 2, v));
  return out;
}

/** The 16-bit values of a body; null when its length is odd. */
export function readU16s(body: Uint8Array): number[] | null {
  if (body.length % 2 !== 0) return null;
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  const out: number[] = [];
  for (let i = 0; i < body.length; i += 2) out.push(view.getUint16(i));
  return out;
}

/** Record constructors, with the critical bits RFC 8915 §4.1 requires or recommends. */
export const rec = {
  endOfMessage: (): KeRecord => ({ critical: true, type: 0, body: new Uint8Array(0) }),
  nextProtocol: (ids: readonly number[]): KeRecord => ({
    critical: true,
    type: RecordType.NEXT_PROTOCOL,
    body: u16Body(ids),
  }),
  error: (code: number): KeRecord => ({
    critical: true,
    type: RecordType.ERROR,
    body: u16Body([code]),
  }),
  warning: (code: number): KeRecord => ({
    critical: true,
    type: RecordType.WARNING,
    body: u16Body([code]),
  }),
  aead: (ids: readonly number[]): KeRecord => ({
    critical: true,
    type: RecordType.AEAD_ALGORITHM,
    body: u16Body(ids),
  }),
  /** A cookie: SHOULD NOT be critical (§4.1.6). */
  cookie: (cookie: Uint8Array): KeRecord => ({
    critical: false,
    type: RecordType.NEW_COOKIE,
    body: cookie,
  }),
  server: (name: string): KeRecord => ({
    critical: true,
    type: RecordType.NTPV4_SERVER,
    body: new TextEncoder().encode(name),
  }),
  port: (port: number): KeRecord => ({
    critical: true,
    type: RecordType.NTPV4_PORT,
    body: u16Body([port]),
  }),
};

/** What `decodeMessage` makes of the bytes received so far. */
export type DecodeResult =
  /** The message is complete: its records, End of Message last, and the bytes it took. */
  | { kind: "message"; records: KeRecord[]; length: number }
  /** More bytes are needed. */
  | { kind: "partial" }
  /** Not a valid message (too long, End of Message with a body): why. */
  | { kind: "invalid"; reason: string };

/**
 * Reads one message from the start of `bytes` (everything received on the
 * connection so far). Bodies are copies, so `bytes` may be reused.
 */
export function decodeMessage(bytes: Uint8Array, maxBytes = MAX_MESSAGE_BYTES): DecodeResult {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const records: KeRecord[] = [];
  let at = 0;
  while (at + 4 <= bytes.length) {
    const word = view.getUint16(at);
    const len = view.getUint16(at + 2);
    if (at + 4 + len > maxBytes) {
      return { kind: "invalid", reason: `message longer than ${maxBytes} bytes` };
    }
    if (at + 4 + len > bytes.length) break;
    const r: KeRecord = {
      critical: (word & 0x8000) !== 0,
      type: word & 0x7fff,
      body: bytes.slice(at + 4, at + 4 + len),
    };
    at += 4 + len;
    records.push(r);
    if (r.type === RecordType.END_OF_MESSAGE) {
      if (len !== 0) return { kind: "invalid", reason: "End of Message record with a body" };
      return { kind: "message", records, length: at };
    }
  }
  if (bytes.length >= maxBytes) {
    return { kind: "invalid", reason: `message longer than ${maxBytes} bytes` };
  }
  return { kind: "partial" };
}
