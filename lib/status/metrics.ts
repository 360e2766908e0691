/**
 * `GET /metrics`: the snapshot in the Prometheus text exposition format
 * (version 0.0.4). Base units in names (`_seconds`, `_bytes`; `_ppm` for
 * frequencies, as chrony_exporter does), `_total` on counters, one HELP
 * and TYPE line per family. Pure: snapshot in, text out.
 */
import type { StatusSnapshot } from "./snapshot.ts";

/** Content type Prometheus expects for the text format. */
export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

type Labels = Record<string, string>;
type Sample = [Labels, number];

/** Escapes a label value: backslash, double quote and newline. */
export function escapeLabelValue(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}

class Exposition {
  #lines: string[] = [];

  family(
    name: string,
    type: "counter" | "gauge",
    help: string,
    samples: Sample[] | number,
  ): void {
    this.#lines.push(`# HELP ${name} ${help.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")}`);
    this.#lines.push(`# TYPE ${name} ${type}`);
    const list: Sample[] = typeof samples === "number" ? [[{}, samples]] : samples;
    for (const [labels, value] of list) {
      const l = Object.entries(labels).map(([k, v]) => `${k}="${escapeLabelValue(v)}"`).join(",");
      this.#lines.push(`${name}${l ? `{${l}}` : ""} ${formatValue(value)}`);
    }
  }

  toString(): string {
    return this.#lines.join("\n") + "\n";
  }
}

const b = (v: boolean) => (v ? 1 : 0);

/** Renders every metric family for one snapshot. */
export function renderMetrics(s: StatusSnapshot): string {
  const e = new Exposition();
  e.family("edge_time_build_info", "gauge", "Version of the running edge-time; always 1.", [
    [{ version: s.version, driver: s.driver }, 1],
  ]);
  e.family("edge_time_uptime_seconds", "gauge", "Seconds since edge-time started.", s.uptime_s);
  e.family(
    "edge_time_healthy",
    "gauge",
    "1 when /healthz answers 200, else 0.",
    b(s.health.healthy),
  );
  e.family(
    "process_resident_memory_bytes",
    "gauge",
    "Resident memory size in bytes.",
    s.process.resident_memory_bytes,
  );
  e.family(
    "process_start_time_seconds",
    "gauge",
    "Start time of the process since unix epoch in seconds.",
    s.time - s.uptime_s,
  );

  const c = s.server;
  e.family("ntp_server_workers", "gauge", "NTP server worker threads.", s.workers);
  e.family(
    "ntp_server_received_packets_total",
    "counter",
    "NTP packets received by the server workers.",
    c.received,
  );
  // Every received packet ends in exactly one outcome, so these sum to received.
  e.family(
    "ntp_server_processed_packets_total",
    "counter",
    "NTP packets received, by what the server did with them.",
    [
      [{ outcome: "answered" }, c.answered],
      [{ outcome: "kod_rate" }, c.kod_rate],
      [{ outcome: "kod_deny" }, c.kod_deny],
      [{ outcome: "dropped_malformed" }, c.dropped.malformed],
      [{ outcome: "dropped_mode" }, c.dropped.mode],
      [{ outcome: "dropped_control" }, c.dropped.control],
      [{ outcome: "dropped_rate_limited" }, c.dropped.rate_limited],
      [{ outcome: "dropped_denied" }, c.dropped.denied],
    ],
  );
  e.family(
    "ntp_server_send_errors_total",
    "counter",
    "Replies the kernel refused to send.",
    c.send_errors,
  );
  e.family(
    "ntp_server_send_latency_seconds",
    "gauge",
    "Send latency added to basic replies' transmit timestamps (mean over workers).",
    c.send_latency_us * 1e-6,
  );
  e.family(
    "ntp_server_interleaved_replies_total",
    "counter",
    "Answered requests replied to in interleaved mode (RFC 9769).",
    c.interleaved,
  );
  e.family(
    "ntp_server_auth_requests_total",
    "counter",
    "Requests with a symmetric-key MAC, by outcome: authenticated (answered with a MAC) or crypto_nak (unknown or untrusted key, or bad MAC).",
    [
      [{ outcome: "authenticated" }, c.authenticated],
      [{ outcome: "crypto_nak" }, c.crypto_nak],
    ],
  );
  e.family(
    "ntp_server_auth_bad_mac_total",
    "counter",
    "Requests whose MAC did not match its key (answered with a crypto-NAK, so also in crypto_nak).",
    c.bad_mac,
  );
  e.family(
    "ntp_server_nts_requests_total",
    "counter",
    "Requests with NTS extension fields (RFC 8915), by outcome: a NAK (cookie or authenticator failed) or not.",
    [
      [{ outcome: "nak" }, c.nts.naks],
      [{ outcome: "other" }, c.nts.requests - c.nts.naks],
    ],
  );
  e.family(
    "ntp_server_nts_bad_authenticator_total",
    "counter",
    "NTS requests whose cookie opened but whose authenticator did not verify.",
    c.nts.bad_authenticator,
  );

  const y = s.system;
  e.family(
    "ntp_system_synchronised",
    "gauge",
    "1 when the system clock is synchronised.",
    b(y.synchronised),
  );
  e.family("ntp_system_leap", "gauge", "Leap indicator (3 = unsynchronised).", y.leap);
  e.family("ntp_system_stratum", "gauge", "Stratum served (16 = unsynchronised).", y.stratum);
  e.family("ntp_system_orphan", "gauge", "1 while serving as an orphan.", b(y.orphan));
  e.family("ntp_system_info", "gauge", "Reference ID and system peer; always 1.", [
    [{ refid: y.refid, system_peer: y.system_peer }, 1],
  ]);
  e.family(
    "ntp_system_reference_timestamp_seconds",
    "gauge",
    "Unix time of the last clock update (0 = never).",
    y.ref_time,
  );
  e.family(
    "ntp_system_offset_seconds",
    "gauge",
    "Last measured offset of the system clock.",
    y.offset_s,
  );
  e.family(
    "ntp_system_jitter_seconds",
    "gauge",
    "RMS of successive clock-update offsets.",
    y.jitter_s,
  );
  e.family(
    "ntp_system_frequency_ppm",
    "gauge",
    "Frequency correction of the clock, ppm (positive = fast).",
    y.frequency_ppm,
  );
  e.family(
    "ntp_system_skew_ppm",
    "gauge",
    "Estimated error bound of the frequency, ppm.",
    y.skew_ppm,
  );
  e.family(
    "ntp_system_root_delay_seconds",
    "gauge",
    "Round-trip delay to the primary reference.",
    y.root_delay_s,
  );
  e.family(
    "ntp_system_root_dispersion_seconds",
    "gauge",
    "Dispersion to the primary reference.",
    y.root_dispersion_s,
  );
  e.family(
    "ntp_system_update_interval_seconds",
    "gauge",
    "Seconds between the last two clock updates.",
    y.update_interval_s,
  );

  const src = (f: (r: StatusSnapshot["sources"][number]) => number): Sample[] =>
    s.sources.map((r) => [{ address: r.address }, f(r)]);
  e.family(
    "ntp_source_info",
    "gauge",
    "One per source with its kind, refid and tally code; always 1.",
    s.sources.map((r) => [
      { address: r.address, kind: r.kind, refid: r.refid, tally: r.tally.trim() },
      1,
    ]),
  );
  e.family(
    "ntp_source_selected",
    "gauge",
    "1 for the system peer (tally *), else 0.",
    src((r) => b(r.tally === "*")),
  );
  e.family("ntp_source_stratum", "gauge", "Stratum of the source.", src((r) => r.stratum));
  e.family(
    "ntp_source_reach",
    "gauge",
    "Reach register (8 bits, last poll in bit 0).",
    src((r) => r.reach),
  );
  e.family("ntp_source_poll_seconds", "gauge", "Poll interval.", src((r) => 2 ** r.poll));
  e.family(
    "ntp_source_last_sample_age_seconds",
    "gauge",
    "Seconds since the last valid sample (-1 = none).",
    src((r) => r.when_s),
  );
  e.family("ntp_source_delay_seconds", "gauge", "Round-trip delay.", src((r) => r.delay_s));
  e.family("ntp_source_offset_seconds", "gauge", "Offset of the source.", src((r) => r.offset_s));
  e.family("ntp_source_jitter_seconds", "gauge", "Jitter of the source.", src((r) => r.jitter_s));
  const keyed = s.sources.filter((r) => r.key !== undefined);
  if (keyed.length > 0) {
    e.family(
      "ntp_source_authenticated",
      "gauge",
      "Sources with a symmetric key: 1 when the last packet accepted had a valid MAC of it.",
      keyed.map((r) => [{ address: r.address, key: String(r.key) }, b(r.authenticated === true)]),
    );
  }

  if (s.engine_counters) {
    e.family(
      "ntp_engine_events_total",
      "counter",
      "Engine events by kind (bad input, KoD, steps, clock updates).",
      Object.entries(s.engine_counters).map(([event, v]) => [{ event }, v]),
    );
  }
  const perSource = s.sources.flatMap((r) =>
    Object.entries(r.counters ?? {}).map(([event, v]): Sample => [{ address: r.address, event }, v])
  );
  if (perSource.length > 0) {
    e.family("ntp_source_events_total", "counter", "Per-source engine events by kind.", perSource);
  }

  const bc = s.broadcast ?? [];
  if (bc.length > 0) {
    e.family(
      "ntp_broadcast_sent_total",
      "counter",
      "Mode 5 packets sent, per [[broadcast]] destination.",
      bc.map((d): Sample => [{ address: d.address }, d.sent]),
    );
    e.family(
      "ntp_broadcast_unsynchronised_total",
      "counter",
      "Broadcast intervals skipped because the node was not synchronised.",
      bc.map((d): Sample => [{ address: d.address }, d.unsynchronised]),
    );
    e.family(
      "ntp_broadcast_up",
      "gauge",
      "1 when the destination can be served (its socket and key are in order).",
      bc.map((d): Sample => [{ address: d.address }, d.error === "" ? 1 : 0]),
    );
  }

  const k = s.nts_ke;
  if (k) {
    const ke = (name: string, help: string, v: number) =>
      e.family(`nts_ke_${name}_total`, "counter", help, v);
    ke("connections", "NTS-KE TCP connections accepted.", k.connections);
    ke("handshakes", "NTS-KE key exchanges completed with keys and cookies.", k.handshakes);
    ke(
      "record_errors",
      "NTS-KE requests answered with an Error record (bad request, unknown critical record, internal).",
      k.record_errors,
    );
    ke(
      "refused",
      "NTS-KE requests answered without keys (no NTPv4, no AEAD in common).",
      k.refused,
    );
    ke(
      "tls_failures",
      "NTS-KE TLS handshakes that failed (version, ALPN, certificate) or timed out.",
      k.tls_failures,
    );
    ke("cookies", "NTS cookies handed out by the NTS-KE server.", k.cookies);
    ke("busy", "NTS-KE connections closed at once: too many sessions open.", k.busy);
    ke(
      "denied",
      "NTS-KE connections closed at once: client not allowed (server.allow/deny).",
      k.denied,
    );
    if (k.certificate_not_after !== null) {
      e.family(
        "nts_ke_certificate_expiry_timestamp_seconds",
        "gauge",
        "When the NTS-KE certificate in use stops being valid (Unix seconds).",
        k.certificate_not_after,
      );
    }
  }

  const a = s.anycast;
  e.family(
    "anycast_enabled",
    "gauge",
    "1 when anycast mode is node or router.",
    b(a !== null && a.mode !== "off"),
  );
  if (a !== null) {
    e.family("anycast_info", "gauge", "Anycast mode and state; always 1.", [
      [{ mode: a.mode, state: a.state }, 1],
    ]);
    e.family("anycast_healthy", "gauge", "1 when the anycast health gate is open.", b(a.healthy));
    e.family(
      "anycast_announced_addresses",
      "gauge",
      "Service addresses announced now.",
      a.announced.length,
    );
    e.family(
      "anycast_nexthops",
      "gauge",
      "Nexthops in the multipath route (router).",
      a.nexthops.length,
    );
    if (a.nodes) {
      e.family(
        "anycast_node_healthy",
        "gauge",
        "Router mode: 1 when the node passed its last health check.",
        a.nodes.map((n) => [{ address: n.address }, b(n.healthy)]),
      );
    }
    const last = a.transitions.at(-1);
    e.family(
      "anycast_last_transition_timestamp_seconds",
      "gauge",
      "Unix time of the last state transition (0 = none).",
      last?.at ?? 0,
    );
  }
  return e.toString();
}
