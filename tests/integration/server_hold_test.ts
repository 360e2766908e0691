/**
 * Start-up measures of the server (lib/io/udp_ffi.ts, lib/io/server_pool.ts):
 *
 * - holding a server socket (`hold`/`release`, used by
 *   `ServerPool.whileHeld` around the start-up memory trim): requests wait
 *   in the kernel's queue, keep their kernel receive timestamps, and are
 *   answered once the socket is released;
 * - `ServerPool.whileHeld`: no worker answers while the function runs, and
 *   what came meanwhile is answered after;
 * - `warmUpDriver`: the packet loop answers synthetic requests over a
 *   private socket.
 */
import assert from "assert";
import dgram from "node:dgram";
import type { Responder } from "../../lib/io/server_socket.ts";
import { openFfiSocket, warmUpDriver } from "../../lib/io/udp_ffi.ts";
import { ServerPool } from "../../lib/io/server_pool.ts";
import { serverOptionsFrom } from "../../lib/io/server_options.ts";
import { defaultConfig } from "../../lib/config/mod.ts";
import { SharedSystemState } from "../../lib/ntp/system_state.ts";
import {
  AF_INET,
  libc,
  MSG_DONTWAIT,
  SOCK_DGRAM,
  SOCK_NONBLOCK,
  SOCKADDR_SIZE,
  writeSockaddr,
} from "../../lib/io/libc.ts";
import { freeUdpPort } from "../helpers/edge_time.ts";
import { ntpDiff, ntpTime } from "../helpers/backlog.ts";
import { stampTransmit } from "../../lib/ntp/server.ts";
import { unsyncedState } from "../../lib/ntp/system_state.ts";
import { writeUnixTime } from "../../lib/ntp/timestamp.ts";

/** Echoes the request as a mode-4 reply with rec = the kernel receive stamp. */
function echoResponder(): Responder {
  const system = unsyncedState(0);
  return {
    respond(req, _length, _client, rxSec, rxNsec, out, off) {
      out.set(req.subarray(0, 48), off);
      out[off] = (4 << 3) | 4;
      writeUnixTime(new DataView(out.buffer, out.byteOffset), off + 32, rxSec, rxNsec, 0); // rec
      return 48;
    },
    stamp(out, off, sec, nsec) {
      stampTransmit(out, off, system, sec, nsec);
    },
    seal() {},
    saveTx() {},
    sendFailed() {},
    sendLatency() {},
  };
}

Deno.test({
  name:
    "a held socket answers nothing until released, then its queued requests, stamped on arrival",
  sanitizeResources: false,
  sanitizeOps: false,
}, async () => {
  const sock = await openFfiSocket({ family: 4, hostname: "127.0.0.1", port: 0 }, false);
  const served = sock.serve(echoResponder());
  const client = dgram.createSocket("udp4");
  const replies: Uint8Array[] = [];
  client.on("message", (m: Uint8Array) => replies.push(new Uint8Array(m)));
  await new Promise<void>((r) => client.bind(0, "127.0.0.1", () => r()));
  const port = Number(sock.address.split(":").pop());
  const req = new Uint8Array(48);
  req[0] = (4 << 3) | 3;
  try {
    // Served before the hold.
    client.send(req, port, "127.0.0.1");
    for (let i = 0; i < 200 && replies.length < 1; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(replies.length, 1, "answered before the hold");

    sock.hold();
    // Let the loop reach its hold (it finishes the read it is in).
    await new Promise((r) => setTimeout(r, 50));
    client.send(req, port, "127.0.0.1");
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(replies.length, 1, "a held socket answered");

    const released = Date.now() / 1000;
    sock.release();
    for (let i = 0; i < 500 && replies.length < 2; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(replies.length, 2, "the queued request was not answered after release");
    // rec is the kernel's receive stamp: from before the release, not from when it was read.
    const r = replies[1]!;
    const waited = ntpDiff(ntpTime(r, 40), ntpTime(r, 32));
    assert.ok(waited > 0.2, `xmt - rec = ${waited} s: the wait in the queue does not show`);
    const recUnix = Number(ntpTime(r, 32) >> 32n) - 2208988800;
    assert.ok(recUnix <= Math.ceil(released), "rec after the release");
  } finally {
    client.close();
    sock.close();
    await served;
  }
});

Deno.test({
  name:
    "ServerPool.whileHeld: no worker answers while the function runs; after it, the queued request is",
  sanitizeResources: false,
  sanitizeOps: false,
}, async () => {
  const port = await freeUdpPort();
  const config = defaultConfig();
  config.server.rateLimit.intervalS = 0;
  const pool = await ServerPool.start({
    listen: [`127.0.0.1:${port}`],
    workers: 1,
    driver: "ffi",
    options: serverOptionsFrom(config),
    state: new SharedSystemState(),
  });
  const c = libc();
  const fd = c.socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
  const to = new Uint8Array(SOCKADDR_SIZE);
  const toLen = writeSockaddr(to, new Uint8Array([127, 0, 0, 1]), port);
  const req = new Uint8Array(48);
  req[0] = (4 << 3) | 3;
  const buf = new Uint8Array(256);
  const replied = () => Number(c.recvfrom(fd, buf, 256n, MSG_DONTWAIT, null, null)) >= 48;
  try {
    assert.equal(pool.bound.length, 1);
    c.sendto(fd, req, 48n, 0, to, toLen);
    let before = false;
    for (let i = 0; i < 500 && !before; i++) {
      before = replied();
      if (!before) await new Promise((r) => setTimeout(r, 10));
    }
    assert.ok(before, "answered before the hold");
    // The function blocks this thread; the worker runs on its own: held, it
    // must leave the request in the queue for the whole 300 ms.
    const during = await pool.whileHeld(() => {
      c.sendto(fd, req, 48n, 0, to, toLen);
      const end = performance.now() + 300;
      while (performance.now() < end) if (replied()) return true;
      return false;
    });
    assert.equal(during, false, "a worker answered while held");
    let after = false;
    for (let i = 0; i < 500 && !after; i++) {
      after = replied();
      if (!after) await new Promise((r) => setTimeout(r, 10));
    }
    assert.ok(after, "the request that came while held was not answered after");
  } finally {
    c.close(fd);
    await pool.stop();
  }
});

Deno.test({
  name: "warmUpDriver: the packet loop answers its synthetic requests over a private socket",
  sanitizeResources: false,
  sanitizeOps: false,
}, async () => {
  let answered = 0, stamped = 0;
  const responder = echoResponder();
  await warmUpDriver({
    ...responder,
    respond(...args) {
      answered++;
      return responder.respond(...args);
    },
    stamp(...args) {
      stamped++;
      responder.stamp(...args);
    },
  }, 1_000);
  assert.ok(answered >= 1_000, `answered ${answered} of 1000`);
  assert.equal(stamped, answered, "every reply stamped before its send");
});
