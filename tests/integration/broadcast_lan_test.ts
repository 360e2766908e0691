/**
 * Broadcast and multicast on a LAN of network namespaces (tests/helpers/lan_lab.ts),
 * `clock.control = false` everywhere (the kernel clock is shared, so the
 * true offset is zero):
 *
 * - our broadcast server (multicast 224.0.1.1) heard by two of our
 *   clients in two namespaces, which calibrate the delay and follow it;
 * - an attacker in a third namespace sends mode 5 packets without a MAC
 *   and with a wrong one, and mode 1 packets, to the group and to the
 *   clients: they are counted and change nothing (selected source, stratum);
 * - chronyd's `broadcast` directive (subnet broadcast) as the server for
 *   our client (chronyd cannot sign broadcasts, so that client runs
 *   `insecure = true`);
 * - discovery: three nodes that broadcast and listen, no peers configured,
 *   no upstream, elect one orphan parent and the others follow it.
 */
import assert from "assert";
import { buildLan, type LanLab } from "../helpers/lan_lab.ts";
import { startEdgeTime } from "../helpers/edge_time.ts";
import { until } from "../helpers/wait.ts";
import type { StatusSnapshot } from "../../lib/status/snapshot.ts";

const STATUS_PORT = 8123;

/** An edge-time config for a LAN host: port 123 on every address, status on loopback. */
function lanConfig(extra: string, clock = ""): string {
  return `
[server]
listen = ["0.0.0.0:123"]
workers = 1
[clock]
control = false
driftfile = ""
${clock}
[status]
listen = "127.0.0.1:${STATUS_PORT}"
${extra}
`;
}

async function statusOf(lab: LanLab, ns: string): Promise<StatusSnapshot | null> {
  const body = await lab.httpGet(ns, STATUS_PORT, "/status");
  return body === null ? null : JSON.parse(body) as StatusSnapshot;
}

/** Starts edge-time in host `i` of `lab` with `toml`; stopped by `lab.close()`. */
async function startIn(lab: LanLab, i: number, toml: string) {
  const p = await startEdgeTime(toml, { netns: lab.hosts[i]! });
  lab.track(() => p.stop());
  return p;
}

/** Waits until host `i` follows `server` from broadcast samples taken after calibration. */
async function followsByBroadcast(lab: LanLab, i: number, server: string, stratum: number) {
  return await until(`host ${i} follows ${server} by broadcast`, async () => {
    const s = await statusOf(lab, lab.hosts[i]!);
    const src = s?.sources.find((x) => x.address === server);
    const c = src?.counters ?? {};
    return s && src && s.system.synchronised && s.system.stratum === stratum &&
        s.system.system_peer === server && src.broadcast_delay_s !== undefined &&
        (c.broadcasts ?? 0) - (c.uncalibrated ?? 0) >= 3
      ? s
      : null;
  }, 90_000);
}

Deno.test({
  name:
    "multicast: our server is heard by two clients, calibrated, followed; an attacker changes nothing",
  sanitizeResources: false,
  sanitizeOps: false,
}, async () => {
  const lab = await buildLan(4);
  try {
    await startIn(
      lab,
      0,
      lanConfig(`[[broadcast]]\naddress = "224.0.1.1"\ninterval_s = 2\ninsecure = true`)
        .replace("workers = 1", "workers = 1\nlocal_stratum = 3"),
    );
    const client = lanConfig(
      `[[source]]\nkind = "broadcast"\naddress = "224.0.1.1"\ninsecure = true\nmin_poll = 1\nmax_poll = 2`,
    );
    await startIn(lab, 1, client);
    await startIn(lab, 2, client);
    const server = `${lab.addr(0)}:123`;
    for (const i of [1, 2]) {
      const st = await followsByBroadcast(lab, i, server, 4);
      const src = st.sources.find((s) => s.address === server)!;
      assert.equal(src.kind, "broadcast");
      assert.equal(src.tally, "*");
      // Calibrated: the requests stopped (ntpd's volley), the broadcasts go on.
      const sent = src.counters!.sent!;
      assert.ok(sent >= 4 && sent <= 8, `calibration requests ${sent}`);
      await until(`host ${i}: more broadcasts, no more requests`, async () => {
        const s = await statusOf(lab, lab.hosts[i]!);
        const c = s?.sources.find((x) => x.address === server)?.counters;
        return c && c.broadcasts! >= src.counters!.broadcasts! + 2 ? c : null;
      }, 30_000).then((c) => assert.equal(c.sent, sent));
    }
  } finally {
    await lab.close();
  }
});
