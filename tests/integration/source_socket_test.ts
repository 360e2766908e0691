/**
 * The engine's timestamped transport (lib/io/source_socket.ts) on
 * loopback: t1 is the kernel's transmit timestamp read back from the
 * error queue before the reply is handled, t4 the kernel's receive
 * timestamp; symmetric packets get their xmt written right before the
 * send; a peer socket bound to the server's port receives the peer's
 * packets while every other client still reaches the server socket.
 */
import assert from "assert";
import dgram from "node:dgram";
import { type SentPacket, SourceSockets } from "../../lib/io/source_socket.ts";
import type { Responder } from "../../lib/io/server_socket.ts";
import { openFfiSocket } from "../../lib/io/udp_ffi.ts";
import { NO_REPLY } from "../../lib/ntp/server.ts";
import { until } from "../helpers/wait.ts";

interface Arrival {
  id: string;
  bytes: Uint8Array;
  t4: number;
  sent: SentPacket | null;
}

/** A kernel-timestamping server socket on 127.0.0.1 that records what reaches it and echoes nothing. */
async function serverSocket(port = 0, reusePort = false) {
  const sock = await openFfiSocket({ family: 4, hostname: "127.0.0.1", port }, reusePort);
  const got: Uint8Array[] = [];
  const responder: Responder = {
    respond(req, length) {
      got.push(req.slice(0, length));
      return NO_REPLY;
    },
    stamp() {},
    seal() {},
    saveTx() {},
    sendFailed() {},
    sendLatency() {},
  };
  const served = sock.serve(responder);
  return {
    port: Number(sock.address.split(":").pop()),
    got,
    close: () => (sock.close(), served),
  };
}

/** A node:dgram socket on 127.0.0.1 that records what it gets (and echoes it with `echo`). */
async function plainSocket(echo = false) {
  const s = dgram.createSocket("udp4");
  const got: { bytes: Uint8Array; port: number }[] = [];
  s.on("message", (m: Uint8Array, r: dgram.RemoteInfo) => {
    got.push({ bytes: new Uint8Array(m), port: r.port });
    if (echo) s.send(m, r.port, r.address);
  });
  await new Promise<void>((resolve) => s.bind(0, "127.0.0.1", resolve));
  return {
    port: s.address().port,
    got,
    send: (b: Uint8Array, port: number) => s.send(b, port, "127.0.0.1"),
    close: () => s.close(),
  };
}

function packet(mode: number, tag: number): Uint8Array {
  const b = new Uint8Array(48);
  b[0] = (4 << 3) | mode;
  new DataView(b.buffer).setBigUint64(40, 0x1234_5678_0000_0000n + BigInt(tag));
  return b;
}

Deno.test({
  name: "SourceSockets: kernel transmit and receive timestamps on every packet",
  sanitizeResources: false,
  sanitizeOps: false,
}, async () => {
  const echo = await plainSocket(true);
  const got: Arrival[] = [];
  const ss = new SourceSockets((id, bytes, t4) =>
    got.push({ id, bytes, t4, sent: ss.lastSent(id) })
  );
  try {
    assert.equal(ss.open("up", { host: "127.0.0.1", port: echo.port }), null);
    for (let i = 0; i < 5; i++) {
      const before = got.length;
      assert.ok(ss.send("up", packet(3, i)));
      await until("the echo", async () => await got.length > before || null, 10_000);
    }
    for (const a of got) {
      assert.ok(a.sent, "the last send is known when its reply is handled");
      assert.equal(a.sent.kernel, true, "t1 is the kernel's transmit timestamp");
      assert.equal(a.sent.xmt, new DataView(a.bytes.buffer).getBigUint64(40));
      assert.ok(a.sent.t1 <= a.t4, `t1 ${a.sent.t1} before t4 ${a.t4}`);
    }
    assert.equal(ss.counters.kernelTx, 5);
    assert.equal(ss.counters.kernelRx, 5);
    // Each kernel stamp measured how long after its reading the packet left.
    for (let i = 5; i < 12; i++) {
      const before = got.length;
      assert.ok(ss.send("up", packet(3, i)));
      await until("the echo", async () => await got.length > before || null, 10_000);
    }
    const lead = ss.sendLatency.estimate;
    assert.ok(lead > 0 && lead < 0.001, `send latency ${lead}`);
    // A symmetric packet's xmt is that reading plus the estimate: the predicted departure.
    let written = -1;
    const before = got.length;
    assert.ok(ss.send("up", packet(1, 99), (_b, sec, nsec) => {
      written = sec + nsec * 1e-9;
    }));
    await until("the echo", async () => await got.length > before || null, 10_000);
    const sent = ss.lastSent("up")!;
    assert.equal(sent.kernel, true);
    assert.ok(written - lead <= sent.t1, "the reading came before the kernel's stamp");
    assert.ok(Math.abs(written - sent.t1) < 0.001, `xmt ${written} vs left ${sent.t1}`);
  } finally {
    await ss.stop();
    echo.close();
  }
});

Deno.test({
  name: "SourceSockets: symmetric packets carry the xmt written right before the send",
  sanitizeResources: false,
  sanitizeOps: false,
}, async () => {
  const peer = await serverSocket();
  const ss = new SourceSockets(() => {});
  try {
    assert.equal(ss.open("peer", { host: "127.0.0.1", port: peer.port }), null);
    let reading = -1;
    assert.ok(ss.send("peer", packet(1, 0), (b, sec, nsec) => {
      reading = sec + nsec * 1e-9;
      new DataView(b.buffer, b.byteOffset).setBigUint64(40, BigInt(sec) << 32n);
    }));
    await until("the packet", async () => await peer.got.length > 0 || null, 10_000);
    const xmt = new DataView(peer.got[0]!.buffer).getBigUint64(40);
    assert.equal(xmt, BigInt(Math.floor(reading)) << 32n, "what the writer wrote went out");
    assert.equal(ss.lastSent("peer")?.xmt, xmt);
  } finally {
    await ss.stop();
    await peer.close();
  }
});

Deno.test({
  name:
    "SourceSockets: a peer socket on the server's port gets the peer's packets, the server the rest",
  sanitizeResources: false,
  sanitizeOps: false,
}, async () => {
  // The server's port, bound by two reuseport sockets as the server workers do.
  const a = await serverSocket(0, true);
  const b = await serverSocket(a.port, true);
  const peer = await plainSocket();
  const other = await plainSocket();
  const got: Arrival[] = [];
  const ss = new SourceSockets((id, bytes, t4) => got.push({ id, bytes, t4, sent: null }));
  try {
    const err = ss.open("peer", {
      host: "127.0.0.1",
      port: peer.port,
      local: { host: "127.0.0.1", port: a.port },
    });
    assert.equal(err, null);
    for (let i = 0; i < 8; i++) {
      peer.send(packet(1, i), a.port);
      other.send(packet(3, i), a.port);
    }
    const all = async () => await got.length + a.got.length + b.got.length >= 16 || null;
    await until("all 16 packets", all, 10_000);
    assert.equal(got.length, 8, "every packet from the peer reached the peer socket");
    assert.ok(got.every((g) => (g.bytes[0]! & 7) === 1));
    assert.equal(a.got.length + b.got.length, 8, "every other client reached the server");
    assert.ok([...a.got, ...b.got].every((g) => (g[0]! & 7) === 3));
    // Our packets leave from the server's port, as a peer expects.
    assert.ok(ss.send("peer", packet(1, 99)));
    await until("our packet at the peer", async () => await peer.got.length > 0 || null, 10_000);
    assert.equal(peer.got[0]!.port, a.port);
  } finally {
    await ss.stop();
    peer.close();
    other.close();
    await a.close();
    await b.close();
  }
});

Deno.test({
  name: "SourceSockets: a handler that throws does not stop the loop",
  sanitizeResources: false,
  sanitizeOps: false,
}, async () => {
  const echo = await plainSocket(true);
  let calls = 0;
  const ss = new SourceSockets(() => {
    calls++;
    throw new Error("boom");
  });
  try {
    assert.equal(ss.open("up", { host: "127.0.0.1", port: echo.port }), null);
    ss.send("up", packet(3, 1));
    await until("the first echo", async () => await calls >= 1 || null, 10_000);
    ss.send("up", packet(3, 2));
    await until("the second echo", async () => await calls >= 2 || null, 10_000);
    assert.equal(ss.counters.handlerErrors, 2);
  } finally {
    await ss.stop();
    echo.close();
  }
});

Deno.test({
  name: "SourceSockets: a bad endpoint is one line, not an exception",
  sanitizeResources: false,
  sanitizeOps: false,
}, async () => {
  const ss = new SourceSockets(() => {});
  try {
    assert.equal(ss.open("x", { host: "not-an-ip", port: 123 }), "x: not an IP address");
    assert.equal(ss.open("y", { host: "127.0.0.1", port: 99999 }), "y: port 99999 is out of range");
    assert.equal(ss.send("x", packet(3, 0)), false);
  } finally {
    await ss.stop();
  }
});
