/** Reads `/status` of a running edge-time, typed as the server builds it. */
import type { StatusSnapshot } from "../../lib/status/snapshot.ts";

export async function fetchStatus(port: number): Promise<StatusSnapshot> {
  const r = await fetch(`http://127.0.0.1:${port}/status`);
  return await r.json();
}
