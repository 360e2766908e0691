/** The command line as an operator meets it: exit codes, one-line errors, help. */
import assert from "assert";
import dgram from "node:dgram";
import { freeTcpPort, freeUdpPort, mainArgv } from "../helpers/edge_time.ts";

async function cli(args: string[], timeoutMs = 20_000) {
  const [deno, ...argv] = mainArgv(...args) as [string, ...string[]];
  const out = await new Deno.Command(deno, {
    args: argv,
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(timeoutMs),
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

async function tempConfig(text: string): Promise<string> {
  const path = await Deno.makeTempFile({ prefix: "edge-cli-", suffix: ".toml" });
  await Deno.writeTextFile(path, text);
  return path;
}

function assertNoStackTrace(s: string) {
  assert.ok(!/\n\s+at /.test(s) && !s.includes("Stack backtrace"), `stack trace leaked:\n${s}`);
}

Deno.test("check-config prints every error as FILE:LINE: key: message and exits 2", async () => {
  const path = await tempConfig('[server]\nlisten = ["1.2.3.4"]\nworkers = "x"\n');
  const r = await cli(["check-config", path]);
  assert.equal(r.code, 2);
  assert.deepEqual(r.stderr.trim().split("\n"), [
    `${path}:2: server.listen: "1.2.3.4" needs a port`,
    `${path}:3: server.workers: expected a number, got "x"`,
  ]);
  await Deno.remove(path);
});

Deno.test("check-config accepts a valid file with exit 0", async () => {
  const path = await tempConfig('[server]\nlisten = ["127.0.0.1:123"]\n');
  const r = await cli(["check-config", path]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /: ok$/m);
  await Deno.remove(path);
});

Deno.test("a missing config file is one line", async () => {
  const r = await cli(["check-config", "/nonexistent/edge.toml"]);
  assert.equal(r.code, 2);
  assert.equal(r.stderr.trim(), "/nonexistent/edge.toml: cannot read: no such file");
});

Deno.test("run with a broken config exits 2 with FILE:LINE and no stack trace", async () => {
  const path = await tempConfig("[server\nlisten = 1\n");
  const r = await cli(["run", "--config", path]);
  assert.equal(r.code, 2);
  assert.match(r.stderr.trim(), new RegExp(`^${path.replaceAll(".", "\\.")}:1: invalid TOML: `));
  assert.equal(r.stderr.trim().split("\n").length, 1);
  await Deno.remove(path);
});

Deno.test("a port that cannot be bound is one line naming the address; exit 1", async () => {
  const port = await freeUdpPort();
  const holder = dgram.createSocket("udp4");
  await new Promise<void>((r) => holder.bind(port, "127.0.0.1", () => r()));
  try {
    const path = await tempConfig(
      `[server]\nlisten = ["127.0.0.1:${port}"]\nworkers = 1\n[status]\nlisten = "127.0.0.1:${freeTcpPort()}"\n`,
    );
    const r = await cli(["run", "--config", path]);
    assert.equal(r.code, 1);
    const errors = r.stderr.split("\n").filter((l) => l.includes("ERROR"));
    assert.ok(
      errors.some((l) => l.includes(`Cannot listen on 127.0.0.1:${port}: address already in use`)),
      r.stderr,
    );
    assertNoStackTrace(r.stderr);
    await Deno.remove(path);
  } finally {
    holder.close();
  }
});

Deno.test("query against a silent port fails with one line", async () => {
  const port = await freeUdpPort();
  const r = await cli(["query", "--timeout", "200", `127.0.0.1:${port}`]);
  assert.equal(r.code, 1);
  assert.equal(r.stderr.trim(), `edge-time: no reply from 127.0.0.1:${port} within 200 ms`);
});

Deno.test("usage errors are one line with exit 2", async (t) => {
  for (
    const args of [["frobnicate"], ["query"], ["check-config"], ["run", "--nope"], [
      "query",
      "host:99999",
    ]]
  ) {
    await t.step(args.join(" "), async () => {
      const r = await cli(args);
      assert.equal(r.code, 2);
      assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
      assert.match(r.stderr, /^edge-time: /);
    });
  }
});

Deno.test("every command has --help, and version names Deno and the target", async (t) => {
  for (const cmd of ["run", "check-config", "query", "version"]) {
    await t.step(cmd, async () => {
      const r = await cli([cmd, "--help"]);
      assert.equal(r.code, 0);
      assert.match(r.stdout, new RegExp(`Usage: edge-time ${cmd}`));
    });
  }
  const v = await cli(["version"]);
  assert.match(
    v.stdout,
    /^edge-time \d+\.\d+\.\d+ \(deno \d+\.\d+\.\d+, [a-z0-9_]+-[a-z]+-linux-gnu\)/,
  );
});
