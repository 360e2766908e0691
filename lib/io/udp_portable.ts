/**
 * Portable UDP driver on `node:dgram`: one datagram per event, receive time
 * read in user space when the event fires (no kernel timestamps). Used when
 * FFI is unavailable (no --allow-ffi, not Linux) or `server.driver =
 * "portable"`. It cannot share a port between workers, so it runs one.
 */
import dgram from "node:dgram";
import { newClientAddress, parseIp, setClientAddress } from "../ntp/address.ts";
import { NO_REPLY, REPLY_LENGTH, REPLY_SAVE_TX, REPLY_SEAL, REPLY_STAMPED } from "../ntp/server.ts";
import type { SocketAddress } from "../config/socket_address.ts";
import { realtimeReader } from "./realtime.ts";
import { BindError, bindReason, type Responder, type ServerSocket } from "./server_socket.ts";

export async function openPortableSocket(addr: SocketAddress): Promise<ServerSocket> {
  const text = addr.family === 6
    ? `[${addr.hostname}]:${addr.port}`
    : `${addr.hostname}:${addr.port}`;
  const sock = dgram.createSocket({ type: addr.family === 6 ? "udp6" : "udp4", ipv6Only: true });
  await new Promise<void>((resolve, reject) => {
    sock.once(
      "error",
      (e: Error & { code?: string }) => reject(new BindError(text, bindReason(e.code, e.message))),
    );
    sock.bind(addr.port, addr.hostname, () => resolve());
  });
  const bound = sock.address();
  const address = addr.family === 6
    ? `[${bound.address}]:${bound.port}`
    : `${bound.address}:${bound.port}`;
  const read = realtimeReader();
  const rx = { sec: 0, nsec: 0 }, tx = { sec: 0, nsec: 0 };
  let closed: () => void = () => {};
  const done = new Promise<void>((r) => closed = r);
  return {
    driver: "portable",
    address,
    serve(responder: Responder): Promise<void> {
      const client = newClientAddress();
      sock.on("error", () => {}); // ICMP errors on send are not fatal
      sock.on("message", (msg: Uint8Array, rinfo: dgram.RemoteInfo) => {
        read(rx);
        const ip = parseIp(rinfo.address);
        if (!ip) return;
        setClientAddress(client, ip, 0, ip.length as 4 | 16, rinfo.port);
        // dgram.send is async: a reply buffer each (NTS replies are as long as the request).
        const out = new Uint8Array(Math.max(48, msg.length));
        const n = responder.respond(msg, msg.length, client, rx.sec, rx.nsec, out, 0);
        if (n === NO_REPLY) return;
        read(tx);
        if ((n & REPLY_STAMPED) === 0) responder.stamp(out, 0, tx.sec, tx.nsec);
        if ((n & REPLY_SEAL) !== 0) responder.seal(out, 0, n & REPLY_LENGTH);
        // No kernel transmit stamps here: interleaved clients get this reading.
        if ((n & REPLY_SAVE_TX) !== 0) responder.saveTx(out, 0, tx.sec, tx.nsec);
        sock.send(out, 0, n & REPLY_LENGTH, rinfo.port, rinfo.address, (err) => {
          if (err) responder.sendFailed();
        });
      });
      return done;
    },
    // node:dgram delivers as datagrams come; this driver has no kernel
    // stamps to keep while waiting, so it does not hold.
    hold() {},
    release() {},
    close() {
      sock.close();
      closed();
    },
  };
}
