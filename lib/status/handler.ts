/**
 * HTTP handlers for the status server, as a plain function from Request to
 * Response so they are tested without sockets. Read-only: only GET and
 * HEAD are allowed.
 */
import type { StatusSnapshot } from "./snapshot.ts";

export interface StatusSource {
  snapshot(): StatusSnapshot;
  /** Null when healthy, else the reason. */
  unhealthyReason(): string | null;
}

function json(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body, null, 2) + "\n", {
    status,
    headers: { "content-type": "application/json; charset=utf-8", "cache-control": "no-store" },
  });
}

function text(body: string, status = 200, extra: Record<string, string> = {}): Response {
  return new Response(body, {
    status,
    headers: { "content-type": "text/plain; charset=utf-8", ...extra },
  });
}

export function handleStatusRequest(req: Request, source: StatusSource): Response {
  if (req.method !== "GET" && req.method !== "HEAD") {
    return text("Method not allowed\n", 405, { allow: "GET, HEAD" });
  }
  const url = new URL(req.url);
  switch (url.pathname) {
    case "/status":
      return json(source.snapshot());
    case "/healthz": {
      const reason = source.unhealthyReason();
      return reason === null ? text("ok\n") : text(`unhealthy: ${reason}\n`, 503);
    }
    default:
      return text("Not found\n", 404);
  }
}
