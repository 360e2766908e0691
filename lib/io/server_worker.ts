/**
 * A server worker: owns its sockets (one per listen address, sharing the
 * port with the other workers through SO_REUSEPORT on the FFI driver),
 * answers requests with the pure server core, and counts into its own
 * slot of a shared counter array. System state arrives through shared
 * memory; control messages (peers, send, stop, reconfigure) by postMessage.
 */
/// <reference lib="deno.worker" />
import { AccessList } from "../ntp/access.ts";
import type { ClientAddress } from "../ntp/address.ts";
import { formatIp } from "../ntp/address.ts";
import { RateLimiter } from "../ntp/rate_limit.ts";
import {
  Counter,
  COUNTER_COUNT,
  minPollFor,
  respond,
  type ServerContext,
  stampTransmit,
} from "../ntp/server.ts";
import { SharedSystemState, unsyncedState } from "../ntp/system_state.ts";
import { parseSocketAddress, type SocketAddress } from "../config/socket_address.ts";
import { cidrs, type ServerOptions } from "./server_options.ts";
import type { Responder, ServerSocket, TransmitStamp } from "./server_socket.ts";
import { openServerSocket } from "./udp.ts";

export type ToWorker =
  | {
    kind: "init";
    listen: string[];
    driver: "ffi" | "portable";
    reusePort: boolean;
    options: ServerOptions;
    state: SharedArrayBuffer;
    counters: SharedArrayBuffer;
    slot: number;
    peers: string[];
    /** Worker 0: the pool's count of posted `send` messages (see udp_ffi.ts watchSends). */
    sends?: SharedArrayBuffer;
  }
  | { kind: "options"; options: ServerOptions }
  /** Reload: close sockets no longer listed, open the new ones, keep the rest. */
  | { kind: "listen"; listen: string[] }
  | { kind: "peers"; peers: string[] }
  /**
   * A packet for a symmetric peer. With `stamp` (the engine's cookie) the
   * worker writes the transmit timestamp right before sending and answers
   * with a `sent` message.
   */
  | { kind: "send"; bytes: Uint8Array; host: string; port: number; stamp?: number }
  | { kind: "stop" };

export type FromWorker =
  | { kind: "ready"; driver: string; driverNote: string; bound: string[]; errors: string[] }
  | { kind: "listened"; bound: string[]; errors: string[] }
  | {
    kind: "forward";
    bytes: Uint8Array;
    host: string;
    port: number;
    rxSec: number;
    rxNsec: number;
  }
  /** The transmit timestamp a `send` with `stamp` carried (32.32), null if it did not go out. */
  | { kind: "sent"; stamp: number; xmt: bigint | null }
  | { kind: "stopped" };

function post(msg: FromWorker): void {
  self.postMessage(msg);
}

function peerKey(c: ClientAddress): string {
  const w = c.words;
  if (c.family === 4) {
    return formatIp(
      new Uint8Array([w[0]! >>> 24, (w[0]! >> 16) & 255, (w[0]! >> 8) & 255, w[0]! & 255]),
    );
  }
  const b = new Uint8Array(16);
  for (let i = 0; i < 4; i++) new DataView(b.buffer).setUint32(i * 4, w[i]!);
  return formatIp(b);
}

let sockets: ServerSocket[] = [];
/** The listen text each socket was opened for (reload compares these). */
const socketListen = new Map<ServerSocket, string>();

async function start(init: Extract<ToWorker, { kind: "init" }>): Promise<void> {
  const shared = new SharedSystemState(init.state);
  const system = unsyncedState(0);
  shared.read(system);
  let seen = shared.version;
  const counters = new Float64Array(init.counters, init.slot * COUNTER_COUNT * 8, COUNTER_COUNT);
  let peers = new Set(init.peers);
  const ctx: ServerContext = {
    system,
    access: new AccessList([], []),
    limiter: new RateLimiter({ intervalS: 0, burst: 1 }),
    denyKod: false,
    rateKod: false,
    minPoll: 0,
    counters,
    isPeer: (c) => peers.size > 0 && peers.has(peerKey(c)),
  };
  const configure = (o: ServerOptions) => {
    ctx.access = new AccessList(cidrs(o.allow), cidrs(o.deny));
    ctx.limiter = new RateLimiter(o.rateLimit);
    ctx.denyKod = o.denyKod;
    ctx.rateKod = o.rateLimit.kod;
    ctx.minPoll = minPollFor(o.rateLimit.intervalS);
  };
  configure(init.options);

  const refresh = () => {
    const v = shared.version;
    if (v !== seen) {
      shared.read(system);
      seen = v;
    }
  };
  // Served time, as in our replies: the engine's peer packets go out with the same clock.
  const stampPeer: TransmitStamp = (bytes, txSec, txNsec) => {
    refresh();
    stampTransmit(bytes, 0, system, txSec, txNsec);
  };
  const responder: Responder = {
    respond(req, length, client, rxSec, rxNsec, out, outOffset) {
      refresh();
      return respond(req, length, client, rxSec, rxNsec, ctx, out, outOffset);
    },
    stamp(out, outOffset, txSec, txNsec) {
      stampTransmit(out, outOffset, system, txSec, txNsec);
    },
    forward(req, client, rxSec, rxNsec) {
      post({
        kind: "forward",
        bytes: req,
        host: peerKey(client),
        port: client.port,
        rxSec,
        rxNsec,
      });
    },
    sendFailed() {
      counters[Counter.sendErrors]!++;
    },
  };

  const errors: string[] = [];
  let driverNote = "";
  const open = async (list: string[], errs: string[]) => {
    for (const text of list) {
      const addr = parseSocketAddress(text) as SocketAddress;
      try {
        const opened = await openServerSocket(addr, init.driver, init.reusePort);
        if (opened.note) driverNote = opened.note;
        sockets.push(opened.socket);
        socketListen.set(opened.socket, text);
      } catch (e) {
        errs.push(e instanceof Error ? e.message : String(e));
      }
    }
  };
  await open(init.listen, errors);
  let sendHandled = () => {};
  if (init.sends && sockets.some((s) => s.driver === "ffi-recvmmsg")) {
    const ffi = await import("./udp_ffi.ts");
    ffi.watchSends(new Int32Array(init.sends));
    sendHandled = ffi.sendHandled;
  }
  post({
    kind: "ready",
    driver: sockets[0]?.driver ?? init.driver,
    driverNote,
    bound: sockets.map((s) => s.address),
    errors,
  });
  self.onmessage = (e: MessageEvent<ToWorker>) => {
    const m = e.data;
    if (m.kind === "options") configure(m.options);
    else if (m.kind === "listen") {
      // Open the new addresses before closing the old ones; unchanged ones are untouched.
      const have = new Set(socketListen.values());
      const gone = sockets.filter((s) => !m.listen.includes(socketListen.get(s) ?? ""));
      const before = sockets.length;
      const errs: string[] = [];
      void open(m.listen.filter((t) => !have.has(t)), errs).then(() => {
        for (const s of sockets.slice(before)) void s.serve(responder);
        for (const s of gone) {
          s.close();
          socketListen.delete(s);
        }
        sockets = sockets.filter((s) => !gone.includes(s));
        post({ kind: "listened", bound: sockets.map((s) => s.address), errors: errs });
      });
    } else if (m.kind === "peers") peers = new Set(m.peers);
    else if (m.kind === "send") {
      sendHandled();
      const s = sockets.find((s) => s.address.startsWith("[") === m.host.includes(":"));
      const stamp = m.stamp;
      if (stamp === undefined) {
        s?.sendTo(m.bytes, m.host, m.port);
        return;
      }
      const ok = s?.sendTo(m.bytes, m.host, m.port, stampPeer) ?? false;
      const xmt = ok && m.bytes.length >= 48
        ? new DataView(m.bytes.buffer, m.bytes.byteOffset).getBigUint64(40)
        : null;
      post({ kind: "sent", stamp, xmt });
    } else if (m.kind === "stop") {
      for (const s of sockets) s.close();
      sockets = [];
      post({ kind: "stopped" });
    }
  };
  await Promise.all(sockets.map((s) => s.serve(responder)));
}

self.onmessage = (e: MessageEvent<ToWorker>) => {
  if (e.data.kind === "init") void start(e.data);
};
