/**
 * The anycast case on loopback: nodes with one master key file accept each
 * other's cookies; a node with another file answers with an NTS NAK until
 * a reload gives it the fleet's file. Cookies here are minted from the
 * master file the way a node's NTS-KE mints them (lib/nts/cookie.ts); the
 * KE itself is tested in the KE and interop tests.
 */
import assert from "assert";
import dgram from "node:dgram";
import { freeUdpPort, localServerToml, startEdgeTime } from "../helpers/edge_time.ts";
import { fetchStatus } from "../helpers/status.ts";
import { freeTcpPort } from "../helpers/edge_time.ts";
import { until } from "../helpers/wait.ts";
import { CookieKeyring } from "../../lib/nts/cookie.ts";
import { parseMasterKeys } from "../../lib/nts/master_key.ts";
import { NtsSession, type NtsVerdict } from "../../lib/nts/client.ts";

const FLEET = "11".repeat(16) + "22".repeat(16);
const OTHER = "33".repeat(32);

function clientHeader(): Uint8Array {
  const h = new Uint8Array(48);
  h[0] = (4 << 3) | 3;
  crypto.getRandomValues(h.subarray(40));
  return h;
}

/** One NTS exchange with 127.0.0.1:`port`: the verdict on the reply, and its length vs the request's. */
async function exchange(
  s: NtsSession,
  port: number,
): Promise<{ verdict: NtsVerdict; reqLen: number; replyLen: number }> {
  const sock = dgram.createSocket("udp4");
  try {
    const req = s.request(clientHeader())!;
    s.seal(req);
    const reply = await new Promise<Uint8Array>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no reply from port ${port}`)), 3000);
      sock.on("message", (m: Uint8Array) => {
        clearTimeout(t);
        resolve(new Uint8Array(m));
      });
      sock.send(req, port, "127.0.0.1");
    });
    return { verdict: s.verify(reply), reqLen: req.length, replyLen: reply.length };
  } finally {
    sock.close();
  }
}

function session(masterHex: string): NtsSession {
  const ring = new CookieKeyring(parseMasterKeys(masterHex, "m") as Uint8Array[], 2);
  const c2s = crypto.getRandomValues(new Uint8Array(32));
  const s2c = crypto.getRandomValues(new Uint8Array(32));
  return new NtsSession({ aeadId: 15, c2s, s2c, cookies: ring.makeCookies(15, c2s, s2c, 8) });
}

async function node(master: string, driver: string) {
  const port = await freeUdpPort(), status = freeTcpPort();
  const dir = await Deno.makeTempDir({ prefix: "edge-time-nts-" });
  const keyFile = `${dir}/master.key`;
  await Deno.writeTextFile(keyFile, `# fleet master secret\n${master}\n`, { mode: 0o600 });
  await Deno.chmod(keyFile, 0o600);
  const toml = localServerToml(port, status, `driver = "${driver}"`) +
    `[nts]\nmaster_key_file = "${keyFile}"\n`;
  const p = await startEdgeTime(toml);
  return { p, port, status, keyFile };
}

Deno.test("NTS fleet: one master file, any node answers; another file gets a NAK until reloaded", async () => {
  const a = await node(FLEET, "ffi");
  const b = await node(FLEET, "ffi");
  const c = await node(OTHER, "portable");
  try {
    await a.p.waitForLog(/NTS cookie keys from .*master\.key \(1 secret/);
    const s = session(FLEET); // as a KE with node A leaves a client
    for (const n of [a, b, a, b, b]) {
      const r = await exchange(s, n.port);
      assert.equal(r.verdict, "ok", s.lastError);
      assert.equal(r.replyLen, r.reqLen, "the reply is as long as the request");
      assert.equal(s.cookies.length, 8, "the jar is refilled");
    }
    const r = await exchange(s, c.port);
    assert.equal(r.verdict, "nak", "another fleet's node: NTS NAK");
    const st = await fetchStatus(c.status);
    assert.equal(st.server.nts.requests, 1);
    assert.equal(st.server.nts.naks, 1);
    assert.equal((await fetchStatus(b.status)).server.nts.naks, 0);
    assert.ok((await fetchStatus(b.status)).server.nts.requests >= 3);

    // A broken file on reload: one FILE:LINE error, the keys in force stay.
    await Deno.writeTextFile(c.keyFile, `${OTHER}\nnot-hex\n`);
    c.p.child.kill("SIGHUP");
    await c.p.waitForLog(
      /master\.key:2: a secret must be hexadecimal digits.*keeping the cookie keys in force/,
    );
    const other = session(OTHER);
    assert.equal((await exchange(other, c.port)).verdict, "ok");

    // The fleet's file, world-readable: a warning; after the reload node C is in the fleet.
    await Deno.writeTextFile(c.keyFile, `${FLEET}\n`);
    await Deno.chmod(c.keyFile, 0o644);
    c.p.child.kill("SIGHUP");
    await c.p.waitForLog(/master\.key: readable by other users \(mode 0644\)/);
    await until("node C accepts the fleet's cookies", async () => {
      return (await exchange(s, c.port)).verdict === "ok" ? true : null;
    }, 10_000);
  } finally {
    for (const n of [a, b, c]) await n.p.stop();
  }
});
