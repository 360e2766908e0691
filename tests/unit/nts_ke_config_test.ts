import assert from "assert";
import { loadConfig } from "../../lib/config/mod.ts";

function errors(text: string): string[] {
  const r = loadConfig(text, "edge.toml");
  return r.ok ? [] : r.errors;
}

Deno.test("[nts] NTS-KE keys: off by default, all set when on", () => {
  const off = loadConfig("", "e.toml");
  assert.ok(off.ok);
  assert.deepEqual(off.config.nts.keListen, []);
  const on = loadConfig(
    [
      "[nts]",
      'ke_listen = ["[::]:4460"]',
      'certificate = "/etc/edge-time/fullchain.pem"',
      'private_key = "/etc/edge-time/privkey.pem"',
      'ntp_server = "ntp.example.net"',
      "ntp_port = 1123",
    ].join("\n"),
    "e.toml",
  );
  assert.ok(on.ok, on.ok ? "" : on.errors.join("\n"));
  assert.deepEqual(on.config.nts.keListen, ["[::]:4460"]);
  assert.equal(on.config.nts.certificate, "/etc/edge-time/fullchain.pem");
  assert.equal(on.config.nts.privateKey, "/etc/edge-time/privkey.pem");
  assert.equal(on.config.nts.ntpServer, "ntp.example.net");
  assert.equal(on.config.nts.ntpPort, 1123);
});

Deno.test("[nts] NTS-KE errors name FILE:LINE: key", () => {
  assert.deepEqual(errors('[nts]\nke_listen = ["0.0.0.0:4460"]'), [
    "edge.toml:2: nts.certificate: the NTS-KE server (ke_listen) needs it",
    "edge.toml:2: nts.private_key: the NTS-KE server (ke_listen) needs it",
  ]);
  assert.deepEqual(
    errors(
      '[nts]\nke_listen = ["0.0.0.0:4460", "0.0.0.0:4460"]\ncertificate = "c"\nprivate_key = "k"',
    ),
    ['edge.toml:2: nts.ke_listen: "0.0.0.0:4460" is listed twice'],
  );
  assert.deepEqual(
    errors('[nts]\nke_listen = ["host:4460"]\ncertificate = "c"\nprivate_key = "k"'),
    [
      'edge.toml:2: nts.ke_listen: "host" in "host:4460" is not an IP address',
    ],
  );
  assert.deepEqual(errors('[nts]\nntp_server = "not a name"'), [
    'edge.toml:2: nts.ntp_server: "not a name" is not a host name or IP address',
  ]);
  assert.deepEqual(errors("[nts]\nntp_port = 70000"), [
    "edge.toml:2: nts.ntp_port: 70000 is outside 0..65535",
  ]);
});
