/** appliance/install.sh into a temporary root, and --uninstall from it. */
import assert from "assert";

const ROOT = new URL("../../", import.meta.url);
const SCRIPT = new URL("appliance/install.sh", ROOT).pathname;

async function sh(args: string[]): Promise<{ code: number; out: string }> {
  const o = await new Deno.Command("bash", { args: [SCRIPT, ...args] }).output();
  const d = new TextDecoder();
  return { code: o.code, out: (d.decode(o.stdout) + d.decode(o.stderr)).trim() };
}

const exists = (p: string) => Deno.stat(p).then(() => true, () => false);

Deno.test("install.sh installs into --root and --uninstall removes it", async (t) => {
  const root = await Deno.makeTempDir({ prefix: "edge-time-root-" });
  const stub = `${root}.bin`;
  await Deno.writeTextFile(stub, "#!/bin/sh\necho edge-time stub\n", { mode: 0o755 });
  try {
    await t.step("refuses without a binary, in one line", async () => {
      const r = await sh(["--root", root, "--binary", `${root}/nope`]);
      assert.equal(r.code, 1);
      assert.match(r.out, /^install\.sh: no binary at .*nope: run 'deno task compile'/);
      assert.equal(r.out.split("\n").length, 1);
    });
    await t.step("installs binary, unit, config, examples and docs", async () => {
      const r = await sh(["--root", root, "--binary", stub]);
      assert.equal(r.code, 0, r.out);
      assert.match(r.out, /edge-time installed into /);
      for (
        const p of [
          "usr/local/bin/edge-time",
          "etc/systemd/system/edge-time.service",
          "etc/edge-time/edge-time.toml",
          "etc/edge-time/examples/mesh.toml",
          "etc/edge-time/examples/pool-node-anycast.toml",
          "usr/local/share/doc/edge-time/README.md",
          "var/lib/edge-time",
        ]
      ) assert.ok(await exists(`${root}/${p}`), p);
      assert.equal((await Deno.stat(`${root}/usr/local/bin/edge-time`)).mode! & 0o777, 0o755);
      assert.equal(
        await Deno.readTextFile(`${root}/etc/systemd/system/edge-time.service`),
        await Deno.readTextFile(new URL("appliance/edge-time.service", ROOT)),
      );
      // The anycast helper's files go in when appliance/ has them.
      for (
        const [src, dst] of [
          ["sysctl-edge-time.conf", "etc/sysctl.d/90-edge-time.conf"],
          ["bird-anycast.conf", "etc/bird/edge-time-bird.conf"],
        ]
      ) {
        assert.equal(
          await exists(`${root}/${dst}`),
          await exists(`${ROOT.pathname}appliance/${src}`),
          dst,
        );
      }
    });
    await t.step("a second install keeps the operator's config", async () => {
      await Deno.writeTextFile(`${root}/etc/edge-time/edge-time.toml`, "# mine\n");
      const r = await sh(["--root", root, "--binary", stub]);
      assert.equal(r.code, 0, r.out);
      assert.match(r.out, /keeping existing/);
      assert.equal(await Deno.readTextFile(`${root}/etc/edge-time/edge-time.toml`), "# mine\n");
    });
    await t.step("--from-source installs a wrapper that runs this checkout", async () => {
      const src = await Deno.makeTempDir({ prefix: "edge-time-root-src-" });
      try {
        const r = await sh(["--root", src, "--from-source"]);
        assert.equal(r.code, 0, r.out);
        const o = await new Deno.Command(`${src}/usr/local/bin/edge-time`, { args: ["version"] })
          .output();
        assert.match(new TextDecoder().decode(o.stdout), /^edge-time \S+ \(deno /);
      } finally {
        await Deno.remove(src, { recursive: true });
      }
    });
    await t.step("--uninstall removes all but the config; --purge the rest", async () => {
      let r = await sh(["--root", root, "--uninstall"]);
      assert.equal(r.code, 0, r.out);
      for (
        const p of [
          "usr/local/bin/edge-time",
          "etc/systemd/system/edge-time.service",
          "etc/edge-time/examples",
          "usr/local/share/doc/edge-time",
        ]
      ) assert.equal(await exists(`${root}/${p}`), false, p);
      assert.ok(await exists(`${root}/etc/edge-time/edge-time.toml`));
      r = await sh(["--root", root, "--uninstall", "--purge"]);
      assert.equal(r.code, 0, r.out);
      assert.equal(await exists(`${root}/etc/edge-time`), false);
      assert.equal(await exists(`${root}/var/lib/edge-time`), false);
    });
  } finally {
    await Deno.remove(root, { recursive: true });
    await Deno.remove(stub);
  }
});
