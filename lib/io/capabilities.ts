/**
 * Linux capabilities of this process, read from /proc/self/status
 * (`CapEff`, a hex mask; capability numbers from linux/capability.h).
 */

/** CAP_SYS_TIME: set the clock (adjtimex with modes, clock_settime). */
export const CAP_SYS_TIME = 25;

/**
 * Whether capability `bit` is in this process's effective set; null when
 * that cannot be read (no /proc, no read permission, not Linux).
 */
export function hasCapability(bit: number, statusText?: string): boolean | null {
  let text = statusText;
  if (text === undefined) {
    try {
      text = Deno.readTextFileSync("/proc/self/status");
    } catch {
      return null;
    }
  }
  const hex = /^CapEff:\s*([0-9a-fA-F]+)\s*$/m.exec(text)?.[1];
  if (!hex) return null;
  return ((BigInt(`0x${hex}`) >> BigInt(bit)) & 1n) === 1n;
}
