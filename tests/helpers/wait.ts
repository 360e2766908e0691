/** Polling for integration tests: wait until a condition holds, with a deadline. */

/**
 * Calls `fn` every 250 ms until it returns a non-null value, which is
 * returned; throws after `timeoutMs`, naming `what` and the last error.
 */
export async function until<T>(
  what: string,
  fn: () => Promise<T | null>,
  timeoutMs: number,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: unknown = null;
  while (Date.now() < end) {
    try {
      const v = await fn();
      if (v !== null) return v;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`Timed out waiting for ${what}${last ? `: ${last}` : ""}`);
}
