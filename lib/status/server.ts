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
  const open = new Set<Deno.Conn>();
  let closed = false;
  const cache = new Map<string, { at: number; bytes: Uint8Array }>();

  const serveConn = async (conn: Deno.Conn) => {
    const chunk = new Uint8Array(16 * 1024);
    let buf: Uint8Array = new Uint8Array(0);
    let served = 0;
    let timer = setTimeout(() => safeClose(conn), lim.requestTimeoutMs);
    try {
      while (true) {
        const head = parseRequestHead(buf, lim);
        if (head.kind === "incomplete") {
          const n = await conn.read(chunk);
          if (n === null) return;
          const next = new Uint8Array(buf.length + n);
          next.set(buf);
          next.set(chunk.subarray(0, n), buf.length);
          buf = next;
          continue;
        }
        clearTimeout(timer);
        if (head.kind === "error") {
          await writeAll(conn, errorResponse(head.status, head.message));
          return;
        }
        buf = buf.subarray(head.consumed);
        served++;
        const keepAlive = head.keepAlive && served < lim.maxRequestsPerConnection;
        const key = `${head.method} ${keepAlive ? "k" : "c"} ${head.target}`;
        const hit = lim.responseCacheMs > 0 ? cache.get(key) : undefined;
        if (hit && performance.now() - hit.at < lim.responseCacheMs) {
          await writeAll(conn, hit.bytes);
          if (!keepAlive) return;
          timer = setTimeout(() => safeClose(conn), lim.requestTimeoutMs);
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
          await writeAll(conn, errorResponse(405, `Method ${head.method} not allowed; use GET`));
          return;
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
        await writeAll(conn, bytes);
        if (!keepAlive) return;
        timer = setTimeout(() => safeClose(conn), lim.requestTimeoutMs);
      }
    } catch {
      // Reset by the peer, or closed by the timeout: nothing to answer.
    } finally {
      clearTimeout(timer);
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
      open.add(conn);
      serveConn(conn);
    }
  })();

  return {
    address: hostForUrl,
    connections: () => open.size,
    async close() {
      closed = true;
      try {
        listener.close();
      } catch { /* closed */ }
      for (const c of open) safeClose(c);
      await acceptLoop;
    },
  };
}
