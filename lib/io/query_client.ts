/** Sends one NTP client request and waits for the matching reply. */
import dgram from "node:dgram";
import { lookup } from "node:dns/promises";
import { buildRequest, evaluateReply, type QueryResult } from "../ntp/query.ts";
import { ORIGIN_MISMATCH } from "../ntp/reply_check.ts";
import { fromUnix, fromUnixSeconds, type NtpTimestamp } from "../ntp/timestamp.ts";
import { realtimeReader } from "./realtime.ts";
import { SourceSockets } from "./source_socket.ts";

export interface QueryOptions {
  timeoutMs?: number;
  attempts?: number;
}

/**
 * The server answered, but the reply failed `checkReply` (a kiss-o'-death,
 * an unsynchronised server, a zero timestamp …). `message` is
 * `HOST:PORT: reason`; `reason` is the check's own words.
 */
export class ReplyRejected extends Error {
  constructor(readonly server: string, readonly reason: string) {
    super(`${server}: ${reason}`);
  }
}

/** `host:port`, with an IPv6 host in brackets. */
export function formatServer(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * Queries `host:port` (a name or an IP literal): up to `attempts` requests
 * (default 3), each waiting `timeoutMs` (default 1000 ms). Resolves with a
 * reply that passed `checkReply`. Rejects with one line: `Cannot resolve
 * HOST`, `no reply from HOST:PORT within N ms`, or a `ReplyRejected` as
 * soon as the server gives a reply that is not time (no further attempt:
 * a kiss-o'-death asks us to stop). Replies with another origin
 * timestamp are ignored while waiting; when only such replies came, the
 * query ends in a `ReplyRejected` saying so.
 */
export async function queryServer(
  host: string,
  port: number,
  opts: QueryOptions = {},
): Promise<QueryResult> {
  let address: string, family: number;
  try {
    ({ address, family } = await lookup(host));
  } catch {
    throw new Error(`Cannot resolve ${host}`);
  }
  const server = formatServer(host, port);
  const timeoutMs = opts.timeoutMs ?? 1000;
  const link = await openLink(address, family === 6, port);
  try {
    let lastError = `no reply from ${server}`;
    // Replies to other requests are ignored while waiting; if nothing else came, that is the reason.
    let mismatched = false;
    for (let attempt = 0; attempt < (opts.attempts ?? 3); attempt++) {
      // A random transmit timestamp makes the origin check meaningful (RFC
      // 5905 §15); offset and delay use the true send time t1.
      const xmt = (BigInt(Math.floor(Math.random() * 2 ** 32)) << 32n) |
        BigInt(Math.floor(Math.random() * 2 ** 32));
      const result = await new Promise<QueryResult | { timeout: string } | string>((resolve) => {
        const timer = setTimeout(() => {
          link.onReply(null);
          resolve({ timeout: `no reply from ${server} within ${timeoutMs} ms` });
        }, timeoutMs);
        link.onReply((bytes, t4, t1) => {
          const r = evaluateReply(bytes, xmt, t4, t1);
          if (r === ORIGIN_MISMATCH) {
            mismatched = true; // a stale or forged reply; keep waiting
            return;
          }
          clearTimeout(timer);
          link.onReply(null);
          resolve(r);
        });
        link.send(buildRequest(xmt));
      });
      if (typeof result === "string") throw new ReplyRejected(server, result);
      if (!("timeout" in result)) return result;
      lastError = result.timeout;
    }
    throw mismatched ? new ReplyRejected(server, ORIGIN_MISMATCH) : new Error(lastError);
  } finally {
    await link.close();
  }
}

/** One client socket to the server: sends a request, hands each reply over with t4 and t1. */
interface Link {
  send(request: Uint8Array): void;
  /** `t1` is when the last request really left. Null stops the handler. */
  onReply(handler: ((bytes: Uint8Array, t4: NtpTimestamp, t1: NtpTimestamp) => void) | null): void;
  close(): Promise<void>;
}

/**
 * The engine's timestamped socket (kernel receive and transmit stamps,
 * source_socket.ts) where FFI is available, so a query measures what the
 * engine would; otherwise a node:dgram socket, stamped in the event loop
 * right before the send and when the reply is delivered.
 */
async function openLink(address: string, v6: boolean, port: number): Promise<Link> {
  let handler: ((bytes: Uint8Array, t4: NtpTimestamp, t1: NtpTimestamp) => void) | null = null;
  try {
    const sockets = new SourceSockets((id, bytes, t4) => {
      const sent = sockets.lastSent(id);
      if (sent) handler?.(bytes, fromUnixSeconds(t4), fromUnixSeconds(sent.t1));
    });
    const err = sockets.open("query", { host: address, port });
    if (err === null) {
      return {
        send: (request) => void sockets.send("query", request),
        onReply: (h) => handler = h,
        close: () => sockets.stop(),
      };
    }
    await sockets.stop();
  } catch { /* no FFI here: the portable socket below */ }
  const read = realtimeReader();
  const t = { sec: 0, nsec: 0 };
  let t1: NtpTimestamp = 0n;
  const sock = dgram.createSocket(v6 ? "udp6" : "udp4");
  await new Promise<void>((resolve, reject) => {
    sock.once("error", reject);
    sock.bind(0, () => resolve());
  });
  sock.on("message", (msg: Uint8Array) => {
    read(t);
    handler?.(new Uint8Array(msg), fromUnix(t.sec, t.nsec), t1);
  });
  return {
    send(request) {
      read(t);
      t1 = fromUnix(t.sec, t.nsec);
      sock.send(request, port, address);
    },
    onReply: (h) => handler = h,
    close: () => new Promise<void>((resolve) => sock.close(() => resolve())),
  };
}
