/**
 * edge-time as NTS client of edge-time on loopback, through the real
 * NTS-KE: the KE's Port Negotiation record sends NTP to a port other than
 * 123; polls are authenticated and keep 8 cookies; a master secret
 * rotation done as docs/guide/nts.md says (add below, move to the top,
 * remove after the window — here only the first two steps) never NAKs.
 */
import assert from "assert";
import { freeTcpPort, freeUdpPort, localServerToml, startEdgeTime } from "../helpers/edge_time.ts";
import { makeTestPki } from "../helpers/certs.ts";
import { fetchStatus } from "../helpers/status.ts";
import { until } from "../helpers/wait.ts";
import { secretTag } from "../../lib/nts/cookie.ts";
import { parseMasterKeys } from "../../lib/nts/master_key.ts";

const OLD = "0f".repeat(32), NEW = "f0".repeat(32);

Deno.test("NTS: our client, our KE (Port Negotiation) and NTP; a master secret rotation without a NAK", async () => {
  const pki = await makeTestPki();
  const { cert, key } = await pki.issue("server", ["IP:127.0.0.1"]);
  const master = `${pki.dir}/master.key`;
  await Deno.writeTextFile(master, `${OLD}\n`, { mode: 0o600 });
  await Deno.chmod(master, 0o600);
  const port = await freeUdpPort(), status = freeTcpPort(), kePort = freeTcpPort();
  const server = await startEdgeTime(
    localServerToml(port, status, "rate_limit = { interval_s = 0 }") +
      `[nts]\nke_listen = ["127.0.0.1:${kePort}"]\ncertificate = "${cert}"\nprivate_key = "${key}"\n` +
      `master_key_file = "${master}"\nntp_port = ${port}\n`,
  );
  const cport = await freeUdpPort(), cstatus = freeTcpPort();
  const client = await startEdgeTime(
    localServerToml(cport, cstatus).replace("local_stratum = 8", "local_stratum = 0") +
      `[[source]]\naddress = "127.0.0.1"\nnts = true\nnts_port = ${kePort}\n` +
      `ca_file = "${pki.caCert}"\nmin_poll = 0\nmax_poll = 0\n`,
  );
  const source = async () => (await fetchStatus(cstatus)).sources[0];
  try {
    const s = await until("authenticated polls to our server", async () => {
      const s = await source();
      return s?.nts && s.nts.authenticated >= 4 && s.tally === "*" ? s : null;
    }, 30_000);
    assert.equal(s.nts!.ntp_server, `127.0.0.1:${port}`, "the KE's Port Negotiation record");
    assert.equal(s.nts!.cookies, 8);
    assert.ok(Math.abs(s.offset_s) < 0.01);
    const served = (await fetchStatus(status)).server.nts;
    assert.ok(served.requests >= 4);
    assert.equal(served.naks, 0);

    // Rotation step 1: the new secret below the old one; step 2: on top.
    const tag = (hex: string) =>
      secretTag((parseMasterKeys(hex, "m") as Uint8Array[])[0]!).toString(16).padStart(2, "0");
    assert.notEqual(tag(OLD), tag(NEW), "the log tells the two secrets apart");
    for (const [text, current] of [[`${OLD}\n${NEW}\n`, OLD], [`${NEW}\n${OLD}\n`, NEW]]) {
      await Deno.writeTextFile(master, text!);
      server.child.kill("SIGHUP");
      await server.waitForLog(
        new RegExp(
          `NTS cookie keys from .*master\\.key \\(2 secret\\(s\\), tags .*; cookies made with ${
            tag(current!)
          }\\)`,
        ),
      );
      const before = (await source())!.nts!.authenticated;
      await until("polls go on authenticated", async () => {
        const n = (await source())!.nts!;
        return n.authenticated >= before + 3 ? n : null;
      }, 30_000);
    }
    const n = (await source())!.nts!;
    assert.equal(n.naks, 0, "no NAK during the rotation");
    assert.equal(n.key_exchanges, 1, "the client never had to make a new key exchange");
    assert.equal((await fetchStatus(status)).server.nts.naks, 0);
  } finally {
    await client.stop();
    await server.stop();
    await pki.remove();
  }
});
