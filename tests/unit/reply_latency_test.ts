/** Unit tests: the send latency of server replies, learnt from sampled kernel stamps (lib/io/reply_latency.ts). */
import assert from "assert";
import {
  PENDING,
  QUANTILE,
  ReplyLatency,
  SAMPLE_EVERY,
  SAMPLE_MS,
} from "../../lib/io/reply_latency.ts";
import { MIN_SAMPLES } from "../../lib/io/send_latency.ts";

/** A 48-octet reply whose xmt words are `hi`, `lo`. */
function reply(hi: number, lo: number): Uint8Array {
  const b = new Uint8Array(48);
  const v = new DataView(b.buffer);
  v.setUint32(40, hi);
  v.setUint32(44, lo);
  return b;
}

Deno.test("reply latency: the first reply and then one in SAMPLE_EVERY are samples", () => {
  const r = new ReplyLatency();
  const due: number[] = [];
  for (let i = 0; i < 3 * SAMPLE_EVERY; i++) if (r.due(0)) due.push(i);
  assert.deepEqual(due, [0, SAMPLE_EVERY, 2 * SAMPLE_EVERY]);
});

Deno.test("reply latency: at low rates a reply is a sample once SAMPLE_MS has passed", () => {
  const r = new ReplyLatency();
  assert.ok(r.due(0));
  assert.ok(!r.due(SAMPLE_MS - 1));
  assert.ok(r.due(SAMPLE_MS));
});

Deno.test("reply latency: the estimate is the QUANTILE of matched samples, 0 until MIN_SAMPLES", () => {
  const r = new ReplyLatency();
  const sec = 1_700_000_000;
  // Latencies 3, 4, 5, ... µs: reading at nsec 1000·i, kernel stamp that much later.
  for (let i = 0; i < MIN_SAMPLES; i++) {
    const b = reply(0xe000_0000 + i, i);
    r.sent(b, 0, sec, 1000 * i);
    assert.equal(r.estimateNs, 0);
    assert.ok(r.matched(b, 0, sec, 1000 * i + (3 + i) * 1000));
  }
  // 3..10 µs over 8 samples: the QUANTILE (0.1) is the lowest, 3 µs; the median would be 6.
  assert.equal(QUANTILE, 0.1);
  assert.equal(r.estimateNs, 3000);
});

Deno.test("reply latency: a stamp for another reply is not a sample (interleaved mode keeps it)", () => {
  const r = new ReplyLatency();
  const mine = reply(1, 2);
  r.sent(mine, 0, 100, 0);
  assert.ok(!r.matched(reply(1, 3), 0, 100, 5000));
  assert.ok(r.matched(mine, 0, 100, 5000));
  // Matched once: the same stamp again is not a second sample.
  assert.ok(!r.matched(mine, 0, 100, 5000));
});

Deno.test("reply latency: only the last PENDING samples are waited for", () => {
  const r = new ReplyLatency();
  const sent = Array.from({ length: PENDING + 1 }, (_, i) => reply(7, i));
  sent.forEach((b, i) => r.sent(b, 0, 100, i));
  assert.ok(!r.matched(sent[0]!, 0, 100, 10_000), "the oldest was overwritten");
  for (const b of sent.slice(1)) assert.ok(r.matched(b, 0, 100, 10_000));
});

Deno.test("reply latency: a sample across a second boundary, and one out of range, as send_latency.ts", () => {
  const r = new ReplyLatency();
  for (let i = 0; i < MIN_SAMPLES; i++) {
    const b = reply(9, i);
    r.sent(b, 0, 100, 999_998_000);
    r.matched(b, 0, 101, 2_000); // 4 µs later, in the next second
  }
  assert.equal(r.estimateNs, 4000);
  const late = reply(9, 99);
  r.sent(late, 0, 100, 0);
  assert.ok(r.matched(late, 0, 105, 0), "matched, though 5 s is no latency");
  assert.equal(r.estimateNs, 4000, "and ignored");
});

Deno.test("reply latency: restart keeps the estimate until MIN_SAMPLES new samples replace it", () => {
  const r = new ReplyLatency();
  const feed = (latencyNs: number, n: number, tag: number) => {
    for (let i = 0; i < n; i++) {
      const b = reply(tag, i);
      r.sent(b, 0, 100, 0);
      r.matched(b, 0, 100, latencyNs);
    }
  };
  feed(20_000, MIN_SAMPLES, 1); // a slow warm-up
  assert.equal(r.estimateNs, 20_000);
  r.restart();
  assert.equal(r.estimateNs, 20_000, "the prior stays");
  feed(4_000, MIN_SAMPLES - 1, 2);
  assert.equal(r.estimateNs, 20_000, "until MIN_SAMPLES new samples");
  feed(4_000, 1, 3);
  assert.equal(r.estimateNs, 4_000, "then only the new ones count");
  assert.ok(r.due(0), "and the next reply is a sample again");
});
