/**
 * The single binary: `deno task compile` (appliance/compile.ts). Where a
 * denort runtime can be had (DENORT_BIN, a cached zip, or the download
 * host) the built binary is run: version, check-config, one query served
 * by its Worker. Where none can be had, the build must say so in one line,
 * and this test prints that line. The permission flags compiled into the
 * binary are proven with `deno run` either way.
 */
import assert from "assert";
import {
  build,
  compileArgs,
  elfTarget,
  findRuntime,
  INCLUDES,
  PERMISSION_FLAGS,
  smokeTest,
  type Target,
} from "../../appliance/compile.ts";
import { freeUdpPort, localServerToml, startEdgeTime } from "../helpers/edge_time.ts";
import { queryServer } from "../../lib/io/query_client.ts";

const ROOT = new URL("../../", import.meta.url);

function elfHeader(machine: number): Uint8Array {
  const h = new Uint8Array(20);
  h.set([0x7f, 0x45, 0x4c, 0x46]);
  h[18] = machine & 255;
  h[19] = machine >> 8;
  return h;
}

Deno.test("compile: argv embeds the worker, the narrow permissions and the target", async (t) => {
  await t.step("elfTarget() reads the architecture from an ELF header", () => {
    assert.equal(elfTarget(elfHeader(0x3e)), "x86_64-unknown-linux-gnu");
    assert.equal(elfTarget(elfHeader(0xb7)), "aarch64-unknown-linux-gnu");
    assert.equal(elfTarget(new TextEncoder().encode("#!/bin/sh\n".padEnd(20))), null);
  });
  await t.step("compileArgs() includes the server worker and the permission flags", () => {
    const args = compileArgs("aarch64-unknown-linux-gnu", "/tmp/x");
    assert.ok(INCLUDES.includes("lib/io/server_worker.ts"));
    for (const f of INCLUDES) {
      assert.ok(args.includes(new URL(f, ROOT).pathname), `--include ${f}`);
    }
    for (const f of PERMISSION_FLAGS) assert.ok(args.includes(f), f);
    assert.ok(!args.includes("--allow-all") && !args.some((a) => a.startsWith("--allow-env")));
    assert.deepEqual(args.slice(args.indexOf("--target"), args.indexOf("--target") + 2), [
      "--target",
      "aarch64-unknown-linux-gnu",
    ]);
  });
  await t.step("DENORT_BIN is used only for the target its ELF header names", async () => {
    const dir = await Deno.makeTempDir({ prefix: "edge-time-compile-" });
    try {
      const arm = `${dir}/denort-arm`;
      await Deno.writeFile(arm, elfHeader(0xb7));
      const env = { DENORT_BIN: arm, DENO_DIR: dir };
      assert.deepEqual(await findRuntime("aarch64-unknown-linux-gnu", env), {
        kind: "denort_bin",
        path: arm,
      });
      assert.notEqual((await findRuntime("x86_64-unknown-linux-gnu", env)).kind, "denort_bin");
      const missing = await findRuntime("x86_64-unknown-linux-gnu", { DENORT_BIN: `${dir}/no` });
      assert.equal(missing.kind, "none");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
});

Deno.test("compile: the binary's permission flags are enough to serve (proven with deno run)", async () => {
  const port = await freeUdpPort();
  const dir = await Deno.makeTempDir({ prefix: "edge-time-perm-" });
  const config = `${dir}/edge.toml`;
  await Deno.writeTextFile(config, localServerToml(port, 0));
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      ...PERMISSION_FLAGS,
      "--config",
      new URL("deno.json", ROOT).pathname,
      new URL("main.ts", ROOT).pathname,
      "run",
      "--config",
      config,
    ],
    stdout: "null",
    stderr: "piped",
    stdin: "null",
  }).spawn();
  try {
    let r = null;
    for (let i = 0; i < 50 && !r; i++) {
      r = await queryServer("127.0.0.1", port, { timeoutMs: 200, attempts: 1 }).catch(() => null);
    }
    assert.ok(r, "answered a query with only the compiled-in permissions");
    assert.equal(r.stratum, 8);
  } finally {
    child.kill("SIGTERM");
    const { code } = await child.status;
    const err = new TextDecoder().decode(await new Response(child.stderr).arrayBuffer());
    await Deno.remove(dir, { recursive: true });
    assert.equal(code, 0, err);
    assert.doesNotMatch(err, /NotCapable|Requires .* access/, err);
  }
});

Deno.test("compile: deno task compile builds and runs the host binary, or says in one line why not", async (t) => {
  const target = Deno.build.target as Target;
  const dir = await Deno.makeTempDir({ prefix: "edge-time-dist-" });
  try {
    const r = await build(target, dir);
    assert.equal(r.line.split("\n").length, 1, "one line");
    if (!r.ok) {
      assert.match(r.line, /^compile: no denort runtime for .*: .*DENORT_BIN/);
      console.log(`  cannot build the binary here: ${r.line}`);
      await t.step({
        name: `run the compiled binary (${r.line})`,
        ignore: true,
        fn: () => {},
      });
      return;
    }
    const bin = r.output;
    await t.step("version", async () => assert.equal(await smokeTest(bin), null));
    await t.step("check-config on every example", async () => {
      for await (const e of Deno.readDir(new URL("appliance/examples/", ROOT))) {
        const path = new URL(`appliance/examples/${e.name}`, ROOT).pathname;
        const o = await new Deno.Command(bin, { args: ["check-config", path] }).output();
        assert.equal(o.code, 0, new TextDecoder().decode(o.stderr));
      }
    });
    await t.step("serves one query from its Worker", async () => {
      const port = await freeUdpPort();
      const et = await startEdgeTime(localServerToml(port, 0), { binary: bin });
      try {
        const q = await queryServer("127.0.0.1", port, { timeoutMs: 1000 });
        assert.equal(q.stratum, 8);
      } finally {
        assert.equal(await et.stop(), 0);
      }
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
