/**
 * `check-config`, `run` and a reload share one validation: whatever
 * check-config accepts, `run` starts and keeps serving after its sources'
 * first polls; whatever it rejects, `run` refuses with exit 2 and the same
 * lines, and a SIGHUP with it keeps the running config. The configs come
 * from the generator of config_checks_test.ts; a scripted upstream (a UDP
 * socket on 127.0.0.1) shows when the engine has polled.
 */
import assert from "assert";
import dgram from "node:dgram";
import { loadConfig } from "../../lib/config/mod.ts";
import { buildRequest } from "../../lib/ntp/query.ts";
import { Mode, parsePacket } from "../../lib/ntp/packet.ts";
import { freeTcpPort, freeUdpPort, mainArgv, startEdgeTime } from "../helpers/edge_time.ts";
import { genConfig, type GeneratedConfig, mulberry32 } from "../helpers/config_gen.ts";
import { until } from "../helpers/wait.ts";

/** A UDP socket on 127.0.0.1 that counts the requests it gets and never answers. */
async function silentUpstream(): Promise<{ port: number; requests: () => number; close(): void }> {
  const sock = dgram.createSocket("udp4");
  let n = 0;
  sock.on("message", () => n++);
  await new Promise<void>((r) => sock.bind(0, "127.0.0.1", () => r()));
  return { port: sock.address().port, requests: () => n, close: () => sock.close() };
}

/** One NTP exchange with `host:port`: true when a mode-4 reply to our request arrives. */
async function answers(host: string, port: number, timeoutMs = 500): Promise<boolean> {
  const sock = dgram.createSocket(host.includes(":") ? "udp6" : "udp4");
  try {
    const xmt = BigInt(Date.now()) << 20n;
    return await new Promise<boolean>((resolve) => {
      const t = setTimeout(() => resolve(false), timeoutMs);
      sock.on("message", (msg: Uint8Array) => {
        const p = parsePacket(new Uint8Array(msg));
        if (typeof p !== "string" && p.mode === Mode.server && p.org === xmt) {
          clearTimeout(t);
          resolve(true);
        }
      });
      sock.send(buildRequest(xmt), port, host);
    });
  } finally {
    sock.close();
  }
}

function splitListen(a: string): [string, number] {
  const m = /^\[?(.*?)\]?:(\d+)$/.exec(a)!;
  return [m[1]!, Number(m[2])];
}

async function cli(args: string[]): Promise<{ code: number; stderr: string; stdout: string }> {
  const [deno, ...argv] = mainArgv(...args) as [string, ...string[]];
  const out = await new Deno.Command(deno, {
    args: argv,
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(30_000),
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** Generated configs with fresh ports: `accepted` that loadConfig takes, `rejected` it refuses. */
async function generate(seed: number, accepted: number, rejected: number, upstream: number) {
  const rand = mulberry32(seed);
  const ok: GeneratedConfig[] = [];
  const bad: GeneratedConfig[] = [];
  while (ok.length < accepted || bad.length < rejected) {
    const ports = {
      listen: [await freeUdpPort(), await freeUdpPort(), await freeUdpPort()] as [
        number,
        number,
        number,
      ],
      status: freeTcpPort(),
      upstream,
    };
    const g = genConfig(rand, { ports });
    const r = loadConfig(g.text, "gen.toml");
    assert.equal(r.ok, g.expected.length === 0, g.text);
    if (r.ok && ok.length < accepted) ok.push(g);
    if (!r.ok && bad.length < rejected) bad.push(g);
  }
  return { ok, bad };
}

Deno.test({
  name: "property: every generated config check-config accepts runs and keeps serving",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async (t) => {
    const upstream = await silentUpstream();
    try {
      const { ok } = await generate(0xed6e12, 10, 0, upstream.port);
      for (const [i, g] of ok.entries()) {
        await t.step(`config ${i}`, async () => {
          const before = upstream.requests();
          const et = await startEdgeTime(g.text);
          try {
            const [host, port] = splitListen(g.listen[0]!);
            // The engine's first polls have gone out (to every source: the
            // scripted upstream is source[0]), and the server still answers.
            await until(
              "the engine's first polls",
              () => Promise.resolve(upstream.requests() >= before + 2 ? true : null),
              30_000,
            );
            await until(
              `an answer on ${g.listen[0]}`,
              async () => await answers(host, port) ? true : null,
              10_000,
            );
            for (const l of g.listen) {
              const [h, p] = splitListen(l);
              assert.ok(await answers(h, p, 2000), `no answer on ${l}\n${g.text}`);
            }
            assert.equal(et.child.pid > 0, true);
            const errors = et.logs().filter((l) =>
              /Uncaught|RangeError|TypeError|\n\s+at /.test(l)
            );
            assert.deepEqual(errors, [], g.text);
          } catch (e) {
            console.log(`config ${i}:\n${g.text}\nlog:\n${et.logs().join("\n")}`);
            throw e;
          } finally {
            assert.equal(await et.stop(), 0, `exit code of config ${i}\n${et.logs().join("\n")}`);
          }
        });
      }
    } finally {
      upstream.close();
    }
  },
});

Deno.test("property: every generated config check-config rejects, run refuses with the same lines", async (t) => {
  const { bad } = await generate(0xbad12, 0, 4, 123);
  for (const [i, g] of bad.entries()) {
    await t.step(`config ${i}`, async () => {
      const path = await Deno.makeTempFile({ prefix: "edge-gen-", suffix: ".toml" });
      try {
        await Deno.writeTextFile(path, g.text);
        const want = (loadConfig(g.text, path) as { errors: string[] }).errors;
        const check = await cli(["check-config", path]);
        const run = await cli(["run", "--config", path]);
        assert.equal(check.code, 2);
        assert.equal(run.code, 2, run.stderr);
        assert.deepEqual(check.stderr.trimEnd().split("\n"), want);
        assert.deepEqual(run.stderr.trimEnd().split("\n"), want);
      } finally {
        await Deno.remove(path);
      }
    });
  }
});

Deno.test("run refuses a bad or duplicate source with exit 2; a SIGHUP with one keeps the running config", async (t) => {
  const upstream = await silentUpstream();
  const port = await freeUdpPort();
  const base = `[server]
listen = ["127.0.0.1:${port}"]
workers = 1
[clock]
control = false
driftfile = ""
[status]
listen = ""

[[source]]
address = "127.0.0.1:${upstream.port}"
min_poll = 1
max_poll = 1
`;
  const badPort = base + '\n[[source]]\naddress = "127.0.0.1:99999"\n';
  const duplicate = base + `\n[[source]]\naddress = "127.0.0.1:0${upstream.port}"\nkind = "peer"\n`;
  // source[0].address is on line 11, source[1].address on line 16.
  try {
    await t.step("run at start", async () => {
      for (
        const [text, line] of [
          [badPort, "16: source[1].address: port 99999 is out of range"],
          [duplicate, "16: source[1].address: same source as source[0] (line 11)"],
        ]
      ) {
        const path = await Deno.makeTempFile({ prefix: "edge-run-", suffix: ".toml" });
        await Deno.writeTextFile(path, text!);
        const r = await cli(["run", "--config", path]);
        await Deno.remove(path);
        assert.equal(r.code, 2);
        assert.equal(r.stderr.trim(), `${path}:${line}`);
      }
    });
    await t.step("SIGHUP keeps the running config and serving goes on", async () => {
      const et = await startEdgeTime(base);
      try {
        await until(
          "the first poll",
          () => Promise.resolve(upstream.requests() > 0 ? true : null),
          30_000,
        );
        for (
          const [text, line] of [
            [badPort, `${et.configPath}:16: source[1].address: port 99999 is out of range`],
            [
              duplicate,
              `${et.configPath}:16: source[1].address: same source as source[0] (line 11)`,
            ],
          ]
        ) {
          const from = et.logs().length;
          await Deno.writeTextFile(et.configPath, text!);
          et.child.kill("SIGHUP");
          await until(
            "the reload's verdict",
            () =>
              Promise.resolve(
                et.logs().slice(from).some((l) => /Reload rejected/.test(l)) ? true : null,
              ),
            10_000,
          );
          const logged = et.logs().slice(from);
          assert.ok(logged.some((l) => l.endsWith(line!)), logged.join("\n"));
          assert.ok(await answers("127.0.0.1", port, 2000));
        }
        // Serving goes on past the polls the bad source would have made.
        const n = upstream.requests();
        await until(
          "more polls",
          () => Promise.resolve(upstream.requests() > n ? true : null),
          30_000,
        );
        assert.ok(await answers("127.0.0.1", port, 2000));
        assert.ok(!et.logs().some((l) => /Uncaught|RangeError/.test(l)), et.logs().join("\n"));
      } finally {
        assert.equal(await et.stop(), 0);
      }
    });
  } finally {
    upstream.close();
  }
});
