/**
 * The WAN lab (tests/helpers/wan_lab.ts) carries NTP between its two
 * namespaces with the delay and loss it was given: a chronyd (`local
 * stratum 8`, -x) on the upstream side answers `edge-time query` from the
 * client side through the relay (or netem), at a round trip of at least
 * twice the one-way base delay, and not at all with loss 1.
 */
import assert from "assert";
import { chronyAvailable } from "../helpers/chrony.ts";
import { mainArgv } from "../helpers/edge_time.ts";
import {
  buildWanLab,
  checkImpairment,
  type ChronydProc,
  startChronydIn,
  type WanLab,
  wanLabUnavailable,
} from "../helpers/wan_lab.ts";
import { until } from "../helpers/wait.ts";

const skip = wanLabUnavailable() ?? chronyAvailable();
if (skip) console.log(`wan_lab_test: skipped: ${skip}`);

const BASE_MS = 20;

/** `edge-time query --json` from the client namespace; the parsed reply, or null on no reply. */
async function query(lab: WanLab): Promise<{ delay: number; stratum: number } | null> {
  const r = await lab.exec(lab.client, [
    ...mainArgv("query", "--json", "--timeout", "1000", `${lab.upAddr}:123`),
  ]);
  if (r.code !== 0) return null;
  return JSON.parse(r.stdout) as { delay: number; stratum: number };
}

Deno.test("checkImpairment() names the bad field in one line", () => {
  assert.throws(() => checkImpairment({ delayMs: -1 }), /^Error: wan_lab: delayMs must be in/);
  assert.throws(() => checkImpairment({ delayMs: 1, loss: 2 }), /loss must be in \[0, 1\]/);
  assert.deepEqual(checkImpairment({ delayMs: 1 }), {
    delayMs: 1,
    jitterMs: 0,
    loss: 0,
    queue: 1000,
  });
});

Deno.test({
  name: "NTP crosses the WAN lab with its delay, and not at all with loss 1",
  ignore: skip !== null,
  sanitizeResources: false,
  sanitizeOps: false,
}, async (t) => {
  const lab = await buildWanLab({ delayMs: BASE_MS, jitterMs: 2, loss: 0 });
  let chrony: ChronydProc | null = null;
  try {
    console.log(`wan lab ${lab.id}: ${lab.mode}`);
    chrony = await startChronydIn(lab.up, [
      "local stratum 8",
      "allow",
      `bindaddress ${lab.upAddr}`,
      "port 123",
    ]);
    const c = chrony;

    await t.step(
      "replies arrive through the link, after at least twice the base delay",
      async () => {
        const reply = await until("a reply from chronyd across the lab", () => query(lab), 60_000);
        assert.equal(reply.stratum, 8);
        assert.ok(reply.delay >= 2 * BASE_MS / 1000, `round trip ${reply.delay} s`);
        const stats = await lab.relayStats();
        if (stats) {
          assert.ok(
            stats.a_to_b.forwarded > 0 && stats.b_to_a.forwarded > 0,
            JSON.stringify(stats),
          );
        }
        // chronyd saw the client: its clients table lists the lab's client address.
        const clients = await c.chronyc("clients");
        assert.ok(clients.includes(lab.clientAddr), clients);
      },
    );

    await t.step("with loss 1 no reply arrives", async () => {
      await lab.setImpairment({ delayMs: BASE_MS, loss: 1 });
      for (let i = 0; i < 2; i++) {
        const reply = await query(lab); // 3 attempts, 1 s each
        assert.equal(reply, null, `a reply arrived: ${JSON.stringify(reply)}`);
      }
      const stats = await lab.relayStats();
      if (stats) {
        assert.ok(stats.b_to_a.lost >= 6, JSON.stringify(stats));
        assert.equal(stats.a_to_b.forwarded + stats.b_to_a.forwarded, 0, JSON.stringify(stats));
      }
    });
  } catch (e) {
    console.log(chrony?.logs() ?? "");
    throw e;
  } finally {
    await chrony?.stop();
    await lab.close();
  }
  const left = new TextDecoder().decode(
    (await new Deno.Command("ip", { args: ["netns", "list"], stdout: "piped" }).output()).stdout,
  );
  assert.ok(!left.includes(lab.id), `namespaces left behind: ${left}`);
});
