/**
 * A second edge-time on the addresses of a running one is refused: the
 * workers share their port through SO_REUSEPORT, which the second process
 * could otherwise join silently and take half the clients.
 */
import assert from "assert";
import {
  freeTcpPort,
  freeUdpPort,
  localServerToml,
  mainArgv,
  startEdgeTime,
} from "../helpers/edge_time.ts";
import { queryServer } from "../../lib/io/query_client.ts";

Deno.test({
  name:
    "a second edge-time on the same address exits 1 with the bind error, the first keeps serving",
  sanitizeResources: false,
  sanitizeOps: false,
}, async () => {
  const port = await freeUdpPort();
  const first = await startEdgeTime(localServerToml(port, freeTcpPort()));
  const dir = await Deno.makeTempDir({ prefix: "edge-time-second-" });
  try {
    const config = `${dir}/edge.toml`;
    await Deno.writeTextFile(config, localServerToml(port, freeTcpPort()));
    const [cmd, ...args] = mainArgv("run", "--config", config);
    const out = await new Deno.Command(cmd!, { args, stdout: "piped", stderr: "piped" }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 1, text);
    assert.match(
      text,
      new RegExp(`Cannot listen on 127\\.0\\.0\\.1:${port}: address already in use`),
    );
    assert.match(text, /No listen address could be bound; stopping/);
    const r = await queryServer("127.0.0.1", port);
    assert.equal(r.stratum, 8, "the first still answers");
  } finally {
    await first.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});

Deno.test({
  name: "a status port in use is one line in the NTP listener's words, and NTP is served",
  sanitizeResources: false,
  sanitizeOps: false,
}, async () => {
  const statusPort = freeTcpPort();
  const holder = Deno.listen({ hostname: "127.0.0.1", port: statusPort });
  const port = await freeUdpPort();
  const et = await startEdgeTime(localServerToml(port, statusPort), {
    readyPattern: /Serving NTP on/,
  });
  try {
    await et.waitForLog(
      new RegExp(
        `Cannot listen on 127\\.0\\.0\\.1:${statusPort}: address already in use \\(is another edge-time running\\? set status\\.listen\\)`,
      ),
    );
    assert.equal((await queryServer("127.0.0.1", port)).stratum, 8);
  } finally {
    await et.stop();
    holder.close();
  }
});
