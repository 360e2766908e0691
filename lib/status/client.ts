/**
 * The client side of `edge-time peers` and `edge-time tracking`: fetches
 * `/status` from a running appliance. A thin driver (network I/O); the
 * formatting is in `text.ts`. Errors are one line naming the URL.
 */
import type { StatusSnapshot } from "./snapshot.ts";

/** Where `edge-time peers` and `tracking` look when no `--url` is given. */
export const DEFAULT_STATUS_URL = "http://127.0.0.1:8123";

/** The `/status` URL for a base URL such as `http://host:8123` (a path already ending in /status is kept). */
export function statusUrl(base: string): URL {
  let url: URL;
  try {
    url = new URL(base);
  } catch {
    throw new Error(`"${base}" is not a URL (expected e.g. ${DEFAULT_STATUS_URL})`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new Error(`"${base}": only http and https URLs are supported`);
  }
  if (!url.pathname.endsWith("/status")) url.pathname = url.pathname.replace(/\/*$/, "/status");
  url.search = "";
  return url;
}

/** Fetches and minimally checks the snapshot; throws a one-line Error on any failure. */
export async function fetchStatus(base: string, timeoutMs = 3000): Promise<StatusSnapshot> {
  const url = statusUrl(base);
  let res: Response;
  try {
    res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  } catch (e) {
    const why = e instanceof DOMException && e.name === "TimeoutError"
      ? `no answer within ${timeoutMs} ms`
      : e instanceof Error
      ? e.message.split("\n")[0]
      : String(e);
    throw new Error(`Cannot reach ${url}: ${why}`);
  }
  const body = await res.text().catch(() => "");
  if (!res.ok) throw new Error(`${url} answered ${res.status}: ${body.split("\n")[0]}`);
  let doc: unknown;
  try {
    doc = JSON.parse(body);
  } catch {
    throw new Error(`${url} did not answer JSON; is it an edge-time status server?`);
  }
  const d = doc as Partial<StatusSnapshot>;
  if (
    typeof d !== "object" || d === null || typeof d.system !== "object" || !Array.isArray(d.sources)
  ) {
    throw new Error(`${url} answered JSON without "system" and "sources"; is it edge-time?`);
  }
  return d as StatusSnapshot;
}
