/**
 * edge-time as the NTS client of chronyd's NTS server (RFC 8915): the KE
 * with the test's certificates, authenticated polls to the port chronyd's
 * KE names, a cookie jar kept at 8, the source selected with a good
 * offset; and a new key exchange after chronyd restarts with new keys
 * (its cookies then get NTS NAKs).
 */
import assert from "assert";
import { chronyAvailable, type Chronyd, startChronyd } from "../helpers/chrony.ts";
import { makeTestPki } from "../helpers/certs.ts";
import { randomPort, waitForTcp } from "../helpers/tls_peer.ts";
import { freeTcpPort, freeUdpPort, localServerToml, startEdgeTime } from "../helpers/edge_time.ts";
import { fetchStatus } from "../helpers/status.ts";
import { until } from "../helpers/wait.ts";

const skip = chronyAvailable();
if (skip) console.warn(`nts_client_chrony_test: ignored: ${skip}`);

Deno.test({
  name:
    "NTS client: edge-time polls chronyd's NTS server, authenticated, cookies refilled, re-KE after a NAK",
  ignore: skip !== null,
  sanitizeResources: false,
  async fn() {
    const pki = await makeTestPki();
    const { cert, key } = await pki.issue("chrony", ["IP:127.0.0.1"]);
    const kePort = randomPort(), ntpPort = kePort + 1;
    const chronyLines = [
      `ntsserverkey ${key}`,
      `ntsservercert ${cert}`,
      `ntsport ${kePort}`,
      `port ${ntpPort}`,
      "bindaddress 127.0.0.1",
      "local stratum 3",
      "allow 127.0.0.1",
      "user root", // chronyc needs the socket directory owned by chronyd's user
    ];
    let chronyd: Chronyd = await startChronyd(chronyLines);
    const port = await freeUdpPort(), status = freeTcpPort();
    const toml = localServerToml(port, status).replace("local_stratum = 8", "local_stratum = 0") +
      `[[source]]\naddress = "127.0.0.1"\nnts = true\nnts_port = ${kePort}\n` +
      `ca_file = "${pki.caCert}"\nmin_poll = 0\nmax_poll = 1\n`;
    const et = await startEdgeTime(toml);
    try {
      await waitForTcp(kePort);
      await et.waitForLog(
        /127\.0\.0\.1: NTS-KE done \(AEAD 15, 8 cookies\), NTP to 127\.0\.0\.1:\d+/,
        20_000,
      );
      const ready = await until(
        "the NTS source to be selected after authenticated polls",
        async () => {
          const s = (await fetchStatus(status)).sources[0];
          return s?.nts && s.nts.authenticated >= 6 && s.tally === "*" ? s : null;
        },
        60_000,
      );
      assert.equal(ready.nts!.state, "ready");
      assert.equal(ready.nts!.cookies, 8, "every reply refills the jar");
      assert.equal(ready.nts!.key_exchanges, 1, "one KE serves many polls");
      assert.equal(ready.nts!.ntp_server, `127.0.0.1:${ntpPort}`, "the port chronyd's KE named");
      assert.ok(Math.abs(ready.offset_s) < 0.01, `offset ${ready.offset_s}`);
      const stats = await chronyd.chronyc("serverstats");
      const authed = Number(/Authenticated NTP packets\s*:\s*(\d+)/.exec(stats)?.[1] ?? -1);
      assert.ok(authed >= 6, stats);

      // chronyd restarts with new cookie keys: NTS NAK, new KE, authenticated again.
      await chronyd.stop();
      chronyd = await startChronyd(chronyLines);
      await waitForTcp(kePort);
      const after = await until("a NAK and a second key exchange", async () => {
        const s = (await fetchStatus(status)).sources[0];
        return s?.nts && s.nts.naks >= 1 && s.nts.key_exchanges >= 2 &&
            s.nts.authenticated > ready.nts!.authenticated + 2
          ? s
          : null;
      }, 60_000);
      assert.equal(after.nts!.state, "ready");
    } finally {
      await et.stop();
      await chronyd.stop();
      await pki.remove();
    }
  },
});
