/**
 * Loads TOML configuration text into a typed, validated `Config`.
 * Every problem is reported at once, one line each, as
 * `FILE:LINE: key: message`; nothing here throws to the caller.
 */
import { parse as parseToml } from "toml";
import { lineOf, locateKeys } from "./locate.ts";
import { camel, type Config, SCHEMA, type Spec } from "./schema.ts";
import { DEFAULT_CONFIG_TOML } from "./default_config.ts";

export type { Config, SourceConfig } from "./schema.ts";
export { DEFAULT_CONFIG_TOML };

export type LoadResult = { ok: true; config: Config } | { ok: false; errors: string[] };

interface Problem {
  path: string;
  message: string;
  /** Key whose line to show, when `path` itself may be absent from the file. */
  at?: string;
}

function describe(v: unknown): string {
  if (Array.isArray(v)) return "an array";
  if (v !== null && typeof v === "object") return "a table";
  if (typeof v === "string") return `"${v}"`;
  return String(v);
}

function validate(spec: Spec, value: unknown, path: string, problems: Problem[]): unknown {
  const fail = (message: string) => {
    problems.push({ path, message });
    return undefined;
  };
  switch (spec.type) {
    case "bool":
      if (value === undefined) return spec.default;
      return typeof value === "boolean"
        ? value
        : fail(`expected true or false, got ${describe(value)}`);
    case "int":
    case "number": {
      if (value === undefined) return spec.default;
      const n = typeof value === "bigint" ? Number(value) : value;
      if (typeof n !== "number" || Number.isNaN(n)) {
        return fail(`expected a number, got ${describe(value)}`);
      }
      if (spec.type === "int" && !Number.isInteger(n)) {
        return fail(`expected a whole number, got ${n}`);
      }
      if (n < spec.min || n > spec.max) return fail(`${n} is outside ${spec.min}..${spec.max}`);
      return n;
    }
    case "string":
    case "enum": {
      if (value === undefined) return spec.default;
      if (typeof value !== "string") return fail(`expected a string, got ${describe(value)}`);
      if (spec.type === "enum") {
        return spec.values.includes(value)
          ? value
          : fail(`"${value}" is not one of ${spec.values.map((v) => `"${v}"`).join(", ")}`);
      }
      const err = spec.check?.(value as never);
      return err ? fail(err) : value;
    }
    case "strings": {
      if (value === undefined) return [...spec.default];
      if (!Array.isArray(value)) {
        return fail(`expected an array of strings, got ${describe(value)}`);
      }
      if (spec.nonEmpty && value.length === 0) return fail("must not be empty");
      const out: string[] = [];
      value.forEach((item, i) => {
        if (typeof item !== "string") {
          problems.push({
            path: `${path}[${i}]`,
            message: `expected a string, got ${describe(item)}`,
          });
          return;
        }
        const err = spec.check?.(item as never);
        if (err) problems.push({ path, message: err });
        else out.push(item);
      });
      return out;
    }
    case "table": {
      if (value === undefined) value = {};
      if (value === null || typeof value !== "object" || Array.isArray(value)) {
        return fail(`expected a table, got ${describe(value)}`);
      }
      return validateFields(spec.fields, value as Record<string, unknown>, path, problems);
    }
    case "tables": {
      if (value === undefined) return [];
      if (!Array.isArray(value)) return fail(`expected [[${path}]] tables, got ${describe(value)}`);
      return value.map((entry, i) =>
        validate({ type: "table", fields: spec.fields }, entry, `${path}[${i}]`, problems)
      );
    }
  }
}

function validateFields(
  fields: Record<string, Spec>,
  table: Record<string, unknown>,
  path: string,
  problems: Problem[],
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const join = (k: string) => (path ? `${path}.${k}` : k);
  for (const key of Object.keys(table)) {
    if (!(key in fields)) {
      const known = Object.keys(fields).join(", ");
      problems.push({ path: join(key), message: `unknown key (known here: ${known})` });
    }
  }
  for (const [key, spec] of Object.entries(fields)) {
    out[camel(key)] = validate(spec, table[key], join(key), problems);
  }
  return out;
}

/** Checks that involve more than one key. */
function crossChecks(c: Config, problems: Problem[]): void {
  c.source.forEach((s, i) => {
    if (s.maxPoll < s.minPoll) {
      problems.push({
        path: `source[${i}].max_poll`,
        message: `${s.maxPoll} is below min_poll ${s.minPoll}`,
      });
    }
  });
  const a = c.anycast;
  if (a.mode === "node" && a.addresses.length === 0) {
    problems.push({
      path: "anycast.addresses",
      message: 'mode "node" needs at least one address',
      at: "anycast.mode",
    });
  }
  if (a.mode === "router") {
    if (a.router.vip === "") {
      problems.push({
        path: "anycast.router.vip",
        message: 'mode "router" needs a vip',
        at: "anycast.mode",
      });
    }
    if (a.router.nodes.length === 0) {
      problems.push({
        path: "anycast.router.nodes",
        message: 'mode "router" needs at least one node',
        at: "anycast.mode",
      });
    }
  }
}

/** Parses and validates config text; `file` names it in error lines. */
export function loadConfig(text: string, file: string): LoadResult {
  let doc: Record<string, unknown>;
  try {
    doc = parseToml(text) as Record<string, unknown>;
  } catch (e) {
    const err = e as { line?: number; message?: string };
    const msg = String(err.message ?? e).split("\n")[0]!.replace(/^Invalid TOML document: /, "");
    return { ok: false, errors: [`${file}:${err.line ?? 1}: invalid TOML: ${msg}`] };
  }
  const problems: Problem[] = [];
  const config = validateFields(SCHEMA, doc, "", problems) as unknown as Config;
  if (problems.length === 0) crossChecks(config, problems);
  if (problems.length > 0) {
    const lines = locateKeys(text);
    return {
      ok: false,
      errors: problems
        .map((p) => ({ line: lineOf(lines, p.at ?? p.path), p }))
        .sort((a, b) => a.line - b.line)
        .map(({ line, p }) => `${file}:${line}: ${p.path}: ${p.message}`),
    };
  }
  return { ok: true, config };
}

/** The embedded default configuration, validated. */
export function defaultConfig(): Config {
  const r = loadConfig(DEFAULT_CONFIG_TOML, "<embedded default>");
  if (!r.ok) throw new Error(`Embedded default config is invalid: ${r.errors.join("; ")}`);
  return r.config;
}
