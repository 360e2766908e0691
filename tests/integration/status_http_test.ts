/**
 * The status server's HTTP layer: the pure request-head parser, and the
 * server's limits on a real loopback socket (connections, head size,
 * timeouts, pipelining, forbidden methods).
 */
import assert from "assert";
import { parseRequestHead } from "../../lib/status/http.ts";
import { startStatusServer } from "../../lib/status/server.ts";
import { freeTcpPort } from "../helpers/edge_time.ts";
import { fakeModel } from "../helpers/status_fixture.ts";

const enc = (s: string) => new TextEncoder().encode(s);

Deno.test("parseRequestHead() accepts GET heads and refuses what it must", async (t) => {
  await t.step("a plain GET", () => {
    const r = parseRequestHead(
      enc("GET /status?format=text HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n"),
    );
    assert.equal(r.kind, "ok");
    if (r.kind !== "ok") return;
    assert.equal(r.method, "GET");
    assert.equal(r.target, "/status?format=text");
    assert.deepEqual(r.headers, [["host", "x"], ["accept", "*/*"]]);
    assert.equal(r.keepAlive, true);
  });
  await t.step("incomplete until the blank line", () => {
    assert.equal(parseRequestHead(enc("GET / HTTP/1.1\r\nHost: x\r\n")).kind, "incomplete");
  });
  await t.step("pipelined requests are consumed one at a time", () => {
    const buf = enc("GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.0\r\n\r\n");
    const a = parseRequestHead(buf);
    assert.ok(a.kind === "ok" && a.target === "/a");
    const b = parseRequestHead(buf.subarray(a.consumed));
    assert.ok(b.kind === "ok" && b.target === "/b" && !b.keepAlive);
  });
  await t.step("Connection: close and HTTP/1.0 keep-alive", () => {
    const c = parseRequestHead(enc("GET / HTTP/1.1\r\nConnection: close\r\n\r\n"));
    assert.ok(c.kind === "ok" && !c.keepAlive);
    const k = parseRequestHead(enc("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
    assert.ok(k.kind === "ok" && k.keepAlive);
  });
  const refused: [string, string, number][] = [
    ["an oversized head", `GET / HTTP/1.1\r\nX: ${"a".repeat(9000)}\r\n\r\n`, 431],
    ["an oversized unfinished head", `GET / HTTP/1.1\r\nX: ${"a".repeat(9000)}`, 431],
    ["too many headers", `GET / HTTP/1.1\r\n${"X: 1\r\n".repeat(65)}\r\n`, 431],
    ["a long URL", `GET /${"a".repeat(2100)} HTTP/1.1\r\n\r\n`, 414],
    ["HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\n", 505],
    ["a malformed request line", "GET /\r\n\r\n", 400],
    ["an absolute URL", "GET http://x/ HTTP/1.1\r\n\r\n", 400],
    ["a folded header", "GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n", 400],
    ["a GET with a body", "GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", 413],
    ["a chunked GET", "GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 413],
    ["a POST with a body", "POST /status HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}", 405],
  ];
  for (const [what, text, status] of refused) {
    await t.step(`${what} is ${status}`, () => {
      const r = parseRequestHead(enc(text));
      assert.equal(r.kind, "error");
      assert.equal(r.kind === "error" && r.status, status);
    });
  }
});

async function exchange(port: number, request: string, readUntilClose = true): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(enc(request));
    let out = "";
    const buf = new Uint8Array(65536);
    const deadline = setTimeout(() => conn.close(), 3000);
    try {
      for (;;) {
        const n = await conn.read(buf);
        if (n === null) break;
        out += new TextDecoder().decode(buf.subarray(0, n));
        if (!readUntilClose && out.includes("\r\n\r\n")) break;
      }
    } catch { /* closed by the deadline */ }
    clearTimeout(deadline);
    return out;
  } finally {
    try {
      conn.close();
    } catch { /* closed */ }
  }
}

Deno.test("startStatusServer() serves the handler within its limits", async (t) => {
  const port = freeTcpPort();
  const { model } = fakeModel();
  const server = startStatusServer(`127.0.0.1:${port}`, model, {
    maxConnections: 2,
    requestTimeoutMs: 300,
  });
  try {
    await t.step("binds exactly status.listen", () => {
      assert.equal(server.address, `127.0.0.1:${port}`);
    });
    await t.step("fetch gets /status and /healthz", async () => {
      const r = await fetch(`http://127.0.0.1:${port}/status`);
      assert.equal(r.status, 200);
      assert.equal((await r.json()).version, "9.9.9-test");
      const h = await fetch(`http://127.0.0.1:${port}/healthz`);
      assert.equal(await h.text(), "ok\n");
    });
    await t.step("pipelined requests on one connection are answered in order", async () => {
      const out = await exchange(
        port,
        "GET /healthz HTTP/1.1\r\n\r\nGET /nope HTTP/1.1\r\n\r\nHEAD /metrics HTTP/1.1\r\nConnection: close\r\n\r\n",
      );
      const statuses = [...out.matchAll(/^HTTP\/1\.1 (\d+)/gm)].map((m) => m[1]);
      assert.deepEqual(statuses, ["200", "404", "200"]);
      assert.match(out, /connection: close\r\n\r\n$/);
    });
    await t.step("an oversized head is 431 and the connection closes", async () => {
      const out = await exchange(port, `GET / HTTP/1.1\r\nX: ${"a".repeat(10_000)}\r\n\r\n`);
      assert.match(out, /^HTTP\/1\.1 431 /);
    });
    await t.step("TRACE and CONNECT are 405", async () => {
      assert.match(await exchange(port, "TRACE / HTTP/1.1\r\n\r\n"), /^HTTP\/1\.1 405 /);
      assert.match(await exchange(port, "CONNECT /x HTTP/1.1\r\n\r\n"), /^HTTP\/1\.1 405 /);
    });
    await t.step(
      "a client that sends nothing is closed by the server, not before the request timeout",
      async () => {
        const started = performance.now();
        const conn = await Deno.connect({ hostname: "127.0.0.1", port });
        // Only a test that would hang stops at this deadline: the server closes much sooner.
        const deadline = setTimeout(() => conn.close(), 30_000);
        let out = "", eof = false;
        try {
          const buf = new Uint8Array(4096);
          for (let n = await conn.read(buf); n !== null; n = await conn.read(buf)) {
            out += new TextDecoder().decode(buf.subarray(0, n));
          }
          eof = true;
        } catch { /* closed by the deadline */ }
        clearTimeout(deadline);
        try {
          conn.close();
        } catch { /* closed */ }
        const took = performance.now() - started;
        assert.ok(eof, `the server did not close the connection (${took.toFixed(0)} ms)`);
        assert.equal(out, "");
        // A lower bound: load can only make the close later.
        assert.ok(took >= 250, `closed after ${took.toFixed(0)} ms, before the 300 ms timeout`);
      },
    );
    await t.step("connections beyond the limit get 503 and are closed", async () => {
      const idle = await Promise.all(
        [1, 2].map(() => Deno.connect({ hostname: "127.0.0.1", port })),
      );
      try {
        // Let the server accept both before the third arrives (polled; 10 s at most).
        for (let i = 0; i < 2000 && server.connections() < 2; i++) {
          await new Promise((r) => setTimeout(r, 5));
        }
        assert.equal(server.connections(), 2);
        assert.match(await exchange(port, "GET /healthz HTTP/1.1\r\n\r\n"), /^HTTP\/1\.1 503 /);
      } finally {
        for (const c of idle) c.close();
      }
      for (let i = 0; i < 2000 && server.connections() > 0; i++) {
        await new Promise((r) => setTimeout(r, 5));
      }
      assert.match(await exchange(port, "GET /healthz HTTP/1.0\r\n\r\n"), /^HTTP\/1\.1 200 /);
    });
  } finally {
    await server.close();
  }
});

Deno.test("startStatusServer() reuses a 200 answer for responseCacheMs only", async (t) => {
  // Each step has its own server: a cache time far longer than any pause
  // between two requests for "within", a short one and a longer wait for
  // "after", so that neither depends on how fast this machine is.
  const serve = async (
    responseCacheMs: number,
    check: (time: () => Promise<number>, state: { now: number }) => Promise<void>,
  ) => {
    const port = freeTcpPort();
    const { model, state } = fakeModel();
    const server = startStatusServer(`127.0.0.1:${port}`, model, { responseCacheMs });
    try {
      await check(
        async () => (await (await fetch(`http://127.0.0.1:${port}/status`)).json()).time,
        state,
      );
    } finally {
      await server.close();
    }
  };
  await t.step("a second request within the cache time gets the same answer", async () => {
    await serve(600_000, async (time, state) => {
      const first = await time();
      state.now += 1;
      assert.equal(await time(), first);
    });
  });
  await t.step("a request after the cache time gets a new one", async () => {
    await serve(200, async (time, state) => {
      const first = await time();
      state.now += 1;
      await new Promise((r) => setTimeout(r, 250));
      assert.equal(await time(), first + 1);
    });
  });
});
