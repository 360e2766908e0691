/**
 * `clock.control = true` without CAP_SYS_TIME (a container, a dropped
 * capability): one error line, and edge-time keeps serving what it
 * believes instead of ending at its first adjtimex. The capability is
 * dropped with capsh, so this test cannot touch the machine's clock.
 */
import assert from "assert";
import { freeTcpPort, freeUdpPort, localServerToml, startEdgeTime } from "../helpers/edge_time.ts";
import { queryServer } from "../../lib/io/query_client.ts";

function capshMissing(): string | null {
  try {
    new Deno.Command("capsh", { args: ["--help"], stdout: "null", stderr: "null" }).outputSync();
    return null;
  } catch {
    return "capsh is not installed (scripts/setup.sh test installs libcap2-bin)";
  }
}

Deno.test({
  name: "clock.control = true without CAP_SYS_TIME: one error line, and the server keeps serving",
  ignore: capshMissing() !== null,
  sanitizeResources: false,
  sanitizeOps: false,
}, async () => {
  const port = await freeUdpPort(), statusPort = freeTcpPort();
  // A source (nobody answers there) so the engine, which owns the clock, starts.
  const silent = await freeUdpPort();
  const toml = localServerToml(port, statusPort).replace("control = false", "control = true") +
    `\n[[source]]\naddress = "127.0.0.1:${silent}"\n`;
  const et = await startEdgeTime(toml, {
    // bash -c 'exec "$0" "$@"' PROGRAM ARGS…: the program replaces the shell.
    prefix: ["capsh", "--drop=cap_sys_time", "--", "-c", 'exec "$0" "$@"'],
  });
  try {
    await et.waitForLog(/lacks CAP_SYS_TIME: serving without steering the clock/, 30_000);
    await et.waitForLog(/Serving NTP/, 30_000);
    const r = await queryServer("127.0.0.1", port, { timeoutMs: 2000 });
    assert.equal(r.stratum, 8, JSON.stringify(r));
    assert.ok(!et.logs().some((l) => /adjtimex failed/.test(l)), et.logs().join("\n"));
  } finally {
    assert.equal(await et.stop(), 0, et.logs().join("\n"));
  }
});
