/**
 * The NTS-KE server inside `edge-time run`: `[nts] ke_listen` starts it,
 * /status and /metrics show it, SIGHUP rereads the certificate files (a
 * bad one is one line and the old one keeps serving), and a certificate
 * that cannot be used at start is a config error (lib/io/nts_files.ts).
 */
import assert from "assert";
import {
  freeTcpPort,
  freeUdpPort,
  localServerToml,
  mainArgv,
  startEdgeTime,
} from "../helpers/edge_time.ts";
import { makeTestPki } from "../helpers/certs.ts";
import { opensslClient } from "../helpers/tls_peer.ts";
import { until } from "../helpers/wait.ts";
import { ntsKeyExchange } from "../../lib/io/nts_ke_client.ts";
import { AEAD_AES_128_GCM_SIV, AEAD_AES_SIV_CMAC_256 } from "../../lib/nts/ke_records.ts";

function ntsToml(kePort: number, cert: string, key: string): string {
  return `[nts]
ke_listen = ["127.0.0.1:${kePort}"]
certificate = "${cert}"
private_key = "${key}"
`;
}

async function getJson(url: string): Promise<Record<string, unknown>> {
  const r = await fetch(url);
  return await r.json();
}

Deno.test("edge-time run: NTS-KE on ke_listen, in /status and /metrics, certificate reread on SIGHUP", async () => {
  const pki = await makeTestPki();
  const first = await pki.issue("node", ["IP:127.0.0.1"]);
  // The files the config names; the test replaces them in place, as certbot does.
  const cert = `${pki.dir}/live.pem`, key = `${pki.dir}/live.key`;
  await Deno.copyFile(first.cert, cert);
  await Deno.copyFile(first.key, key);
  const port = await freeUdpPort(), statusPort = freeTcpPort(), kePort = freeTcpPort();
  const et = await startEdgeTime(localServerToml(port, statusPort) + ntsToml(kePort, cert, key));
  try {
    await et.waitForLog(new RegExp(`NTS-KE on 127\\.0\\.0\\.1:${kePort}`));
    const hs = await opensslClient(kePort, ["-tls1_3", "-alpn", "ntske/1", "-CAfile", pki.caCert]);
    assert.match(hs, /ALPN protocol: ntske\/1/);
    assert.match(hs, /Verify return code: 0 \(ok\)/);
    // A whole key exchange: cookies from the node's keyring (lib/nts/cookie.ts), both AEADs.
    for (const aead of [AEAD_AES_SIV_CMAC_256, AEAD_AES_128_GCM_SIV]) {
      const r = await ntsKeyExchange({
        host: "127.0.0.1",
        port: kePort,
        caFile: pki.caCert,
        aeads: [aead],
        timeoutMs: 10000,
      });
      assert.equal(r.aeadId, aead);
      assert.equal(r.cookies.length, 8);
      assert.equal(new Set(r.cookies.map((c) => c.join())).size, 8, "cookies differ");
    }
    const tls12 = await opensslClient(kePort, ["-tls1_2", "-alpn", "ntske/1"]);
    assert.doesNotMatch(tls12, /ALPN protocol: ntske\/1/);

    const ke = await until("nts_ke in /status", async () => {
      const s = await getJson(`http://127.0.0.1:${statusPort}/status`);
      const k = s.nts_ke as Record<string, unknown> | undefined;
      return k && (k.handshakes as number) >= 2 && (k.tls_failures as number) >= 1 ? k : null;
    }, 15000);
    assert.deepEqual(ke.listen, [`127.0.0.1:${kePort}`]);
    assert.equal(ke.cookies, 16);
    const notAfter = ke.certificate_not_after as number;
    assert.ok(Math.abs(notAfter - (Date.now() / 1000 + 2 * 86400)) < 600, `${notAfter}`);
    const metrics = await (await fetch(`http://127.0.0.1:${statusPort}/metrics`)).text();
    assert.match(metrics, /^nts_ke_connections_total \d+$/m);
    assert.match(metrics, /^nts_ke_tls_failures_total [1-9]\d*$/m);

    // An expired certificate in place of the good one: one line, the old one serves on.
    const expired = await pki.issue("expired", ["IP:127.0.0.1"], { expired: true });
    await Deno.copyFile(expired.cert, cert);
    await Deno.copyFile(expired.key, key);
    et.child.kill("SIGHUP");
    const line = await et.waitForLog(/certificate has expired/);
    assert.ok(
      line.includes(`NTS-KE: ${cert}: certificate has expired; keeping the certificate in use`),
      line,
    );
    const still = await opensslClient(kePort, [
      "-tls1_3",
      "-alpn",
      "ntske/1",
      "-CAfile",
      pki.caCert,
    ]);
    assert.match(still, /Verify return code: 0 \(ok\)/);

    // A certificate from another CA: taken on the next SIGHUP.
    const pki2 = await makeTestPki();
    try {
      const fresh = await pki2.issue("node", ["IP:127.0.0.1"]);
      await Deno.copyFile(fresh.cert, cert);
      await Deno.copyFile(fresh.key, key);
      et.child.kill("SIGHUP");
      await et.waitForLog(/NTS-KE certificate reloaded/);
      const now = await opensslClient(kePort, [
        "-tls1_3",
        "-alpn",
        "ntske/1",
        "-CAfile",
        pki2.caCert,
      ]);
      assert.match(now, /Verify return code: 0 \(ok\)/);
    } finally {
      await pki2.remove();
    }
  } finally {
    assert.equal(await et.stop(), 0);
    await pki.remove();
  }
});

Deno.test("edge-time run: a missing certificate is a config error (one line, exit 2), as in check-config", async () => {
  const port = await freeUdpPort(), kePort = freeTcpPort();
  const missing = "/nonexistent/edge-time/fullchain.pem";
  const dir = await Deno.makeTempDir({ prefix: "edge-time-nts-" });
  const config = `${dir}/edge.toml`;
  await Deno.writeTextFile(
    config,
    localServerToml(port, 0) + ntsToml(kePort, missing, "/nonexistent/edge-time/privkey.pem"),
  );
  try {
    const [deno, ...args] = mainArgv("run", "--config", config) as [string, ...string[]];
    const out = await new Deno.Command(deno, { args, stdout: "piped", stderr: "piped" }).output();
    const lines = new TextDecoder().decode(out.stderr).trim().split("\n");
    assert.equal(out.code, 2);
    const line = (await Deno.readTextFile(config)).split("\n")
      .findIndex((l) => l.startsWith("certificate =")) + 1;
    assert.deepEqual(lines, [`${config}:${line}: nts.certificate: ${missing}: no such file`]);
    await assert.rejects(Deno.connect({ hostname: "127.0.0.1", port: kePort }));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("edge-time run: NTS-KE follows server.allow/deny (a client NTP would refuse gets no key exchange)", async () => {
  const pki = await makeTestPki();
  const { cert, key } = await pki.issue("node", ["IP:127.0.0.1"]);
  const port = await freeUdpPort(), statusPort = freeTcpPort(), kePort = freeTcpPort();
  const toml = localServerToml(port, statusPort, 'allow = ["10.0.0.0/8"]') +
    ntsToml(kePort, cert, key);
  const et = await startEdgeTime(toml);
  try {
    await et.waitForLog(/NTS-KE on /);
    await assert.rejects(
      ntsKeyExchange({ host: "127.0.0.1", port: kePort, caFile: pki.caCert, timeoutMs: 10000 }),
      /connection closed during the TLS handshake/,
    );
    await until("nts_ke.denied", async () => {
      const s = await getJson(`http://127.0.0.1:${statusPort}/status`);
      return (s.nts_ke as Record<string, number> | undefined)?.denied === 1 ? true : null;
    }, 15000);
    // A reload that allows loopback lets it in, without restarting the listener.
    await Deno.writeTextFile(
      et.configPath,
      localServerToml(port, statusPort, 'allow = ["127.0.0.0/8"]') + ntsToml(kePort, cert, key),
    );
    et.child.kill("SIGHUP");
    await et.waitForLog(/Reloaded .*server\.allow/);
    const r = await ntsKeyExchange({
      host: "127.0.0.1",
      port: kePort,
      caFile: pki.caCert,
      timeoutMs: 10000,
    });
    assert.equal(r.cookies.length, 8);
  } finally {
    assert.equal(await et.stop(), 0);
    await pki.remove();
  }
});

Deno.test("edge-time run: NTS-KE never listens without cookie keys; a fixed master key file and SIGHUP start it, logged", async () => {
  const pki = await makeTestPki();
  const { cert, key } = await pki.issue("node", ["IP:127.0.0.1"]);
  const master = `${pki.dir}/master.key`;
  await Deno.writeTextFile(master, "not-hex\n");
  await Deno.chmod(master, 0o600);
  const port = await freeUdpPort(), kePort = freeTcpPort();
  const et = await startEdgeTime(localServerToml(port, 0));
  const count = (re: RegExp) => et.logs().filter((l) => re.test(l)).length;
  const keys = /NTS cookie keys from .*master\.key \(1 secret\(s\), tags [0-9a-f]{2}/;
  try {
    // A reload that adds NTS-KE with a master key file that cannot be used.
    await Deno.writeTextFile(
      et.configPath,
      localServerToml(port, 0) + ntsToml(kePort, cert, key) + `master_key_file = "${master}"\n`,
    );
    et.child.kill("SIGHUP");
    const off = await et.waitForLog(/NTS-KE is off/);
    assert.match(off, /NTS-KE is off: no NTS cookie keys \(.*master\.key could not be used\)/);
    await et.waitForLog(/master\.key:1: a secret must be hexadecimal/);
    await et.waitForLog(/Reloaded /);
    assert.ok(!et.logs().some((l) => /NTS-KE on /.test(l)));
    await assert.rejects(Deno.connect({ hostname: "127.0.0.1", port: kePort }));

    // Fixed: the next SIGHUP (no config change) logs the keys and starts NTS-KE.
    await Deno.writeTextFile(master, `${"5a".repeat(32)}\n`);
    et.child.kill("SIGHUP");
    await et.waitForLog(keys);
    await et.waitForLog(new RegExp(`NTS-KE on 127\\.0\\.0\\.1:${kePort}`));
    const r = await ntsKeyExchange({
      host: "127.0.0.1",
      port: kePort,
      caFile: pki.caCert,
      timeoutMs: 10000,
    });
    assert.equal(r.cookies.length, 8);
    // Each reload that rereads the file says which keys are in force, changed or not.
    et.child.kill("SIGHUP");
    await until(
      "the cookie-key line again",
      () => Promise.resolve(count(keys) >= 2 ? true : null),
      15_000,
    );
    assert.ok(!et.logs().some((l) => l.includes("5a5a5a")), "never the secret");
  } finally {
    assert.equal(await et.stop(), 0);
    await pki.remove();
  }
});
