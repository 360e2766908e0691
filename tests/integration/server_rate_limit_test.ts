/**
 * The rate limit is per client, not per server worker: a real edge-time
 * with the default `rate_limit` (2 s, burst 8, KoD on) gets 20 requests at
 * once from 20 source ports of one address and answers 8, sends one KoD
 * RATE and drops 11, with one worker and with two (SO_REUSEPORT spreads
 * the 20 ports over both; before the shared table each worker had its own
 * burst and two workers answered about 16). A reload keeps the table (and
 * so every client's state) unless `table_size` changes its size.
 */
import assert from "assert";
import dgram from "node:dgram";
import { freeTcpPort, freeUdpPort, startEdgeTime } from "../helpers/edge_time.ts";
import { fetchStatus } from "../helpers/status.ts";
import { until } from "../helpers/wait.ts";

const NTP_UNIX = 2_208_988_800;

function request(): Uint8Array {
  const b = new Uint8Array(48);
  b[0] = (4 << 3) | 3;
  const v = new DataView(b.buffer);
  v.setUint32(40, Math.floor(Date.now() / 1000) + NTP_UNIX);
  v.setUint32(44, Math.floor(Math.random() * 2 ** 32) >>> 0);
  return b;
}

interface Socket {
  sock: dgram.Socket;
  replies: Uint8Array[];
}

async function socket(): Promise<Socket> {
  const sock = dgram.createSocket("udp4");
  const replies: Uint8Array[] = [];
  sock.on("message", (m: Uint8Array) => replies.push(new Uint8Array(m)));
  await new Promise<void>((r) => sock.bind(0, "127.0.0.1", r));
  return { sock, replies };
}

const isKodRate = (r: Uint8Array) =>
  r[1] === 0 && new TextDecoder().decode(r.subarray(12, 16)) === "RATE";

for (const workers of [1, 2]) {
  Deno.test({
    name: `rate limit (default 2 s, burst 8) with workers = ${workers}: ` +
      "20 requests from 20 ports of one address get 8 answers, 1 KoD, 11 drops",
    ignore: Deno.build.os !== "linux",
    sanitizeResources: false,
    sanitizeOps: false,
  }, async () => {
    const port = await freeUdpPort(), statusPort = freeTcpPort();
    const et = await startEdgeTime(`[server]
listen = ["127.0.0.1:${port}"]
driver = "ffi"
workers = ${workers}
local_stratum = 8
[clock]
control = false
driftfile = ""
[status]
listen = "127.0.0.1:${statusPort}"
`);
    const socks = await Promise.all(Array.from({ length: 20 }, socket));
    try {
      const st = await until("status", () => fetchStatus(statusPort), 10_000);
      assert.equal(st.workers, workers);
      // All 20 at once, each from its own source port.
      const reqs = socks.map(() => request());
      socks.forEach((s, i) => s.sock.send(reqs[i]!, 0, 48, port, "127.0.0.1"));
      // Until the server has decided on all 20 and every reply it sent has come.
      const server = await until("the server's verdicts and their replies", async () => {
        const s = (await fetchStatus(statusPort)).server;
        const got = socks.reduce((n, k) => n + k.replies.length, 0);
        return s.received >= 20 && got === s.answered + s.kod_rate ? s : null;
      }, 10_000);
      const replies = socks.flatMap((s) => s.replies);
      assert.equal(replies.filter((r) => !isKodRate(r)).length, 8, "answered");
      assert.equal(replies.filter(isKodRate).length, 1, "KoD RATE");
      assert.equal(server.received, 20);
      assert.equal(server.answered, 8);
      assert.equal(server.kod_rate, 1);
      assert.equal(server.dropped.rate_limited, 11);
    } finally {
      await Promise.all(socks.map((s) => new Promise<void>((r) => s.sock.close(() => r()))));
      await et.stop();
    }
  });
}

Deno.test({
  name: "a reload keeps the clients' rate-limit state; a new table_size starts an empty table",
  ignore: Deno.build.os !== "linux",
  sanitizeResources: false,
  sanitizeOps: false,
}, async () => {
  const port = await freeUdpPort();
  const toml = (rateLimit: string) =>
    `[server]
listen = ["127.0.0.1:${port}"]
driver = "ffi"
workers = 1
local_stratum = 8
rate_limit = { ${rateLimit} }
[clock]
control = false
driftfile = ""
[status]
listen = ""
`;
  const et = await startEdgeTime(toml("interval_s = 600, burst = 2, table_size = 1024"));
  let probeHost = 10;
  /** One request from `host`; the first reply (polled with a generous deadline), or null. */
  const ask = async (host: string): Promise<Uint8Array | null> => {
    const s = dgram.createSocket("udp4");
    const replies: Uint8Array[] = [];
    s.on("message", (m: Uint8Array) => replies.push(new Uint8Array(m)));
    await new Promise<void>((r) => s.bind(0, host, r));
    try {
      s.send(request(), 0, 48, port, "127.0.0.1");
      for (const end = Date.now() + 10_000; replies.length === 0 && Date.now() < end;) {
        await new Promise((r) => setTimeout(r, 5));
      }
      return replies[0] ?? null;
    } finally {
      await new Promise<void>((r) => s.close(() => r()));
    }
  };
  /** Reloads `next` and waits until the worker answers with its poll (log2 interval_s). */
  const reload = async (next: string, poll: number) => {
    await Deno.writeTextFile(et.configPath, toml(next));
    const from = et.logs().length;
    et.child.kill("SIGHUP");
    await until(
      "the reload",
      () => Promise.resolve(et.logs().slice(from).find((l) => /Reloaded/.test(l)) ?? null),
      10_000,
    );
    // Each probe comes from a new address (a fresh client), so none is limited.
    await until(`replies with poll ${poll}`, async () => {
      const r = await ask(`127.0.0.${probeHost++}`);
      return r && r[2] === poll ? r : null;
    }, 20_000);
  };
  try {
    const client = await socket();
    try {
      for (const _ of [1, 2]) client.sock.send(request(), 0, 48, port, "127.0.0.1");
      await until(
        "the burst of 2 answered",
        () => Promise.resolve(client.replies.length === 2 || null),
        10_000,
      );
      assert.ok(client.replies.every((r) => !isKodRate(r)));
    } finally {
      await new Promise<void>((r) => client.sock.close(() => r()));
    }
    // interval_s 600 → 300 (poll 10 → 9), same table size: 127.0.0.1 is still over its rate.
    await reload("interval_s = 300, burst = 2, table_size = 1024", 9);
    const kept = await ask("127.0.0.1");
    assert.ok(kept && isKodRate(kept), "the client's state survived the reload: KoD RATE");
    // A new (here larger) table_size: one new, empty table, so 127.0.0.1 is a new client again.
    await reload("interval_s = 150, burst = 2, table_size = 65536", 8);
    const fresh = await ask("127.0.0.1");
    assert.ok(fresh && !isKodRate(fresh) && fresh[1] === 8, "answered from the new table");
  } finally {
    await et.stop();
  }
});
