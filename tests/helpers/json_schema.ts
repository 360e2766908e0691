/**
 * A small validator for the subset of JSON Schema (2020-12) that
 * lib/status/status.schema.json uses: type (one or a list), properties,
 * required, additionalProperties (false or a schema), items, enum, minimum, maximum,
 * minLength, maxItems and local $ref to #/$defs/…. Any other keyword is an
 * error, so the schema cannot silently rely on something unchecked.
 * Written here instead of adding ajv (and its dependencies) for one schema.
 */

// deno-lint-ignore no-explicit-any
type Schema = Record<string, any>;

const KNOWN = new Set([
  "$schema",
  "$id",
  "$defs",
  "$ref",
  "title",
  "description",
  "type",
  "properties",
  "required",
  "additionalProperties",
  "items",
  "enum",
  "minimum",
  "maximum",
  "minLength",
  "maxItems",
]);

function typeOf(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  if (typeof v === "number") return Number.isInteger(v) ? "integer" : "number";
  return typeof v;
}

function typeMatches(want: string, got: string): boolean {
  return want === got || (want === "number" && got === "integer");
}

/** Returns every violation as "path: message"; empty when `value` is valid. */
export function validate(
  schema: Schema,
  value: unknown,
  root: Schema = schema,
  path = "$",
): string[] {
  const errors: string[] = [];
  for (const k of Object.keys(schema)) {
    if (!KNOWN.has(k)) {
      errors.push(`${path}: schema keyword "${k}" is not supported by this validator`);
    }
  }
  if (schema.$ref !== undefined) {
    const m = /^#\/\$defs\/([A-Za-z0-9_]+)$/.exec(schema.$ref);
    const target = m ? root.$defs?.[m[1]!] : undefined;
    if (!target) return [...errors, `${path}: cannot resolve $ref ${schema.$ref}`];
    return [...errors, ...validate(target, value, root, path)];
  }
  const got = typeOf(value);
  if (schema.type !== undefined) {
    const types: string[] = Array.isArray(schema.type) ? schema.type : [schema.type];
    if (!types.some((t) => typeMatches(t, got))) {
      return [...errors, `${path}: expected ${types.join(" or ")}, got ${got}`];
    }
  }
  if (schema.enum !== undefined && !schema.enum.some((e: unknown) => e === value)) {
    errors.push(`${path}: ${JSON.stringify(value)} is not one of ${JSON.stringify(schema.enum)}`);
  }
  if (typeof value === "number") {
    if (!Number.isFinite(value)) errors.push(`${path}: ${value} is not a finite number`);
    if (schema.minimum !== undefined && value < schema.minimum) {
      errors.push(`${path}: ${value} is below the minimum ${schema.minimum}`);
    }
    if (schema.maximum !== undefined && value > schema.maximum) {
      errors.push(`${path}: ${value} is above the maximum ${schema.maximum}`);
    }
  }
  if (
    typeof value === "string" && schema.minLength !== undefined && value.length < schema.minLength
  ) {
    errors.push(`${path}: string shorter than ${schema.minLength}`);
  }
  if (Array.isArray(value)) {
    if (schema.maxItems !== undefined && value.length > schema.maxItems) {
      errors.push(`${path}: more than ${schema.maxItems} items`);
    }
    if (schema.items !== undefined) {
      value.forEach((v, i) => errors.push(...validate(schema.items, v, root, `${path}[${i}]`)));
    }
  }
  if (got === "object") {
    const obj = value as Record<string, unknown>;
    for (const r of schema.required ?? []) {
      if (!(r in obj)) errors.push(`${path}: missing required "${r}"`);
    }
    for (const [k, v] of Object.entries(obj)) {
      const sub = schema.properties?.[k];
      if (sub !== undefined) errors.push(...validate(sub, v, root, `${path}.${k}`));
      else if (schema.additionalProperties === false) {
        errors.push(`${path}: unexpected property "${k}"`);
      } else if (typeof schema.additionalProperties === "object") {
        errors.push(...validate(schema.additionalProperties, v, root, `${path}.${k}`));
      }
    }
  }
  return errors;
}
