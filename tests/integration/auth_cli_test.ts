/**
 * Keys as an operator meets them on the command line: `check-config`
 * reads the key file and names every problem as FILE:LINE (the key
 * file's own lines, the config's sources whose key it lacks), warns about
 * a key file every user may read, and never prints a secret. And the
 * portable socket driver seals MAC replies like the FFI one.
 */
import assert from "assert";
import dgram from "node:dgram";
import { freeTcpPort, freeUdpPort, mainArgv, startEdgeTime } from "../helpers/edge_time.ts";
import { checkMac, writeMac } from "../../lib/auth/mac.ts";
import type { SymmetricKey } from "../../lib/auth/keys.ts";

async function cli(args: string[]) {
  const [deno, ...argv] = mainArgv(...args) as [string, ...string[]];
  const out = await new Deno.Command(deno, {
    args: argv,
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(20_000),
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

Deno.test("check-config reads the key file: FILE:LINE errors, a source key it lacks, a warning", async () => {
  const dir = await Deno.makeTempDir({ prefix: "auth-cli-" });
  try {
    await Deno.writeTextFile(`${dir}/ntp.keys`, "1 SHA1 good-secret-1\n2 NOPE bad-secret-2\n");
    await Deno.chmod(`${dir}/ntp.keys`, 0o644);
    await Deno.writeTextFile(
      `${dir}/edge.toml`,
      `[auth]\nkeyfile = "${dir}/ntp.keys"\ntrusted_keys = [1, 3]\n\n` +
        `[[source]]\naddress = "192.0.2.1"\nkey = 1\n[[source]]\naddress = "192.0.2.2"\nkey = 3\n`,
    );
    const r = await cli(["check-config", `${dir}/edge.toml`]);
    assert.equal(r.code, 2, r.stderr);
    const lines = r.stderr.trim().split("\n");
    assert.deepEqual(lines, [
      `${dir}/ntp.keys: readable by every user (mode 0644); whoever reads it can authenticate as your servers and peers: chmod 600`,
      `${dir}/ntp.keys:2: key 2: unknown type (expected MD5, SHA1, SHA256, AES128CMAC or AES256CMAC)`,
      `${dir}/edge.toml:10: source[1].key: key 3 is not in ${dir}/ntp.keys`,
    ]);
    assert.ok(!r.stderr.includes("secret"), r.stderr);
    await Deno.chmod(`${dir}/ntp.keys`, 0o600);
    await Deno.writeTextFile(`${dir}/ntp.keys`, "1 SHA1 good-secret-1\n3 MD5 good-secret-3\n");
    const ok = await cli(["check-config", `${dir}/edge.toml`]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stderr, "");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "the portable driver answers a MAC with a MAC made after the stamp",
  sanitizeResources: false,
  sanitizeOps: false,
}, async () => {
  const port = await freeUdpPort(), sport = freeTcpPort();
  const dir = await Deno.makeTempDir({ prefix: "auth-portable-" });
  await Deno.writeTextFile(`${dir}/ntp.keys`, "4 AES128CMAC 000102030405060708090a0b0c0d0e0f\n");
  await Deno.chmod(`${dir}/ntp.keys`, 0o600);
  const edge = await startEdgeTime(`
[server]
listen = ["127.0.0.1:${port}"]
local_stratum = 8
driver = "portable"
[clock]
control = false
driftfile = ""
[status]
listen = "127.0.0.1:${sport}"
[auth]
keyfile = "${dir}/ntp.keys"
trusted_keys = [4]
`);
  const sock = dgram.createSocket("udp4");
  try {
    const key: SymmetricKey = {
      id: 4,
      type: "AES128CMAC",
      secret: new Uint8Array([...Array(16).keys()]),
    };
    const req = new Uint8Array(48 + 20);
    req[0] = (4 << 3) | 3;
    crypto.getRandomValues(req.subarray(40, 48));
    writeMac(key, req, 0, 48);
    const reply = await new Promise<Uint8Array>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error("no reply")), 5000);
      sock.on("message", (m: Uint8Array) => {
        clearTimeout(t);
        resolve(new Uint8Array(m));
      });
      sock.send(req, port, "127.0.0.1");
    });
    assert.equal(reply.length, 68);
    assert.notEqual(new DataView(reply.buffer, reply.byteOffset).getBigUint64(40), 0n, "stamped");
    assert.deepEqual(checkMac(new Map([[4, key]]), new Set([4]), reply, reply.length, 4), {
      kind: "ok",
      keyId: 4,
      dataLength: 48,
    });
  } finally {
    sock.close();
    await edge.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
