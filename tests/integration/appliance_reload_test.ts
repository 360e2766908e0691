/**
 * Live reload of a running edge-time: SIGHUP under load with a changed
 * allow list and a changed listen list loses no request (measured with
 * ntpload), a bad config is reported as FILE:LINE and changes nothing.
 */
import assert from "assert";
import { freeTcpPort, freeUdpPort, startEdgeTime } from "../helpers/edge_time.ts";
import { buildNtpload, runNtpload } from "../helpers/ntpload.ts";
import { queryServer } from "../../lib/io/query_client.ts";

const RATE = 5000;
const SECONDS = 4;

function toml(listen: string[], allow: string[], statusPort: number, extra = ""): string {
  return `# reload test
[server]
listen = ${JSON.stringify(listen)}
workers = 1
local_stratum = 8
allow = ${JSON.stringify(allow)}
rate_limit = { interval_s = 0, burst = 8, kod = false }

[clock]
control = false
driftfile = ""

[status]
listen = "127.0.0.1:${statusPort}"
${extra}`;
}

async function answers(port: number): Promise<boolean> {
  try {
    await queryServer("127.0.0.1", port, { timeoutMs: 300, attempts: 2 });
    return true;
  } catch {
    return false;
  }
}

/** Sends SIGHUP and waits for a log line matching `re` that comes after it. */
async function hup(et: Awaited<ReturnType<typeof startEdgeTime>>, re: RegExp): Promise<string> {
  const from = et.logs().length;
  et.child.kill("SIGHUP");
  for (let waited = 0; waited < 5000; waited += 20) {
    const hit = et.logs().slice(from).find((l) => re.test(l));
    if (hit) return hit;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`No log line matching ${re} after SIGHUP; log:\n${et.logs().join("\n")}`);
}

/** Runs ntpload at RATE for SECONDS and, half-way, rewrites the config and sends SIGHUP. */
async function reloadUnderLoad(
  et: Awaited<ReturnType<typeof startEdgeTime>>,
  port: number,
  next: string,
  done: RegExp,
) {
  const load = runNtpload("127.0.0.1", port, { rate: RATE, seconds: SECONDS, sockets: 16 });
  await new Promise((r) => setTimeout(r, (SECONDS * 1000) / 2));
  await Deno.writeTextFile(et.configPath, next);
  const line = await hup(et, done);
  const r = await load;
  const sent = Math.round(r.sent_per_s * SECONDS);
  console.log(
    `  ${line.replace(/^\S+ /, "")}\n  ntpload: sent ${sent}, answered/s ${r.answered_per_s}, ` +
      `loss ${r.loss}, unanswered ≈ ${Math.round(r.loss * sent)}`,
  );
  return r;
}

Deno.test("SIGHUP reload under load loses no request", async (t) => {
  await buildNtpload();
  const p = await freeUdpPort();
  let q = await freeUdpPort();
  while (q === p) q = await freeUdpPort();
  const s = freeTcpPort();
  const et = await startEdgeTime(toml([`127.0.0.1:${p}`], ["0.0.0.0/0"], s));
  try {
    await t.step("changed allow list: reconfigured in place, loss 0", async () => {
      const r = await reloadUnderLoad(
        et,
        p,
        toml([`127.0.0.1:${p}`], ["127.0.0.0/8", "10.0.0.0/8"], s),
        /Reloaded .*changed: server\.allow$/,
      );
      // Every request sent was answered (ntpload reports loss 1 when it sent
      // none); how many it sent per second is the machine's, not a behaviour.
      assert.equal(r.loss, 0);
    });

    await t.step(
      "changed listen list: old address keeps serving, new one added, loss 0",
      async () => {
        const r = await reloadUnderLoad(
          et,
          p,
          toml([`127.0.0.1:${p}`, `127.0.0.1:${q}`], ["127.0.0.0/8"], s),
          /Reloaded .*server\.listen.*rebinding server sockets/,
        );
        assert.equal(r.loss, 0);
        assert.ok(await answers(q), `new address 127.0.0.1:${q} answers`);
      },
    );

    await t.step("the new allow list is in force (127/8 removed: no answer)", async () => {
      await Deno.writeTextFile(et.configPath, toml([`127.0.0.1:${p}`], ["10.0.0.0/8"], s));
      await hup(et, /Reloaded .*server\.allow.*rebinding/);
      assert.equal(await answers(p), false);
      assert.equal(await answers(q), false, `removed address 127.0.0.1:${q} is closed`);
    });

    await t.step("bad config: FILE:LINE errors logged, old config keeps serving", async () => {
      await Deno.writeTextFile(et.configPath, toml([`127.0.0.1:${p}`], ["0.0.0.0/0"], s));
      await hup(et, /Reloaded .*server\.allow$/);
      assert.ok(await answers(p));
      const bad = toml([`127.0.0.1:${q}`], ["0.0.0.0/0"], s).replace(
        "workers = 1",
        'workers = "x"',
      );
      const badLine = bad.split("\n").findIndex((l) => l.startsWith("workers")) + 1;
      await Deno.writeTextFile(et.configPath, bad);
      const err = await hup(et, /Reload rejected/);
      const located = et.logs().find((l) =>
        l.includes(`${et.configPath}:${badLine}: server.workers`)
      );
      assert.ok(located, `a FILE:LINE error for line ${badLine}; log:\n${et.logs().join("\n")}`);
      console.log(`  ${located.replace(/^\S+ /, "")}\n  ${err.replace(/^\S+ /, "")}`);
      assert.ok(await answers(p), "old listen address still answers");
      assert.equal(await answers(q), false, "listen address of the rejected config not bound");
    });

    await t.step("broken TOML is rejected with FILE:LINE too", async () => {
      await Deno.writeTextFile(et.configPath, "[server\nlisten = 1\n");
      await hup(et, new RegExp(`${et.configPath}:1: invalid TOML`));
      assert.ok(await answers(p));
    });

    await t.step("status.listen change moves the status server", async () => {
      const s2 = freeTcpPort();
      await Deno.writeTextFile(et.configPath, toml([`127.0.0.1:${p}`], ["0.0.0.0/0"], s2));
      await hup(et, /Reloaded .*status\.listen/);
      const res = await fetch(`http://127.0.0.1:${s2}/status`);
      assert.equal(res.status, 200);
      await res.body?.cancel();
      await assert.rejects(fetch(`http://127.0.0.1:${s}/status`));
    });
  } finally {
    assert.equal(await et.stop(), 0);
  }
});
