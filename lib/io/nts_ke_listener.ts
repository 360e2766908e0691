/**
 * The NTS-KE server's driver (RFC 8915 §4): TCP listeners (Deno.listen),
 * TLS 1.3 with ALPN `ntske/1` through OpenSSL (lib/io/openssl.ts, memory
 * BIOs, so the event loop never blocks), one request and one response per
 * connection. What to answer is lib/nts/ke_server.ts; the cookies come
 * from the caller (`makeCookies`, lib/nts/cookie.ts).
 */
import { TlsContext, TlsError, TlsSession } from "./openssl.ts";
import { TlsStream } from "./tls_stream.ts";
import {
  answerRequest,
  certificateNotice,
  type CertNoticeState,
  countOutcome,
  type MakeCookies,
  newKeCounters,
} from "../nts/ke_server.ts";
import { EXPORTER_LABEL, exporterContext } from "../nts/ke_negotiate.ts";
import { decodeMessage, NTS_KE_ALPN } from "../nts/ke_records.ts";
import type { NtsKeCounters } from "../contracts.ts";

/** Where the listener writes its lines (a LogTape logger fits). */
export interface KeLog {
  debug(message: string): void;
  info(message: string): void;
  warning(message: string): void;
  error(message: string): void;
}

/** Options of `startNtsKe`. */
export interface NtsKeServerOptions {
  /** "host:port" / "[v6]:port" addresses; port 0 picks a free one (tests). */
  listen: string[];
  /** PEM certificate chain file, leaf first. */
  certificate: string;
  /** PEM private key file of the leaf. */
  privateKey: string;
  /** NTPv4 Server Negotiation record (RFC 8915 §4.1.7), when set and not "". */
  ntpServer?: string | undefined;
  /** NTPv4 Port Negotiation record (§4.1.8), when set and not 123. */
  ntpPort?: number | undefined;
  makeCookies: MakeCookies;
  /** AEAD IDs the NTP side supports (the client's order of preference decides among them). */
  supportedAeads: number[];
  log: KeLog;
  /** One connection, accept to close (default 5000 ms). */
  sessionTimeoutMs?: number;
  /** Connections served at once; more are closed at once (default 100, chrony's ntsserverconnections). */
  maxConnections?: number;
  /** How often the certificate's end is checked (default one hour). */
  certificateCheckMs?: number;
  /** Whether a client address may make a key exchange (default: everyone). */
  allowed?: (ip: string) => boolean;
}

/** A running NTS-KE server. */
export interface NtsKeHandle {
  /** The addresses listened on, "host:port" with the real port. */
  readonly bound: string[];
  /** One line per listen address that could not be bound. */
  readonly errors: string[];
  /** Counters since start (a copy). */
  counters(): NtsKeCounters;
  /** The certificate file in use and when it stops being valid (Unix seconds; null if unknown). */
  certificate(): { file: string; notAfter: number | null };
  /**
   * Loads a new certificate and key (SIGHUP). On failure (missing,
   * unreadable, not matching, expired) logs one line naming the file and
   * keeps serving with the old pair; returns whether the new one is in use.
   */
  reload(certificate: string, privateKey: string): boolean;
  /** New negotiation records, AEADs or cookie maker for the next sessions (a config reload). */
  configure(
    o: Partial<
      Pick<
        NtsKeServerOptions,
        "ntpServer" | "ntpPort" | "supportedAeads" | "makeCookies" | "allowed"
      >
    >,
  ): void;
  /** Closes the listeners and every open session. */
  stop(): Promise<void>;
}

/** Pause after a failed accept (EMFILE and the like) before the next one. */
const ACCEPT_RETRY_MS = 100;

/** Splits "host:port" / "[v6]:port" (port 0 allowed); null if malformed. */
function splitListen(text: string): { hostname: string; port: number } | null {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(text);
  if (!m) return null;
  const port = Number(m[3]);
  return port > 65535 ? null : { hostname: m[1] ?? m[2]!, port };
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function formatAddr(a: Deno.NetAddr): string {
  return a.hostname.includes(":") ? `[${a.hostname}]:${a.port}` : `${a.hostname}:${a.port}`;
}

/**
 * Starts the NTS-KE server. Throws one line when the certificate or key
 * cannot be used (naming the file) or OpenSSL cannot be opened; an address
 * that cannot be bound is reported in `errors` and the others serve.
 */
export async function startNtsKe(opts: NtsKeServerOptions): Promise<NtsKeHandle> {
  const o = { ...opts };
  const log = o.log;
  const timeoutMs = o.sessionTimeoutMs ?? 5000;
  const maxConnections = o.maxConnections ?? 100;
  let ctx = TlsContext.server(
    { certificate: o.certificate, privateKey: o.privateKey },
    NTS_KE_ALPN,
  );
  let certFile = o.certificate;
  let said: CertNoticeState = "none";
  /** Says, once each, that the certificate in use is near its end or past it. */
  const checkCertificate = () => {
    if (ctx.notAfter === null) return;
    const n = certificateNotice(certFile, ctx.notAfter, Date.now() / 1000, said);
    if (!n) return;
    said = n.level;
    log[n.level](`NTS-KE: ${n.message}`);
  };
  checkCertificate();
  const certTimer = setInterval(checkCertificate, o.certificateCheckMs ?? 3_600_000);
  const counters = newKeCounters();
  const listeners: Deno.TcpListener[] = [];
  const bound: string[] = [];
  const errors: string[] = [];
  const open = new Set<TlsStream>();
  let stopping = false;

  for (const text of o.listen) {
    const a = splitListen(text);
    if (!a) {
      errors.push(`NTS-KE: cannot listen on ${text}: not host:port`);
      continue;
    }
    try {
      const l = Deno.listen({ hostname: a.hostname, port: a.port, transport: "tcp" });
      listeners.push(l);
      bound.push(formatAddr(l.addr as Deno.NetAddr));
    } catch (e) {
      // "[::]:P" is dual-stack here, so it and "0.0.0.0:P" collide: say so.
      const wildcards = o.listen.filter((t) => t === `0.0.0.0:${a.port}` || t === `[::]:${a.port}`);
      const why = e instanceof Deno.errors.AddrInUse
        ? wildcards.length === 2
          ? `address already in use ([::]:${a.port} takes IPv4 too: list it alone)`
          : "address already in use"
        : e instanceof Deno.errors.PermissionDenied
        ? "permission denied"
        : message(e);
      errors.push(`NTS-KE: cannot listen on ${text}: ${why}`);
    }
  }

  /** One connection: handshake, request, response, close. */
  const serve = async (conn: Deno.TcpConn): Promise<void> => {
    counters.connections++;
    const remote = conn.remoteAddr as Deno.NetAddr;
    const peer = formatAddr(remote);
    if (o.allowed && !o.allowed(remote.hostname)) {
      counters.denied++;
      conn.close();
      return;
    }
    if (open.size >= maxConnections) {
      counters.busy++;
      conn.close();
      return;
    }
    let stream: TlsStream;
    try {
      stream = new TlsStream(conn, new TlsSession(ctx));
    } catch (e) {
      conn.close();
      counters.tlsFailures++;
      log.error(`NTS-KE: cannot start a TLS session: ${message(e)}`);
      return;
    }
    open.add(stream);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      stream.abort();
    }, timeoutMs);
    let stage = "TLS handshake";
    try {
      await stream.handshake();
      // OpenSSL calls the ALPN callback only when the client sends ALPN: a client
      // without it completes the handshake, and is closed here (RFC 8915 §4: ntske/1).
      if (stream.session.alpnSelected() !== NTS_KE_ALPN) throw new Error("client offered no ALPN");
      stage = "request";
      const { data } = await stream.readUntil((all) => decodeMessage(all).kind !== "partial");
      if (decodeMessage(data).kind === "partial") {
        log.debug(`NTS-KE ${peer}: closed before End of Message`);
        return;
      }
      const session = stream.session;
      const step = answerRequest(data, {
        supportedAeads: o.supportedAeads,
        makeCookies: o.makeCookies,
        exportKey: (aeadId, dir, length) =>
          session.exportKeyingMaterial(EXPORTER_LABEL, exporterContext(aeadId, dir), length),
        ntpServer: o.ntpServer,
        ntpPort: o.ntpPort,
      });
      if (step.kind === "partial") return; // not reached: the message is complete
      countOutcome(counters, step.outcome);
      if (step.outcome.kind === "error") {
        const lvl = step.outcome.code === 2 ? "error" : "debug";
        log[lvl](`NTS-KE ${peer}: Error ${step.outcome.code}: ${step.outcome.reason}`);
      }
      stage = "response";
      await stream.writeAndClose(step.bytes);
    } catch (e) {
      if (stage === "TLS handshake") counters.tlsFailures++;
      if (!stopping) {
        const why = timedOut ? `timed out after ${timeoutMs} ms` : message(e);
        log.debug(`NTS-KE ${peer}: ${stage} failed: ${why}`);
      }
    } finally {
      clearTimeout(timer);
      open.delete(stream);
      stream.abort();
    }
  };

  /**
   * Accepts until stopped. A failed accept (out of file descriptors, a
   * connection reset before it was taken) is logged once per burst and
   * retried after a pause: the listener never gives up while we run.
   */
  const loops = listeners.map(async (l) => {
    let lastError = "";
    while (!stopping) {
      let conn: Deno.TcpConn;
      try {
        conn = await l.accept();
      } catch (e) {
        if (stopping || e instanceof Deno.errors.BadResource) return; // closed by stop()
        const why = message(e);
        if (why !== lastError) {
          log.error(`NTS-KE: accept on ${formatAddr(l.addr as Deno.NetAddr)} failed: ${why}`);
        }
        lastError = why;
        await new Promise((r) => setTimeout(r, ACCEPT_RETRY_MS));
        continue;
      }
      lastError = "";
      serve(conn);
    }
  });

  await Promise.resolve(); // listeners are up: accept loops start on the next turn
  return {
    bound,
    errors,
    counters: () => ({ ...counters }),
    certificate: () => ({ file: certFile, notAfter: ctx.notAfter }),
    reload(certificate, privateKey) {
      let next: TlsContext;
      try {
        next = TlsContext.server({ certificate, privateKey }, NTS_KE_ALPN);
      } catch (e) {
        const why = e instanceof TlsError ? e.message : `${certificate}: ${message(e)}`;
        log.error(`NTS-KE: ${why}; keeping the certificate in use`);
        return false;
      }
      const old = ctx;
      ctx = next;
      old.free(); // sessions in progress hold their own reference
      certFile = certificate;
      said = "none";
      checkCertificate();
      return true;
    },
    configure(c) {
      if ("ntpServer" in c) o.ntpServer = c.ntpServer;
      if ("ntpPort" in c) o.ntpPort = c.ntpPort;
      if (c.supportedAeads) o.supportedAeads = c.supportedAeads;
      if (c.makeCookies) o.makeCookies = c.makeCookies;
      if ("allowed" in c) o.allowed = c.allowed;
    },
    async stop() {
      stopping = true;
      clearInterval(certTimer);
      for (const l of listeners) {
        try {
          l.close();
        } catch { /* closed */ }
      }
      for (const s of open) s.abort();
      await Promise.all(loops);
      ctx.free();
    },
  };
}
