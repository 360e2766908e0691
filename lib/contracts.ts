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
  /**
   * The workers' send latency, µs (mean of their estimates; 0 until
   * measured): from the clock reading before a send to the kernel's
   * transmit stamp, added to basic replies' `xmt` (lib/io/reply_latency.ts).
   */
  send_latency_us: number;
  /** Replies sent in interleaved mode (RFC 9769). */
  interleaved: number;
  /** Requests with a valid MAC of a trusted key, answered with a MAC by that key. */
  authenticated: number;
  /** Requests answered with a crypto-NAK (unknown or untrusted key, bad MAC). */
  crypto_nak: number;
  /** Requests whose MAC did not match (counted in `crypto_nak` too). */
  bad_mac: number;
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

/**
 * The verdict on a packet's MAC (lib/auth/mac.ts `checkMac`): no MAC, a
 * crypto-NAK (key ID 0), a good MAC of a trusted key, or why not.
 * `dataLength` is the length the MAC covers (where it starts). Here
 * because the server core (lib/ntp) receives verdicts from lib/auth, which
 * builds on lib/ntp's packet walker.
 */
export type MacCheck =
  | { kind: "none" }
  | { kind: "ok"; keyId: number; dataLength: number }
  | { kind: "crypto-nak"; dataLength: number }
  | { kind: "unknown-key" | "untrusted" | "bad-mac"; keyId: number; dataLength: number };

/** The NTS-KE server's counters (`/status` `nts_ke`; lib/io/nts_ke_listener.ts keeps them). */
export interface NtsKeCounters {
  /** TCP connections accepted. */
  connections: number;
  /** Key exchanges completed with keys and cookies. */
  handshakes: number;
  /** Requests answered with an Error record (malformed, unknown critical record, internal). */
  recordErrors: number;
  /** Requests answered without keys: no NTPv4, or no AEAD in common. */
  refused: number;
  /** TLS handshakes that failed (version, ALPN, certificate, reset) or timed out. */
  tlsFailures: number;
  /** Cookies handed out. */
  cookies: number;
  /** Connections closed at once because `maxConnections` sessions were open. */
  busy: number;
  /** Connections closed at once: the client is not allowed (`server.allow`/`deny`). */
  denied: number;
}
