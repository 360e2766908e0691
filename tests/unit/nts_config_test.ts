import assert from "assert";
import { loadConfig } from "../../lib/config/mod.ts";

Deno.test("config: NTS source keys and the fleet master key", () => {
  const ok = loadConfig(
    `[nts]\nmaster_key_file = "/etc/edge-time/nts-master.key"\ncookie_key_days = 3\n` +
      `[[source]]\naddress = "time.example.net"\nnts = true\nnts_port = 14460\nca_file = "/ca.pem"\n`,
    "edge.toml",
  );
  assert.ok(ok.ok);
  assert.equal(ok.config.nts.masterKeyFile, "/etc/edge-time/nts-master.key");
  assert.equal(ok.config.nts.cookieKeyDays, 3);
  assert.deepEqual(
    [ok.config.source[0]!.nts, ok.config.source[0]!.ntsPort, ok.config.source[0]!.caFile],
    [true, 14460, "/ca.pem"],
  );
  const defaults = loadConfig("", "edge.toml");
  assert.ok(defaults.ok);
  assert.equal(defaults.config.nts.masterKeyFile, "");
  assert.equal(defaults.config.nts.cookieKeyDays, 2);

  const bad = loadConfig(
    `[nts]\ncookie_key_days = 0\n[[source]]\naddress = "pool.example.net"\nkind = "pool"\nnts = true\n`,
    "edge.toml",
  );
  assert.ok(!bad.ok);
  assert.ok(
    bad.errors.some((e) => /^edge\.toml:2: nts\.cookie_key_days: /.test(e)),
    bad.errors.join("\n"),
  );
  assert.ok(
    bad.errors.some((e) =>
      e === 'edge.toml:6: source[0].nts: NTS needs kind "server" (a pool has no NTS-KE of its own)'
    ),
    bad.errors.join("\n"),
  );
});

Deno.test("config: an NTS source is its NTS-KE server; ca_file is for NTS sources only", () => {
  const src = (address: string, more = "") => `[[source]]\naddress = "${address}"\n${more}`;
  // Two KE servers on one host: two sources (issue 15 trial).
  const two = loadConfig(
    src("127.0.0.1", "nts = true\nnts_port = 4460\n") +
      src("127.0.0.1", "nts = true\nnts_port = 4461\n") + src("127.0.0.1"),
    "edge.toml",
  );
  assert.ok(two.ok, two.ok ? "" : two.errors.join("\n"));
  const same = loadConfig(
    src("127.0.0.1", "nts = true\n") + src("127.0.0.1:123", "nts = true\n"),
    "edge.toml",
  );
  assert.ok(!same.ok);
  assert.deepEqual(same.errors, [
    "edge.toml:5: source[1].address: same source as source[0] (line 2)",
  ]);
  // The engine names an NTS association host:nts_port, a plain one host:port: one namespace.
  const clash = loadConfig(src("127.0.0.1:4460") + src("127.0.0.1", "nts = true\n"), "edge.toml");
  assert.ok(!clash.ok);
  assert.deepEqual(clash.errors, [
    "edge.toml:4: source[1].address: same source as source[0] (line 2)",
  ]);
  const ca = loadConfig(src("192.0.2.1", 'ca_file = "/ca.pem"\n'), "edge.toml");
  assert.ok(!ca.ok);
  assert.deepEqual(ca.errors, ["edge.toml:3: source[0].ca_file: only for nts = true"]);
});
