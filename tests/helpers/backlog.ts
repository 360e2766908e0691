/**
 * A backlog at a running edge-time, for tests/integration/server_batch_stamp_test.ts
 * and bench/backlog.ts: the server process is stopped (SIGSTOP), `size`
 * requests queue in its socket, then it runs again (SIGCONT) and answers
 * them as fast as it can, in batches.
 */
import dgram from "node:dgram";
import type { EdgeTimeProcess } from "./edge_time.ts";

/** NTP 64-bit timestamp at `off`, exact (units of 2^-32 s). */
export function ntpTime(b: Uint8Array, off: number): bigint {
  return new DataView(b.buffer, b.byteOffset).getBigUint64(off);
}

/** `a - b` in seconds, exact to well below a nanosecond for spans of days. */
export function ntpDiff(a: bigint, b: bigint): number {
  return Number(a - b) / 2 ** 32;
}

export interface BacklogClient {
  /**
   * Queues `size` requests at the stopped server, lets it go and returns
   * the replies by request index. Rejects when some are still missing
   * after `timeoutMs` (a deadline for a server that never answers, not a
   * figure: the replies usually all arrive within milliseconds).
   */
  burst(round: number, timeoutMs?: number): Promise<Uint8Array[]>;
  close(): void;
}

export async function backlogClient(
  et: EdgeTimeProcess,
  port: number,
  size: number,
): Promise<BacklogClient> {
  const sock = dgram.createSocket("udp4");
  await new Promise<void>((r) => sock.bind(0, "127.0.0.1", () => r()));
  return {
    async burst(round: number, timeoutMs = 30_000): Promise<Uint8Array[]> {
      const replies: Uint8Array[] = new Array(size);
      let got = 0;
      const done = new Promise<void>((resolve) => {
        sock.removeAllListeners("message");
        sock.on("message", (m: Uint8Array) => {
          const v = new DataView(m.buffer, m.byteOffset);
          // org = request xmt: high word the round, low word the index.
          const i = v.getUint32(28);
          if (v.getUint32(24) === round && i < size && !replies[i]) {
            replies[i] = m;
            if (++got === size) resolve();
          }
        });
      });
      et.child.kill("SIGSTOP");
      try {
        for (let i = 0; i < size; i++) {
          const req = new Uint8Array(48);
          req[0] = 0x23; // v4, client
          new DataView(req.buffer).setUint32(40, round);
          new DataView(req.buffer).setUint32(44, i);
          await new Promise<void>((r) => sock.send(req, port, "127.0.0.1", () => r()));
        }
      } finally {
        et.child.kill("SIGCONT");
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      const late = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`only ${got}/${size} replies after ${timeoutMs} ms`)),
          timeoutMs,
        );
      });
      try {
        await Promise.race([done, late]);
      } finally {
        clearTimeout(timer);
      }
      return replies;
    },
    close: () => sock.close(),
  };
}
