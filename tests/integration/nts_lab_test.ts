/**
 * NTS interop in one namespace lab (tests/helpers/netns.ts): two edge-time
 * nodes A (10.0.1.2) and B (10.0.2.2) share one master key file; A's
 * NTS-KE names B as the NTP server (Server Negotiation), so every client
 * keyed by A is served by B — the anycast case. In the client namespace,
 * chronyd (`server 10.0.1.2 nts`) and an edge-time with an `nts = true`
 * source both do the KE with A and are answered by B: authenticated,
 * cookies refilled to 8, offsets good. With another master file B
 * answers NTS NAK (counted), and both clients recover once B has the
 * fleet's file again.
 */
import assert from "assert";
import { buildLab, type Lab } from "../helpers/netns.ts";
import { makeTestPki } from "../helpers/certs.ts";
import { chronyAvailable, type Chronyd, startChronyd } from "../helpers/chrony.ts";
import { type EdgeTimeProcess, startEdgeTime } from "../helpers/edge_time.ts";
import { until } from "../helpers/wait.ts";
import type { StatusSnapshot } from "../../lib/status/snapshot.ts";

const skip = Deno.uid() !== 0 ? "needs root for network namespaces" : chronyAvailable();
if (skip) console.warn(`nts_lab_test: ignored: ${skip}`);

const FLEET = "5a".repeat(32);
const OTHER = "a5".repeat(32);

async function status(lab: Lab, ns: string): Promise<StatusSnapshot> {
  const r = await lab.exec(ns, ["curl", "-sf", "http://127.0.0.1:8123/status"]);
  if (r.code !== 0) throw new Error(`status of ${ns}: curl exit ${r.code}`);
  return JSON.parse(r.stdout);
}

function nodeToml(addr: string, extra: string): string {
  return `[server]
listen = ["${addr}:123"]
local_stratum = 3
[server.rate_limit]
interval_s = 0 # both clients share one address and poll every second
[clock]
control = false
driftfile = ""
[status]
listen = "127.0.0.1:8123"
${extra}`;
}

Deno.test({
  name:
    "NTS lab: KE with node A, NTP answered by node B (one master file); chronyd and edge-time clients",
  ignore: skip !== null,
  sanitizeResources: false,
  async fn() {
    const lab = await buildLab({ nodes: 2 });
    const pki = await makeTestPki();
    const procs: { stop(): Promise<unknown> }[] = [];
    let chronyd: Chronyd | null = null;
    try {
      const a = lab.nodeAddr(0), b = lab.nodeAddr(1);
      const certA = await pki.issue("node-a", [`IP:${a}`]);
      const certB = await pki.issue("node-b", [`IP:${b}`]);
      const master = `${lab.dir}/master.key`;
      await Deno.writeTextFile(master, `${FLEET}\n`, { mode: 0o600 });
      await Deno.chmod(master, 0o600);
      const masterB = `${lab.dir}/master-b.key`;
      await Deno.writeTextFile(masterB, `${FLEET}\n`, { mode: 0o600 });
      await Deno.chmod(masterB, 0o600);
      const nodeA = await startEdgeTime(
        nodeToml(
          a,
          `[nts]\nke_listen = ["${a}:4460"]\ncertificate = "${certA.cert}"\n` +
            `private_key = "${certA.key}"\nmaster_key_file = "${master}"\nntp_server = "${b}"\n`,
        ),
        { netns: lab.nodes[0]! },
      );
      procs.push(nodeA);
      const nodeB: EdgeTimeProcess = await startEdgeTime(
        nodeToml(
          b,
          `[nts]\nke_listen = ["${b}:4460"]\ncertificate = "${certB.cert}"\n` +
            `private_key = "${certB.key}"\nmaster_key_file = "${masterB}"\n`,
        ),
        { netns: lab.nodes[1]! },
      );
      procs.push(nodeB);
      await nodeA.waitForLog(/NTS-KE on /);
      await nodeB.waitForLog(/NTS-KE on /);

      // edge-time as NTS client, keyed by A.
      const client = await startEdgeTime(
        `[server]\nlisten = ["${lab.clientAddr}:123"]\n[clock]\ncontrol = false\ndriftfile = ""\n` +
          `[status]\nlisten = "127.0.0.1:8123"\n` +
          `[[source]]\naddress = "${a}"\nnts = true\nca_file = "${pki.caCert}"\nmin_poll = 0\nmax_poll = 1\n`,
        { netns: lab.client },
      );
      procs.push(client);
      // chronyd as NTS client, keyed by A.
      chronyd = await startChronyd([
        `server ${a} nts iburst minpoll 0 maxpoll 0`,
        `ntstrustedcerts ${pki.caCert}`,
        "user root", // chronyc needs the socket directory owned by chronyd's user
      ], lab.client);

      const ours = await until("our client keyed by A, served by B", async () => {
        const s = (await status(lab, lab.client)).sources[0];
        return s?.nts && s.nts.authenticated >= 4 && s.tally === "*" ? s : null;
      }, 60_000);
      assert.equal(ours.nts!.ntp_server, `${b}:123`, "NTP goes where A's KE said");
      assert.equal(ours.nts!.cookies, 8);
      assert.ok(Math.abs(ours.offset_s) < 0.01, `offset ${ours.offset_s}`);

      const row = await until("chronyd's NTS polls answered by B", async () => {
        const out = await chronyd!.chronyc("-n", "authdata");
        // Name Mode KeyID Type KLen Last Atmp NAK Cook CLen
        const f = out.split("\n").find((l) => l.startsWith(a) || l.startsWith(b))?.trim().split(
          /\s+/,
        );
        const sources = await chronyd!.chronyc("-n", "sources");
        const reached = /\^\* +10\.0\.[12]\.2 +3 +\d+ +(\d+)/.exec(sources);
        return f && f[1] === "NTS" && reached && Number.parseInt(reached[1]!, 8) >= 0o17 ? f : null;
      }, 60_000);
      assert.equal(row[8], "8", `chronyd's cookie jar stays full: ${row.join(" ")}`);
      const ntpdata = await chronyd.chronyc("-n", "ntpdata");
      assert.match(ntpdata, new RegExp(`Remote address +: ${b.replaceAll(".", "\\.")} `));
      const offset = Number(/Offset +: ([-+.0-9e]+) seconds/.exec(ntpdata)?.[1]);
      assert.ok(Math.abs(offset) < 0.01, ntpdata);

      const sa = await status(lab, lab.nodes[0]!), sb = await status(lab, lab.nodes[1]!);
      assert.ok(sa.nts_ke!.handshakes >= 2, "both clients did the KE with A");
      assert.equal(sa.server.nts.requests, 0, "A serves no NTS NTP: its KE sends clients to B");
      assert.ok(sb.server.nts.requests >= 8);
      assert.equal(sb.server.nts.naks, 0);

      // B with another master file: NTS NAKs; the fleet's file again: both recover.
      await Deno.writeTextFile(masterB, `${OTHER}\n`);
      nodeB.child.kill("SIGHUP");
      await until("NAKs from B and our client noticing", async () => {
        const s = (await status(lab, lab.client)).sources[0];
        const nb = (await status(lab, lab.nodes[1]!)).server.nts;
        return nb.naks >= 1 && s?.nts && s.nts.naks >= 1 ? true : null;
      }, 30_000);
      await Deno.writeTextFile(masterB, `${FLEET}\n`);
      nodeB.child.kill("SIGHUP");
      const before = (await status(lab, lab.client)).sources[0]!.nts!.authenticated;
      await until("authenticated again after the fleet's file is back", async () => {
        const s = (await status(lab, lab.client)).sources[0];
        return s?.nts && s.nts.authenticated >= before + 3 ? true : null;
      }, 60_000);
    } catch (e) {
      const last = await status(lab, lab.client).then((s) => JSON.stringify(s.sources), String);
      const logs = procs.map((p) => "logs" in p ? (p as EdgeTimeProcess).logs().join("\n") : "");
      throw new Error(
        `${e}\nclient sources: ${last}\nedge-time:\n${logs.join("\n--\n")}\nchronyd:\n${
          chronyd?.logs() ?? ""
        }`,
      );
    } finally {
      await chronyd?.stop();
      for (const p of procs.reverse()) await p.stop();
      await pki.remove();
      await lab.close();
    }
  },
});
