/** Sends one NTP client request and waits for the matching reply. */
import dgram from "node:dgram";
import { lookup } from "node:dns/promises";
import { buildRequest, evaluateReply, type QueryResult } from "../ntp/query.ts";
import { ORIGIN_MISMATCH } from "../ntp/reply_check.ts";
import { fromUnix } from "../ntp/timestamp.ts";
import { realtimeReader } from "./realtime.ts";

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
  const read = realtimeReader();
  const t = { sec: 0, nsec: 0 };
  const sock = dgram.createSocket(family === 6 ? "udp6" : "udp4");
  try {
    await new Promise<void>((resolve, reject) => {
      sock.once("error", reject);
      sock.bind(0, () => resolve());
    });
    let lastError = `no reply from ${server}`;
    // Replies to other requests are ignored while waiting; if nothing else came, that is the reason.
    let mismatched = false;
    for (let attempt = 0; attempt < (opts.attempts ?? 3); attempt++) {
      const result = await new Promise<QueryResult | { timeout: string } | string>((resolve) => {
        read(t);
        const t1 = fromUnix(t.sec, t.nsec);
        // Random low bits in xmt make the origin check meaningful (RFC 5905 §15);
        // offset and delay use the true send time t1.
        const xmt = t1 ^ BigInt(Math.floor(Math.random() * 0xffff));
        const timer = setTimeout(() => {
          sock.removeAllListeners("message");
          resolve({ timeout: `no reply from ${server} within ${opts.timeoutMs ?? 1000} ms` });
        }, opts.timeoutMs ?? 1000);
        sock.on("message", (msg: Uint8Array) => {
          read(t);
          const r = evaluateReply(new Uint8Array(msg), xmt, fromUnix(t.sec, t.nsec), t1);
          if (r === ORIGIN_MISMATCH) {
            mismatched = true; // a stale or forged reply; keep waiting
            return;
          }
          clearTimeout(timer);
          sock.removeAllListeners("message");
          resolve(r);
        });
        sock.send(buildRequest(xmt), port, address);
      });
      if (typeof result === "string") throw new ReplyRejected(server, result);
      if (!("timeout" in result)) return result;
      lastError = result.timeout;
    }
    throw mismatched ? new ReplyRejected(server, ORIGIN_MISMATCH) : new Error(lastError);
  } finally {
    sock.close();
  }
}
