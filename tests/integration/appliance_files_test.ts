/**
 * The appliance/ folder: every example config passes check-config, the
 * installed default config is the embedded one, and the systemd unit passes
 * `systemd-analyze verify` and has the keys the appliance relies on.
 */
import assert from "assert";
import { DEFAULT_CONFIG_TOML, loadConfig } from "../../lib/config/mod.ts";
import { makeTestPki } from "../helpers/certs.ts";

const ROOT = new URL("../../", import.meta.url);
const APPLIANCE = new URL("appliance/", ROOT);
const EXAMPLES = ["mesh", "mesh-orphan", "external-plus-peers", "core-server", "core-pool-prefer"];

async function checkConfig(path: string): Promise<{ code: number; out: string }> {
  const o = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--config",
      new URL("deno.json", ROOT).pathname,
      "main.ts",
      "check-config",
      path,
    ],
    cwd: ROOT.pathname,
  }).output();
  const d = new TextDecoder();
  return { code: o.code, out: d.decode(o.stdout) + d.decode(o.stderr) };
}

/**
 * For an example that names NTS files (certificate, key, master key,
 * CA): a copy whose paths point at test files of those kinds, or null.
 */
async function ntsFilesFor(
  text: string,
): Promise<{ path: string; remove(): Promise<void> } | null> {
  if (!/^\[nts\]/m.test(text)) return null;
  const pki = await makeTestPki();
  const { cert, key } = await pki.issue("node", ["DNS:ntp.example.net"]);
  const master = `${pki.dir}/master.key`;
  await Deno.writeTextFile(master, `${"3c".repeat(32)}\n`);
  await Deno.chmod(master, 0o600);
  const path = `${pki.dir}/example.toml`;
  await Deno.writeTextFile(
    path,
    text.replace(/^certificate = "[^"]*"/m, `certificate = "${cert}"`)
      .replace(/^private_key = "[^"]*"/m, `private_key = "${key}"`)
      .replace(/^master_key_file = "[^"]*"/m, `master_key_file = "${master}"`)
      .replace(/^ca_file = "[^"]*"/gm, `ca_file = "${pki.caCert}"`),
  );
  return { path, remove: () => pki.remove() };
}

/** Parses a systemd unit into section → key → values (keys may repeat). */
function parseUnit(text: string): Map<string, Map<string, string[]>> {
  const out = new Map<string, Map<string, string[]>>();
  let section = "";
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue;
    const h = line.match(/^\[(.+)\]$/);
    if (h) {
      section = h[1]!;
      out.set(section, out.get(section) ?? new Map());
      continue;
    }
    const eq = line.indexOf("=");
    assert.ok(eq > 0 && section, `unit line is key=value in a section: ${line}`);
    const key = line.slice(0, eq), m = out.get(section)!;
    m.set(key, [...(m.get(key) ?? []), line.slice(eq + 1)]);
  }
  return out;
}

Deno.test("appliance examples: every topology example passes check-config", async (t) => {
  const files = [...Deno.readDirSync(new URL("examples/", APPLIANCE))].map((e) => e.name).sort();
  for (const name of [...EXAMPLES, "pool-node-anycast"]) {
    assert.ok(files.includes(`${name}.toml`), `appliance/examples/${name}.toml exists`);
  }
  for (const name of files) {
    await t.step(name, async () => {
      let path = new URL(`examples/${name}`, APPLIANCE).pathname;
      const text = await Deno.readTextFile(path);
      const nts = await ntsFilesFor(text);
      if (nts) {
        // Its NTS files are not on this machine: check-config names each one, then passes
        // once the paths point at usable files of the same kinds.
        const r = await checkConfig(path);
        assert.equal(r.code, 2, r.out);
        for (const key of ["nts.certificate", "nts.master_key_file", "source[0].ca_file"]) {
          assert.match(r.out, new RegExp(`:\\d+: ${key.replace(/[.[\]]/g, "\\$&")}: `));
        }
        path = nts.path;
      }
      const r = await checkConfig(path);
      if (nts) await nts.remove();
      assert.equal(r.code, 0, r.out);
      assert.match(r.out, /: ok$/m);
      assert.match(
        text,
        /^# Topology|^# A public NTP pool node/,
        "opens with a comment for operators",
      );
    });
  }
  await t.step(
    "check-config really rejects a broken example (the check is not a no-op)",
    async () => {
      const dir = await Deno.makeTempDir({ prefix: "edge-time-example-" });
      const text = await Deno.readTextFile(new URL("examples/mesh.toml", APPLIANCE));
      await Deno.writeTextFile(
        `${dir}/bad.toml`,
        text.replace(/^kind = "peer"/m, 'kind = "peers"'),
      );
      const r = await checkConfig(`${dir}/bad.toml`);
      await Deno.remove(dir, { recursive: true });
      assert.equal(r.code, 2);
      assert.match(r.out, /bad\.toml:\d+: source\[4\]\.kind: "peers" is not one of/);
    },
  );
  await t.step("the pool node examples run anycast in node mode; the others do not", () => {
    for (const name of files) {
      const r = loadConfig(Deno.readTextFileSync(new URL(`examples/${name}`, APPLIANCE)), name);
      assert.ok(r.ok);
      assert.equal(r.config.anycast.mode, name.startsWith("pool-node-anycast") ? "node" : "off");
    }
  });
  await t.step("the NTS pool node serves NTS with a fleet master key and uses NTS sources", () => {
    const name = "pool-node-anycast-nts.toml";
    const r = loadConfig(Deno.readTextFileSync(new URL(`examples/${name}`, APPLIANCE)), name);
    assert.ok(r.ok);
    assert.notEqual(r.config.nts.masterKeyFile, "");
    assert.ok(r.config.nts.keListen.length > 0);
    assert.ok(r.config.source.every((s) => s.nts));
  });
});

Deno.test("appliance/edge-time.toml is the embedded default config", async () => {
  assert.equal(await Deno.readTextFile(new URL("edge-time.toml", APPLIANCE)), DEFAULT_CONFIG_TOML);
});

Deno.test("appliance/edge-time.service: keys the appliance relies on, and systemd-analyze verify", async (t) => {
  const text = await Deno.readTextFile(new URL("edge-time.service", APPLIANCE));
  const unit = parseUnit(text);
  const svc = unit.get("Service")!;
  const one = (k: string) => svc.get(k)?.join(" ") ?? "";
  await t.step("capabilities: exactly bind 123, set the clock, manage addresses/routes", () => {
    const caps = "CAP_NET_BIND_SERVICE CAP_SYS_TIME CAP_NET_ADMIN";
    assert.equal(one("AmbientCapabilities"), caps);
    assert.equal(one("CapabilityBoundingSet"), caps);
  });
  await t.step("start, reload, stop", () => {
    assert.match(one("ExecStart"), /^\/usr\/local\/bin\/edge-time run --config \/etc\/edge-time\//);
    assert.equal(one("ExecReload"), "/bin/kill -HUP $MAINPID");
    assert.match(one("ExecStopPost"), /^-\/usr\/local\/bin\/edge-time anycast withdraw/);
    assert.equal(one("Restart"), "on-failure");
    assert.equal(one("KillSignal"), "SIGTERM");
  });
  await t.step("hardening that still lets it work", () => {
    for (
      const [k, v] of Object.entries({
        NoNewPrivileges: "yes",
        ProtectSystem: "strict",
        ProtectHome: "yes",
        PrivateTmp: "yes",
        StateDirectory: "edge-time",
      })
    ) assert.equal(one(k), v, k);
    assert.match(one("ReadWritePaths"), /\/etc\/bird/);
    assert.match(one("RestrictAddressFamilies"), /AF_NETLINK/);
    assert.match(one("SystemCallFilter"), /@clock/);
    // These would break it: no adjtimex, no V8 JIT.
    assert.equal(svc.has("ProtectClock"), false);
    assert.equal(svc.has("MemoryDenyWriteExecute"), false);
  });
  await t.step(
    "every path the default config writes is writable under ProtectSystem=strict",
    () => {
      const c = loadConfig(DEFAULT_CONFIG_TOML, "default");
      assert.ok(c.ok);
      assert.ok(c.config.clock.driftfile.startsWith(`/var/lib/${one("StateDirectory")}/`));
      assert.ok(c.config.anycast.drainFile.startsWith(`/run/${one("RuntimeDirectory")}/`));
      assert.ok(c.config.anycast.bird.includeFile.startsWith("/etc/bird/"));
    },
  );
  const analyze = await new Deno.Command("systemd-analyze", { args: ["--version"] }).output()
    .then((o) => o.success, () => false);
  await t.step({
    name: "systemd-analyze verify",
    ignore: !analyze,
    fn: async () => {
      // verify wants ExecStart binaries to exist: point them at a stub.
      const dir = await Deno.makeTempDir({ prefix: "edge-time-unit-" });
      try {
        await Deno.writeTextFile(`${dir}/edge-time`, "#!/bin/sh\nexit 0\n", { mode: 0o755 });
        await Deno.writeTextFile(
          `${dir}/edge-time.service`,
          text.replaceAll("/usr/local/bin/edge-time", `${dir}/edge-time`),
        );
        const o = await new Deno.Command("systemd-analyze", {
          args: ["verify", `${dir}/edge-time.service`],
        }).output();
        const out = new TextDecoder().decode(o.stdout) + new TextDecoder().decode(o.stderr);
        assert.equal(o.code, 0, out);
        assert.equal(out.trim(), "", `no warnings: ${out}`);
        // And the check bites: an unknown key is reported.
        await Deno.writeTextFile(
          `${dir}/edge-time.service`,
          text.replaceAll("/usr/local/bin/edge-time", `${dir}/edge-time`)
            .replace("NoNewPrivileges", "NoNewPrivilegez"),
        );
        const bad = await new Deno.Command("systemd-analyze", {
          args: ["verify", `${dir}/edge-time.service`],
        }).output();
        assert.match(new TextDecoder().decode(bad.stderr), /Unknown key/);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
  if (!analyze) {
    console.log("  systemd-analyze not installed: verify skipped; unit keys checked above");
  }
});
