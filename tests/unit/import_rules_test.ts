/** The layering rule (scripts/check_imports.ts) holds for lib/ and catches what it must. */
import assert from "assert";
import { checkImports, layerOf } from "../../scripts/check_imports.ts";

async function libFiles(dir = "lib"): Promise<{ path: string; text: string }[]> {
  const out: { path: string; text: string }[] = [];
  for await (const e of Deno.readDir(dir)) {
    const p = `${dir}/${e.name}`;
    if (e.isDirectory) out.push(...await libFiles(p));
    else if (p.endsWith(".ts")) out.push({ path: p, text: await Deno.readTextFile(p) });
  }
  return out;
}

Deno.test("lib/ keeps the layering rule", async () => {
  assert.deepEqual(checkImports(await libFiles()), []);
});

Deno.test("checkImports() names each import a layer must not make", () => {
  const bad = checkImports([
    { path: "lib/engine/x.ts", text: 'import { a } from "../io/udp.ts";' },
    { path: "lib/status/y.ts", text: '\nimport type { P } from "../io/server_pool.ts";' },
    { path: "lib/ntp/z.ts", text: 'const m = await import("../engine/engine.ts");' },
    { path: "lib/anycast/runtime.ts", text: 'import { r } from "../io/command_runner.ts";' },
  ]);
  assert.deepEqual(bad.map((l) => l.split(" (")[0]), [
    "lib/engine/x.ts:1: imports lib/io",
    "lib/status/y.ts:2: imports lib/io",
    "lib/ntp/z.ts:1: imports lib/engine",
    "lib/anycast/runtime.ts:1: imports lib/io",
  ]);
});

Deno.test("checkImports() allows a layer's own files, its lower layers, contracts and roots", () => {
  assert.deepEqual(
    checkImports([
      {
        path: "lib/engine/x.ts",
        text: 'import { a } from "./select.ts";\nimport "../ntp/packet.ts";',
      },
      { path: "lib/status/y.ts", text: 'import type { C } from "../contracts.ts";' },
      { path: "lib/anycast/mod.ts", text: 'import { q } from "../io/query_client.ts";' },
      { path: "lib/io/z.ts", text: 'import { s } from "../status/mod.ts";' },
    ]),
    [],
  );
  assert.equal(layerOf("lib/contracts.ts"), "contracts");
  assert.equal(layerOf("lib/io/udp.ts"), "io");
});
