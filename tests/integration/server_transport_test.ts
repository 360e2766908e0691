/**
 * Both UDP transports run the same black-box server tests: one table of
 * cases, sent over real sockets to a running edge-time with
 * `server.driver = "ffi"` and with `"portable"`.
 */
import assert from "assert";
import dgram from "node:dgram";
import { freeTcpPort, freeUdpPort, startEdgeTime } from "../helpers/edge_time.ts";

type Driver = "ffi" | "portable";

const NTP_UNIX = 2_208_988_800;

/** A request header: LI 0, version, mode, and a unique xmt. */
function request(version: number, mode: number, length = 48, xmtTag = Math.random()): Uint8Array {
  const b = new Uint8Array(Math.max(48, length));
  b[0] = (version << 3) | mode;
  b[2] = 6; // poll
  const v = new DataView(b.buffer);
  const now = Date.now() / 1000;
  v.setUint32(40, Math.floor(now) + NTP_UNIX);
  v.setUint32(44, Math.floor(xmtTag * 2 ** 32) >>> 0);
  return b.subarray(0, length);
}

interface Client {
  sock: dgram.Socket;
  replies: Uint8Array[];
  close(): Promise<void>;
}

async function client(family: 4 | 6, bindHost?: string): Promise<Client> {
  const sock = dgram.createSocket(family === 6 ? "udp6" : "udp4");
  const replies: Uint8Array[] = [];
  sock.on("message", (m: Uint8Array) => replies.push(new Uint8Array(m)));
  await new Promise<void>((r) => sock.bind(0, bindHost ?? (family === 6 ? "::1" : "127.0.0.1"), r));
  return {
    sock,
    replies,
    close: () => new Promise<void>((r) => sock.close(() => r())),
  };
}

function send(c: Client, bytes: Uint8Array, host: string, port: number): void {
  c.sock.send(bytes, 0, bytes.length, port, host);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * How long to wait for a reply that should come: a deadline for a server
 * that never answers, not a figure (polls return as soon as it is there).
 */
const REPLY_DEADLINE_MS = 10_000;

/** Sends `req` and waits up to `ms` for the reply whose org is req's xmt. */
async function exchange(
  req: Uint8Array,
  host: string,
  port: number,
  opts: { family?: 4 | 6; bind?: string; ms?: number } = {},
): Promise<Uint8Array | null> {
  const c = await client(opts.family ?? (host.includes(":") ? 6 : 4), opts.bind);
  try {
    send(c, req, host, port);
    const until = Date.now() + (opts.ms ?? REPLY_DEADLINE_MS);
    while (Date.now() < until) {
      const hit = c.replies.find((r) => r.length >= 32 && sameOrg(r, req));
      if (hit) return hit;
      await sleep(5);
    }
    return c.replies[0] ?? null;
  } finally {
    await c.close();
  }
}

function sameOrg(reply: Uint8Array, req: Uint8Array): boolean {
  for (let i = 0; i < 8; i++) if (reply[24 + i] !== req[40 + i]) return false;
  return true;
}

/**
 * Sends each request from its own socket and returns how many replies each
 * got. `expect = "reply"` waits until every socket has one. `expect =
 * "none"` then sends a valid marker request from each socket and waits for
 * the marker's reply: the server answers one socket's packets in order and
 * loopback keeps them in order, so any reply to the first request has come
 * by then (the marker's is not counted). Neither depends on how fast the
 * machine is.
 */
async function replyCounts(
  reqs: Uint8Array[],
  host: string,
  port: number,
  expect: "reply" | "none",
): Promise<number[]> {
  const clients = await Promise.all(reqs.map(() => client(host.includes(":") ? 6 : 4)));
  try {
    reqs.forEach((r, i) => send(clients[i]!, r, host, port));
    const markers = expect === "none"
      ? clients.map((c) => {
        const m = request(4, 3);
        send(c, m, host, port);
        return m;
      })
      : null;
    const isMarker = (i: number, r: Uint8Array) =>
      markers !== null && r.length >= 32 && sameOrg(r, markers[i]!);
    const done = () =>
      clients.every((c, i) =>
        markers ? c.replies.some((r) => isMarker(i, r)) : c.replies.length > 0
      );
    for (const end = Date.now() + REPLY_DEADLINE_MS; !done() && Date.now() < end;) await sleep(5);
    if (markers && !done()) throw new Error("a marker request got no reply");
    return clients.map((c, i) => c.replies.filter((r) => !isMarker(i, r)).length);
  } finally {
    await Promise.all(clients.map((c) => c.close()));
  }
}

function checkReply(reply: Uint8Array | null, req: Uint8Array, version: number, mode: number) {
  assert.ok(reply, "no reply");
  assert.equal(reply.length, 48, "reply is the 48-byte header");
  assert.equal((reply[0]! >> 3) & 7, version, "version copied");
  assert.equal(reply[0]! & 7, mode, "reply mode");
  assert.equal(reply[0]! >> 6, 0, "leap indicator: synchronised");
  assert.equal(reply[1], 8, "local_stratum 8");
  assert.ok(sameOrg(reply, req), "org = request xmt");
  const v = new DataView(reply.buffer, reply.byteOffset);
  const rec = v.getUint32(32) + v.getUint32(36) / 2 ** 32;
  const xmt = v.getUint32(40) + v.getUint32(44) / 2 ** 32;
  assert.ok(rec > 0 && rec <= xmt, `rec ${rec} <= xmt ${xmt}`);
  // Stamped between the request's send and now (Date.now() truncates to the ms):
  // the request's xmt carries the second it was sent in.
  const sent = new DataView(req.buffer, req.byteOffset).getUint32(40);
  const now = (Date.now() + 1) / 1000 + NTP_UNIX;
  assert.ok(rec >= sent, `rec ${rec} before the request was sent (${sent})`);
  assert.ok(xmt <= now, `xmt ${xmt} after the reply was read (${now})`);
}

async function status(port: number): Promise<Record<string, unknown> & { server: Counters }> {
  return await (await fetch(`http://127.0.0.1:${port}/status`)).json();
}

interface Counters {
  received: number;
  answered: number;
  kod_rate: number;
  kod_deny: number;
  dropped: Record<string, number>;
}

function config(driver: Driver, port: number, statusPort: number, extra: string): string {
  return `
[server]
listen = ["127.0.0.1:${port}", "[::1]:${port}"]
driver = "${driver}"
local_stratum = 8
${extra}
[clock]
control = false
[status]
listen = "127.0.0.1:${statusPort}"
`;
}

for (const driver of ["ffi", "portable"] as const) {
  Deno.test(`server transport "${driver}" answers clients like chronyd and refuses the rest`, async (t) => {
    const port = await freeUdpPort();
    const statusPort = freeTcpPort();
    const et = await startEdgeTime(config(
      driver,
      port,
      statusPort,
      `workers = 2
deny = ["127.0.0.2/32"]
deny_kod = true
rate_limit = { interval_s = 0 }`,
    ));
    const host = "127.0.0.1";
    try {
      for (const version of [4, 3, 2, 1]) {
        await t.step(`mode 3 v${version} is answered with v${version} mode 4`, async () => {
          const req = request(version, 3);
          checkReply(await exchange(req, host, port), req, version, 4);
        });
      }
      await t.step("a request with an extension field gets a 48-byte reply", async () => {
        const req = request(4, 3, 48 + 16);
        new DataView(req.buffer).setUint16(48, 0x0104); // field type
        new DataView(req.buffer).setUint16(50, 16); // field length
        checkReply(await exchange(req, host, port), req, 4, 4);
      });
      await t.step("a MAC of a key the server lacks gets a crypto-NAK (key ID 0)", async () => {
        const req = request(4, 3, 68);
        new DataView(req.buffer).setUint32(48, 7); // key ID 7, no key file
        const reply = await exchange(req, host, port);
        assert.equal(reply?.length, 52, "header and a 4-octet MAC");
        assert.equal(new DataView(reply!.buffer, reply!.byteOffset).getUint32(48), 0);
        checkReply(reply!.subarray(0, 48), req, 4, 4);
      });
      await t.step("NTPv1 mode 0 from a port other than 123 is answered with mode 4", async () => {
        const req = request(1, 0);
        checkReply(await exchange(req, host, port), req, 1, 4);
      });
      await t.step("modes 0 (v2), 2, 4, 5, 6, 7 and short packets are not answered", async () => {
        const reqs = [
          request(2, 0),
          request(4, 2),
          request(4, 4),
          request(4, 5),
          request(2, 6, 12),
          request(2, 6, 48),
          request(2, 7, 48),
          request(4, 3, 47),
          request(4, 3, 0),
          request(0, 3), // version 0
          request(5, 3), // version 5
        ];
        const counts = await replyCounts(reqs, host, port, "none");
        assert.deepEqual(counts, reqs.map(() => 0));
      });
      await t.step("a denied client gets KoD DENY with deny_kod = true", async () => {
        const req = request(4, 3);
        const reply = await exchange(req, "127.0.0.1", port, { bind: "127.0.0.2" });
        assert.ok(reply, "no KoD");
        assert.equal(reply[0]! >> 6, 3, "LI 3");
        assert.equal(reply[1], 0, "stratum 0");
        assert.equal(new TextDecoder().decode(reply.subarray(12, 16)), "DENY");
      });
      await t.step("IPv6 works", async () => {
        const req = request(4, 3);
        checkReply(await exchange(req, "::1", port), req, 4, 4);
      });
      await t.step(`/status names the driver`, async () => {
        const s = await status(statusPort);
        assert.equal(s.driver, driver === "ffi" ? "ffi-recvmmsg" : "portable");
        assert.ok(typeof s.driver_reason === "string" && s.driver_reason.length > 0);
      });
      await t.step(
        driver === "ffi"
          ? "workers = 2: both workers answer (64 source ports, all answered)"
          : "the portable driver runs one worker (it cannot share a port)",
        async () => {
          const s = await status(statusPort);
          assert.equal(s.workers, driver === "ffi" ? 2 : 1);
          // SO_REUSEPORT spreads source ports over the workers' sockets: a
          // worker that did not serve would leave about half unanswered.
          const reqs = Array.from({ length: 64 }, () => request(4, 3));
          const counts = await replyCounts(reqs, host, port, "reply");
          assert.deepEqual(counts, reqs.map(() => 1));
        },
      );
    } finally {
      await et.stop();
    }
  });

  Deno.test(`server transport "${driver}" rate-limits with KoD RATE and drops denied clients`, async (t) => {
    const port = await freeUdpPort();
    const statusPort = freeTcpPort();
    const et = await startEdgeTime(config(
      driver,
      port,
      statusPort,
      `workers = 1
deny = ["127.0.0.3/32"]
deny_kod = false
rate_limit = { interval_s = 4, burst = 1, kod = true }`,
    ));
    try {
      await t.step("a client over its rate gets KoD RATE", async () => {
        const c = await client(4);
        try {
          const reqs = Array.from({ length: 6 }, () => request(4, 3));
          for (const r of reqs) send(c, r, "127.0.0.1", port);
          // Until the server has decided on all six and what it sent has come.
          // (/status may come up a moment after the NTP server: retried too.)
          for (const end = Date.now() + REPLY_DEADLINE_MS; Date.now() < end; await sleep(5)) {
            const s = (await status(statusPort).catch(() => null))?.server;
            if (s && s.received >= 6 && c.replies.length === s.answered + s.kod_rate) break;
          }
          const kod = c.replies.filter((r) =>
            r[1] === 0 && new TextDecoder().decode(r.subarray(12, 16)) === "RATE"
          );
          assert.equal(kod.length, 1, "one KoD RATE per interval");
          assert.equal(kod[0]![0]! >> 6, 3, "LI 3");
          assert.ok(c.replies.length >= 2 && c.replies.length < 6, `${c.replies.length} replies`);
          assert.ok((kod[0]![2]! << 24 >> 24) >= 2, "poll >= log2(interval)");
        } finally {
          await c.close();
        }
      });
      await t.step("a denied client gets no answer with deny_kod = false", async () => {
        const reply = await exchange(request(4, 3), "127.0.0.1", port, {
          bind: "127.0.0.3",
          ms: 400,
        });
        assert.equal(reply, null);
      });
      await t.step("/status counts rate-limited and denied requests", async () => {
        // The denied request may still be on its way when the step above stops listening.
        let s = (await status(statusPort)).server;
        for (const end = Date.now() + REPLY_DEADLINE_MS; !s.dropped.denied && Date.now() < end;) {
          await sleep(5);
          s = (await status(statusPort)).server;
        }
        assert.equal(s.kod_rate, 1);
        assert.ok(s.dropped.rate_limited! >= 1);
        assert.equal(s.dropped.denied, 1);
      });
    } finally {
      await et.stop();
    }
  });

  Deno.test(`server transport "${driver}": a port in use is one line naming the address, exit 1`, async () => {
    const holder = dgram.createSocket("udp4");
    await new Promise<void>((r) => holder.bind(0, "127.0.0.1", r));
    const port = holder.address().port;
    try {
      const et = await startEdgeTime(
        `[server]\nlisten = ["127.0.0.1:${port}"]\ndriver = "${driver}"\nworkers = 2\n` +
          `[status]\nlisten = ""\n[clock]\ncontrol = false\n`,
        { readyPattern: /No listen address could be bound/ },
      );
      const code = (await et.child.status).code;
      await et.stop();
      const lines = et.logs().filter((l) => l.includes(`127.0.0.1:${port}`));
      assert.equal(lines.length, 1, `one line naming the address:\n${et.logs().join("\n")}`);
      assert.match(
        lines[0]!,
        new RegExp(`Cannot listen on 127\\.0\\.0\\.1:${port}: address already in use`),
      );
      assert.ok(!et.logs().some((l) => /^\s+at /.test(l)), "no stack trace");
      assert.equal(code, 1);
    } finally {
      await new Promise<void>((r) => holder.close(() => r()));
    }
  });
}

Deno.test('server transport "ffi": 0.0.0.0 and [::] share a port and reply from the address asked', async (t) => {
  const port = await freeUdpPort();
  const et = await startEdgeTime(
    `[server]\nlisten = ["0.0.0.0:${port}", "[::]:${port}"]\ndriver = "ffi"\nworkers = 1\n` +
      `local_stratum = 8\nrate_limit = { interval_s = 0 }\n[status]\nlisten = ""\n` +
      `[clock]\ncontrol = false\n`,
  );
  try {
    await t.step("both wildcard sockets bound (IPV6_V6ONLY)", () => {
      assert.ok(
        et.logs().some((l) => l.includes(`0.0.0.0:${port}, [::]:${port}`)),
        et.logs().join("\n"),
      );
    });
    for (const [dst, family] of [["127.0.0.5", 4], ["::1", 6]] as const) {
      await t.step(`a request to ${dst} is answered from ${dst} (IP_PKTINFO)`, async () => {
        const c = await client(family);
        try {
          const from: string[] = [];
          c.sock.on("message", (_m: Uint8Array, r: dgram.RemoteInfo) => from.push(r.address));
          const req = request(4, 3);
          send(c, req, dst, port);
          for (let i = 0; i < 1000 && c.replies.length === 0; i++) await sleep(10);
          checkReply(c.replies[0] ?? null, req, 4, 4);
          assert.deepEqual(from, [dst]);
        } finally {
          await c.close();
        }
      });
    }
  } finally {
    await et.stop();
  }
});
