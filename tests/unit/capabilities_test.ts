/** Unit tests: reading a capability from /proc/self/status text (lib/io/capabilities.ts). */
import assert from "assert";
import { CAP_SYS_TIME, hasCapability } from "../../lib/io/capabilities.ts";

Deno.test("hasCapability reads CapEff: root's full set, a set without CAP_SYS_TIME, no line", () => {
  assert.equal(hasCapability(CAP_SYS_TIME, "Name:\tx\nCapEff:\t000001ffffffffff\n"), true);
  assert.equal(hasCapability(CAP_SYS_TIME, "CapEff:\t000001fffdffffff\n"), false);
  assert.equal(hasCapability(CAP_SYS_TIME, "Name:\tx\n"), null);
  assert.equal(typeof hasCapability(CAP_SYS_TIME), "boolean", "this process's own, on Linux");
});
