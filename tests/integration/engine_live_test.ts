/**
 * The engine in a real edge-time process following real `chronyd -x`
 * (`local stratum 8`) on loopback, `clock.control = false`: sources added
 * and removed by SIGHUP, statistics files, the driftfile.
 */
import assert from "assert";
import { chronyAvailable, type Chronyd, startChronyd } from "../helpers/chrony.ts";
import {
  type EdgeTimeProcess,
  freeTcpPort,
  freeUdpPort,
  startEdgeTime,
} from "../helpers/edge_time.ts";
import { queryServer } from "../../lib/io/query_client.ts";
import { loadConfig } from "../../lib/config/mod.ts";
import { EngineDriver } from "../../lib/io/engine_driver.ts";
import { readDrift } from "../../lib/io/stats_files.ts";
import { statsTime } from "../../lib/engine/stats.ts";
import type { StatusSnapshot } from "../../lib/status/snapshot.ts";
import { fetchStatus } from "../helpers/status.ts";
import { until } from "../helpers/wait.ts";

const skip = chronyAvailable();
if (skip) console.log(`engine_live_test: skipped: ${skip}`);

function bits(reach: number): number {
  let n = 0;
  for (let r = reach; r; r >>= 1) n += r & 1;
  return n;
}

function startChrony(port: number): Promise<Chronyd> {
  return startChronyd([
    `port ${port}`,
    "bindaddress 127.0.0.1",
    "local stratum 8",
    "allow 127.0.0.1",
  ]);
}

const source = (port: number) =>
  `[[source]]\naddress = "127.0.0.1:${port}"\nmin_poll = 0\nmax_poll = 1\niburst = true`;

function config(o: {
  eport: number;
  sport: number;
  sources: number[];
  localStratum?: number;
  driftfile?: string;
  statsDir?: string;
}): string {
  return `
[server]
listen = ["127.0.0.1:${o.eport}"]
workers = 1
local_stratum = ${o.localStratum ?? 0}
[clock]
control = false
driftfile = "${o.driftfile ?? ""}"
orphan_stratum = 0
[status]
listen = "127.0.0.1:${o.sport}"
[stats]
dir = "${o.statsDir ?? ""}"
${o.sources.map(source).join("\n")}
`;
}

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

/** Polls /status every 100 ms until `stop` resolves; returns how often it was unsynchronised. */
function watchSync(sport: number): { stop(): Promise<number> } {
  let running = true, unsynced = 0;
  const loop = (async () => {
    while (running) {
      const s = await fetchStatus(sport).catch(() => null);
      if (s && !s.system.synchronised) unsynced++;
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return unsynced;
    },
  };
}

Deno.test({
  name: "SIGHUP adds and removes chronyd sources; a kept source keeps its state",
  ignore: skip !== null,
  sanitizeResources: false,
  sanitizeOps: false,
}, async (t) => {
  const pa = await freeUdpPort(), pb = await freeUdpPort();
  const chronyA = await startChrony(pa), chronyB = await startChrony(pb);
  const eport = await freeUdpPort(), sport = freeTcpPort();
  const A = `127.0.0.1:${pa}`, B = `127.0.0.1:${pb}`;
  let edge: EdgeTimeProcess | null = null;
  try {
    edge = await startEdgeTime(config({ eport, sport, sources: [pa] }));
    const e = edge;
    const before = await until("following A with reach of 4+ polls", async () => {
      const s = await fetchStatus(sport);
      const a = s.sources.find((x) => x.address === A);
      return s.system.stratum === 9 && s.system.system_peer === A && a && bits(a.reach) >= 4
        ? a
        : null;
    }, 30_000);

    await t.step("SIGHUP adds B: both listed, A's reach and counters go on", async () => {
      const watch = watchSync(sport);
      const line = await reload(e, config({ eport, sport, sources: [pa, pb] }));
      assert.match(line, /sources \+1 -0 ~0 =1/);
      // Right after the reload: a rebuilt association would show reach 0–1 and 0–1 replies.
      const now = (await fetchStatus(sport)).sources.find((x) => x.address === A)!;
      assert.ok(
        now.counters!.received! >= before.counters!.received!,
        JSON.stringify([before, now]),
      );
      // (one poll may be in flight: its shift is not answered yet)
      assert.ok(bits(now.reach) >= bits(before.reach) - 1, `reach ${before.reach} → ${now.reach}`);
      const s = await until("B reachable and A answering on", async () => {
        const s = await fetchStatus(sport);
        const a = s.sources.find((x) => x.address === A);
        const b = s.sources.find((x) => x.address === B);
        return b && b.reach > 0 && a && a.counters!.received! > now.counters!.received! ? s : null;
      }, 15_000);
      assert.deepEqual(s.sources.map((x) => x.address).sort(), [A, B].sort());
      const a = s.sources.find((x) => x.address === A)!;
      assert.ok(bits(a.reach) >= bits(before.reach), `reach ${before.reach} → ${a.reach}`);
      assert.equal(await watch.stop(), 0, "stayed synchronised through the reload");
    });

    await t.step("SIGHUP removes A: only B remains and sync is kept", async () => {
      const watch = watchSync(sport);
      const line = await reload(e, config({ eport, sport, sources: [pb] }));
      assert.match(line, /sources \+0 -1 ~0 =1/);
      const s = await until("B as system peer", async () => {
        const s = await fetchStatus(sport);
        return s.system.system_peer === B ? s : null;
      }, 15_000);
      assert.deepEqual(s.sources.map((x) => x.address), [B]);
      assert.equal(s.system.stratum, 9);
      assert.equal(await watch.stop(), 0, "stayed synchronised through the reload");
      const q = await queryServer("127.0.0.1", eport);
      assert.equal(q.stratum, 9);
    });

    await t.step("SIGHUP removes every source: engine stops, local_stratum serves", async () => {
      await reload(e, config({ eport, sport, sources: [], localStratum: 10 }));
      await e.waitForLog(/No sources left: peer engine stopped/, 5000);
      const s = await until("stratum 10", async () => {
        const s = await fetchStatus(sport);
        return s.system.stratum === 10 ? s : null;
      }, 5000);
      assert.deepEqual(s.sources, []);
      assert.equal((await queryServer("127.0.0.1", eport)).stratum, 10);
    });

    await t.step("SIGHUP adds a source again: the engine starts and takes over", async () => {
      await reload(e, config({ eport, sport, sources: [pa], localStratum: 10 }));
      await e.waitForLog(/starting the peer engine/, 5000);
      await until("following A again", async () => {
        const s = await fetchStatus(sport);
        return s.system.stratum === 9 && s.system.system_peer === A ? s : null;
      }, 20_000);
      // The local_stratum refresh timer must not overwrite the engine's state.
      assert.equal((await queryServer("127.0.0.1", eport)).stratum, 9);
    });
  } catch (e) {
    console.log((edge?.logs() ?? []).slice(-30).join("\n"));
    throw e;
  } finally {
    await edge?.stop();
    await chronyA.stop();
    await chronyB.stop();
  }
});

Deno.test({
  name: "[stats] dir: a running edge-time writes loopstats and peerstats in ntpd's columns",
  ignore: skip !== null,
  sanitizeResources: false,
  sanitizeOps: false,
}, async (t) => {
  const pa = await freeUdpPort();
  const chrony = await startChrony(pa);
  const eport = await freeUdpPort(), sport = freeTcpPort();
  const dir = await Deno.makeTempDir({ prefix: "edge-time-stats-" });
  let edge: EdgeTimeProcess | null = null;
  const read = async (kind: string) => {
    const names = [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => n.startsWith(kind));
    const out: { day: string; line: string }[] = [];
    for (const n of names) {
      for (const line of (await Deno.readTextFile(`${dir}/${n}`)).trim().split("\n")) {
        out.push({ day: n.slice(kind.length + 1), line });
      }
    }
    return { names, lines: out };
  };
  try {
    edge = await startEdgeTime(config({ eport, sport, sources: [pa], statsDir: dir }));
    await until("5 clock updates", async () => {
      const l = await read("loopstats").catch(() => null);
      return l && l.lines.length >= 5 ? l : null;
    }, 30_000);
    const today = [-1, 0].map((d) => statsTime(Date.now() / 1000 + d * 86400).day);
    await t.step("loopstats: MJD sec offset freq jitter wander timeconstant", async () => {
      const { names, lines } = await read("loopstats");
      assert.ok(names.every((n) => /^loopstats\.\d{8}$/.test(n) && today.includes(n.slice(10))));
      for (const { day, line } of lines) {
        // ntpd: "%lu %s %.9f %.3f %.9f %.6f %d", e.g. 50935 75440.031 0.000006019 13.778190 …
        assert.match(
          line,
          /^\d{5} \d{1,5}\.\d{3} -?\d+\.\d{9} -?\d+\.\d{3} \d+\.\d{9} \d+\.\d{6} \d+$/,
        );
        const f = line.split(" ");
        assert.equal(statsTime((Number(f[0]) - 40587) * 86400).day, day, "MJD matches the file");
        assert.ok(Number(f[1]) < 86400);
        assert.equal(Number(f[6]), Math.trunc(Number(f[6])));
      }
      // The shared kernel clock: after the first updates the offset to chronyd is tiny.
      const last = lines[lines.length - 1]!.line.split(" ");
      assert.ok(Math.abs(Number(last[2])) < 0.005, lines[lines.length - 1]!.line);
    });
    await t.step("peerstats: MJD sec address status offset delay dispersion jitter", async () => {
      const { names, lines } = await read("peerstats");
      assert.ok(names.every((n) => /^peerstats\.\d{8}$/.test(n) && today.includes(n.slice(10))));
      assert.ok(lines.length >= 5);
      for (const { day, line } of lines) {
        assert.match(
          line,
          /^\d{5} \d{1,5}\.\d{3} 127\.0\.0\.1 [0-9a-f]{1,4} -?\d+\.\d{9} \d+\.\d{9} \d+\.\d{9} \d+\.\d{9}$/,
        );
        assert.equal(statsTime((Number(line.split(" ")[0]) - 40587) * 86400).day, day);
      }
      // Status word: configured (0x80) and reachable (0x10) in the high byte, and
      // selection code 6 (system peer) once it is followed.
      const words = lines.map((l) => parseInt(l.line.split(" ")[3]!, 16));
      assert.ok(
        words.every((w) => (w & 0x9000) === 0x9000),
        words.map((w) => w.toString(16)).join(),
      );
      assert.ok(words.some((w) => ((w >> 8) & 7) === 6), "a line as system peer");
    });
  } finally {
    await edge?.stop();
    await chrony.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});

Deno.test("readDrift() reads ntpd and chrony driftfiles and explains a bad one in one line", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "edge-time-drift-" });
  try {
    const cases: [string, string | null, number | null, RegExp | null][] = [
      ["ntpd", "-12.345\n", -12.345, null],
      ["chrony (ppm skew)", "7.250000 0.041\n", 7.25, null],
      [
        "corrupt",
        "garbage\n",
        null,
        /drift: "garbage" is not a frequency in ppm; starting at 0 ppm$/,
      ],
      ["empty", "", null, /is not a frequency in ppm; starting at 0 ppm$/],
      ["out of range", "900\n", null, /"900" is not a frequency/],
      ["missing", null, null, /drift not found; starting at 0 ppm$/],
    ];
    for (const [what, text, ppm, warning] of cases) {
      await t.step(what, async () => {
        await Deno.remove(`${dir}/drift`).catch(() => {});
        if (text !== null) await Deno.writeTextFile(`${dir}/drift`, text);
        const r = await readDrift(`${dir}/drift`);
        assert.equal(r.ppm, ppm);
        if (warning) assert.match(r.warning ?? "", warning);
        else assert.equal(r.warning, null);
        assert.ok(!(r.warning ?? "").includes("\n"));
      });
    }
    await t.step('driftfile = "" is off: no warning', async () => {
      assert.deepEqual(await readDrift(""), { ppm: null, warning: null });
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "driftfile round trip with clock.control = false: written at stop, read at start",
  ignore: skip !== null,
  sanitizeResources: false,
  sanitizeOps: false,
}, async (t) => {
  const pa = await freeUdpPort();
  const chrony = await startChrony(pa);
  const dir = await Deno.makeTempDir({ prefix: "edge-time-drift-" });
  const driftfile = `${dir}/drift`;
  const eport = await freeUdpPort(), sport = freeTcpPort();
  let edge: EdgeTimeProcess | null = null;
  try {
    await Deno.writeTextFile(driftfile, "12.345\n");
    let atStop = 0;
    await t.step("read at start, then updated from chronyd and written at stop", async () => {
      edge = await startEdgeTime(config({ eport, sport, sources: [pa], driftfile }));
      await edge.waitForLog(/Frequency 12\.345 ppm from .*drift/, 5000);
      // chronyd runs on the same kernel clock: the true frequency correction is ~0.
      const s = await until("the frequency estimate to move off 12.345 ppm", async () => {
        const s = await fetchStatus(sport);
        return s.system.synchronised && Math.abs(s.system.frequency_ppm - 12.345) > 1 ? s : null;
      }, 30_000);
      atStop = s.system.frequency_ppm;
      assert.equal(await edge.stop(), 0);
      const text = await Deno.readTextFile(driftfile);
      assert.match(text, /^-?\d+\.\d{3}\n$/);
      const v = Number(text);
      assert.ok(Math.abs(v - 12.345) > 1, `written ${v}`);
      // (a few more updates may have come between the status read and the stop)
      assert.ok(Math.abs(v - atStop) < 2, `written ${v}, status said ${atStop}`);
      atStop = v;
    });
    await t.step("a restart starts from the written frequency", async () => {
      edge = await startEdgeTime(config({ eport, sport, sources: [pa], driftfile }));
      const line = await edge.waitForLog(/Frequency -?\d+\.\d{3} ppm from/, 5000);
      await until("the status page", () => fetchStatus(sport), 5000); // (signal handlers are set)
      const stopped = edge.stop();
      assert.ok(line.includes(`Frequency ${atStop.toFixed(3)} ppm`), line);
      assert.equal(await stopped, 0);
    });
  } finally {
    await (edge as EdgeTimeProcess | null)?.stop();
    await chrony.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});

Deno.test({
  name: "driftfile: rewritten periodically while running, not only at stop",
  ignore: skip !== null,
  sanitizeResources: false,
  sanitizeOps: false,
}, async () => {
  const pa = await freeUdpPort();
  const chrony = await startChrony(pa);
  const dir = await Deno.makeTempDir({ prefix: "edge-time-drift-" });
  const driftfile = `${dir}/drift`;
  const r = loadConfig(
    `[clock]\ncontrol = false\ndriftfile = "${driftfile}"\n${source(pa)}\n`,
    "test.toml",
  );
  if (!r.ok) throw new Error(r.errors.join("\n"));
  const drv = await EngineDriver.start({
    config: r.config,
    precision: -20,
    publish: () => {},
    driftSaveMs: 500,
  });
  try {
    const text = await until("the driftfile", async () => {
      const t = await Deno.readTextFile(driftfile).catch(() => null);
      return t && t.trim() !== "" ? t : null;
    }, 20_000);
    assert.match(text, /^-?\d+\.\d{3}\n$/);
    assert.ok(drv.engine.discipline.updates > 0);
  } finally {
    await drv.stop();
    await chrony.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});

Deno.test({
  name: "driftfile corrupt or missing: one warning line, start at 0 ppm",
  sanitizeResources: false,
  sanitizeOps: false,
}, async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "edge-time-drift-" });
  // A source that never answers: the engine runs, the frequency stays as read.
  const silent = await freeUdpPort();
  try {
    for (const [what, content] of [["corrupt", "12,5 ppm\n"], ["missing", null]] as const) {
      await t.step(what, async () => {
        const driftfile = `${dir}/${what}`;
        if (content !== null) await Deno.writeTextFile(driftfile, content);
        const eport = await freeUdpPort(), sport = freeTcpPort();
        const edge = await startEdgeTime(config({ eport, sport, sources: [silent], driftfile }));
        let s: StatusSnapshot;
        try {
          await edge.waitForLog(/Driftfile .* starting at 0 ppm/, 5000);
          s = await until("the status page", () => fetchStatus(sport), 5000);
        } catch (e) {
          await edge.stop();
          throw e;
        }
        const logs = edge.logs();
        assert.equal(await edge.stop(), 0);
        assert.equal(s.system.frequency_ppm, 0);
        const lines = logs.filter((l) => l.includes(driftfile));
        assert.equal(lines.length, 1, lines.join("\n"));
        assert.ok(!logs.some((l) => /^\s+at /.test(l)), "no stack trace");
      });
    }
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
