/**
 * Implements the seams lib/anycast/seams.ts declares: `CommandRunner` (run
 * an argv, get the exit code, stdout and stderr; the only place the anycast
 * helper spawns `ip`, `birdc`, `sysctl`) and `FileStore` (read, atomic
 * write, exists), with fakes for tests.
 */

import type { CommandResult, CommandRunner, FileStore } from "../anycast/seams.ts";

export type { CommandResult, CommandRunner, FileStore };

export interface DenoRunnerOptions {
  /** Kill a command that runs longer than this; default 5000 ms. */
  timeoutMs?: number;
  /** Environment overrides (PATH in tests). */
  env?: Record<string, string>;
}

/** The real runner: `Deno.Command` with piped output and a timeout. */
export class DenoCommandRunner implements CommandRunner {
  readonly #timeoutMs: number;
  readonly #env: Record<string, string> | undefined;

  constructor(opts: DenoRunnerOptions = {}) {
    this.#timeoutMs = opts.timeoutMs ?? 5000;
    this.#env = opts.env;
  }

  async run(argv: readonly string[]): Promise<CommandResult> {
    const [cmd, ...args] = argv;
    if (cmd === undefined) return { code: 127, stdout: "", stderr: "empty command" };
    let child: Deno.ChildProcess;
    try {
      child = new Deno.Command(cmd, {
        args,
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
        ...(this.#env ? { env: this.#env } : {}),
      }).spawn();
    } catch (e) {
      const why = e instanceof Deno.errors.NotFound
        ? "not found in PATH"
        : e instanceof Deno.errors.PermissionDenied
        ? "permission denied"
        : e instanceof Error
        ? e.message
        : String(e);
      return { code: 127, stdout: "", stderr: `cannot run "${cmd}": ${why}` };
    }
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        child.kill("SIGKILL");
      } catch { /* already gone */ }
    }, this.#timeoutMs);
    try {
      const out = await child.output();
      const dec = new TextDecoder();
      const stderr = dec.decode(out.stderr);
      return {
        code: timedOut ? 124 : out.code,
        stdout: dec.decode(out.stdout),
        stderr: timedOut ? `"${cmd}" timed out after ${this.#timeoutMs} ms` : stderr,
      };
    } finally {
      clearTimeout(timer);
    }
  }
}

function reason(e: unknown): string {
  if (e instanceof Deno.errors.NotFound) return "no such file or directory";
  if (e instanceof Deno.errors.PermissionDenied) return "permission denied";
  return e instanceof Error ? e.message : String(e);
}

/** The real file store. */
export class DenoFileStore implements FileStore {
  async read(path: string): Promise<string | null> {
    try {
      return await Deno.readTextFile(path);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return null;
      throw new Error(`Cannot read ${path}: ${reason(e)}`);
    }
  }

  async writeAtomic(path: string, text: string): Promise<void> {
    // Same directory, so the rename is atomic and BIRD never reads half a file.
    const tmp = `${path}.tmp-${Deno.pid}`;
    try {
      await Deno.writeTextFile(tmp, text);
      await Deno.rename(tmp, path);
    } catch (e) {
      await Deno.remove(tmp).catch(() => {});
      throw new Error(`Cannot write ${path}: ${reason(e)}`);
    }
  }

  async exists(path: string): Promise<boolean> {
    if (path === "") return false;
    try {
      await Deno.stat(path);
      return true;
    } catch {
      return false;
    }
  }
}

/** A scripted reply for `FakeCommandRunner`: matched by the joined argv. */
export type FakeHandler = (argv: readonly string[]) => CommandResult | undefined;

/**
 * A runner for tests: records every argv and answers from `handler`
 * (exit 0 with no output when the handler returns undefined).
 */
export class FakeCommandRunner implements CommandRunner {
  readonly calls: string[][] = [];
  constructor(public handler: FakeHandler = () => undefined) {}

  run(argv: readonly string[]): Promise<CommandResult> {
    this.calls.push([...argv]);
    return Promise.resolve(this.handler(argv) ?? { code: 0, stdout: "", stderr: "" });
  }
}

/** An in-memory file store for tests; paths under `failDir` fail to write. */
export class FakeFileStore implements FileStore {
  readonly files = new Map<string, string>();
  writes = 0;
  constructor(public failDir: string | null = null) {}

  read(path: string): Promise<string | null> {
    return Promise.resolve(this.files.get(path) ?? null);
  }

  writeAtomic(path: string, text: string): Promise<void> {
    if (this.failDir !== null && path.startsWith(this.failDir)) {
      return Promise.reject(new Error(`Cannot write ${path}: no such file or directory`));
    }
    this.writes++;
    this.files.set(path, text);
    return Promise.resolve();
  }

  exists(path: string): Promise<boolean> {
    return Promise.resolve(this.files.has(path));
  }
}
