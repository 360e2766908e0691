/** Server worker threads run at a better nice value than the rest of the process. */
import assert from "assert";
import { SERVER_NICE } from "../../lib/io/udp_ffi.ts";
import { freeTcpPort, freeUdpPort, localServerToml, startEdgeTime } from "../helpers/edge_time.ts";

/** Nice value of each thread of `pid` by thread id (field 19 of /proc/PID/task/TID/stat). */
async function threadNices(pid: number): Promise<Map<number, number>> {
  const out = new Map<number, number>();
  for await (const t of Deno.readDir(`/proc/${pid}/task`)) {
    const stat = await Deno.readTextFile(`/proc/${pid}/task/${t.name}/stat`);
    // The command name may hold spaces; the fields after its ")" are fixed.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    out.set(Number(t.name), Number(fields[16]));
  }
  return out;
}

Deno.test({
  name: "FFI server workers run at nice SERVER_NICE, the main thread does not",
  ignore: Deno.uid() !== 0,
  async fn() {
    const port = await freeUdpPort();
    // Started under `nice -n 5` so the main thread's value differs from the
    // workers' whatever this test runner's own nice value is.
    const et = await startEdgeTime(
      localServerToml(port, freeTcpPort(), `workers = 2\ndriver = "ffi"`),
      { prefix: ["nice", "-n", "5"] },
    );
    try {
      const nices = await threadNices(et.child.pid);
      const shown = JSON.stringify([...nices]);
      // Both workers (threads they start, such as FFI poll helpers, inherit it).
      assert.ok([...nices.values()].filter((n) => n === SERVER_NICE).length >= 2, shown);
      assert.notEqual(nices.get(et.child.pid), SERVER_NICE, `main thread: ${shown}`);
    } finally {
      await et.stop();
    }
  },
});
if (Deno.uid() !== 0) {
  console.log("server_priority_test: needs root to lower a nice value; not run");
}
