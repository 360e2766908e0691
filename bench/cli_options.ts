/**
 * Command-line helpers the benchmarks share: a usage error (exit 2, one
 * line) and the checked parsing of options.
 */
import { parseArgs } from "cli";

/** A mistake in the command line: the bench prints its message and exits 2. */
export class UsageError extends Error {}

/** `parseArgs`, with any complaint of its own turned into a UsageError. */
export function checkedArgs<T>(parse: () => T): T {
  try {
    return parse();
  } catch (e) {
    throw new UsageError(e instanceof Error ? e.message : String(e));
  }
}

/** The number in option `--name`'s text `v`, within [lo, hi]; a UsageError otherwise. */
export function numberOption(name: string, v: string, lo: number, hi: number): number {
  const n = Number(v);
  if (v.trim() === "" || !(n >= lo && n <= hi)) {
    throw new UsageError(`--${name} must be a number in [${lo}, ${hi}], got "${v}"`);
  }
  return n;
}

export { parseArgs };

/**
 * Runs a bench's `main` and exits with its code: SIGINT/SIGTERM clean up
 * (namespaces, processes) and exit 130; a `UsageError` is one line and
 * exit 2, any other failure one line and exit 1, after `cleanUp`.
 */
export async function runBench(
  name: string,
  main: () => Promise<number>,
  cleanUp: () => Promise<void>,
): Promise<never> {
  const onSignal = async () => {
    console.error(`${name}: interrupted, cleaning up`);
    await cleanUp();
    Deno.exit(130);
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  try {
    Deno.exit(await main());
  } catch (e) {
    await cleanUp();
    console.error(`${name}: ${e instanceof Error ? e.message : e}`);
    Deno.exit(e instanceof UsageError ? 2 : 1);
  }
}
