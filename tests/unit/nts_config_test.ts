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
