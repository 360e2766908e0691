/**
 * Plain aligned text for a terminal: `GET /status?format=text`,
 * `edge-time peers` (an `ntpq -p` table) and `edge-time tracking` (a
 * `chronyc tracking` block). Pure: snapshot in, string out.
 */
import type { SourceReport, SystemReport } from "../engine/report.ts";
import { servedSources, servedSystem, type StatusSnapshot, type SystemStatus } from "./snapshot.ts";

const LEAP_NAMES = ["Normal", "Insert second", "Delete second", "Not synchronised"];

/** chronyc's leap status words for an RFC 5905 leap indicator. */
export function leapName(leap: number): string {
  return LEAP_NAMES[leap] ?? `Unknown (${leap})`;
}

/** ntpq's type column: u unicast server, p pool, s symmetric peer, b broadcast server heard. */
const KIND_CODE: Record<SourceReport["kind"], string> = {
  server: "u",
  pool: "p",
  peer: "s",
  broadcast: "b",
};

/** ntpq's compact age: seconds, then m, h, d once it no longer fits. */
export function compactSeconds(s: number): string {
  if (s < 0) return "-";
  const r = Math.round(s);
  if (r <= 2048) return String(r);
  if (r <= 300 * 60) return `${Math.round(r / 60)}m`;
  if (r <= 96 * 3600) return `${Math.round(r / 3600)}h`;
  return `${Math.round(r / 86400)}d`;
}

/** An uptime such as "3d 4h 5m" or "42s". */
export function humanDuration(s: number): string {
  const t = Math.max(0, Math.floor(s));
  const d = Math.floor(t / 86400), h = Math.floor(t % 86400 / 3600), m = Math.floor(t % 3600 / 60);
  if (d > 0) return `${d}d ${h}h ${m}m`;
  if (h > 0) return `${h}h ${m}m`;
  if (m > 0) return `${m}m ${t % 60}s`;
  return `${t}s`;
}

const ms = (s: number, digits = 3) => (s * 1e3).toFixed(digits);
const signed = (v: number, digits: number) => (v >= 0 ? "+" : "") + v.toFixed(digits);

/**
 * An `ntpq -p` style table; delay, offset and jitter in milliseconds as
 * ntpq shows them. With `system`, tallies follow `servedSources`: while the
 * system is not synchronised (leap 3 or stratum outside 1..15) no row is `*`.
 */
export function formatPeers(sources: SourceReport[], system?: SystemReport): string {
  if (system !== undefined) sources = servedSources(sources, system);
  const width = Math.max(15, ...sources.map((s) => s.address.length));
  // With symmetric keys or NTS, a last column: the key ID (or NTS) and whether the source
  // authenticates (the last packet's MAC; NTS: keys and cookies held, replies verified).
  const keyed = sources.some((s) => s.key !== undefined || s.nts !== undefined);
  const head = ` ${"remote".padEnd(width)} ${
    "refid".padEnd(15)
  } st t when poll reach   delay   offset  jitter${keyed ? " auth" : ""}`;
  const lines = [head, "=".repeat(head.length)];
  for (const s of sources) {
    const auth = !keyed
      ? ""
      : s.nts !== undefined
      ? ` NTS${s.nts.state === "ready" && s.nts.authenticated > 0 ? " ok" : " no"}`
      : s.key === undefined
      ? "    -"
      : ` ${s.key}${s.authenticated ? " ok" : " no"}`;
    lines.push(
      `${s.tally}${s.address.padEnd(width)} ${s.refid.padEnd(15)} ${
        String(s.stratum).padStart(2)
      } ${KIND_CODE[s.kind] ?? "?"} ${compactSeconds(s.when_s).padStart(4)} ${
        compactSeconds(2 ** s.poll).padStart(4)
      } ${s.reach.toString(8).padStart(5)} ${ms(s.delay_s).padStart(7)} ${
        ms(s.offset_s).padStart(8)
      } ${ms(s.jitter_s).padStart(7)}${auth}`,
    );
  }
  if (sources.length === 0) lines.push(" (no sources)");
  return lines.join("\n") + "\n";
}

/** `Thu Jan 01 00:00:00 1970` style UTC time, as chronyc prints the reference time. */
function chronyTime(unix: number): string {
  if (!(unix > 0)) return "Never";
  const d = new Date(unix * 1000);
  const days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
  const months = [
    "Jan",
    "Feb",
    "Mar",
    "Apr",
    "May",
    "Jun",
    "Jul",
    "Aug",
    "Sep",
    "Oct",
    "Nov",
    "Dec",
  ];
  const p = (n: number) => String(n).padStart(2, "0");
  return `${days[d.getUTCDay()]} ${months[d.getUTCMonth()]} ${p(d.getUTCDate())} ${
    p(d.getUTCHours())
  }:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} ${d.getUTCFullYear()}`;
}

/**
 * A `chronyc tracking` style block. The state is read through
 * `servedSystem`, so a stratum-16 state shows "Not synchronised" and
 * "Synchronised : no" even from a server that reported it otherwise.
 */
export function formatTracking(status: SystemStatus): string {
  const s = servedSystem(status);
  const rows: [string, string][] = [
    ["Reference ID", s.refid || "-"],
    ["System peer", s.system_peer || "-"],
    ["Stratum", String(s.stratum)],
    ["Ref time (UTC)", chronyTime(s.ref_time)],
    [
      "Last offset",
      `${signed(s.offset_s, 9)} seconds (${Math.abs(s.offset_s).toFixed(9)} seconds ${
        s.offset_s > 0 ? "fast" : "slow"
      } of true time)`,
    ],
    ["System jitter", `${s.jitter_s.toFixed(9)} seconds`],
    [
      "Frequency",
      `${Math.abs(s.frequency_ppm).toFixed(3)} ppm ${s.frequency_ppm < 0 ? "slow" : "fast"}`,
    ],
    ["Skew", `${s.skew_ppm.toFixed(3)} ppm`],
    ["Root delay", `${s.root_delay_s.toFixed(9)} seconds`],
    ["Root dispersion", `${s.root_dispersion_s.toFixed(9)} seconds`],
    ["Update interval", `${s.update_interval_s.toFixed(1)} seconds`],
    ["Leap status", leapName(s.leap)],
    ["Synchronised", s.synchronised ? "yes" : "no"],
    ["Orphan", s.orphan ? "yes" : "no"],
  ];
  return rows.map(([k, v]) => `${k.padEnd(15)} : ${v}`).join("\n") + "\n";
}

function block(rows: [string, string | number][]): string {
  const w = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `  ${k.padEnd(w)}  ${v}`).join("\n") + "\n";
}

/** The whole `/status` document as aligned text sections. */
export function formatStatusText(s: StatusSnapshot): string {
  const out: string[] = [];
  out.push(
    `edge-time ${s.version}  up ${
      humanDuration(s.uptime_s)
    }  driver ${s.driver} (${s.workers} worker${s.workers === 1 ? "" : "s"})  listen ${
      s.listen.join(", ") || "-"
    }`,
  );
  out.push(s.health.healthy ? "Health: OK\n" : `Health: UNHEALTHY: ${s.health.reason}\n`);
  out.push("Tracking");
  out.push(formatTracking(s.system));
  out.push("Sources");
  out.push(formatPeers(s.sources));
  const c = s.server;
  const r = s.server_rates;
  const rate = (v: number | undefined) => (v === undefined ? "" : `  (${v.toFixed(1)}/s)`);
  out.push("Server");
  out.push(block([
    ["received", `${c.received}${rate(r?.received_per_s)}`],
    ["answered", `${c.answered}${rate(r?.answered_per_s)}`],
    ["kod rate / deny", `${c.kod_rate} / ${c.kod_deny}${rate(r?.kod_per_s)}`],
    [
      "dropped",
      `malformed ${c.dropped.malformed}, mode ${c.dropped.mode}, control ${c.dropped.control}, ` +
      `rate limited ${c.dropped.rate_limited}, denied ${c.dropped.denied}${rate(r?.dropped_per_s)}`,
    ],
    ["send errors", c.send_errors],
    ["send latency", `${c.send_latency_us.toFixed(1)} µs (added to basic replies' xmt)`],
    ["interleaved", c.interleaved],
    [
      "authenticated",
      `${c.authenticated}, crypto-NAK ${c.crypto_nak} (bad MAC ${c.bad_mac})`,
    ],
    [
      "nts",
      `${c.nts.requests} requests, ${c.nts.naks} NAK (bad authenticator ${c.nts.bad_authenticator})`,
    ],
    ["rate window", r ? `${r.window_s.toFixed(0)} s` : "(not yet)"],
  ]));
  const k = s.nts_ke;
  if (k) {
    const until = k.certificate_not_after === null
      ? "unknown"
      : new Date(k.certificate_not_after * 1000).toISOString().replace(/\.\d+Z$/, "Z");
    out.push("NTS-KE");
    out.push(block([
      ["listen", k.listen.join(", ")],
      ["key exchanges", `${k.handshakes} (${k.cookies} cookies) of ${k.connections} connections`],
      ["refused", `${k.refused} no common protocol/AEAD, ${k.record_errors} Error records`],
      ["closed", `${k.tls_failures} TLS failures, ${k.denied} denied, ${k.busy} busy`],
      ["certificate until", until],
    ]));
  }
  out.push("Anycast");
  const a = s.anycast;
  if (a === null) {
    out.push("  off\n");
  } else {
    out.push(block([
      ["mode", a.mode],
      ["state", a.state],
      ["healthy", a.healthy ? "yes" : `no: ${a.reason}`],
      ["announced", a.announced.join(", ") || "-"],
      ["nexthops", a.nexthops.join(", ") || "-"],
    ]));
    for (const t of a.transitions.slice(-10)) {
      out.push(`  ${new Date(t.at * 1000).toISOString()}  ${t.from} -> ${t.to}  ${t.reason}`);
    }
    if (a.transitions.length > 0) out.push("");
  }
  out.push("Process");
  out.push(block([
    ["resident memory", `${(s.process.resident_memory_bytes / 2 ** 20).toFixed(1)} MiB`],
    ["history ring", `${(s.process.history_bytes / 2 ** 10).toFixed(0)} KiB`],
  ]));
  return out.join("\n");
}
