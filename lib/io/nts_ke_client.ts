/**
 * NTS-KE client (RFC 8915 §4): TCP to the server, TLS 1.3 with ALPN
 * `ntske/1` and the server's name verified (OpenSSL through FFI,
 * lib/io/openssl.ts), one request, the response read, and the C2S/S2C
 * keys exported (§5.1). The record logic is lib/nts/ke_negotiate.ts.
 */
import { TlsContext, TlsSession } from "./openssl.ts";
import { TlsStream } from "./tls_stream.ts";
import {
  clientRequest,
  EXPORTER_LABEL,
  exporterContext,
  readServerResponse,
} from "../nts/ke_negotiate.ts";
import {
  AEAD_AES_128_GCM_SIV,
  AEAD_AES_SIV_CMAC_256,
  aeadKeyLength,
  decodeMessage,
  encodeRecords,
  NTS_KE_ALPN,
  NTS_KE_PORT,
} from "../nts/ke_records.ts";

/** Options of one key exchange. */
export interface NtsKeOptions {
  /** The KE server's name (or address): connected to, sent as SNI, checked in its certificate. */
  host: string;
  /** TCP port (default 4460). */
  port?: number;
  /** PEM bundle of trusted CAs; the system's trust store when omitted. */
  caFile?: string;
  /** AEAD IDs to offer, most preferred first (default: AES-SIV-CMAC-256). */
  aeads?: number[];
  /** Whole exchange, connect to last byte, in milliseconds. */
  timeoutMs: number;
}

/** What a key exchange gives the NTP side. */
export interface NtsKeResult {
  aeadId: number;
  /** Client-to-server key (length of the AEAD's key). */
  c2s: Uint8Array;
  /** Server-to-client key. */
  s2c: Uint8Array;
  /** Cookies, in the order received. */
  cookies: Uint8Array[];
  /** Where to send NTP: the Server Negotiation record, else `host`. */
  ntpServer: string;
  /** The Port Negotiation record, else 123. */
  ntpPort: number;
}

/** Default AEAD offer: AES-SIV-CMAC-256 (mandatory to implement). */
export const DEFAULT_AEADS = [AEAD_AES_SIV_CMAC_256];
export { AEAD_AES_128_GCM_SIV, AEAD_AES_SIV_CMAC_256 };

/**
 * Client TLS contexts by CA file and its modification time (loading a CA
 * bundle costs more than a handshake; a replaced file is loaded again).
 */
const contexts = new Map<string, { mtime: number; ctx: TlsContext }>();

function clientContext(caFile: string | undefined): TlsContext {
  const key = caFile ?? "";
  let mtime = 0;
  try {
    if (caFile !== undefined) mtime = Deno.statSync(caFile).mtime?.getTime() ?? 0;
  } catch { /* missing: TlsContext.client says so in its words */ }
  const had = contexts.get(key);
  if (had && had.mtime === mtime) return had.ctx;
  const ctx = TlsContext.client(NTS_KE_ALPN, caFile);
  had?.ctx.free(); // sessions in progress hold their own reference
  contexts.set(key, { mtime, ctx });
  return ctx;
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/**
 * Runs one NTS-KE exchange with `host`. Throws an Error with one line,
 * `NTS-KE with HOST:PORT: …`, on any failure: connect, TLS (version,
 * certificate, name), no `ntske/1` ALPN, an Error record, no cookies,
 * a malformed response, or the timeout.
 */
export async function ntsKeyExchange(opts: NtsKeOptions): Promise<NtsKeResult> {
  const port = opts.port ?? NTS_KE_PORT;
  const aeads = opts.aeads ?? DEFAULT_AEADS;
  const host = opts.host.replace(/^\[(.*)\]$/, "$1");
  const where = `NTS-KE with ${host.includes(":") ? `[${host}]` : host}:${port}`;
  let stream: TlsStream | null = null;
  let timedOut = false;
  const deadline = Promise.withResolvers<never>();
  deadline.promise.catch(() => {}); // raced below; never unhandled
  const timer = setTimeout(() => {
    timedOut = true;
    stream?.abort();
    deadline.reject(new Error("timed out"));
  }, opts.timeoutMs);
  try {
    const ctx = clientContext(opts.caFile);
    const connecting = Deno.connect({ hostname: host, port, transport: "tcp" });
    // A connection that comes after the deadline is closed, not leaked.
    connecting.then((c) => timedOut && c.close(), () => {});
    const conn = await Promise.race([connecting, deadline.promise]);
    stream = new TlsStream(conn, new TlsSession(ctx, host));
    await stream.handshake();
    const alpn = stream.session.alpnSelected();
    if (alpn !== NTS_KE_ALPN) {
      throw new Error(`server did not agree to ALPN ${NTS_KE_ALPN} (got ${alpn ?? "none"})`);
    }
    await stream.write(encodeRecords(clientRequest(aeads)));
    const { data } = await stream.readUntil((all) => decodeMessage(all).kind !== "partial");
    const m = decodeMessage(data);
    if (m.kind === "partial") throw new Error("server closed before End of Message");
    if (m.kind === "invalid") throw new Error(`malformed response: ${m.reason}`);
    const r = readServerResponse(m.records, aeads);
    if (!r.ok) throw new Error(r.reason);
    const len = aeadKeyLength(r.aeadId);
    const c2s = stream.session.exportKeyingMaterial(
      EXPORTER_LABEL,
      exporterContext(r.aeadId, "c2s"),
      len,
    );
    const s2c = stream.session.exportKeyingMaterial(
      EXPORTER_LABEL,
      exporterContext(r.aeadId, "s2c"),
      len,
    );
    await stream.close();
    return {
      aeadId: r.aeadId,
      c2s,
      s2c,
      cookies: r.cookies,
      ntpServer: r.ntpServer ?? host,
      ntpPort: r.ntpPort ?? 123,
    };
  } catch (e) {
    stream?.abort();
    const why = timedOut ? `timed out after ${opts.timeoutMs} ms` : message(e);
    throw new Error(`${where}: ${why}`);
  } finally {
    clearTimeout(timer);
  }
}
