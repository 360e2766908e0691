import assert from "assert";
import { parseKeyFile } from "../../lib/auth/keys.ts";

const bytes = (s: string) => new TextEncoder().encode(s);

Deno.test("parseKeyFile() reads ntpd, ntpsec and chrony key lines", async (t) => {
  await t.step("types by their ntpd, ntpsec and chrony names, any case", () => {
    const { keys, errors } = parseKeyFile(
      [
        "# a comment",
        "1 M abc # trailing comment",
        "2 md5 abc",
        "3 SHA1 abc",
        "4 sha-256 abc",
        `5 AES128CMAC ${"00".repeat(16)}`,
        `6 AES HEX:${"01".repeat(16)}`,
        `7 aes-256 ${"02".repeat(32)}`,
        `8 AES256 ${"03".repeat(32)}`,
        "9 chronykey",
        "",
      ].join("\n"),
      "k",
    );
    assert.deepEqual(errors, []);
    assert.deepEqual(
      [...keys.values()].map((k) => [k.id, k.type]),
      [
        [1, "MD5"],
        [2, "MD5"],
        [3, "SHA1"],
        [4, "SHA256"],
        [5, "AES128CMAC"],
        [6, "AES128CMAC"],
        [7, "AES256CMAC"],
        [8, "AES256CMAC"],
        [9, "MD5"],
      ],
    );
    assert.deepEqual(keys.get(9)!.secret, bytes("chronykey"));
    assert.deepEqual(keys.get(6)!.secret, new Uint8Array(16).fill(1));
  });
  await t.step("text up to 20 characters, hex beyond, ASCII: and HEX: prefixes", () => {
    const { keys, errors } = parseKeyFile(
      [
        `1 SHA1 ${"x".repeat(20)}`,
        `2 SHA1 ${"ab".repeat(20)}`,
        `3 SHA1 ASCII:${"y".repeat(30)}`,
        "4 MD5 HEX:0a0B",
      ].join("\n"),
      "k",
    );
    assert.deepEqual(errors, []);
    assert.deepEqual(keys.get(1)!.secret, bytes("x".repeat(20)));
    assert.deepEqual(keys.get(2)!.secret, new Uint8Array(20).fill(0xab));
    assert.deepEqual(keys.get(3)!.secret, bytes("y".repeat(30)));
    assert.deepEqual(keys.get(4)!.secret, new Uint8Array([10, 11]));
  });
});

Deno.test("parseKeyFile() names FILE:LINE for each bad line and never echoes a secret", () => {
  const secret = "TopSecretPassword_1234567"; // 25 characters, not hex
  const { keys, errors } = parseKeyFile(
    [
      "1 MD5 good",
      `2 MD5 ${secret}`,
      "0 MD5 zero",
      `x${secret} MD5 abc`,
      `3 ${secret} abc`,
      "4 AES128CMAC 0011",
      "1 SHA1 dupsecret",
      `5 MD5 ${secret} extra`,
      "6",
      "7 MD5 HEX:abc",
      "8 SHA1",
    ].join("\n"),
    "/etc/ntp.keys",
  );
  assert.deepEqual([...keys.keys()], [1]);
  assert.deepEqual(errors.map((e) => e.split(": ")[0]), [
    "/etc/ntp.keys:2",
    "/etc/ntp.keys:3",
    "/etc/ntp.keys:4",
    "/etc/ntp.keys:5",
    "/etc/ntp.keys:6",
    "/etc/ntp.keys:7",
    "/etc/ntp.keys:8",
    "/etc/ntp.keys:9",
    "/etc/ntp.keys:10",
    "/etc/ntp.keys:11",
  ]);
  assert.match(errors[9]!, /key 8: the key is missing after its type/);
  assert.match(errors[0]!, /must be hex/);
  assert.match(errors[1]!, /reserved/);
  assert.match(errors[4]!, /16 bytes/);
  assert.match(errors[5]!, /first on line 1/);
  for (const e of errors) {
    assert.ok(!e.includes("TopSecret") && !e.includes("zero") && !e.includes("dupsecret"), e);
  }
});
