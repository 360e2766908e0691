/**
 * Two NTS sources on one address (127.0.0.1 and localhost) with two NTS-KE
 * servers (issue 15 trial):
 * each makes its own key exchange and is its own association; `peers` and
 * `/status` show each by the NTP server and port its KE named, and
 * `nts.ke_server` by the KE server it was configured with.
 */
import assert from "assert";
import { lookup } from "node:dns/promises";
import {
  freeTcpPort,
  freeUdpPort,
  localServerToml,
  mainArgv,
  startEdgeTime,
} from "../helpers/edge_time.ts";
import { makeTestPki } from "../helpers/certs.ts";
import { fetchStatus } from "../helpers/status.ts";
import { until } from "../helpers/wait.ts";

/** `localhost` when it resolves to 127.0.0.1 first (the trial's config), else 127.0.0.1 (said why). */
async function secondName(): Promise<string> {
  const r = await lookup("localhost", { all: true }).catch(() => []);
  if (r[0]?.address === "127.0.0.1") return "localhost";
  console.log(`localhost resolves to ${JSON.stringify(r)}: using 127.0.0.1 for both sources`);
  return "127.0.0.1";
}

Deno.test("NTS: 127.0.0.1 and localhost with two KE servers are two sources, each shown where its NTP goes", async () => {
  const pki = await makeTestPki();
  const { cert, key } = await pki.issue("server", ["IP:127.0.0.1", "DNS:localhost"]);
  const names = ["127.0.0.1", await secondName()];
  const servers = [];
  const kePorts: number[] = [], ntpPorts: number[] = [];
  try {
    for (let i = 0; i < 2; i++) {
      const port = await freeUdpPort(), kePort = freeTcpPort();
      servers.push(
        await startEdgeTime(
          localServerToml(port, 0, "rate_limit = { interval_s = 0 }") +
            `[nts]\nke_listen = ["127.0.0.1:${kePort}"]\ncertificate = "${cert}"\n` +
            `private_key = "${key}"\nntp_port = ${port}\n`,
        ),
      );
      kePorts.push(kePort);
      ntpPorts.push(port);
    }
    const cport = await freeUdpPort(), cstatus = freeTcpPort();
    const client = await startEdgeTime(
      localServerToml(cport, cstatus).replace("local_stratum = 8", "local_stratum = 0") +
        kePorts.map((p, i) =>
          `[[source]]\naddress = "${names[i]}"\nnts = true\nnts_port = ${p}\n` +
          `ca_file = "${pki.caCert}"\nmin_poll = 0\nmax_poll = 0\n`
        ).join(""),
    );
    servers.push(client);
    const sources = await until("both sources authenticated", async () => {
      const s = (await fetchStatus(cstatus)).sources;
      return s.length === 2 && s.every((x) => (x.nts?.authenticated ?? 0) >= 2) ? s : null;
    }, 30_000);
    const byKe = new Map(sources.map((s) => [s.nts!.ke_server, s]));
    for (let i = 0; i < 2; i++) {
      const s = byKe.get(`${names[i]}:${kePorts[i]}`);
      assert.ok(s, `source of KE port ${kePorts[i]}: ${JSON.stringify(sources)}`);
      assert.equal(s.address, `127.0.0.1:${ntpPorts[i]}`, "the address NTP goes to");
      assert.equal(s.nts!.ntp_server, s.address);
      assert.equal(s.nts!.key_exchanges, 1);
    }
    const peers = await new Deno.Command(mainArgv()[0]!, {
      args: [...mainArgv("peers", "--url", `http://127.0.0.1:${cstatus}`).slice(1)],
      stdout: "piped",
    }).output();
    const text = new TextDecoder().decode(peers.stdout);
    for (const p of ntpPorts) assert.match(text, new RegExp(`127\\.0\\.0\\.1:${p} .* NTS ok`));
  } finally {
    for (const s of servers) await s.stop();
    await pki.remove();
  }
});
