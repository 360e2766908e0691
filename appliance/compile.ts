/**
 * `deno task compile`: builds the single binary `dist/edge-time-<target>`
 * for each target, with the default config embedded (it is a module,
 * lib/config/default_config.ts) and the server worker included.
 *
 * `deno compile` needs the `denort` runtime of the target. It reads
 * `DENORT_BIN` (a path to an unpacked denort) or a cached
 * `$DENO_DIR/dl/release/v<version>/denort-<target>.zip`, and otherwise
 * downloads it from Deno's release host. Where none can be had, this says
 * so in one line per target and exits 1, instead of deno's stack trace.
 *
 *   deno task compile                       both targets
 *   deno task compile --target x86_64-unknown-linux-gnu
 *   DENORT_BIN=/path/to/denort deno task compile
 *
 * DENORT_BIN is used for the target whose architecture its ELF header
 * names, so one runtime is never embedded into the other target's binary.
 */
import { parseArgs } from "node:util";

export const TARGETS = ["x86_64-unknown-linux-gnu", "aarch64-unknown-linux-gnu"] as const;
export type Target = typeof TARGETS[number];

/** Directories the appliance writes to; the same as the unit's writable paths. */
export const WRITE_PATHS = [
  "/var/lib/edge-time",
  "/var/log/edge-time",
  "/run/edge-time",
  "/etc/bird",
];

/**
 * The permission flags compiled into the binary. Why each (docs/guide/appliance.md says the same):
 * net: UDP 123, the status port, DNS and NTP to sources; read: the config file
 * given at run time and the drift file; write: only the appliance's own folders;
 * ffi: libc recvmmsg/sendmmsg and adjtimex; run: `ip`, `birdc` and `sysctl` (router hash policy) for anycast.
 * No env, no sys: nothing reads them.
 */
export const PERMISSION_FLAGS = [
  "--allow-net",
  "--allow-read",
  `--allow-write=${WRITE_PATHS.join(",")}`,
  "--allow-ffi",
  "--allow-run=ip,birdc,sysctl",
];

/** Modules only reached through `new Worker(new URL(...))` or dynamic import. */
export const INCLUDES = ["lib/io/server_worker.ts", "lib/io/udp_ffi.ts"];

const ROOT = new URL("../", import.meta.url);

/** The target an ELF file is built for, from its e_machine field; null if not ELF. */
export function elfTarget(header: Uint8Array): Target | null {
  if (header.length < 20 || header[0] !== 0x7f || header[1] !== 0x45) return null;
  const machine = header[18]! | (header[19]! << 8); // little-endian on both targets
  if (machine === 0x3e) return "x86_64-unknown-linux-gnu";
  if (machine === 0xb7) return "aarch64-unknown-linux-gnu";
  return null;
}

/** Where deno keeps downloaded runtimes. */
function denoDir(): string {
  const env = Deno.env.get("DENO_DIR");
  if (env) return env;
  const cache = Deno.env.get("XDG_CACHE_HOME") ?? `${Deno.env.get("HOME") ?? "/root"}/.cache`;
  return `${cache}/deno`;
}

export type Runtime =
  | { kind: "denort_bin"; path: string }
  | { kind: "cached"; path: string }
  | { kind: "download" }
  | { kind: "none"; reason: string };

/** Finds the denort runtime for `target`, without touching the network. */
export async function findRuntime(target: Target, env = Deno.env.toObject()): Promise<Runtime> {
  const bin = env.DENORT_BIN;
  if (bin) {
    let header: Uint8Array;
    try {
      const f = await Deno.open(bin);
      header = new Uint8Array(20);
      await f.read(header);
      f.close();
    } catch (e) {
      return { kind: "none", reason: `DENORT_BIN=${bin} cannot be read: ${(e as Error).message}` };
    }
    if (elfTarget(header) === target) return { kind: "denort_bin", path: bin };
  }
  const zip = `${denoDir()}/dl/release/v${Deno.version.deno}/denort-${target}.zip`;
  if (await Deno.stat(zip).then(() => true, () => false)) return { kind: "cached", path: zip };
  return { kind: "download" };
}

/** Output path of one target's binary. */
export function outputFor(target: Target, dir = new URL("dist/", ROOT).pathname): string {
  return `${dir.replace(/\/$/, "")}/edge-time-${target}`;
}

/** The `deno compile` argv for one target. */
export function compileArgs(target: Target, output: string): string[] {
  return [
    "compile",
    "--quiet",
    "--no-check",
    ...PERMISSION_FLAGS,
    ...INCLUDES.flatMap((f) => ["--include", new URL(f, ROOT).pathname]),
    "--config",
    new URL("deno.json", ROOT).pathname,
    "--target",
    target,
    "--output",
    output,
    new URL("main.ts", ROOT).pathname,
  ];
}

export interface BuildResult {
  target: Target;
  ok: boolean;
  /** The binary, when ok. */
  output: string;
  /** One line: what was built, or why not. */
  line: string;
}

const DOWNLOAD_FAILURE =
  /dns error|error sending request|failed to lookup|download|connect|timed out/i;

/** Builds one target. Never throws; the result's `line` says what happened. */
export async function build(target: Target, outDir?: string): Promise<BuildResult> {
  const output = outputFor(target, outDir);
  const runtime = await findRuntime(target);
  const noRuntime = (why: string): BuildResult => ({
    target,
    ok: false,
    output,
    line: `compile: no denort runtime for ${target}: ${why}`,
  });
  if (runtime.kind === "none") return noRuntime(runtime.reason);
  // A DENORT_BIN meant for the other architecture must not reach this build.
  const env = Deno.env.toObject();
  delete env.DENORT_BIN;
  if (runtime.kind === "denort_bin") env.DENORT_BIN = runtime.path;
  await Deno.mkdir(output.replace(/\/[^/]+$/, ""), { recursive: true });
  const r = await new Deno.Command(Deno.execPath(), {
    args: compileArgs(target, output),
    env,
    clearEnv: true,
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(180_000),
  }).output().catch((e) => ({ success: false, stderr: new TextEncoder().encode(String(e)) }));
  if (!r.success) {
    // deno-lint-ignore no-control-regex
    const text = new TextDecoder().decode(r.stderr).replace(/\u001b\[[0-9;]*m/g, "");
    if (runtime.kind === "download" && DOWNLOAD_FAILURE.test(text)) {
      return noRuntime("set DENORT_BIN (download host unreachable)");
    }
    const first = text.split("\n").find((l) => l.trim() !== "") ?? "no output";
    return { target, ok: false, output, line: `compile: ${target}: ${first.trim()}` };
  }
  const size = (await Deno.stat(output)).size;
  const via = runtime.kind === "denort_bin"
    ? `DENORT_BIN=${runtime.path}`
    : runtime.kind === "cached"
    ? runtime.path
    : "downloaded runtime";
  return {
    target,
    ok: true,
    output,
    line: `compile: ${output} (${(size / 2 ** 20).toFixed(1)} MiB, runtime ${via})`,
  };
}

/**
 * Runs a binary built for this host with `version`; null when it is the
 * edge-time CLI, else why not (e.g. DENORT_BIN pointed at the deno CLI, whose
 * binary starts a REPL instead of the embedded program).
 */
export async function smokeTest(output: string): Promise<string | null> {
  const r = await new Deno.Command(output, {
    args: ["version"],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(15_000),
  }).output().catch((e) => ({
    success: false,
    stdout: new Uint8Array(),
    stderr: new TextEncoder().encode(String(e)),
  }));
  const out = new TextDecoder().decode(r.stdout);
  if (r.success && /^edge-time \S+ \(deno /.test(out)) return null;
  // deno-lint-ignore no-control-regex
  const err = new TextDecoder().decode(r.stderr).replace(/\u001b\[[0-9;]*m/g, "");
  if (/unrecognized subcommand|REPL|exit using ctrl/.test(out + err)) {
    return `${output} is the deno CLI, not edge-time: DENORT_BIN must point to denort, not deno`;
  }
  const first = (out + err).split("\n").find((l) => l.trim() !== "") ?? "no output";
  return `${output} version failed: ${first.trim()}`;
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: { target: { type: "string", multiple: true }, out: { type: "string" } },
  });
  const targets = (values.target ?? [...TARGETS]) as string[];
  const bad = targets.find((t) => !TARGETS.includes(t as Target));
  if (bad) {
    console.error(`compile: unknown target ${bad}; known: ${TARGETS.join(", ")}`);
    Deno.exit(2);
  }
  let failed = 0;
  for (const t of targets as Target[]) {
    const r = await build(t, values.out);
    let line = r.line;
    if (r.ok && t === Deno.build.target) {
      const why = await smokeTest(r.output);
      if (why) {
        await Deno.remove(r.output).catch(() => {});
        line = `compile: ${why}`;
        r.ok = false;
      }
    }
    if (!r.ok) failed++;
    (r.ok ? console.log : console.error)(line);
  }
  Deno.exit(failed > 0 ? 1 : 0);
}
