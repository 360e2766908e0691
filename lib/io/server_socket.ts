/**
 * The seam between the server core and a UDP driver. A driver receives
 * datagrams (in batches where it can), asks the `Responder` for each reply,
 * stamps the transmit time as late as it can and sends.
 */
import type { ClientAddress } from "../ntp/address.ts";

export interface Responder {
  /** Builds a reply into `out` at `outOffset`; returns its length or 0 (no reply). */
  respond(
    req: Uint8Array,
    length: number,
    client: ClientAddress,
    rxSec: number,
    rxNsec: number,
    out: Uint8Array,
    outOffset: number,
  ): number;
  /** Writes the transmit timestamp into a built reply, just before it is sent. */
  stamp(out: Uint8Array, outOffset: number, txSec: number, txNsec: number): void;
  /**
   * The post-stamp step: completes what covers `xmt` (an NTS
   * authenticator, a MAC) in the `length`-byte reply at `outOffset`. The
   * driver calls it after `stamp` and before the send, for replies
   * `respond` flagged `REPLY_SEAL`.
   */
  seal(out: Uint8Array, outOffset: number, length: number): void;
  /**
   * The reply at `out[outOffset..+48)` left at raw time `txSec`/`txNsec`
   * (the reading before the send, later the kernel's stamp): keep it for
   * the client's next, interleaved, request.
   */
  saveTx(out: Uint8Array, outOffset: number, txSec: number, txNsec: number): void;
  /** Counts a failed send. */
  sendFailed(): void;
  /**
   * The driver's send latency estimate changed (seconds): what it adds to
   * the reading before a send to make a basic reply's transmit timestamp.
   */
  sendLatency(seconds: number): void;
}

export interface ServerSocket {
  /** "ffi-recvmmsg" or "portable". */
  readonly driver: string;
  /** The bound address as text, e.g. "127.0.0.1:123". */
  readonly address: string;
  /** Serves until `close()`; resolves then. */
  serve(responder: Responder): Promise<void>;
  /**
   * Stops taking requests off the socket until `release()`: they wait in
   * the kernel's queue, with their receive timestamps. For moments when
   * serving would be disturbed (the start-up memory trim, lib/app.ts).
   */
  hold(): void;
  release(): void;
  close(): void;
}

/** A bind failure, reported as one line naming the address. */
export class BindError extends Error {
  constructor(readonly address: string, reason: string) {
    super(`Cannot listen on ${address}: ${reason}`);
  }
}

/** Turns an OS error into the short reason an operator needs. */
export function bindReason(code: string | undefined, fallback: string): string {
  switch (code) {
    case "EADDRINUSE":
      return "address already in use (is another NTP server running?)";
    case "EACCES":
    case "EPERM":
      return "permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)";
    case "EADDRNOTAVAIL":
      return "address not available on this host";
    case "EAFNOSUPPORT":
      return "address family not supported (IPv6 disabled?)";
    default:
      return fallback;
  }
}
