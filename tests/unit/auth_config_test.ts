/** `[auth]`, `[[source]] key` / `require_auth`: checked with FILE:LINE lines, keys by the file. */
import assert from "assert";
import { loadConfig, missingSourceKeys } from "../../lib/config/mod.ts";
import { formatPeers } from "../../lib/status/text.ts";
import type { SourceReport } from "../../lib/engine/report.ts";

function errors(toml: string): string[] {
  const r = loadConfig(toml, "edge.toml");
  return r.ok ? [] : r.errors;
}

Deno.test("config: source keys must be trusted and need a key file", () => {
  const auth = '[auth]\nkeyfile = "/k"\ntrusted_keys = [1, 2]\n';
  assert.deepEqual(errors(`${auth}[[source]]\naddress = "192.0.2.1"\nkey = 2\n`), []);
  assert.deepEqual(errors(`${auth}[[source]]\naddress = "192.0.2.1"\nkey = 3\n`), [
    "edge.toml:6: source[0].key: key 3 is not in auth.trusted_keys",
  ]);
  assert.deepEqual(errors('[[source]]\naddress = "192.0.2.1"\nkey = 1\n'), [
    "edge.toml:3: source[0].key: key 1 needs auth.keyfile",
  ]);
  assert.deepEqual(errors(`${auth}[[source]]\naddress = "192.0.2.1"\nkey = 1\nnts = true\n`), [
    "edge.toml:6: source[0].key: a source is authenticated by NTS or by a symmetric key, not both",
  ]);
  assert.deepEqual(errors('[[source]]\naddress = "192.0.2.1"\nrequire_auth = true\n'), [
    "edge.toml:3: source[0].require_auth: needs a key (source key = N)",
  ]);
  assert.deepEqual(errors('[auth]\ntrusted_keys = [1, "2", 0, 1]\n'), [
    'edge.toml:2: auth.trusted_keys[1]: expected a whole number in 1..4294967295, got "2"',
    "edge.toml:2: auth.trusted_keys[2]: expected a whole number in 1..4294967295, got 0",
    "edge.toml:2: auth.trusted_keys: 1 is listed twice",
  ]);
});

Deno.test("missingSourceKeys() names each source key the key file lacks, by config line", () => {
  const text = [
    "[auth]",
    'keyfile = "/etc/ntp.keys"',
    "trusted_keys = [1, 2]",
    "[[source]]",
    'address = "192.0.2.1"',
    "key = 1",
    "[[source]]",
    'address = "192.0.2.2"',
    "key = 2",
  ].join("\n");
  const r = loadConfig(text, "edge.toml");
  assert.ok(r.ok);
  assert.deepEqual(missingSourceKeys(r.config, new Set([1]), text, "edge.toml"), [
    "edge.toml:9: source[1].key: key 2 is not in /etc/ntp.keys",
  ]);
  assert.deepEqual(missingSourceKeys(r.config, new Set([1, 2]), text, "edge.toml"), []);
});

Deno.test("formatPeers() adds an auth column when a source has a key", () => {
  const row = (address: string, extra: Partial<SourceReport>): SourceReport => ({
    tally: "*",
    address,
    kind: "server",
    refid: "GPS",
    stratum: 1,
    when_s: 3,
    poll: 6,
    reach: 255,
    delay_s: 0.001,
    offset_s: 0,
    jitter_s: 0,
    ...extra,
  });
  const plain = formatPeers([row("192.0.2.9", {})]);
  assert.ok(!plain.split("\n")[0]!.includes("auth"));
  const lines = formatPeers([
    row("192.0.2.1", { key: 5, authenticated: true }),
    row("192.0.2.2", { key: 6, authenticated: false }),
    row("192.0.2.3", {}),
  ]).split("\n");
  assert.ok(lines[0]!.endsWith(" auth"));
  assert.ok(lines[2]!.endsWith(" 5 ok"), lines[2]);
  assert.ok(lines[3]!.endsWith(" 6 no"), lines[3]);
  assert.ok(lines[4]!.endsWith("    -"), lines[4]);
});

Deno.test("/metrics and /status show per source the key and whether it authenticated", async () => {
  const { handleStatusRequest } = await import("../../lib/status/handler.ts");
  const { fakeModel } = await import("../helpers/status_fixture.ts");
  const { parsePrometheusText } = await import("../helpers/prom_text.ts");
  const { model, state } = fakeModel();
  Object.assign(state.engine.sources[0]!, { key: 5, authenticated: true });
  Object.assign(state.engine.sources[1]!, { key: 6, authenticated: false });
  const get = (path: string) => new Request(`http://127.0.0.1${path}`);
  const fams = parsePrometheusText(await handleStatusRequest(get("/metrics"), model).text());
  const auth = fams.find((f) => f.name === "ntp_source_authenticated")!;
  assert.deepEqual(
    auth.samples.map((x) => [x.labels.key, x.value]),
    [["5", 1], ["6", 0]],
  );
  const json = await handleStatusRequest(get("/status"), model).json();
  assert.deepEqual(
    json.sources.map((r: { key?: number; authenticated?: boolean }) => [r.key, r.authenticated]),
    [[5, true], [6, false], [undefined, undefined]],
  );
  const server = json.server;
  assert.deepEqual([server.authenticated, server.crypto_nak, server.bad_mac], [4, 3, 1]);
});
