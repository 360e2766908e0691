/** Sends one NTP client request and waits for the matching reply. */
import dgram from "node:dgram";
import { lookup } from "node:dns/promises";
import { buildRequest, evaluateReply, type QueryResult } from "../ntp/query.ts";
import { fromUnix } from "../ntp/timestamp.ts";
import { realtimeReader } from "./realtime.ts";

export interface QueryOptions {
  timeoutMs?: number;
  attempts?: number;
}

/** Queries `host:port`; rejects with a one-line message on failure. */
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
  const read = realtimeReader();
  const t = { sec: 0, nsec: 0 };
  const sock = dgram.createSocket(family === 6 ? "udp6" : "udp4");
  try {
    await new Promise<void>((resolve, reject) => {
      sock.once("error", reject);
      sock.bind(0, () => resolve());
    });
    let lastError = `no reply from ${host}:${port}`;
    for (let attempt = 0; attempt < (opts.attempts ?? 3); attempt++) {
      const result = await new Promise<QueryResult | string>((resolve) => {
        read(t);
        // Random low bits in xmt make the origin check meaningful (RFC 5905 §15).
        const t1 = fromUnix(t.sec, t.nsec) ^ BigInt(Math.floor(Math.random() * 0xffff));
        const timer = setTimeout(() => {
          sock.removeAllListeners("message");
          resolve(`no reply from ${host}:${port} within ${opts.timeoutMs ?? 1000} ms`);
        }, opts.timeoutMs ?? 1000);
        sock.on("message", (msg: Uint8Array) => {
          read(t);
          const r = evaluateReply(new Uint8Array(msg), t1, fromUnix(t.sec, t.nsec));
          if (typeof r === "string" && r.includes("bogus")) return; // a stale reply; keep waiting
          clearTimeout(timer);
          sock.removeAllListeners("message");
          resolve(r);
        });
        sock.send(buildRequest(t1), port, address);
      });
      if (typeof result !== "string") return result;
      lastError = result;
    }
    throw new Error(lastError);
  } finally {
    sock.close();
  }
}
