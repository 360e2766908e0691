/**
 * Broadcast and multicast on a LAN of network namespaces (tests/helpers/lan_lab.ts),
 * `clock.control = false` everywhere (the kernel clock is shared, so the
 * true offset is zero):
 *
 * - our broadcast server (multicast 224.0.1.1, SHA1 key 5) heard by two
 *   of our clients in two namespaces, which calibrate the delay with
 *   authenticated client exchanges and follow it;
 * - an attacker in a third namespace sends mode 5 packets without a MAC
 *   and with a wrong one, and mode 1 packets, to the group and to the
 *   clients: they are counted and change nothing (selected source, stratum);
 * - chronyd's `broadcast` directive (subnet broadcast) as the server for
 *   our client (chronyd cannot sign broadcasts, so that client runs
 *   `insecure = true`);
 * - IPv6: ff05::101 on eth0, with the key;
 * - discovery: three nodes that broadcast and listen with the key, no
 *   peers configured, no upstream, elect one orphan parent and the others
 *   follow it.
 */
import assert from "assert";
import { buildLan, type LanLab } from "../helpers/lan_lab.ts";
import { type EdgeTimeProcess, startEdgeTime } from "../helpers/edge_time.ts";
import { until } from "../helpers/wait.ts";
import { chronyAvailable, startChronyd } from "../helpers/chrony.ts";
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

/** A key file with key 5 (SHA1) in the lab's directory; returns the `[auth]` table that uses it. */
async function keyTable(
  lab: LanLab,
  secret = "6d0fb2b6c2b2f4a3e58d9f5c1a0e3b2d4c5f6a7b",
): Promise<string> {
  const file = `${lab.dir}/ntp-${secret.slice(0, 6)}.keys`;
  await Deno.writeTextFile(file, `# id type key\n5 SHA1 ${secret}\n`);
  return `[auth]\nkeyfile = "${file}"\ntrusted_keys = [5]\n`;
}

/** Runs the forged-packet sender (tests/helpers/ntp_forge.ts) inside namespace `ns`. */
async function forge(lab: LanLab, ns: string, args: string[]): Promise<void> {
  const r = await lab.exec(ns, [
    Deno.execPath(),
    "run",
    "--allow-net",
    "--allow-read",
    new URL("../helpers/ntp_forge.ts", import.meta.url).pathname,
    ...args,
  ]);
  assert.equal(r.code, 0, r.stderr);
}

Deno.test({
  name:
    "multicast with keys: our server is heard by two clients, calibrated and followed; an attacker's mode 5 and mode 1 packets change nothing",
  sanitizeResources: false,
  sanitizeOps: false,
}, async () => {
  const lab = await buildLan(4);
  try {
    const auth = await keyTable(lab);
    await startIn(
      lab,
      0,
      lanConfig(`${auth}[[broadcast]]\naddress = "224.0.1.1"\ninterval_s = 2\nkey = 5`)
        .replace("workers = 1", "workers = 1\nlocal_stratum = 3"),
    );
    const client = lanConfig(
      `${auth}[[source]]\nkind = "broadcast"\naddress = "224.0.1.1"\nkey = 5\nmin_poll = 1\nmax_poll = 2`,
    );
    await startIn(lab, 1, client);
    await startIn(lab, 2, client);
    const server = `${lab.addr(0)}:123`;
    const s0 = await until("host 0 broadcasts", async () => {
      const s = await statusOf(lab, lab.hosts[0]!);
      return s?.broadcast?.[0] && s.broadcast[0].sent > 0 ? s : null;
    }, 30_000);
    assert.equal(s0.broadcast![0]!.error, "");
    assert.equal(s0.broadcast![0]!.key, 5);
    const before: StatusSnapshot[] = [];
    for (const i of [1, 2]) {
      const st = await followsByBroadcast(lab, i, server, 4);
      const src = st.sources.find((s) => s.address === server)!;
      assert.equal(src.kind, "broadcast");
      assert.equal(src.tally, "*");
      assert.equal(src.key, 5);
      assert.equal(src.authenticated, true);
      // Calibrated: the requests stopped (ntpd's volley), the broadcasts go on.
      const sent = src.counters!.sent!;
      assert.ok(sent >= 4 && sent <= 8, `calibration requests ${sent}`);
      await until(`host ${i}: more broadcasts, no more requests`, async () => {
        const s = await statusOf(lab, lab.hosts[i]!);
        const c = s?.sources.find((x) => x.address === server)?.counters;
        return c && c.broadcasts! >= src.counters!.broadcasts! + 2 ? c : null;
      }, 30_000).then((c) => assert.equal(c.sent, sent));
      before.push((await statusOf(lab, lab.hosts[i]!))!);
    }

    // The attacker (host 3): stratum 1, 1000 s ahead, to the group and to each client.
    const attacker = lab.hosts[3]!;
    for (const to of ["224.0.1.1", lab.addr(1), lab.addr(2)]) {
      await forge(lab, attacker, ["mode5", to, "123", "5"]);
      await forge(lab, attacker, ["mode5-badmac", to, "123", "5", "5"]); // our key ID, wrong digest
      await forge(lab, attacker, ["mode5-badmac", to, "123", "5", "6"]); // a key nobody has
      await forge(lab, attacker, ["mode1", to, "123", "5"]);
    }
    for (const [k, i] of [1, 2].entries()) {
      const was = before[k]!.engine_counters!;
      const st = await until(`host ${i} counted the forgeries`, async () => {
        const s = await statusOf(lab, lab.hosts[i]!);
        const c = s?.engine_counters;
        return c && c.broadcast_unauthenticated >= was.broadcast_unauthenticated + 5 &&
            c.broadcast_bad_mac >= was.broadcast_bad_mac + 10 &&
            c.broadcast_bad_mode >= was.broadcast_bad_mode + 5
          ? s
          : null;
      }, 30_000);
      // Nothing changed: same system peer and stratum, no association for the attacker,
      // the clock never moved toward the forged 1000 s.
      assert.equal(st.system.system_peer, server);
      assert.equal(st.system.stratum, 4);
      assert.deepEqual(st.sources.map((x) => x.address), [server]);
      assert.ok(Math.abs(st.system.offset_s) < 0.1, `offset ${st.system.offset_s}`);
      assert.equal(st.engine_counters!.steps, was.steps);
      assert.equal(st.engine_counters!.panic, was.panic);
    }
  } finally {
    await lab.close();
  }
});

Deno.test({
  name:
    "discovery with keys: three nodes that broadcast and listen, no peers, no upstream: one orphan parent",
  sanitizeResources: false,
  sanitizeOps: false,
}, async () => {
  const lab = await buildLan(3);
  try {
    // Every node the same config: no peer list, nothing to edit when one more joins.
    const auth = await keyTable(lab);
    const node = lanConfig(
      `${auth}[[broadcast]]\naddress = "224.0.1.1"\ninterval_s = 2\nkey = 5\n` +
        `[[source]]\nkind = "broadcast"\naddress = "224.0.1.1"\nkey = 5\nmin_poll = 1\nmax_poll = 2`,
      "orphan_stratum = 7\norphan_wait_s = 3",
    );
    for (let i = 0; i < 3; i++) await startIn(lab, i, node);
    // The lowest address (refid) wins the election, as with configured peers.
    const parent = `${lab.addr(0)}:123`;
    await until("host 0 is the orphan parent", async () => {
      const s = await statusOf(lab, lab.hosts[0]!);
      return s && s.system.orphan && s.system.stratum === 7 && s.system.system_peer === ""
        ? s
        : null;
    }, 90_000);
    for (const i of [1, 2]) {
      const st = await followsByBroadcast(lab, i, parent, 8);
      assert.equal(st.system.orphan, true);
      // The other child is heard too, but at stratum 8 it is never followed.
      const sibling = st.sources.find((x) => x.address === `${lab.addr(3 - i)}:123`);
      if (sibling) assert.notEqual(sibling.tally, "*");
    }
    // Still one parent: host 0 did not follow a child.
    const s0 = (await statusOf(lab, lab.hosts[0]!))!;
    assert.equal(s0.system.stratum, 7);
    assert.equal(s0.system.system_peer, "");
  } finally {
    await lab.close();
  }
});

Deno.test({
  name: "IPv6 multicast with keys: ff05::101 from our server to our client",
  sanitizeResources: false,
  sanitizeOps: false,
}, async () => {
  const lab = await buildLan(2);
  try {
    const auth = await keyTable(lab);
    const v6 = (toml: string) => toml.replace('"0.0.0.0:123"', '"0.0.0.0:123", "[::]:123"');
    await startIn(
      lab,
      0,
      v6(lanConfig(
        `${auth}[[broadcast]]\naddress = "ff05::101"\ninterval_s = 2\nkey = 5\ninterface = "eth0"`,
      )).replace("workers = 1", "workers = 1\nlocal_stratum = 3"),
    );
    await startIn(
      lab,
      1,
      v6(lanConfig(
        `${auth}[[source]]\nkind = "broadcast"\naddress = "ff05::101"\nkey = 5\ninterface = "eth0"\nmin_poll = 1\nmax_poll = 2`,
      )),
    );
    const st = await followsByBroadcast(lab, 1, `[${lab.addr6(0)}]:123`, 4);
    assert.equal(st.sources[0]!.authenticated, true);
  } finally {
    await lab.close();
  }
});

/** Writes `toml`, sends SIGHUP and waits for the reload's log line. */
async function reload(edge: EdgeTimeProcess, toml: string): Promise<string> {
  const n = edge.logs().filter((l) => /Reloaded /.test(l)).length;
  await Deno.writeTextFile(edge.configPath, toml);
  edge.child.kill("SIGHUP");
  return await until("the reload", () => {
    const done = edge.logs().filter((l) => /Reloaded |Reload rejected/.test(l));
    return Promise.resolve(done.length > n ? done[done.length - 1]! : null);
  }, 10_000);
}

Deno.test({
  name:
    "reload: SIGHUP adds a [[broadcast]] destination (heard), then removes the listener's source",
  sanitizeResources: false,
  sanitizeOps: false,
}, async () => {
  const lab = await buildLan(2);
  try {
    const auth = await keyTable(lab);
    const plain = lanConfig(auth).replace("workers = 1", "workers = 1\nlocal_stratum = 3");
    const server = await startIn(lab, 0, plain);
    const source =
      `[[source]]\nkind = "broadcast"\naddress = "224.0.1.1"\nkey = 5\nmin_poll = 1\nmax_poll = 2\n`;
    const client = await startIn(lab, 1, lanConfig(auth + source));
    assert.match(
      await reload(
        server,
        plain + `[[broadcast]]\naddress = "224.0.1.1"\ninterval_s = 2\nkey = 5\n`,
      ),
      /Reloaded .*broadcast/,
    );
    await followsByBroadcast(lab, 1, `${lab.addr(0)}:123`, 4);
    // The source goes: its listener closes and the server heard is forgotten.
    await reload(
      client,
      lanConfig(auth + `[[source]]\naddress = "${lab.addr(0)}"\nmin_poll = 1\nmax_poll = 2\n`),
    );
    const st = await until("host 1 follows the server by unicast only", async () => {
      const s = await statusOf(lab, lab.hosts[1]!);
      return s && s.sources.length === 1 && s.sources[0]!.kind === "server" ? s : null;
    }, 30_000);
    const heard = st.engine_counters!.broadcast_received;
    await new Promise((r) => setTimeout(r, 5000)); // a few more broadcasts go out meanwhile
    const later = (await statusOf(lab, lab.hosts[1]!))!;
    assert.equal(later.engine_counters!.broadcast_received, heard);
  } finally {
    await lab.close();
  }
});

const noChrony = chronyAvailable();
if (noChrony) console.log(`broadcast_lan_test: chronyd test skipped: ${noChrony}`);

Deno.test({
  name:
    "subnet broadcast: chronyd's broadcast directive serves our client (insecure: chronyd cannot sign broadcasts)",
  ignore: noChrony !== null,
  sanitizeResources: false,
  sanitizeOps: false,
}, async () => {
  const lab = await buildLan(2);
  try {
    // chronyd sends mode 5 from port 123 to the subnet broadcast address and
    // answers the calibration requests (allow); its broadcasts carry no MAC
    // (chrony.conf has no key option for broadcast), so our client must run
    // insecure = true to use them.
    const chrony = await startChronyd([
      "local stratum 5",
      "allow 10.77.0.0/24",
      `broadcast 2 ${lab.broadcastAddr}`,
    ], lab.hosts[0]!);
    lab.track(() => chrony.stop());
    await startIn(
      lab,
      1,
      lanConfig(
        `[[source]]\nkind = "broadcast"\naddress = "${lab.broadcastAddr}"\ninsecure = true\nmin_poll = 1\nmax_poll = 2`,
      ),
    );
    const st = await followsByBroadcast(lab, 1, `${lab.addr(0)}:123`, 6);
    assert.equal(st.sources[0]!.refid, "127.127.1.1"); // chronyd's local reference
    assert.ok(st.engine_counters!.broadcast_received >= 3);
  } finally {
    await lab.close();
  }
});
