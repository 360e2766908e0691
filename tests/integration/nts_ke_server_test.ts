/**
 * Our NTS-KE server (lib/io/nts_ke_listener.ts) against our client, raw
 * TLS sessions that send bad records, `openssl s_client` with TLS 1.2 or
 * the wrong ALPN, and chronyd's NTS-KE client. Cookies come from a test
 * double that writes the keys it was given into each cookie, so the test
 * sees the server's keys beside the client's.
 */
import assert from "assert";
import { chronyAvailable, startChronyd } from "../helpers/chrony.ts";
import { makeTestPki, type TestPki } from "../helpers/certs.ts";
import { opensslClient, randomPort } from "../helpers/tls_peer.ts";
import { until } from "../helpers/wait.ts";
import { type KeLog, type NtsKeHandle, startNtsKe } from "../../lib/io/nts_ke_listener.ts";
import { ntsKeyExchange } from "../../lib/io/nts_ke_client.ts";
import { TlsContext, TlsSession } from "../../lib/io/openssl.ts";
import { TlsStream } from "../../lib/io/tls_stream.ts";
import {
  AEAD_AES_128_GCM_SIV as GCM,
  AEAD_AES_SIV_CMAC_256 as SIV,
  decodeMessage,
  encodeRecords,
  type KeRecord,
  NTS_KE_ALPN,
  readU16s,
  rec,
  RecordType,
} from "../../lib/nts/ke_records.ts";

/** Test double for lib/nts/cookie.ts: cookie = AEAD ID (2 bytes) ‖ C2S ‖ S2C ‖ index. */
function keysInCookies(aeadId: number, c2s: Uint8Array, s2c: Uint8Array, count: number) {
  return Array.from({ length: count }, (_, i) => {
    const c = new Uint8Array(2 + c2s.length + s2c.length + 2);
    new DataView(c.buffer).setUint16(0, aeadId);
    c.set(c2s, 2);
    c.set(s2c, 2 + c2s.length);
    c[c.length - 1] = i;
    return c;
  });
}

function captureLog(): KeLog & { lines: string[] } {
  const lines: string[] = [];
  const put = (lvl: string) => (m: string) => void lines.push(`${lvl} ${m}`);
  return {
    lines,
    debug: put("debug"),
    info: put("info"),
    warning: put("warning"),
    error: put("error"),
  };
}

async function withServer(
  fn: (
    ctx: { pki: TestPki; ke: NtsKeHandle; port: number; log: ReturnType<typeof captureLog> },
  ) => Promise<void>,
  extra: { supportedAeads?: number[]; ntpServer?: string; ntpPort?: number } = {},
): Promise<void> {
  const pki = await makeTestPki();
  const { cert, key } = await pki.issue("ke", ["DNS:localhost", "IP:127.0.0.1"]);
  const log = captureLog();
  const ke = await startNtsKe({
    listen: ["127.0.0.1:0"],
    certificate: cert,
    privateKey: key,
    makeCookies: keysInCookies,
    supportedAeads: extra.supportedAeads ?? [SIV, GCM],
    ntpServer: extra.ntpServer,
    ntpPort: extra.ntpPort,
    log,
  });
  try {
    assert.deepEqual(ke.errors, []);
    const port = Number(ke.bound[0]!.split(":").pop());
    await fn({ pki, ke, port, log });
  } finally {
    await ke.stop();
    await pki.remove();
  }
}

Deno.test("NTS-KE server: our client gets 8 cookies and the same keys the server exported", async () => {
  await withServer(async ({ pki, ke, port, log }) => {
    for (const [offer, want] of [[[GCM, SIV], GCM], [[SIV, GCM], SIV], [[SIV], SIV]] as const) {
      const r = await ntsKeyExchange({
        host: "localhost",
        port,
        caFile: pki.caCert,
        aeads: [...offer],
        timeoutMs: 10000,
      });
      assert.equal(r.aeadId, want, `offer ${offer}`);
      const len = want === SIV ? 32 : 16;
      assert.equal(r.c2s.length, len);
      assert.equal(r.cookies.length, 8);
      for (const c of r.cookies) {
        // The server's view, carried in the cookie by the test double.
        assert.equal(new DataView(c.buffer, c.byteOffset).getUint16(0), want);
        assert.deepEqual(c.subarray(2, 2 + len), r.c2s);
        assert.deepEqual(c.subarray(2 + len, 2 + 2 * len), r.s2c);
      }
      assert.notDeepEqual(r.c2s, r.s2c);
      // No negotiation records configured: the client's host and port 123.
      assert.equal(r.ntpServer, "localhost");
      assert.equal(r.ntpPort, 123);
    }
    // The test certificate is valid for 2 days: its end is known and warned about once.
    const { notAfter } = ke.certificate();
    assert.ok(notAfter !== null && Math.abs(notAfter - (Date.now() / 1000 + 2 * 86400)) < 600);
    const warned = log.lines.filter((l) => /certificate expires in 1 day/.test(l));
    assert.equal(warned.length, 1, log.lines.join("\n"));
    assert.match(
      warned[0]!,
      /^warning NTS-KE: .*ke\.pem: certificate expires in 1 day \(.*\): renew it/,
    );
    const c = ke.counters();
    assert.equal(c.handshakes, 3);
    assert.equal(c.cookies, 24);
    assert.equal(c.tlsFailures, 0);
  });
});

Deno.test("NTS-KE server: NTPv4 Server and Port Negotiation records; SIV-CMAC only when GCM-SIV is not supported", async () => {
  await withServer(async ({ pki, port }) => {
    const r = await ntsKeyExchange({
      host: "127.0.0.1",
      port,
      caFile: pki.caCert,
      aeads: [GCM, SIV],
      timeoutMs: 10000,
    });
    assert.equal(r.aeadId, SIV);
    assert.equal(r.ntpServer, "ntp.example.net");
    assert.equal(r.ntpPort, 1123);
  }, { supportedAeads: [SIV], ntpServer: "ntp.example.net", ntpPort: 1123 });
});

/** Sends `records` over a raw TLS 1.3 + ntske/1 session; returns the response records. */
async function rawExchange(port: number, caFile: string, bytes: Uint8Array): Promise<KeRecord[]> {
  const ctx = TlsContext.client(NTS_KE_ALPN, caFile);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const s = new TlsStream(conn, new TlsSession(ctx, "127.0.0.1"));
  try {
    await s.handshake();
    await s.write(bytes);
    const { data } = await s.readUntil((all) => decodeMessage(all).kind !== "partial");
    const m = decodeMessage(data);
    if (m.kind !== "message") throw new Error(`no whole response: ${m.kind}`);
    return m.records;
  } finally {
    await s.close();
    ctx.free();
  }
}

Deno.test("NTS-KE server: Error records for an unknown critical record and a missing AEAD", async () => {
  await withServer(async ({ pki, ke, port }) => {
    const errorOf = (rs: KeRecord[]) => {
      assert.equal(rs.length, 2);
      assert.equal(rs[0]!.type, RecordType.ERROR);
      assert.equal(rs[1]!.type, RecordType.END_OF_MESSAGE);
      return readU16s(rs[0]!.body)![0];
    };
    const unknownCritical = encodeRecords([
      rec.nextProtocol([0]),
      rec.aead([SIV]),
      { critical: true, type: 0x4321, body: new Uint8Array(4) },
      rec.endOfMessage(),
    ]);
    assert.equal(errorOf(await rawExchange(port, pki.caCert, unknownCritical)), 0);
    const noAead = encodeRecords([rec.nextProtocol([0]), rec.endOfMessage()]);
    assert.equal(errorOf(await rawExchange(port, pki.caCert, noAead)), 1);
    // No AEAD in common: Next Protocol NTPv4, an empty AEAD record, no cookies.
    const onlyUnknown = encodeRecords([rec.nextProtocol([0]), rec.aead([17]), rec.endOfMessage()]);
    const rs = await rawExchange(port, pki.caCert, onlyUnknown);
    assert.deepEqual(rs.map((r) => [r.type, r.body.length]), [[1, 2], [4, 0], [0, 0]]);
    const c = ke.counters();
    assert.equal(c.recordErrors, 2);
    assert.equal(c.refused, 1);
    assert.equal(c.handshakes, 0);
  });
});

Deno.test("NTS-KE server: TLS 1.2, a wrong ALPN or none are refused (openssl s_client)", async () => {
  await withServer(async ({ pki, ke, port }) => {
    const good = await opensslClient(port, ["-tls1_3", "-alpn", "ntske/1", "-CAfile", pki.caCert]);
    assert.match(good, /ALPN protocol: ntske\/1/, good);
    assert.match(good, /TLSv1\.3/, good);
    const tls12 = await opensslClient(port, ["-tls1_2", "-alpn", "ntske/1", "-CAfile", pki.caCert]);
    assert.match(tls12, /alert protocol version|unsupported protocol|wrong version/i);
    const h2 = await opensslClient(port, ["-tls1_3", "-alpn", "h2", "-CAfile", pki.caCert]);
    assert.match(h2, /no application protocol/i);
    // Without ALPN OpenSSL completes the handshake (no callback to refuse in): we close at once.
    const none = await opensslClient(port, ["-tls1_3", "-CAfile", pki.caCert]);
    assert.match(none, /No ALPN negotiated/, none);
    await until(
      "three TLS failures counted",
      () => Promise.resolve(ke.counters().tlsFailures >= 3 ? true : null),
      10000,
    );
    assert.equal(ke.counters().handshakes, 0);
  });
});

Deno.test("NTS-KE server: reload keeps the old certificate on a missing or expired one, takes a good one", async () => {
  await withServer(async ({ pki, ke, port, log }) => {
    const missing = `${pki.dir}/nope.pem`;
    assert.equal(ke.reload(missing, `${pki.dir}/ke.key`), false);
    const line = log.lines.find((l) => l.startsWith("error") && l.includes(missing));
    assert.ok(line, log.lines.join("\n"));
    assert.ok(!line.includes("\n"));
    const expired = await pki.issue("old", ["IP:127.0.0.1"], { expired: true });
    assert.equal(ke.reload(expired.cert, expired.key), false);
    assert.ok(
      log.lines.some((l) => l.includes(`${expired.cert}: certificate has expired`)),
      log.lines.join("\n"),
    );
    const other = await pki.issue("ke2", ["DNS:localhost", "IP:127.0.0.1"]);
    assert.equal(ke.reload(other.cert, `${pki.dir}/ke.key`), false); // key of another certificate
    assert.ok(log.lines.some((l) => l.includes("does not match")), log.lines.join("\n"));
    // The old pair still serves.
    await ntsKeyExchange({ host: "127.0.0.1", port, caFile: pki.caCert, timeoutMs: 10000 });

    // A certificate from a new CA: clients that trust only the new CA now succeed.
    const pki2 = await makeTestPki();
    try {
      const fresh = await pki2.issue("ke", ["IP:127.0.0.1"]);
      await assert.rejects(
        ntsKeyExchange({ host: "127.0.0.1", port, caFile: pki2.caCert, timeoutMs: 10000 }),
        /certificate verify failed/,
      );
      // A client trust file replaced in place is read again (the client caches it by mtime).
      const trust = `${pki.dir}/trust.pem`;
      await Deno.copyFile(pki.caCert, trust);
      await ntsKeyExchange({ host: "127.0.0.1", port, caFile: trust, timeoutMs: 10000 });
      assert.equal(ke.reload(fresh.cert, fresh.key), true);
      await ntsKeyExchange({ host: "127.0.0.1", port, caFile: pki2.caCert, timeoutMs: 10000 });
      await assert.rejects(
        ntsKeyExchange({ host: "127.0.0.1", port, caFile: trust, timeoutMs: 10000 }),
        /certificate verify failed/,
      );
      await Deno.writeTextFile(trust, await Deno.readTextFile(pki2.caCert));
      await Deno.utime(trust, new Date(), new Date(Date.now() + 5000));
      await ntsKeyExchange({ host: "127.0.0.1", port, caFile: trust, timeoutMs: 10000 });
    } finally {
      await pki2.remove();
    }
  });
});

Deno.test("NTS-KE server: start-up refuses an expired certificate with one line naming the file", async () => {
  const pki = await makeTestPki();
  try {
    const old = await pki.issue("old", ["IP:127.0.0.1"], { expired: true });
    await assert.rejects(
      startNtsKe({
        listen: ["127.0.0.1:0"],
        certificate: old.cert,
        privateKey: old.key,
        makeCookies: keysInCookies,
        supportedAeads: [SIV],
        log: captureLog(),
      }),
      (e: Error) => e.message === `${old.cert}: certificate has expired`,
    );
  } finally {
    await pki.remove();
  }
});

const skip = chronyAvailable();
if (skip) console.warn(`nts_ke_server_test: chronyd test ignored: ${skip}`);

Deno.test({
  name: "NTS-KE server: chronyd's NTS client completes the key exchange (chronyc authdata)",
  ignore: skip !== null,
  async fn() {
    // The NTP half is not ours here: the port we name in Port Negotiation has no server,
    // so chronyd spends cookies on unanswered requests; authdata still shows the KE.
    const deadNtpPort = randomPort();
    await withServer(async ({ pki, ke, port }) => {
      const chronyd = await startChronyd([
        `server 127.0.0.1 nts ntsport ${port} iburst minpoll 0 maxpoll 0`,
        `ntstrustedcerts ${pki.caCert}`,
        "port 0",
        "user root", // chronyc needs the socket directory owned by chronyd's user
      ]);
      try {
        const row = await until("chronyd's NTS-KE with us", async () => {
          const out = await chronyd.chronyc("-n", "authdata");
          const line = out.split("\n").find((l) => l.startsWith("127.0.0.1"));
          // Name  Mode KeyID Type KLen Last Atmp NAK Cook CLen
          const f = line?.trim().split(/\s+/);
          return f && f[1] === "NTS" && Number(f[4]) > 0 && Number(f[9]) > 0 ? f : null;
        }, 30000);
        assert.equal(row[3], "15"); // AEAD_AES_SIV_CMAC_256
        assert.equal(row[4], "256"); // key length in bits
        assert.ok(Number(row[8]) >= 1 && Number(row[8]) <= 8, `cookies ${row[8]}`);
        // Our test double's cookie: 2 + 32 + 32 + 2 bytes.
        assert.equal(row[9], "68");
        assert.ok(ke.counters().handshakes >= 1);
        assert.equal(ke.counters().tlsFailures, 0);
      } catch (e) {
        throw new Error(`${e}\n${chronyd.logs()}`);
      } finally {
        await chronyd.stop();
      }
    }, { ntpPort: deadNtpPort });
  },
});

Deno.test("NTS-KE server: an address in use is one line; [::] and 0.0.0.0 on one port say why", async () => {
  const pki = await makeTestPki();
  const { cert, key } = await pki.issue("ke", ["IP:127.0.0.1"]);
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (taken.addr as Deno.NetAddr).port;
  const free = randomPort();
  const ke = await startNtsKe({
    listen: [`127.0.0.1:${port}`, `[::]:${free}`, `0.0.0.0:${free}`],
    certificate: cert,
    privateKey: key,
    makeCookies: keysInCookies,
    supportedAeads: [SIV],
    log: captureLog(),
  });
  try {
    assert.deepEqual(ke.bound, [`[::]:${free}`]);
    assert.deepEqual(ke.errors, [
      `NTS-KE: cannot listen on 127.0.0.1:${port}: address already in use`,
      `NTS-KE: cannot listen on 0.0.0.0:${free}: address already in use ([::]:${free} takes IPv4 too: list it alone)`,
    ]);
    // IPv4 clients reach the [::] listener.
    const r = await ntsKeyExchange({
      host: "127.0.0.1",
      port: free,
      caFile: pki.caCert,
      timeoutMs: 10000,
    });
    assert.equal(r.cookies.length, 8);
  } finally {
    taken.close();
    await ke.stop();
    await pki.remove();
  }
});

Deno.test("NTS-KE server: a client the access rule refuses is closed at once and counted", async () => {
  await withServer(async ({ pki, ke, port }) => {
    ke.configure({ allowed: (ip) => ip !== "127.0.0.1" });
    await assert.rejects(
      ntsKeyExchange({ host: "127.0.0.1", port, caFile: pki.caCert, timeoutMs: 10000 }),
      /^Error: NTS-KE with 127\.0\.0\.1:\d+: connection closed during the TLS handshake$/,
    );
    assert.equal(ke.counters().denied, 1);
    assert.equal(ke.counters().tlsFailures, 0);
    ke.configure({ allowed: () => true });
    await ntsKeyExchange({ host: "127.0.0.1", port, caFile: pki.caCert, timeoutMs: 10000 });
  });
});

Deno.test("NTS-KE server: out of file descriptors, accept fails, is logged once and recovers", async () => {
  const pki = await makeTestPki();
  const { cert, key } = await pki.issue("ke", ["IP:127.0.0.1"]);
  const script = new URL("../helpers/nts_ke_fd_limit.ts", import.meta.url).pathname;
  const child = new Deno.Command("bash", {
    args: ["-c", `ulimit -n 64 && exec "${Deno.execPath()}" run -A "${script}" "${cert}" "${key}"`],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const lines: string[] = [];
  const pump = (async () => {
    let buf = "";
    for await (const c of child.stdout.pipeThrough(new TextDecoderStream())) {
      buf += c;
      const parts = buf.split("\n");
      buf = parts.pop()!;
      lines.push(...parts);
    }
  })();
  const held: Deno.Conn[] = [];
  try {
    const port = Number(
      (await until(
        "the port",
        () => Promise.resolve(lines.find((l) => l.startsWith("port ")) ?? null),
        30000,
      ))
        .split(" ")[1],
    );
    // More idle connections than descriptors left: accept fails with EMFILE.
    for (let i = 0; i < 80; i++) held.push(await Deno.connect({ hostname: "127.0.0.1", port }));
    const failed = await until(
      "an accept failure logged",
      () =>
        Promise.resolve(lines.find((l) => /^error NTS-KE: accept on .* failed/.test(l)) ?? null),
      15000,
    );
    assert.match(failed, /Too many open files|os error 24/);
    for (const c of held.splice(0)) c.close();
    // Sessions time out, descriptors come back, and the listener serves again.
    await until("a key exchange after the descriptors came back", async () => {
      const r = await ntsKeyExchange({
        host: "127.0.0.1",
        port,
        caFile: pki.caCert,
        timeoutMs: 3000,
      })
        .catch(() => null);
      return r && r.cookies.length === 8 ? true : null;
    }, 30000);
    // One line per burst of failures, not one per failed accept.
    assert.ok(lines.filter((l) => /accept on .* failed/.test(l)).length < 5, lines.join("\n"));
  } finally {
    for (const c of held) c.close();
    try {
      child.kill("SIGTERM");
    } catch { /* gone */ }
    await child.status;
    await pump;
    await pki.remove();
  }
});
