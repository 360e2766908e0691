/**
 * `check-config` and `run` check the files an NTS config names with the
 * code that uses them (lib/io/nts_files.ts): the NTS-KE certificate and
 * key, the fleet master key file, NTS sources' `ca_file`. Each problem is
 * one line, exit 2; a master key file others may read is a warning.
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

async function cli(args: string[]) {
  const [deno, ...argv] = mainArgv(...args) as [string, ...string[]];
  const out = await new Deno.Command(deno, {
    args: argv,
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(30_000),
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

const SECRET = "ab".repeat(32);

Deno.test("check-config and run: NTS files that cannot be used are one line each, exit 2", async (t) => {
  const pki = await makeTestPki();
  const other = await makeTestPki();
  const { cert, key } = await pki.issue("node", ["IP:127.0.0.1"]);
  const stranger = await other.issue("stranger", ["IP:127.0.0.1"]);
  const expired = await pki.issue("old", ["IP:127.0.0.1"], { expired: true });
  const dir = pki.dir;
  const master = `${dir}/master.key`;
  await Deno.writeTextFile(master, `${SECRET}\n`);
  await Deno.chmod(master, 0o600);
  await Deno.writeTextFile(`${dir}/garbage.pem`, "not a certificate\n");
  const config = `${dir}/edge.toml`;
  const port = await freeUdpPort(), kePort = freeTcpPort();
  /** The config with these NTS settings; line 9 is `certificate`, 10 `private_key`, 11 `master_key_file`, 15 `ca_file`. */
  const write = (o: { cert?: string; key?: string; master?: string; ca?: string }) =>
    Deno.writeTextFile(
      config,
      localServerToml(port, 0) +
        `[nts]\nke_listen = ["127.0.0.1:${kePort}"]\ncertificate = "${o.cert ?? cert}"\n` +
        `private_key = "${o.key ?? key}"\nmaster_key_file = "${o.master ?? master}"\n` +
        `[[source]]\naddress = "127.0.0.1"\nnts = true\nca_file = "${o.ca ?? pki.caCert}"\n`,
    );
  const lineOf = async (key: string) =>
    (await Deno.readTextFile(config)).split("\n").findIndex((l) => l.startsWith(`${key} =`)) + 1;
  try {
    await t.step("all files good: ok", async () => {
      await write({});
      const r = await cli(["check-config", config]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stderr, "");
      assert.equal(r.stdout.trim(), `${config}: ok`);
    });
    const cases: [string, Parameters<typeof write>[0], string, RegExp][] = [
      ["missing certificate", { cert: `${dir}/nope.pem` }, "certificate", /: no such file$/],
      ["key of another certificate", { key: stranger.key }, "private_key", /does not match/],
      ["garbage PEM", { cert: `${dir}/garbage.pem` }, "certificate", /cannot load certificate/],
      [
        "expired certificate",
        { cert: expired.cert, key: expired.key },
        "certificate",
        /certificate has expired/,
      ],
      ["missing master key file", { master: `${dir}/nope.key` }, "master_key_file", /no such/],
      ["missing ca_file", { ca: `${dir}/nope-ca.pem` }, "ca_file", /: no such file$/],
    ];
    for (const [what, o, key, re] of cases) {
      await t.step(what, async () => {
        await write(o);
        const path = key === "ca_file" ? "source[0].ca_file" : `nts.${key}`;
        const r = await cli(["check-config", config]);
        assert.equal(r.code, 2, r.stdout + r.stderr);
        const lines = r.stderr.trim().split("\n");
        assert.equal(lines.length, 1, r.stderr);
        assert.ok(lines[0]!.startsWith(`${config}:${await lineOf(key)}: ${path}: `), lines[0]);
        assert.match(lines[0]!, re);
        assert.ok(!/no such file.*no such file/i.test(lines[0]!), "said once");
        // `run` refuses the same config with the same line, before serving anything.
        const run = await cli(["run", "--config", config]);
        assert.equal(run.code, 2, run.stderr);
        assert.deepEqual(run.stderr.trim().split("\n"), lines);
      });
    }
    await t.step("a master key that is not hex: the file's own line", async () => {
      await Deno.writeTextFile(`${dir}/bad.key`, `# fleet\nnot-hex\n`);
      await write({ master: `${dir}/bad.key` });
      const r = await cli(["check-config", config]);
      assert.equal(r.code, 2);
      assert.match(
        r.stderr.trim(),
        new RegExp(`^${dir}/bad\\.key:2: a secret must be hexadecimal`),
      );
      assert.ok(!r.stderr.includes("not-hex"), "never the secret");
    });
    await t.step("a master key file every user may read: a warning, still ok", async () => {
      await Deno.chmod(master, 0o644);
      await write({});
      const r = await cli(["check-config", config]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr.trim(), /master\.key: readable by other users \(mode 0644\)/);
      assert.ok(!r.stderr.includes(SECRET));
      // `run` serves, with the warning once (its own log line, not also check-config's).
      const et = await startEdgeTime(await Deno.readTextFile(config));
      try {
        await et.waitForLog(/NTS cookie keys from /);
        const warned = et.logs().filter((l) => /master\.key: readable by other users/.test(l));
        assert.equal(warned.length, 1, warned.join("\n"));
        assert.match(warned[0]!, /WARNING/);
      } finally {
        assert.equal(await et.stop(), 0);
      }
    });
  } finally {
    await pki.remove();
    await other.remove();
  }
});
