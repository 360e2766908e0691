/**
 * ntpsec's `ntpdig -k FILE -a N` against our server: it sends its request
 * with a MAC of key N and accepts only a reply whose MAC verifies, so a
 * time printed means our reply's MAC is right for ntpsec too (MD5, SHA1,
 * SHA256 truncated to 20 bytes, and AES-CMAC, which ntpsec names `AES`); a key whose secret differs gets
 * our crypto-NAK and ntpdig prints no time. ntpdig only speaks to port
 * 123, so edge-time runs in a network namespace of its own.
 */
import assert from "assert";
import { startEdgeTime } from "../helpers/edge_time.ts";
import { until } from "../helpers/wait.ts";

function missing(): string | null {
  for (const [cmd, args] of [["ntpdig", ["--version"]], ["ip", ["netns", "list"]]] as const) {
    try {
      new Deno.Command(cmd, { args: [...args], stdout: "null", stderr: "null" }).outputSync();
    } catch {
      return `${cmd} is not installed`;
    }
  }
  return Deno.uid() === 0 ? null : "needs root to make a network namespace";
}

const skip = missing();
if (skip) console.log(`auth_ntpdig_test: skipped: ${skip}`);

const HEX20 = "0123456789abcdef0123456789abcdef01234567";
const HEX16 = "000102030405060708090a0b0c0d0e0f";

/** Ours (ntpd format); ntpsec reads the same file, but for key 9's secret. */
const KEYS = `1 MD5 md5-secret-one
2 SHA1 ${HEX20}
3 SHA256 sha256-secret-3
4 AES128CMAC ${HEX16}
9 MD5 ours-not-theirs
`;
/** ntpsec's: its name for AES-128 CMAC is AES (AES128CMAC too). */
const NTPSEC_KEYS = `1 MD5 md5-secret-one
2 SHA1 ${HEX20}
3 SHA256 sha256-secret-3
4 AES ${HEX16}
9 MD5 theirs-not-ours
`;

async function ntpdig(ns: string, keyfile: string, key: number): Promise<string> {
  const out = await new Deno.Command("ip", {
    args: ["netns", "exec", ns, "ntpdig", "-t", "2", "-k", keyfile, "-a", String(key), "127.0.0.1"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  return new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
}

Deno.test({
  name: "ntpdig -k FILE -a N gets authenticated replies; a wrong secret gets no time",
  ignore: skip !== null,
  sanitizeResources: false,
  sanitizeOps: false,
}, async () => {
  const ns = `eta-${crypto.randomUUID().slice(0, 8)}`;
  const ip = (...a: string[]) => new Deno.Command("ip", { args: a }).outputSync();
  const dir = await Deno.makeTempDir({ prefix: "auth-ntpdig-" });
  await Deno.writeTextFile(`${dir}/ours.keys`, KEYS);
  await Deno.writeTextFile(`${dir}/ntpsec.keys`, NTPSEC_KEYS);
  ip("netns", "add", ns);
  ip("-n", ns, "link", "set", "lo", "up");
  const et = await startEdgeTime(
    `
[server]
listen = ["127.0.0.1:123"]
local_stratum = 8
workers = 1
[clock]
control = false
driftfile = ""
[status]
listen = "127.0.0.1:8123"
[auth]
keyfile = "${dir}/ours.keys"
trusted_keys = [1, 2, 3, 4, 9]
`,
    { netns: ns },
  );
  try {
    // e.g. "2026-11-29 12:01:02.345678 (+0000) +0.000012 +/- 0.000045 127.0.0.1 s8 no-leap"
    const time = /[+-]\d+\.\d+ \+\/- \d+\.\d+ 127\.0\.0\.1 s8/;
    // SHA256: ntpsec truncates the digest to 20 bytes, and so do our replies to it.
    for (const key of [1, 2, 3, 4]) {
      const text = await until(`ntpdig with key ${key}`, async () => {
        const t = await ntpdig(ns, `${dir}/ntpsec.keys`, key);
        return time.test(t) ? t : null;
      }, 20_000);
      assert.match(text, time);
    }
    const nak = await ntpdig(ns, `${dir}/ntpsec.keys`, 9);
    assert.doesNotMatch(nak, time, nak);
    const status = await new Deno.Command("ip", {
      args: ["netns", "exec", ns, "curl", "-s", "http://127.0.0.1:8123/status"],
      stdout: "piped",
    }).output();
    const server = JSON.parse(new TextDecoder().decode(status.stdout)).server;
    assert.ok(server.authenticated >= 4, JSON.stringify(server));
    assert.ok(server.crypto_nak >= 1 && server.bad_mac >= 1, JSON.stringify(server));
  } finally {
    await et.stop();
    ip("netns", "del", ns);
    await Deno.remove(dir, { recursive: true });
  }
});
