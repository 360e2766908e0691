/** Unit tests: how many replies a backlog's sendmmsg carries (lib/io/udp_ffi.ts `sendChunk`). */
import assert from "assert";
import { BATCH, SEND_CHUNK, sendChunk, SUSTAINED_MS } from "../../lib/io/udp_ffi.ts";

Deno.test("sendChunk: a burst or a short backlog goes out SEND_CHUNK replies at a time", () => {
  assert.equal(sendChunk(BATCH, -1), SEND_CHUNK);
  assert.equal(sendChunk(BATCH, 0), SEND_CHUNK);
  assert.equal(sendChunk(BATCH, SUSTAINED_MS - 1), SEND_CHUNK);
  assert.equal(sendChunk(3, 0), 3, "never more than the batch");
});

Deno.test("sendChunk: a backlog that lasts SUSTAINED_MS goes out in whole batches", () => {
  assert.equal(sendChunk(BATCH, SUSTAINED_MS), BATCH);
  assert.equal(sendChunk(BATCH, 10 * SUSTAINED_MS), BATCH);
});
