/**
 * docs/guide/configuration.md is generated from the schema table
 * (scripts/gen_config_doc.ts, `deno task docs`): the committed page must be
 * exactly what the script renders now, so a key, default, range or
 * description changed in lib/config/schema.ts cannot leave the page behind.
 */
import assert from "assert";
import { CONFIG_DOC_PATH, renderConfigDoc } from "../../scripts/gen_config_doc.ts";
import { SCHEMA, type Spec } from "../../lib/config/schema.ts";

Deno.test("docs/guide/configuration.md is what `deno task docs` generates", async () => {
  const committed = await Deno.readTextFile(new URL(`../../${CONFIG_DOC_PATH}`, import.meta.url));
  const rendered = renderConfigDoc();
  if (committed !== rendered) {
    const a = committed.split("\n"), b = rendered.split("\n");
    const i = a.findIndex((line, n) => line !== b[n]);
    const at = i === -1 ? Math.min(a.length, b.length) : i;
    assert.fail(
      `${CONFIG_DOC_PATH} differs from the schema at line ${at + 1}; run 'deno task docs'\n` +
        `  committed: ${a[at] ?? "(end of file)"}\n  generated: ${b[at] ?? "(end of file)"}`,
    );
  }
});

Deno.test("every schema key has a one-line doc and appears in the page", () => {
  const page = renderConfigDoc();
  const walk = (fields: Record<string, Spec>, path: string) => {
    for (const [key, spec] of Object.entries(fields)) {
      const name = path ? `${path}.${key}` : key;
      assert.ok(spec.doc && spec.doc.trim() !== "", `${name} has no doc`);
      assert.ok(!spec.doc.includes("\n"), `${name}: doc is more than one line`);
      if (spec.type === "table" || spec.type === "tables") walk(spec.fields, name);
      else assert.ok(page.includes(`| \`${key}\``), `${name} is not in the page`);
    }
  };
  walk(SCHEMA, "");
});
