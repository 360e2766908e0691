/**
 * A strict parser of the Prometheus text exposition format (0.0.4) for
 * tests: every sample belongs to a family announced by exactly one HELP
 * and one TYPE line before it, families are contiguous, names and labels
 * match the grammar, label values use only the \\ \" \n escapes, values
 * are Go floats, no series repeats, and counters end in `_total`. Any
 * deviation throws with the line number.
 */

export interface PromSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface PromFamily {
  name: string;
  type: "counter" | "gauge" | "histogram" | "summary" | "untyped";
  help: string;
  samples: PromSample[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const FLOAT = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/;

function parseValue(s: string, where: string): number {
  if (s === "NaN") return NaN;
  if (s === "+Inf" || s === "Inf") return Infinity;
  if (s === "-Inf") return -Infinity;
  if (!FLOAT.test(s)) throw new Error(`${where}: bad value "${s}"`);
  return Number(s);
}

function parseLabels(s: string, where: string): Record<string, string> {
  const labels: Record<string, string> = {};
  let i = 0;
  while (i < s.length) {
    const eq = s.indexOf("=", i);
    if (eq < 0) throw new Error(`${where}: label without "="`);
    const name = s.slice(i, eq);
    if (!LABEL_NAME.test(name) || name.startsWith("__")) {
      throw new Error(`${where}: bad label name "${name}"`);
    }
    if (name in labels) throw new Error(`${where}: label "${name}" repeated`);
    if (s[eq + 1] !== '"') throw new Error(`${where}: label value must be quoted`);
    let j = eq + 2;
    let v = "";
    for (;;) {
      const c = s[j];
      if (c === undefined) throw new Error(`${where}: unterminated label value`);
      if (c === '"') break;
      if (c === "\n") throw new Error(`${where}: raw newline in label value`);
      if (c === "\\") {
        const e = s[j + 1];
        if (e === "\\") v += "\\";
        else if (e === '"') v += '"';
        else if (e === "n") v += "\n";
        else throw new Error(`${where}: bad escape "\\${e}"`);
        j += 2;
        continue;
      }
      v += c;
      j++;
    }
    labels[name] = v;
    i = j + 1;
    if (i < s.length) {
      if (s[i] !== ",") throw new Error(`${where}: expected "," between labels`);
      i++;
    }
  }
  return labels;
}

/** Parses `text` into families in order; throws on the first violation. */
export function parsePrometheusText(text: string): PromFamily[] {
  if (!text.endsWith("\n")) throw new Error("exposition must end with a newline");
  const families: PromFamily[] = [];
  const byName = new Map<string, PromFamily>();
  const pendingHelp = new Map<string, string>();
  const series = new Set<string>();
  let current: PromFamily | null = null;
  const lines = text.slice(0, -1).split("\n");
  lines.forEach((line, idx) => {
    const where = `line ${idx + 1}`;
    if (line === "") throw new Error(`${where}: empty line`);
    if (line.startsWith("#")) {
      const m = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
      if (!m) return; // a plain comment
      const [, kind, name, rest] = m as unknown as [string, string, string, string];
      if (!METRIC_NAME.test(name)) throw new Error(`${where}: bad metric name "${name}"`);
      if (kind === "HELP") {
        if (pendingHelp.has(name) || byName.get(name)?.help) {
          throw new Error(`${where}: second HELP for ${name}`);
        }
        if (/\\[^\\n]/.test(rest)) throw new Error(`${where}: bad escape in HELP`);
        if (rest === "") throw new Error(`${where}: empty HELP for ${name}`);
        pendingHelp.set(name, rest);
        return;
      }
      if (byName.has(name)) throw new Error(`${where}: second TYPE for ${name}`);
      if (!["counter", "gauge", "histogram", "summary", "untyped"].includes(rest)) {
        throw new Error(`${where}: bad type "${rest}"`);
      }
      const help = pendingHelp.get(name);
      if (help === undefined) throw new Error(`${where}: TYPE for ${name} without HELP before it`);
      pendingHelp.delete(name);
      current = { name, type: rest as PromFamily["type"], help, samples: [] };
      if (current.type === "counter" && !name.endsWith("_total")) {
        throw new Error(`${where}: counter ${name} does not end in _total`);
      }
      families.push(current);
      byName.set(name, current);
      return;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)( -?\d+)?$/.exec(line);
    if (!m) throw new Error(`${where}: malformed sample "${line}"`);
    const [, name, , labelText, valueText] = m as unknown as [
      string,
      string,
      string,
      string | undefined,
      string,
    ];
    const fam: PromFamily | null = current;
    if (fam === null || fam.name !== name) {
      throw new Error(`${where}: sample ${name} outside its family (no TYPE right before)`);
    }
    const labels = labelText === undefined || labelText === "" ? {} : parseLabels(labelText, where);
    const key = name + JSON.stringify(Object.entries(labels).sort());
    if (series.has(key)) throw new Error(`${where}: duplicate series ${key}`);
    series.add(key);
    fam.samples.push({ name, labels, value: parseValue(valueText, where) });
  });
  if (pendingHelp.size > 0) {
    throw new Error(`HELP without TYPE: ${[...pendingHelp.keys()].join(", ")}`);
  }
  return families;
}
