/**
 * Symmetric-key authentication against the real chronyd 4.3, on loopback
 * (random ports; 127.0.0.x addresses so that chronyd, which takes one
 * source per address, can use one key type per source):
 *
 * - chronyd as our client with `server … key N` for MD5, SHA1, SHA256
 *   (chronyd then speaks NTPv3 with a whole 32-byte digest) and AES128
 *   CMAC: `chronyc ntpdata` says "Authenticated : Yes" and our /status
 *   counts authenticated requests; a key whose secret differs gets a
 *   crypto-NAK and chronyd never accepts a reply;
 * - chronyd as our server, our source with `key = N`: followed and shown
 *   authenticated; with a key whose secret differs chronyd answers nothing
 *   (it never answers a request that fails its check);
 * - our source against our server with differing secrets: the server's
 *   crypto-NAKs are rejected (counted, logged once), never authenticated.
 *
 * Each side reads its own key file format: ours in ntpd's (text ≤ 20
 * characters, hex beyond), chronyd's with its HEX:/ASCII: prefixes.
 */
import assert from "assert";
import { chronyAvailable, startChronyd } from "../helpers/chrony.ts";
import {
  type EdgeTimeProcess,
  freeTcpPort,
  freeUdpPort,
  startEdgeTime,
} from "../helpers/edge_time.ts";
import { fetchStatus } from "../helpers/status.ts";
import { until } from "../helpers/wait.ts";

const skip = chronyAvailable();
if (skip) console.log(`auth_chrony_test: skipped: ${skip}`);

const HEX20 = "0123456789abcdef0123456789abcdef01234567";
const HEX16 = "000102030405060708090a0b0c0d0e0f";

/** Our key file (ntpd format): key 9's secret differs from chronyd's on purpose. */
const OUR_KEYS = `# ID TYPE KEY
1 MD5 md5-secret-one
2 SHA1 ${HEX20}
3 SHA256 sha256-secret-3
4 AES128CMAC ${HEX16}
5 AES256CMAC ${HEX16}${HEX16}
9 MD5 ours-not-theirs
`;
/** The same keys as chronyd reads them. */
const CHRONY_KEYS = `1 MD5 ASCII:md5-secret-one
2 SHA1 HEX:${HEX20}
3 SHA256 ASCII:sha256-secret-3
4 AES128 HEX:${HEX16}
5 AES256 HEX:${HEX16}${HEX16}
9 MD5 ASCII:theirs-not-ours
`;

async function writeKeys(text: string, mode = 0o644): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "auth-keys-" });
  await Deno.chmod(dir, 0o755);
  const path = `${dir}/keys`;
  await Deno.writeTextFile(path, text);
  await Deno.chmod(path, mode);
  return path;
}

Deno.test({
  name: "chronyd as our client: every key type authenticated, a wrong key gets crypto-NAKs",
  ignore: skip !== null,
  sanitizeResources: false,
  sanitizeOps: false,
}, async () => {
  const port = await freeUdpPort(), sport = freeTcpPort();
  const ours = await writeKeys(OUR_KEYS, 0o600);
  const theirs = await writeKeys(CHRONY_KEYS);
  const hosts = ["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.6", "127.0.0.5"];
  let edge: EdgeTimeProcess | null = null;
  const chrony = await startChronyd([
    ...[1, 2, 3, 4, 5, 9].map((k, i) =>
      `server ${hosts[i]} port ${port} key ${k} iburst minpoll 0 maxpoll 0`
    ),
    `keyfile ${theirs}`,
    "port 0",
    "user root", // chronyc needs the command socket, which chronyd keeps only without privdrop here
  ]);
  try {
    edge = await startEdgeTime(`
[server]
listen = [${hosts.map((h) => `"${h}:${port}"`).join(", ")}]
local_stratum = 8
workers = 1
[server.rate_limit]
interval_s = 0
[clock]
control = false
driftfile = ""
[status]
listen = "127.0.0.1:${sport}"
[auth]
keyfile = "${ours}"
trusted_keys = [1, 2, 3, 4, 5, 9]
`);
    await edge.waitForLog(/Keys from .*1 MD5, 2 SHA1, 3 SHA256, 4 AES128CMAC, 5 AES256CMAC, 9 MD5/);
    for (const [i, key] of [1, 2, 3, 4, 5].entries()) {
      let last = "";
      const data = await until(`chronyd authenticated with key ${key}`, async () => {
        const t = last = await chrony.chronyc("-n", "ntpdata", hosts[i]!);
        return /Authenticated\s*:\s*Yes/.test(t) && /Total valid RX\s*:\s*[1-9]/.test(t) ? t : null;
      }, 30_000).catch((e) => {
        throw new Error(`${e.message}\n${last}\n${chrony.logs()}\n${edge?.logs().join("\n")}`);
      });
      // SHA256: chronyd picks NTPv3 so that its 32-byte digest is not truncated.
      assert.match(data, new RegExp(`Version\\s*:\\s*${key === 3 ? 3 : 4}`), data);
    }
    const auth = await chrony.chronyc("-n", "authdata");
    // Mode SK (symmetric key), key ID, type (chrony's numbers: MD5 1, SHA1 2, SHA256 3,
    // AES128 13, AES256 14).
    const rows = ["SK +1 +1 ", "SK +2 +2 ", "SK +3 +3 ", "SK +4 +13 ", "SK +5 +14 "];
    for (const [i, row] of rows.entries()) {
      assert.match(auth, new RegExp(`${hosts[i]!.replaceAll(".", "\\.")} +${row}`), auth);
    }
    const wrong = await until("crypto-NAKs for key 9", async () => {
      const s = await fetchStatus(sport);
      return s.server.crypto_nak >= 2 && s.server.bad_mac >= 2 ? s : null;
    }, 30_000);
    assert.ok(wrong.server.authenticated >= 5, JSON.stringify(wrong.server));
    const nak = await chrony.chronyc("-n", "ntpdata", hosts[5]!);
    assert.match(nak, /Total valid RX\s*:\s*0/, nak);
    // Keys appear nowhere but in the files: not in the log, not in /status.
    const text = JSON.stringify(wrong) + edge.logs().join("\n");
    for (const secret of ["md5-secret-one", HEX20, "sha256-secret-3", HEX16, "ours-not-theirs"]) {
      assert.ok(!text.includes(secret), `a secret leaked: ${secret}`);
    }
  } finally {
    await edge?.stop();
    await chrony.stop();
    await Deno.remove(ours.replace(/\/keys$/, ""), { recursive: true });
    await Deno.remove(theirs.replace(/\/keys$/, ""), { recursive: true });
  }
});

Deno.test({
  name: "chronyd as our server: key = N authenticated and followed; chronyd ignores a wrong key",
  ignore: skip !== null,
  sanitizeResources: false,
  sanitizeOps: false,
}, async () => {
  const cport = await freeUdpPort(), eport = await freeUdpPort(), sport = freeTcpPort();
  const ours = await writeKeys(OUR_KEYS, 0o600);
  const theirs = await writeKeys(CHRONY_KEYS);
  const chrony = await startChronyd([
    `port ${cport}`,
    "bindaddress 127.0.0.1",
    "local stratum 8",
    "allow 127.0.0.1",
    `keyfile ${theirs}`,
    "user root", // chronyc needs the command socket, which chronyd keeps only without privdrop here
  ]);
  let edge: EdgeTimeProcess | null = null;
  try {
    // Key 4 (AES128 CMAC) first; then a reload switches the source to key 9.
    edge = await startEdgeTime(`
[server]
listen = ["127.0.0.1:${eport}"]
workers = 1
[clock]
control = false
driftfile = ""
[status]
listen = "127.0.0.1:${sport}"
[auth]
keyfile = "${ours}"
trusted_keys = [4, 9]
[[source]]
address = "127.0.0.1:${cport}"
key = 4
require_auth = true
min_poll = 0
max_poll = 1
`);
    const st = await until("stratum 9 from an authenticated chronyd", async () => {
      const s = await fetchStatus(sport);
      return s.system.stratum === 9 && s.system.synchronised ? s : null;
    }, 30_000);
    const src = st.sources[0]!;
    assert.equal(src.tally, "*");
    assert.equal(src.key, 4);
    assert.equal(src.authenticated, true);
    const authData = await chrony.chronyc("-n", "serverstats");
    assert.match(authData, /Authenticated NTP packets\s*:\s*[1-9]/, authData);

    // The same chronyd with key 9, whose secret differs: chronyd drops our
    // requests unanswered (it never answers a request that fails its check).
    await Deno.writeTextFile(
      edge.configPath,
      (await Deno.readTextFile(edge.configPath)).replace("key = 4", "key = 9"),
    );
    edge.child.kill("SIGHUP");
    await edge.waitForLog(/Reloaded .*sources/);
    const authed = (t: string) => Number(/Authenticated NTP packets\s*:\s*(\d+)/.exec(t)?.[1]);
    const before = await fetchStatus(sport);
    const chronyBefore = authed(await chrony.chronyc("-n", "serverstats"));
    const sent = before.sources[0]!.counters!.sent!;
    await until("three more requests sent with key 9", async () => {
      const s = await fetchStatus(sport);
      return s.sources[0]!.counters!.sent! >= sent + 3 ? s : null;
    }, 30_000);
    const after = await fetchStatus(sport);
    assert.equal(after.sources[0]!.key, 9);
    assert.equal(authed(await chrony.chronyc("-n", "serverstats")), chronyBefore);
    // At most one reply to a key-4 request still in flight at the reload.
    assert.ok(
      after.sources[0]!.counters!.received! <= before.sources[0]!.counters!.received! + 1,
      JSON.stringify([before.sources[0], after.sources[0]]),
    );
  } finally {
    await edge?.stop();
    await chrony.stop();
    await Deno.remove(ours.replace(/\/keys$/, ""), { recursive: true });
    await Deno.remove(theirs.replace(/\/keys$/, ""), { recursive: true });
  }
});

Deno.test({
  name: "our source rejects a server's crypto-NAK: counted, logged once, never authenticated",
  sanitizeResources: false,
  sanitizeOps: false,
}, async () => {
  const sport1 = freeTcpPort(), sport2 = freeTcpPort();
  const p1 = await freeUdpPort(), p2 = await freeUdpPort();
  const serverKeys = await writeKeys(OUR_KEYS, 0o600);
  const clientKeys = await writeKeys(OUR_KEYS.replace("ours-not-theirs", "a-different-one"), 0o600);
  let server: EdgeTimeProcess | null = null, client: EdgeTimeProcess | null = null;
  try {
    server = await startEdgeTime(`
[server]
listen = ["127.0.0.1:${p1}"]
local_stratum = 8
workers = 1
[clock]
control = false
driftfile = ""
[status]
listen = "127.0.0.1:${sport1}"
[auth]
keyfile = "${serverKeys}"
trusted_keys = [9]
`);
    client = await startEdgeTime(`
[server]
listen = ["127.0.0.1:${p2}"]
workers = 1
[clock]
control = false
driftfile = ""
[status]
listen = "127.0.0.1:${sport2}"
[auth]
keyfile = "${clientKeys}"
trusted_keys = [9]
[[source]]
address = "127.0.0.1:${p1}"
key = 9
min_poll = 0
max_poll = 1
`);
    const st = await until("replies rejected", async () => {
      const s = await fetchStatus(sport2);
      return (s.sources[0]?.counters?.auth ?? 0) >= 3 ? s : null;
    }, 30_000);
    const src = st.sources[0]!;
    assert.deepEqual([src.key, src.authenticated, src.reach], [9, false, 0]);
    assert.equal(st.system.synchronised, false);
    const lines = client.logs().filter((l) => /reply dropped: crypto-NAK/.test(l));
    assert.equal(lines.length, 1, `logged once per episode:\n${client.logs().join("\n")}`);
    const srv = (await fetchStatus(sport1)).server;
    assert.ok(srv.crypto_nak >= 3 && srv.bad_mac >= 3 && srv.authenticated === 0);
  } finally {
    await client?.stop();
    await server?.stop();
    for (const k of [serverKeys, clientKeys]) {
      await Deno.remove(k.replace(/\/keys$/, ""), { recursive: true });
    }
  }
});

// edge-time on 127.0.0.2, chronyd on 127.0.0.1 (chronyd's loop test rejects a peer on its own
// address: peers_chrony_test.ts).
Deno.test({
  name: "chronyd as a require_auth peer with key 2: authenticated both ways, followed",
  ignore: skip !== null,
  sanitizeResources: false,
  sanitizeOps: false,
}, async () => {
  const cport = await freeUdpPort(), eport = await freeUdpPort(), sport = freeTcpPort();
  const ours = await writeKeys(OUR_KEYS, 0o600);
  const theirs = await writeKeys(CHRONY_KEYS);
  const chrony = await startChronyd([
    `port ${cport}`,
    "bindaddress 127.0.0.1",
    "local stratum 8",
    "allow 127.0.0.0/8",
    `peer 127.0.0.2 port ${eport} key 2 minpoll 0 maxpoll 0`,
    `keyfile ${theirs}`,
    "user root",
  ]);
  let edge: EdgeTimeProcess | null = null;
  try {
    edge = await startEdgeTime(`
[server]
listen = ["127.0.0.2:${eport}"]
workers = 1
[clock]
control = false
driftfile = ""
orphan_stratum = 0
[status]
listen = "127.0.0.1:${sport}"
[auth]
keyfile = "${ours}"
trusted_keys = [2]
[[source]]
address = "127.0.0.1:${cport}"
kind = "peer"
key = 2
require_auth = true
min_poll = 0
max_poll = 1
`);
    const st = await until("stratum 9 from the chronyd peer", async () => {
      const s = await fetchStatus(sport);
      return s.system.stratum === 9 && s.sources[0]?.authenticated === true ? s : null;
    }, 40_000);
    assert.equal(st.sources[0]!.key, 2);
    const data = await until("chronyd authenticates our symmetric packets", async () => {
      const t = await chrony.chronyc("-n", "ntpdata", "127.0.0.2");
      return /Authenticated\s*:\s*Yes/.test(t) && /Mode\s*:\s*Symmetric/.test(t) ? t : null;
    }, 30_000);
    assert.match(data, /Total valid RX\s*:\s*[1-9]/, data);
  } finally {
    await edge?.stop();
    await chrony.stop();
    await Deno.remove(ours.replace(/\/keys$/, ""), { recursive: true });
    await Deno.remove(theirs.replace(/\/keys$/, ""), { recursive: true });
  }
});
