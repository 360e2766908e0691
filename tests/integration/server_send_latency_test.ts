/**
 * The server dates a basic reply's transmit timestamp with its measured
 * send latency (lib/io/reply_latency.ts): the reading before the send plus
 * the median of kernel transmit stamp − reading.
 *
 * On loopback the client's kernel receive stamp (t4) is taken in the
 * server's own send, just after the server's transmit stamp. A bare
 * reading before the send is therefore always earlier than t4; with the
 * latency added, some replies carry an `xmt` later than t4 (most, here:
 * the sampled replies, which ask for a transmit stamp, leave later than
 * plain ones; docs/design/timestamps.md). The test asserts that some do,
 * which no reply can without the feature (causality, not a timing bound),
 * and that `/status` reports the estimate.
 */
import assert from "assert";
import { SourceSockets } from "../../lib/io/source_socket.ts";
import { toUnixSeconds } from "../../lib/ntp/timestamp.ts";
import { freeTcpPort, freeUdpPort, localServerToml, startEdgeTime } from "../helpers/edge_time.ts";
import { fetchStatus } from "../helpers/status.ts";
import { until } from "../helpers/wait.ts";

function request(tag: number): Uint8Array {
  const b = new Uint8Array(48);
  b[0] = (4 << 3) | 3;
  new DataView(b.buffer).setBigUint64(40, 0xabcd_0000_0000_0000n + BigInt(tag));
  return b;
}

Deno.test({
  name: "server: basic replies' xmt is the reading plus the measured send latency",
  sanitizeResources: false,
  sanitizeOps: false,
}, async () => {
  const port = await freeUdpPort(), statusPort = freeTcpPort();
  const edge = await startEdgeTime(
    localServerToml(port, statusPort, "workers = 1\nrate_limit = { interval_s = 0 }"),
  );
  const replies: { xmt: number; t4: number }[] = [];
  let arrived = () => {};
  const ss = new SourceSockets((_id, bytes, t4) => {
    const v = new DataView(bytes.buffer, bytes.byteOffset);
    if (bytes.length >= 48) replies.push({ xmt: toUnixSeconds(v.getBigUint64(40), t4), t4 });
    arrived();
  });
  try {
    await until("the server answers", async () => {
      const s = await fetchStatus(statusPort).catch(() => null);
      return s?.system.synchronised || null;
    }, 30_000);
    assert.equal(ss.open("server", { host: "127.0.0.1", port }), null);
    for (let i = 0; i < 400; i++) {
      // One at a time, so that every reply is sent on its own (the keeping-up path).
      const reply = new Promise<void>((resolve) => arrived = resolve);
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<void>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no reply to request ${i}`)), 10_000);
      });
      ss.send("server", request(i));
      await Promise.race([reply, timeout]).finally(() => clearTimeout(timer));
    }
    // The status page reads the workers' counters once a second.
    const s = await until("the counters", async () => {
      const st = await fetchStatus(statusPort);
      return st.server.answered >= 400 ? st : null;
    }, 30_000);
    const latencyUs = s.server.send_latency_us;
    assert.ok(latencyUs > 0 && latencyUs < 1000, `send latency ${latencyUs} µs`);
    // From the 300th on the estimate has long been in (8 samples, one in 32 replies).
    const late = replies.slice(300).filter((r) => r.xmt > r.t4).length;
    const gap = replies.slice(300).map((r) => (r.t4 - r.xmt) * 1e6).sort((a, b) => a - b);
    console.log(
      `send latency ${latencyUs} µs; replies with xmt after t4: ${late} of 100; t4 - xmt p10/p50/p90 ${
        gap[10]!.toFixed(2)
      } ${gap[50]!.toFixed(2)} ${gap[90]!.toFixed(2)}`,
    );
    assert.ok(late > 0, `no reply of 100 has its xmt after the client's receive stamp`);
    for (const r of replies) assert.ok(Math.abs(r.xmt - r.t4) < 0.01, `xmt ${r.xmt}, t4 ${r.t4}`);
  } finally {
    await ss.stop();
    await edge.stop();
  }
});
