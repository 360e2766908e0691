/**
 * The seams the anycast helper declares and the I/O layer fulfils
 * (lib/io/command_runner.ts), so planning and applying run against fakes
 * in tests with no Deno.* call.
 */

/** What one command did. A command that could not start has code 127. */
export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs argv[0] with the rest as arguments; never throws. */
export interface CommandRunner {
  run(argv: readonly string[]): Promise<CommandResult>;
}

/** File operations of the anycast applier; errors are thrown as one-line messages. */
export interface FileStore {
  /** The file's text, or null when it does not exist. */
  read(path: string): Promise<string | null>;
  /** Writes `text` to a temp file beside `path` and renames it over `path`. */
  writeAtomic(path: string, text: string): Promise<void>;
  exists(path: string): Promise<boolean>;
}
