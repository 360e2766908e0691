/**
 * Our NTS-KE client (lib/io/nts_ke_client.ts) against chronyd's NTS-KE
 * server and against `openssl s_server` peers that get TLS or ALPN wrong.
 * Certificates are made by the test (tests/helpers/certs.ts).
 */
import assert from "assert";
import { chronyAvailable, startChronyd } from "../helpers/chrony.ts";
import { makeTestPki } from "../helpers/certs.ts";
import { randomPort, startOpensslServer, waitForTcp } from "../helpers/tls_peer.ts";
import {
  AEAD_AES_128_GCM_SIV,
  AEAD_AES_SIV_CMAC_256,
  ntsKeyExchange,
} from "../../lib/io/nts_ke_client.ts";

const skip = chronyAvailable();
if (skip) console.warn(`nts_ke_client_test: chronyd tests ignored: ${skip}`);

async function rejects(p: Promise<unknown>, pattern: RegExp): Promise<string> {
  try {
    await p;
  } catch (e) {
    const m = (e as Error).message;
    assert.match(m, pattern);
    assert.ok(!m.includes("\n"), `one line: ${m}`);
    return m;
  }
  throw new Error(`expected a failure matching ${pattern}`);
}

Deno.test({
  name: "NTS-KE client: keys, 8 cookies and the NTP port from chronyd's NTS-KE server",
  ignore: skip !== null,
  async fn() {
    const pki = await makeTestPki();
    const { cert, key } = await pki.issue("chrony", ["DNS:localhost", "IP:127.0.0.1"]);
    const port = randomPort(), ntpPort = port + 1;
    const chronyd = await startChronyd([
      `ntsserverkey ${key}`,
      `ntsservercert ${cert}`,
      `ntsport ${port}`,
      `port ${ntpPort}`,
      "bindaddress 127.0.0.1",
      "local stratum 3",
      "allow 127.0.0.1", // chronyd applies its NTP access rules to NTS-KE too
      "user root", // its command socket (the helper waits for it) needs the dir owned by its user
    ]);
    try {
      await waitForTcp(port);
      await (async () => {
        // By address (IP SAN), offering GCM-SIV first: chrony 4.3 has only SIV-CMAC.
        const r = await ntsKeyExchange({
          host: "127.0.0.1",
          port,
          caFile: pki.caCert,
          aeads: [AEAD_AES_128_GCM_SIV, AEAD_AES_SIV_CMAC_256],
          timeoutMs: 10000,
        });
        assert.equal(r.aeadId, AEAD_AES_SIV_CMAC_256);
        assert.equal(r.c2s.length, 32);
        assert.equal(r.s2c.length, 32);
        assert.notDeepEqual(r.c2s, r.s2c);
        assert.equal(r.cookies.length, 8);
        assert.ok(r.cookies.every((c) => c.length > 0));
        assert.equal(r.ntpServer, "127.0.0.1");
        assert.equal(r.ntpPort, ntpPort); // chronyd sends Port Negotiation for a port other than 123
      })();
      // By name (DNS SAN, SNI): fresh keys each time.
      const a = await ntsKeyExchange({
        host: "localhost",
        port,
        caFile: pki.caCert,
        timeoutMs: 10000,
      });
      const b = await ntsKeyExchange({
        host: "localhost",
        port,
        caFile: pki.caCert,
        timeoutMs: 10000,
      });
      assert.notDeepEqual(a.c2s, b.c2s);

      // A CA we do not trust, and a name the certificate does not carry.
      const other = await makeTestPki();
      try {
        await rejects(
          ntsKeyExchange({ host: "127.0.0.1", port, caFile: other.caCert, timeoutMs: 10000 }),
          /^NTS-KE with 127\.0\.0\.1:\d+: certificate verify failed/,
        );
      } finally {
        await other.remove();
      }
      const { cert: c2, key: k2 } = await pki.issue("elsewhere", ["DNS:ntp.example.net"]);
      const port2 = randomPort();
      const wrongName = await startOpensslServer(port2, c2, k2, ["-tls1_3", "-alpn", "ntske/1"]);
      try {
        await rejects(
          ntsKeyExchange({ host: "127.0.0.1", port: port2, caFile: pki.caCert, timeoutMs: 10000 }),
          /certificate verify failed.*IP address mismatch/,
        );
        await rejects(
          ntsKeyExchange({ host: "localhost", port: port2, caFile: pki.caCert, timeoutMs: 10000 }),
          /certificate verify failed.*hostname mismatch/,
        );
      } finally {
        await wrongName.stop();
      }
    } finally {
      await chronyd.stop();
      await pki.remove();
    }
  },
});

Deno.test("NTS-KE client: a TLS server without ALPN ntske/1, or TLS 1.2 only, is refused", async () => {
  const pki = await makeTestPki();
  const { cert, key } = await pki.issue("s", ["IP:127.0.0.1"]);
  try {
    const port = randomPort();
    const noAlpn = await startOpensslServer(port, cert, key, ["-tls1_3"]);
    try {
      await rejects(
        ntsKeyExchange({ host: "127.0.0.1", port, caFile: pki.caCert, timeoutMs: 10000 }),
        /did not agree to ALPN ntske\/1 \(got none\)/,
      );
    } finally {
      await noAlpn.stop();
    }
    const port12 = randomPort();
    const tls12 = await startOpensslServer(port12, cert, key, ["-tls1_2", "-alpn", "ntske/1"]);
    try {
      await rejects(
        ntsKeyExchange({ host: "127.0.0.1", port: port12, caFile: pki.caCert, timeoutMs: 10000 }),
        /protocol version|unsupported protocol/,
      );
    } finally {
      await tls12.stop();
    }
  } finally {
    await pki.remove();
  }
});

Deno.test("NTS-KE client: a server that never answers times out; a closed port is refused", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const held: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const c of listener) held.push(c); // accept, never speak
  })();
  try {
    await rejects(
      ntsKeyExchange({ host: "127.0.0.1", port, timeoutMs: 500 }),
      /^NTS-KE with 127\.0\.0\.1:\d+: timed out after 500 ms$/,
    );
  } finally {
    listener.close();
    for (const c of held) c.close();
    await accepting.catch(() => {});
  }
  await rejects(
    ntsKeyExchange({ host: "127.0.0.1", port, timeoutMs: 2000 }),
    /^NTS-KE with 127\.0\.0\.1:\d+: .*refused/i,
  );
});
