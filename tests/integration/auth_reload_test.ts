/**
 * The key file is reread on SIGHUP, also when the config did not change:
 * a new secret takes effect in the server workers; a file with a bad line
 * is one error line and the keys in force stay; secrets reach no log.
 */
import assert from "assert";
import dgram from "node:dgram";
import { freeTcpPort, freeUdpPort, startEdgeTime } from "../helpers/edge_time.ts";
import { until } from "../helpers/wait.ts";
import { checkMac, writeMac } from "../../lib/auth/mac.ts";
import type { SymmetricKey } from "../../lib/auth/keys.ts";

const key = (secret: string): SymmetricKey => ({
  id: 1,
  type: "SHA1",
  secret: new TextEncoder().encode(secret),
});

/** Sends a client request with a MAC of `k`; resolves with the reply's MAC verdict under `k`. */
async function ask(port: number, k: SymmetricKey): Promise<string> {
  const req = new Uint8Array(48 + 24);
  req[0] = (4 << 3) | 3;
  crypto.getRandomValues(req.subarray(40, 48));
  const n = writeMac(k, req, 0, 48);
  const sock = dgram.createSocket("udp4");
  try {
    const reply = await new Promise<Uint8Array | null>((resolve) => {
      const t = setTimeout(() => resolve(null), 2000);
      sock.on("message", (m: Uint8Array) => {
        clearTimeout(t);
        resolve(new Uint8Array(m));
      });
      sock.send(req.subarray(0, n), port, "127.0.0.1");
    });
    if (!reply) return "no reply";
    return checkMac(new Map([[1, k]]), new Set([1]), reply, reply.length, 4).kind;
  } finally {
    sock.close();
  }
}

Deno.test({
  name: "SIGHUP rereads the key file; a bad one is one line and the keys in force stay",
  sanitizeResources: false,
  sanitizeOps: false,
}, async () => {
  const port = await freeUdpPort(), sport = freeTcpPort();
  const dir = await Deno.makeTempDir({ prefix: "auth-reload-" });
  const keyfile = `${dir}/ntp.keys`;
  await Deno.writeTextFile(keyfile, "1 SHA1 first-secret\n");
  const edge = await startEdgeTime(`
[server]
listen = ["127.0.0.1:${port}"]
local_stratum = 8
workers = 2
rate_limit = { interval_s = 0 }
[clock]
control = false
driftfile = ""
[status]
listen = "127.0.0.1:${sport}"
[auth]
keyfile = "${keyfile}"
trusted_keys = [1]
`);
  try {
    assert.equal(await ask(port, key("first-secret")), "ok");
    await Deno.writeTextFile(keyfile, "1 SHA1 second-secret\n");
    edge.child.kill("SIGHUP");
    await edge.waitForLog(/Keys from .*: 1 SHA1/);
    // Both workers have the new key: every reply to the old one is a crypto-NAK.
    await until("the new key in every worker", async () => {
      const r = await Promise.all([1, 2, 3, 4].map(() => ask(port, key("second-secret"))));
      return r.every((v) => v === "ok") ? r : null;
    }, 10_000);
    assert.equal(await ask(port, key("first-secret")), "crypto-nak");

    await Deno.writeTextFile(keyfile, "1 SHA1 third-secret\n2 BLAKE2 x\n3\n");
    edge.child.kill("SIGHUP");
    const line = await edge.waitForLog(/keeping the keys in force/);
    assert.match(line, /ntp\.keys:2: key 2: unknown type .* \(and 1 more\); keeping the keys/);
    assert.equal(await ask(port, key("second-secret")), "ok");
    const logs = edge.logs().join("\n");
    for (const s of ["first-secret", "second-secret", "third-secret"]) {
      assert.ok(!logs.includes(s), `secret in the log: ${s}`);
    }
  } finally {
    await edge.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
