/**
 * The small, strict HTTP/1.1 request-head parser behind the status server.
 * The status server runs its own accept loop (rather than `Deno.serve`) so
 * it can bound what a client may cost: connections, head size, header
 * count, URL length and time to send a request. Pure: bytes in, a parsed
 * head or the status code to refuse with out.
 */

/** Limits a client must stay within; see `DEFAULT_LIMITS`. */
export interface HttpLimits {
  /** Request line plus headers, bytes. */
  maxHeadBytes: number;
  maxHeaders: number;
  maxUrlLength: number;
}

export const DEFAULT_HTTP_LIMITS: HttpLimits = {
  maxHeadBytes: 8192,
  maxHeaders: 64,
  maxUrlLength: 2048,
};

export interface RequestHead {
  method: string;
  target: string;
  version: "HTTP/1.0" | "HTTP/1.1";
  /** Lower-case names, in order. */
  headers: [string, string][];
  /** Whether the connection may carry another request after this one. */
  keepAlive: boolean;
  /** Bytes of the buffer the head used. */
  consumed: number;
}

export type HeadResult =
  | { kind: "incomplete" }
  | { kind: "error"; status: number; message: string }
  | ({ kind: "ok" } & RequestHead);

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// latin1 keeps every byte one char, so a stray non-ASCII byte cannot hide a delimiter.
const LATIN1 = new TextDecoder("latin1");
const LF = 10;
const CR = 13;

/** Index just past the blank line ending the head, or -1 when it has not arrived. */
function headEnd(buf: Uint8Array): number {
  for (let i = 0; i < buf.length; i++) {
    if (buf[i] !== LF) continue;
    if (buf[i + 1] === LF) return i + 2;
    if (buf[i + 1] === CR && buf[i + 2] === LF) return i + 3;
  }
  return -1;
}

const err = (status: number, message: string): HeadResult => ({ kind: "error", status, message });

/** Parses one request head from the start of `buf`. */
export function parseRequestHead(
  buf: Uint8Array,
  limits: HttpLimits = DEFAULT_HTTP_LIMITS,
): HeadResult {
  // Tolerate the empty lines some clients send between pipelined requests (RFC 9112 §2.2).
  let start = 0;
  while (start < buf.length && (buf[start] === CR || buf[start] === LF)) start++;
  const end = headEnd(buf.subarray(start));
  if (end < 0) {
    return buf.length - start > limits.maxHeadBytes
      ? err(431, `Request head exceeds ${limits.maxHeadBytes} bytes`)
      : { kind: "incomplete" };
  }
  if (end > limits.maxHeadBytes) {
    return err(431, `Request head exceeds ${limits.maxHeadBytes} bytes`);
  }
  const text = LATIN1.decode(buf.subarray(start, start + end));
  const lines = text.split(/\r?\n/);
  const requestLine = lines[0]!;
  const parts = requestLine.split(" ");
  if (parts.length !== 3) return err(400, "Malformed request line");
  const [method, target, version] = parts as [string, string, string];
  if (!TOKEN.test(method)) return err(400, "Malformed method");
  if (version !== "HTTP/1.1" && version !== "HTTP/1.0") {
    return err(505, `HTTP version ${version.slice(0, 16)} not supported`);
  }
  if (target.length > limits.maxUrlLength) {
    return err(414, `URL exceeds ${limits.maxUrlLength} bytes`);
  }
  if (!target.startsWith("/")) return err(400, "Request target must be a path");
  const headers: [string, string][] = [];
  for (const line of lines.slice(1)) {
    if (line === "") continue;
    if (line.startsWith(" ") || line.startsWith("\t")) return err(400, "Folded header line");
    const colon = line.indexOf(":");
    const name = colon > 0 ? line.slice(0, colon) : "";
    if (!TOKEN.test(name)) return err(400, "Malformed header line");
    headers.push([name.toLowerCase(), line.slice(colon + 1).trim()]);
    if (headers.length > limits.maxHeaders) {
      return err(431, `More than ${limits.maxHeaders} headers`);
    }
  }
  const get = (n: string) => headers.find(([k]) => k === n)?.[1];
  // No endpoint takes a body; refusing one keeps the parser simple and requests small.
  const length = get("content-length");
  if (get("transfer-encoding") !== undefined || (length !== undefined && length !== "0")) {
    // The connection is closed after the refusal, so the unread body cannot be taken for a request.
    return method === "GET" || method === "HEAD"
      ? err(413, "Request bodies are not accepted")
      : err(405, `Method ${method} not allowed; use GET`);
  }
  const connection = (get("connection") ?? "").toLowerCase();
  const keepAlive = version === "HTTP/1.1"
    ? !connection.includes("close")
    : connection.includes("keep-alive");
  return { kind: "ok", method, target, version, headers, keepAlive, consumed: start + end };
}

const REASONS: Record<number, string> = {
  200: "OK",
  400: "Bad Request",
  404: "Not Found",
  405: "Method Not Allowed",
  408: "Request Timeout",
  413: "Content Too Large",
  414: "URI Too Long",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  503: "Service Unavailable",
  505: "HTTP Version Not Supported",
};

/** Serialises a response head and body into one buffer (one write). */
export function serializeResponse(
  status: number,
  headers: Iterable<[string, string]>,
  body: Uint8Array,
  opts: { keepAlive: boolean; head: boolean },
): Uint8Array {
  let h = `HTTP/1.1 ${status} ${REASONS[status] ?? "Status"}\r\n`;
  let haveLength = false;
  for (const [k, v] of headers) {
    if (k === "connection" || k === "transfer-encoding") continue;
    // For HEAD the handler's content-length describes the GET body; else we count.
    if (k === "content-length") {
      if (!opts.head) continue;
      haveLength = true;
    }
    h += `${k}: ${v}\r\n`;
  }
  if (!opts.head || !haveLength) h += `content-length: ${body.length}\r\n`;
  h += `connection: ${opts.keepAlive ? "keep-alive" : "close"}\r\n\r\n`;
  const headBytes = new TextEncoder().encode(h);
  if (opts.head) return headBytes;
  const out = new Uint8Array(headBytes.length + body.length);
  out.set(headBytes);
  out.set(body, headBytes.length);
  return out;
}

/** A plain-text error response for a refused request, closing the connection. */
export function errorResponse(status: number, message: string): Uint8Array {
  return serializeResponse(
    status,
    [["content-type", "text/plain; charset=utf-8"]],
    new TextEncoder().encode(message + "\n"),
    { keepAlive: false, head: false },
  );
}
