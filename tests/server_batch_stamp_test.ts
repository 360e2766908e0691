/**
 * A backlog is answered in whole batches (one sendmmsg each), and each
 * reply's xmt is spaced by the kernel's measured time per message, not the
 * batch's one clock read (lib/io/udp_ffi.ts).
 */
import assert from "assert";
import dgram from "node:dgram";
import { freeTcpPort, freeUdpPort, localServerToml, startEdgeTime } from "./helpers/edge_time.ts";

const BURST = 256;

/** NTP 64-bit timestamp at `off` as seconds (era 0 is enough for a test). */
function ntpSeconds(b: Uint8Array, off: number): number {
  const v = new DataView(b.buffer, b.byteOffset);
  return v.getUint32(off) + v.getUint32(off + 4) / 2 ** 32;
}

Deno.test("a backlog gets batched replies with distinct, increasing xmt", async () => {
  const port = await freeUdpPort();
  const et = await startEdgeTime(
    localServerToml(port, freeTcpPort(), `driver = "ffi"\nrate_limit = { interval_s = 0 }`),
  );
  const sock = dgram.createSocket("udp4");
  await new Promise<void>((r) => sock.bind(0, "127.0.0.1", () => r()));
  try {
    /** Stops the server, queues BURST requests, lets it go; replies by request index. */
    const burst = async (round: number): Promise<Uint8Array[]> => {
      const replies: Uint8Array[] = new Array(BURST);
      let got = 0;
      const done = new Promise<void>((resolve) => {
        sock.removeAllListeners("message");
        sock.on("message", (m: Uint8Array) => {
          const i = new DataView(m.buffer, m.byteOffset).getUint32(28); // org low word = index
          if (i < BURST && !replies[i]) {
            replies[i] = m;
            if (++got === BURST) resolve();
          }
        });
      });
      et.child.kill("SIGSTOP");
      for (let i = 0; i < BURST; i++) {
        const req = new Uint8Array(48);
        req[0] = 0x23; // v4, client
        new DataView(req.buffer).setUint32(40, round);
        new DataView(req.buffer).setUint32(44, i);
        await new Promise<void>((r) => sock.send(req, port, "127.0.0.1", () => r()));
      }
      et.child.kill("SIGCONT");
      let timer: ReturnType<typeof setTimeout> | undefined;
      const late = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`only ${got}/${BURST} replies`)), 5000);
      });
      try {
        await Promise.race([done, late]);
      } finally {
        clearTimeout(timer);
      }
      return replies;
    };
    await burst(1); // learns the time per message
    const replies = await burst(2);
    const xmt = replies.map((r) => ntpSeconds(r, 40));
    const rec = replies.map((r) => ntpSeconds(r, 32));
    // Every request was queued before the server ran again: one clock
    // read per batch would give runs of equal xmt.
    assert.equal(new Set(xmt).size, BURST, "equal xmt values");
    for (let i = 1; i < BURST; i++) {
      assert.ok(xmt[i]! > xmt[i - 1]!, `xmt not increasing at ${i}`);
      // Spaced by a kernel send each: microseconds, not milliseconds.
      assert.ok(xmt[i]! - xmt[i - 1]! < 0.002, `gap ${xmt[i]! - xmt[i - 1]!} s at ${i}`);
    }
    for (let i = 0; i < BURST; i++) assert.ok(xmt[i]! >= rec[i]!, `xmt before rec at ${i}`);
    // Answered in batches: the last reply left within a few ms of the first.
    assert.ok(xmt[BURST - 1]! - xmt[0]! < 0.05, `burst took ${xmt[BURST - 1]! - xmt[0]!} s`);
  } finally {
    sock.close();
    await et.stop();
  }
});

Deno.test({
  name: "replies leave with DF set and IP ID 0 (no per-packet ID hashing)",
  ignore: Deno.uid() !== 0, // a raw socket needs root; CI runs as root
  async fn() {
    const { AF_INET, libc, SOCK_NONBLOCK } = await import("../lib/io/libc.ts");
    const c = libc();
    const SOCK_RAW = 3, IPPROTO_UDP = 17;
    // A raw UDP socket sees a copy of every UDP packet the host receives, IP header included.
    const raw = c.socket(AF_INET, SOCK_RAW | SOCK_NONBLOCK, IPPROTO_UDP);
    assert.ok(raw >= 0, "raw socket");
    const port = await freeUdpPort();
    const et = await startEdgeTime(localServerToml(port, freeTcpPort(), `driver = "ffi"`));
    const sock = dgram.createSocket("udp4");
    await new Promise<void>((r) => sock.bind(0, "127.0.0.1", () => r()));
    try {
      const req = new Uint8Array(48);
      req[0] = 0x23;
      await new Promise<void>((r) => sock.send(req, port, "127.0.0.1", () => r()));
      const buf = new Uint8Array(2048);
      const deadline = Date.now() + 3000;
      let header: Uint8Array | null = null;
      while (!header && Date.now() < deadline) {
        const n = Number(c.recvfrom(raw, buf, 2048n, 0, null, null));
        if (n < 0) {
          await new Promise((r) => setTimeout(r, 5));
          continue;
        }
        const ihl = (buf[0]! & 15) * 4;
        const v = new DataView(buf.buffer);
        const src = v.getUint16(ihl), dst = v.getUint16(ihl + 2);
        if (src === port && dst === sock.address().port) header = buf.slice(0, ihl);
      }
      assert.ok(header, "no reply seen on the raw socket");
      const v = new DataView(header.buffer);
      assert.equal(v.getUint16(6) & 0x4000, 0x4000, "DF");
      assert.equal(v.getUint16(4), 0, "IP ID");
    } finally {
      c.close(raw);
      sock.close();
      await et.stop();
    }
  },
});
