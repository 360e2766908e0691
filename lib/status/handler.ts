/**
 * HTTP handlers for the status server, as a plain function from Request to
 * Response so they are tested without sockets. Read-only: only GET and
 * HEAD are allowed, every other method gets 405, unknown paths 404.
 *
 *   GET /                   the HTML page
 *   GET /status             JSON (`?format=text` for aligned text)
 *   GET /metrics            Prometheus text format
 *   GET /healthz            200 "ok", or 503 with the reason
 */
import type { ChartSeries } from "./history.ts";
import { METRICS_CONTENT_TYPE, renderMetrics } from "./metrics.ts";
import { renderPage } from "./page.ts";
import type { StatusSnapshot } from "./snapshot.ts";
import { formatStatusText } from "./text.ts";

/** Where the handler gets its data; the app builds both at request time. */
export interface StatusProvider {
  snapshot(): StatusSnapshot;
  /** Chart buckets of the history ring ending at `now` (Unix seconds). */
  series(now: number): ChartSeries;
}

const encoder = new TextEncoder();

function respond(
  req: Request,
  status: number,
  body: string,
  contentType: string,
  extra: Record<string, string> = {},
): Response {
  const bytes = encoder.encode(body);
  const headers = {
    "content-type": contentType,
    "content-length": String(bytes.length),
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
    ...extra,
  };
  return new Response(req.method === "HEAD" ? null : bytes, { status, headers });
}

const TEXT = "text/plain; charset=utf-8";

/** Answers one request from `provider`; never throws. */
export function handleStatusRequest(req: Request, provider: StatusProvider): Response {
  if (req.method !== "GET" && req.method !== "HEAD") {
    return respond(req, 405, `Method ${req.method} not allowed; use GET\n`, TEXT, {
      allow: "GET, HEAD",
    });
  }
  let url: URL;
  try {
    url = new URL(req.url);
  } catch {
    return respond(req, 400, "Bad request URL\n", TEXT);
  }
  try {
    switch (url.pathname) {
      case "/": {
        const snap = provider.snapshot();
        return respond(
          req,
          200,
          renderPage(snap, provider.series(snap.time)),
          "text/html; charset=utf-8",
          // The page has no scripts and loads nothing from elsewhere; say so to the browser.
          {
            "content-security-policy":
              "default-src 'none'; style-src 'unsafe-inline'; img-src data:",
          },
        );
      }
      case "/status": {
        const format = url.searchParams.get("format") ?? "json";
        if (format === "json") {
          return respond(
            req,
            200,
            JSON.stringify(provider.snapshot(), null, 2) + "\n",
            "application/json; charset=utf-8",
          );
        }
        if (format === "text") {
          return respond(req, 200, formatStatusText(provider.snapshot()), TEXT);
        }
        return respond(req, 400, `Unknown format "${format}"; use json or text\n`, TEXT);
      }
      case "/metrics":
        return respond(req, 200, renderMetrics(provider.snapshot()), METRICS_CONTENT_TYPE);
      case "/healthz": {
        const h = provider.snapshot().health;
        return h.healthy
          ? respond(req, 200, "ok\n", TEXT)
          : respond(req, 503, `unhealthy: ${h.reason}\n`, TEXT);
      }
      default:
        return respond(req, 404, `Not found: ${url.pathname}\n`, TEXT);
    }
  } catch (e) {
    // A bug in a renderer must not take the status server down; say what failed.
    return respond(
      req,
      500,
      `Cannot render ${url.pathname}: ${e instanceof Error ? e.message : String(e)}\n`,
      TEXT,
    );
  }
}
