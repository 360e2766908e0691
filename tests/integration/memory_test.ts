/** After start-up, edge-time hands the executable's start-up pages back to the kernel. */
import assert from "assert";
import { mappingsOf } from "../../lib/io/memory.ts";
import { readProcFile } from "../../lib/io/libc.ts";
import { freeTcpPort, freeUdpPort, localServerToml, startEdgeTime } from "../helpers/edge_time.ts";

Deno.test("mappingsOf picks the ranges of one path, spaces in the path included", () => {
  const maps = [
    "55d0c0000000-55d0c1000000 r--p 00000000 fe:00 42    /opt/edge time/deno",
    "55d0c1000000-55d0c5000000 r-xp 01000000 fe:00 42    /opt/edge time/deno",
    "7f0000000000-7f0000100000 r-xp 00000000 fe:00 7     /usr/lib/libc.so.6",
    "7f0000200000-7f0000300000 rw-p 00000000 00:00 0 ",
    "7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0     [stack]",
  ].join("\n");
  assert.deepEqual(mappingsOf(maps, "/opt/edge time/deno"), [
    [0x55d0c0000000n, 0x55d0c1000000n],
    [0x55d0c1000000n, 0x55d0c5000000n],
  ]);
  assert.deepEqual(mappingsOf(maps, "/usr/lib/libc"), []);
});

Deno.test("readProcFile reads procfs through libc, which Deno's own API refuses without -A", () => {
  const status = readProcFile("/proc/self/status");
  assert.match(status, /^VmRSS:\s+\d+ kB$/m);
  assert.equal(Number(/^Pid:\s+(\d+)$/m.exec(status)?.[1]), Deno.pid);
  assert.throws(() => readProcFile("/proc/self/no-such-file"), /no-such-file: ENOENT/);
});

/** VmRSS of a process in MB. */
function rssMb(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(Deno.readTextFileSync(`/proc/${pid}/status`));
  return Number(m?.[1]) / 1024;
}

Deno.test("a started appliance gives back its start-up code pages and keeps serving", async () => {
  // A private copy of deno: the kernel leaves alone pages that another
  // process maps too, and this test runner is the same deno.
  const tmp = await Deno.makeTempDir({ prefix: "edge-time-deno-" });
  const deno = `${tmp}/deno`;
  await Deno.copyFile(Deno.execPath(), deno);
  const port = await freeUdpPort(), statusPort = freeTcpPort();
  const et = await startEdgeTime(localServerToml(port, statusPort), { deno });
  try {
    const line = await et.waitForLog(/Start-up code pages given back/);
    const [, before, after] = /RSS ([\d.]+) -> ([\d.]+) MB/.exec(line)!.map(Number);
    console.log(`RSS ${before} -> ${after} MB; now ${rssMb(et.child.pid).toFixed(1)} MB`);
    // About 30 MB here; without the trim nothing would go.
    assert.ok(before! - after! >= 15, line);
    const status = await (await fetch(`http://127.0.0.1:${statusPort}/status`)).json();
    assert.equal(status.system.stratum, 8);
  } finally {
    await et.stop();
    await Deno.remove(tmp, { recursive: true });
  }
});
