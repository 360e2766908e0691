/**
 * The status HTTP server: binds `status.listen` only, read-only, and bounds
 * what a client may cost — concurrent connections, request head size,
 * header count, URL length, seconds to send a request, requests per
 * connection — so a misbehaving scraper cannot starve the process. The
 * NTP server runs in its own workers and never waits on this loop.
 *
 * The only status file that touches the network; the parsing is in
 * `http.ts` and the answers in `handler.ts`, both pure.
 */
import { parseSocketAddress, type SocketAddress } from "../config/socket_address.ts";
import { handleStatusRequest, type StatusProvider } from "./handler.ts";
import {
  DEFAULT_HTTP_LIMITS,
  errorResponse,
  type HttpLimits,
  parseRequestHead,
  serializeResponse,
} from "./http.ts";

export interface StatusServerLimits extends HttpLimits {
  /** Open connections at once; more are answered 503 and closed. */
  maxConnections: number;
  /** A connection must deliver each complete request head within this, else it is closed. */
  requestTimeoutMs: number;
  maxRequestsPerConnection: number;
  /**
   * A 200 answer is reused for the same method and URL for this long, so a
   * scraper polling thousands of times a second costs a few renders a
   * second, not thousands (0 = render every request).
   */
  responseCacheMs: number;
}

/** Distinct URLs cached at once; more (e.g. random query strings) empty the cache. */
const MAX_CACHED = 32;

export const DEFAULT_LIMITS: StatusServerLimits = {
  ...DEFAULT_HTTP_LIMITS,
  maxConnections: 64,
  requestTimeoutMs: 10_000,
  maxRequestsPerConnection: 10_000,
  responseCacheMs: 250,
};

export interface StatusServer {
  address: string;
  /** Connections open now. */
  connections(): number;
  close(): Promise<void>;
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await conn.write(bytes.subarray(off));
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function safeClose(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch { /* already closed */ }
}

/** Listens on `listen` ("host:port", "[v6]:port") and answers from `provider`. */
export function startStatusServer(
  listen: string,
  provider: StatusProvider,
  limits: Partial<StatusServerLimits> = {},
): StatusServer {
  const lim = { ...DEFAULT_LIMITS, ...limits };
  const addr = parseSocketAddress(listen) as SocketAddress;
  const listener = Deno.listen({ hostname: addr.hostname, port: addr.port, transport: "tcp" });
  const a = listener.addr as Deno.NetAddr;
  const hostForUrl = a.hostname.includes(":")
    ? `[${a.hostname}]:${a.port}`
    : `${a.hostname}:${a.port}`;
  /** Open connections, each with when it must have sent its next request head (performance.now()). */
  const open = new Map<Deno.Conn, number>();
  let closed = false;
  const cache = new Map<string, { at: number; bytes: Uint8Array }>();
  // One sweeper for every connection's deadline: a timer set and cleared per
  // request cost more than the cached answer itself under a busy scraper.
  const sweeper = setInterval(() => {
    const now = performance.now();
    for (const [conn, due] of open) if (now > due) safeClose(conn);
  }, Math.max(10, Math.min(1000, lim.requestTimeoutMs / 4)));

  const serveConn = async (conn: Deno.Conn) => {
    const chunk = new Uint8Array(16 * 1024);
    let buf: Uint8Array = new Uint8Array(0);
    let served = 0;
    // Answers to pipelined requests go out together, in one write, once no
    // complete request is left to read.
    let pending: Uint8Array[] = [];
    const flush = async () => {
      if (pending.length === 0) return;
      const bytes = pending.length === 1 ? pending[0]! : concat(pending);
      pending = [];
      await writeAll(conn, bytes);
      open.set(conn, performance.now() + lim.requestTimeoutMs);
    };
    try {
      while (true) {
        const head = parseRequestHead(buf, lim);
        if (head.kind === "incomplete") {
          await flush();
          const n = await conn.read(chunk);
          if (n === null) return;
          const next = new Uint8Array(buf.length + n);
          next.set(buf);
          next.set(chunk.subarray(0, n), buf.length);
          buf = next;
          continue;
        }
        if (head.kind === "error") {
          pending.push(errorResponse(head.status, head.message));
          await flush();
          return;
        }
        buf = buf.subarray(head.consumed);
        served++;
        const keepAlive = head.keepAlive && served < lim.maxRequestsPerConnection;
        const key = `${head.method} ${keepAlive ? "k" : "c"} ${head.target}`;
        const hit = lim.responseCacheMs > 0 ? cache.get(key) : undefined;
        if (hit && performance.now() - hit.at < lim.responseCacheMs) {
          pending.push(hit.bytes);
          if (!keepAlive) return await flush();
          continue;
        }
        let req: Request;
        try {
          req = new Request(`http://${hostForUrl}${head.target}`, {
            method: head.method,
            headers: head.headers,
          });
        } catch {
          // Methods fetch forbids (CONNECT, TRACE, TRACK) cannot even become a Request.
          pending.push(errorResponse(405, `Method ${head.method} not allowed; use GET`));
          return await flush();
        }
        const res = handleStatusRequest(req, provider);
        const body = res.body === null
          ? new Uint8Array(0)
          : new Uint8Array(await res.arrayBuffer());
        const bytes = serializeResponse(res.status, res.headers.entries(), body, {
          keepAlive,
          head: head.method === "HEAD",
        });
        if (lim.responseCacheMs > 0 && res.status === 200) {
          if (cache.size >= MAX_CACHED) cache.clear();
          cache.set(key, { at: performance.now(), bytes });
        }
        pending.push(bytes);
        if (!keepAlive) return await flush();
      }
    } catch {
      // Reset by the peer, or closed by the timeout: nothing to answer.
    } finally {
      open.delete(conn);
      safeClose(conn);
    }
  };

  const acceptLoop = (async () => {
    while (true) {
      let conn: Deno.Conn;
      try {
        conn = await listener.accept();
      } catch {
        if (closed) return;
        // Out of file descriptors or similar: back off, keep serving.
        await new Promise((r) => setTimeout(r, 100));
        continue;
      }
      if (open.size >= lim.maxConnections) {
        writeAll(conn, errorResponse(503, "Too many connections; try again"))
          .catch(() => {})
          .finally(() => safeClose(conn));
        continue;
      }
      open.set(conn, performance.now() + lim.requestTimeoutMs);
      serveConn(conn);
    }
  })();

  return {
    address: hostForUrl,
    connections: () => open.size,
    async close() {
      closed = true;
      clearInterval(sweeper);
      try {
        listener.close();
      } catch { /* closed */ }
      for (const c of open.keys()) safeClose(c);
      await acceptLoop;
    },
  };
}
