/**
 * A worker for tests/integration/ntp_rate_limit_test.ts: checks one client `n` times
 * against a shared rate-limit table, all at the same instant, starting
 * when the test releases the start word, and reports its verdicts.
 */
/// <reference lib="deno.worker" />
import { newClientAddress, parseIp, setClientAddress } from "../../lib/ntp/address.ts";
import { RateLimiter, type RateLimitOptions, type RateVerdict } from "../../lib/ntp/rate_limit.ts";

export interface RaceJob {
  table: SharedArrayBuffer;
  /** Int32 word 0: 0 until the test says go; word 1: workers ready. */
  start: SharedArrayBuffer;
  opts: RateLimitOptions;
  ip: string;
  n: number;
  now: number;
}

self.onmessage = (e: MessageEvent<RaceJob>) => {
  const j = e.data;
  const rl = new RateLimiter(j.opts, j.table);
  const c = newClientAddress();
  const b = parseIp(j.ip)!;
  setClientAddress(c, b, 0, b.length as 4 | 16, 1000);
  const go = new Int32Array(j.start);
  Atomics.add(go, 1, 1);
  Atomics.notify(go, 1);
  Atomics.wait(go, 0, 0);
  const seen: Record<RateVerdict, number> = { pass: 0, kod: 0, drop: 0 };
  for (let i = 0; i < j.n; i++) seen[rl.check(c, j.now, true)]++;
  self.postMessage(seen);
};
