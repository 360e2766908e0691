/**
 * A backlog is answered in chunks of SEND_CHUNK replies (one sendmmsg and
 * one clock reading each), and each reply's xmt is spaced by the kernel's
 * measured time per message, not the chunk's one clock read
 * (lib/io/udp_ffi.ts): within a chunk, reply k is stamped t0 + k * c. A
 * backlog that lasts SUSTAINED_MS goes out in whole batches
 * (tests/unit/send_chunk_test.ts). How far apart the stamps are depends on
 * the machine and its load, so this test checks only what holds under any
 * load; `deno run -A bench/backlog.ts` measures the spacing.
 */
import assert from "assert";
import dgram from "node:dgram";
import { freeTcpPort, freeUdpPort, localServerToml, startEdgeTime } from "../helpers/edge_time.ts";
import { backlogClient, ntpDiff, ntpTime } from "../helpers/backlog.ts";
import { BATCH, SEND_CHUNK } from "../../lib/io/udp_ffi.ts";

const BURST = 4 * BATCH;
/** Stamps are whole nanoseconds: round(j * c) steps by floor(c) or ceil(c), then NTP rounding. */
const SAME_STEP_S = 2e-9;

Deno.test("a backlog gets chunked replies with distinct xmt, increasing within each chunk", async () => {
  const port = await freeUdpPort();
  const et = await startEdgeTime(
    localServerToml(port, freeTcpPort(), `driver = "ffi"\nrate_limit = { interval_s = 0 }`),
  );
  const client = await backlogClient(et, port, BURST);
  try {
    await client.burst(1); // learns the time per message
    const replies = await client.burst(2);
    const xmt = replies.map((r) => ntpTime(r, 40));
    const rec = replies.map((r) => ntpTime(r, 32));
    // Every request was queued before the server ran again: one clock
    // read per chunk would give runs of SEND_CHUNK equal xmt. Two chunks'
    // stamps may meet by chance at a boundary (the next chunk's reading
    // equal to the last one's spaced stamp, to the nanosecond): at most a
    // pair per boundary.
    let equalRun = 1, longestEqual = 1;
    for (let i = 1; i < BURST; i++) {
      equalRun = xmt[i] === xmt[i - 1] ? equalRun + 1 : 1;
      longestEqual = Math.max(longestEqual, equalRun);
    }
    assert.ok(longestEqual <= 2, `${longestEqual} equal xmt values in a row`);
    assert.ok(
      BURST - new Set(xmt).size <= BURST / SEND_CHUNK - 1,
      `${BURST - new Set(xmt).size} repeated xmt values, more than the chunk boundaries`,
    );
    // Within a chunk reply k is stamped t0 + k * c, so xmt increases; the
    // next chunk starts from a fresh clock read, which a spacing estimated
    // a little long can precede. So xmt may step back only where a chunk
    // starts: at most once per chunk boundary.
    const back = [];
    for (let i = 1; i < BURST; i++) if (xmt[i]! <= xmt[i - 1]!) back.push(i);
    assert.ok(
      back.length <= BURST / SEND_CHUNK - 1,
      `xmt stepped back ${back.length} times (at ${
        back.join(", ")
      }), more than the chunk boundaries`,
    );
    for (let i = 0; i < BURST; i++) assert.ok(xmt[i]! >= rec[i]!, `xmt before rec at ${i}`);
    // Chunked, not stamped one by one: somewhere the SEND_CHUNK replies of
    // a chunk are spaced by one constant step c > 0 (SEND_CHUNK - 1 steps).
    const gaps = xmt.slice(1).map((x, i) => ntpDiff(x, xmt[i]!));
    let run = 1, longest = 1;
    for (let i = 1; i < gaps.length; i++) {
      run = Math.abs(gaps[i]! - gaps[i - 1]!) <= SAME_STEP_S ? run + 1 : 1;
      longest = Math.max(longest, run);
    }
    const sorted = [...gaps].sort((a, b) => a - b);
    console.log(
      `xmt spacing: median ${(sorted[sorted.length >> 1]! * 1e6).toFixed(3)} µs, max ${
        (sorted.at(-1)! * 1e6).toFixed(1)
      } µs, longest run of equal steps ${longest}; ${BURST} replies in ${
        (ntpDiff(xmt.at(-1)!, xmt[0]!) * 1e3).toFixed(2)
      } ms`,
    );
    assert.ok(longest >= SEND_CHUNK - 1, `no chunk: longest run of equal steps ${longest}`);
  } finally {
    client.close();
    await et.stop();
  }
});

/** A client's burst: bench/ntpload.c sends up to this many requests in one sendmmsg. */
const CLIENT_BURST = 16;

Deno.test("a burst of 16 requests is stamped reply by reply, not spaced", async () => {
  // Clients that send in bursts (ntpload sends up to 16 at once) make such
  // batches common at moderate load; a reading per reply keeps p99 |offset|
  // at the chrony level where spaced stamps did not (docs/benchmarks/serving.md).
  const port = await freeUdpPort();
  const et = await startEdgeTime(
    localServerToml(port, freeTcpPort(), `driver = "ffi"\nrate_limit = { interval_s = 0 }`),
  );
  const client = await backlogClient(et, port, CLIENT_BURST);
  try {
    await client.burst(1); // as above: the time per message is learnt
    let longest = 1;
    for (let round = 2; round < 6; round++) {
      const xmt = (await client.burst(round)).map((r) => ntpTime(r, 40));
      const gaps = xmt.slice(1).map((x, i) => ntpDiff(x, xmt[i]!));
      // Each reply's own clock reading: consecutive steps differ by the
      // jitter of a send, not by the 2 ns of rounding one spaced step c.
      let run = 1;
      for (let i = 1; i < gaps.length; i++) {
        run = Math.abs(gaps[i]! - gaps[i - 1]!) <= SAME_STEP_S ? run + 1 : 1;
        longest = Math.max(longest, run);
      }
      for (const g of gaps) assert.ok(g > 0, `xmt did not increase: step ${g}`);
    }
    assert.ok(longest < CLIENT_BURST / 2, `a run of ${longest} equal steps: spaced stamps`);
  } finally {
    client.close();
    await et.stop();
  }
});

Deno.test({
  name: "replies leave with DF set and IP ID 0 (no per-packet ID hashing)",
  ignore: Deno.uid() !== 0, // a raw socket needs root; CI runs as root
  async fn() {
    const { AF_INET, libc, SOCK_NONBLOCK } = await import("../../lib/io/libc.ts");
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
      const buf = new Uint8Array(2048);
      const deadline = Date.now() + 10_000; // a deadline for a reply that never comes
      let header: Uint8Array | null = null;
      // The raw socket also sees the server's own start-up traffic (its
      // packet loop warms up on a private loopback socket) and may drop
      // packets when that fills it: ask again every 100 ms until a reply shows.
      let nextSend = 0;
      while (!header && Date.now() < deadline) {
        if (Date.now() >= nextSend) {
          await new Promise<void>((r) => sock.send(req, port, "127.0.0.1", () => r()));
          nextSend = Date.now() + 100;
        }
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
