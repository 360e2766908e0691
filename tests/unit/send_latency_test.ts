/** Unit tests: the send-latency estimate that dates symmetric packets' xmt (lib/io/send_latency.ts). */
import assert from "assert";
import { MAX_LATENCY_S, MIN_SAMPLES, SendLatency, WINDOW } from "../../lib/io/send_latency.ts";

Deno.test("SendLatency: 0 until enough samples, then their median", () => {
  const l = new SendLatency();
  for (let i = 0; i < MIN_SAMPLES - 1; i++) l.add(5e-6);
  assert.equal(l.estimate, 0, "too few samples to trust");
  l.add(5e-6);
  assert.equal(l.estimate, 5e-6);
});

Deno.test("SendLatency: a preempted send moves the median little; nonsense is ignored", () => {
  const l = new SendLatency();
  const us = [4e-6, 5e-6, 6e-6];
  for (let i = 0; i < WINDOW; i++) l.add(us[i % 3]!);
  assert.equal(l.estimate, 5e-6);
  l.add(400e-6); // a spike
  assert.ok(l.estimate <= 6e-6, `${l.estimate}`);
  l.add(-1e-6); // a stamp older than the reading: matched to the wrong send
  l.add(MAX_LATENCY_S * 2); // a clock step between reading and stamp
  l.add(NaN);
  assert.ok(l.estimate >= 4e-6 && l.estimate <= 6e-6, `${l.estimate}`);
});

Deno.test("SendLatency: follows a lasting change within a window", () => {
  const l = new SendLatency();
  for (let i = 0; i < WINDOW; i++) l.add(3e-6);
  for (let i = 0; i < WINDOW; i++) l.add(20e-6);
  assert.equal(l.estimate, 20e-6);
});
