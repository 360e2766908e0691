/**
 * What the engine reports to the status page, `edge-time peers` and
 * `edge-time tracking`. Units are in the field names (seconds unless
 * said otherwise), as in the `/status` JSON.
 */

/** Like `chronyc tracking`. */
export interface SystemReport {
  synchronised: boolean;
  leap: number;
  stratum: number;
  /** As ntpq shows it: dotted quad, or a 4-letter code such as "LOCL". */
  refid: string;
  /** Address of the system peer, "" when none. */
  system_peer: string;
  /** Unix seconds of the last clock update, 0 when never. */
  ref_time: number;
  /** Last measured offset of the system clock (served time minus true time estimate). */
  offset_s: number;
  frequency_ppm: number;
  skew_ppm: number;
  root_delay_s: number;
  root_dispersion_s: number;
  update_interval_s: number;
  /** True while serving as an orphan (no source below orphan_stratum). */
  orphan: boolean;
}

/** ntpq tally codes: `*` system peer, `+` candidate, `-` outlier, `x` falseticker, `#` backup, ` ` rejected. */
export type Tally = "*" | "+" | "-" | "x" | "#" | " ";

/** Like one row of `ntpq -p`. */
export interface SourceReport {
  tally: Tally;
  address: string;
  kind: "server" | "pool" | "peer" | "broadcast";
  refid: string;
  stratum: number;
  /** Seconds since the last valid sample, -1 when none. */
  when_s: number;
  /** log2 seconds. */
  poll: number;
  /** 8-bit reach register (print it in octal). */
  reach: number;
  delay_s: number;
  offset_s: number;
  jitter_s: number;
  /** "denied" after a KoD DENY/RSTR stopped the source. */
  state?: "active" | "denied";
  /** Whether the last sample came from an interleaved reply (RFC 9769, `xleave`). */
  interleaved?: boolean;
  /** Symmetric key ID of the source (absent: none). */
  key?: number;
  /** Whether the last packet accepted from the source had a valid MAC of `key`. */
  authenticated?: boolean;
  /** Broadcast server heard: the calibrated round-trip delay (absent until calibrated). */
  broadcast_delay_s?: number;
  /** Per-source event counters (bogus, replay, KoD …). */
  counters?: Record<string, number>;
  /** NTS (RFC 8915) sources: filled in by the driver, which holds the keys and cookies. */
  nts?: NtsSourceReport;
}

/** The NTS state of a source (lib/io/engine_driver.ts). */
export interface NtsSourceReport {
  /** "key-exchange" (in progress), "ready" (keys and cookies held), "failed" (last KE failed). */
  state: "idle" | "key-exchange" | "ready" | "failed";
  /** Cookies held (8 when every reply refills the jar). */
  cookies: number;
  /** Successful key exchanges so far. */
  key_exchanges: number;
  /** Replies that verified (authenticated). */
  authenticated: number;
  /** NTS NAKs received (each leads to a new key exchange). */
  naks: number;
  /** Replies dropped: no or wrong authenticator, unknown identifier. */
  rejected: number;
  /** Where NTP goes, as the KE named it ("" before the first KE); also the source's `address` then. */
  ntp_server: string;
  /** The NTS-KE server, `host:port` as configured (`address`'s host, `nts_port`): the source's identity. */
  ke_server: string;
  /** The last failure, "" when none. */
  error: string;
}

export interface EngineReport {
  system: SystemReport;
  sources: SourceReport[];
  counters?: EngineCounters;
}

/** Engine event counters: each kind of bad input is also logged once. */
export interface EngineCounters {
  /** Packets that could not be parsed. */
  malformed: number;
  /** Packets from an address that is no source of ours. */
  unknown_source: number;
  /** Replies with a wrong origin timestamp. */
  bogus: number;
  /** Duplicate or replayed packets. */
  replay: number;
  kod_rate: number;
  kod_deny: number;
  /** Offsets beyond panic_threshold_s, never applied. */
  panic: number;
  steps: number;
  /** Step-sized offsets waiting to persist. */
  spikes: number;
  clock_updates: number;
  /** Broadcast listeners: mode 5 packets admitted (authenticated, or `insecure`). */
  broadcast_received: number;
  /** Broadcast listeners: packets without a MAC where one is required (never used). */
  broadcast_unauthenticated: number;
  /** Broadcast listeners: packets with a failing MAC (unknown, untrusted or other key, bad digest). */
  broadcast_bad_mac: number;
  /** Broadcast listeners: packets that are not mode 5 (a mode 1 sent to the group, say). */
  broadcast_bad_mode: number;
  /** Broadcast servers not followed because `max_sources` were heard already. */
  broadcast_full: number;
}
