/**
 * Shapes that cross layers: what the server pool reports and the status
 * layer reads. A neutral module (it imports nothing), so the status layer
 * depends on a contract, not on the I/O drivers that fulfil it.
 */

/** The server's counters, summed over all workers (`/status` `server`). */
export interface ServerCounters {
  received: number;
  answered: number;
  kod_rate: number;
  kod_deny: number;
  rate_limited: number;
  denied: number;
  dropped: {
    malformed: number;
    mode: number;
    control: number;
    rate_limited: number;
    denied: number;
  };
  send_errors: number;
  /** Replies sent in interleaved mode (RFC 9769). */
  interleaved: number;
  /** NTS (RFC 8915): requests with NTS fields, NAKs sent, NAKs for a bad authenticator. */
  nts: { requests: number; naks: number; bad_authenticator: number };
}

/** What the status layer reads of the running server (lib/io/server_pool.ts fulfils it). */
export interface ServerView {
  readonly driver: string;
  /** Why this driver was chosen. */
  readonly driverReason: string;
  readonly workerCount: number;
  /** Bound addresses. */
  readonly bound: string[];
  counters(): ServerCounters;
}
