/**
 * The shape of `GET /status` and the pure function that builds it from the
 * engine, anycast and server reports. Field names and units are documented
 * in the README ("Status page, metrics and tools") and checked against
 * `status.schema.json`. Durations and offsets are seconds (`_s`), rates
 * are per second (`_per_s`), sizes bytes (`_bytes`), times Unix seconds.
 */
import type { AnycastReport } from "../anycast/report.ts";
import type { EngineCounters, EngineReport, SourceReport, SystemReport } from "../engine/report.ts";
import type { NtsKeCounters, ServerCounters } from "../contracts.ts";
import type { ServerRates } from "./history.ts";
import { Leap } from "../ntp/packet.ts";
import { isSynchronised, MAXSTRAT } from "../ntp/system_state.ts";

export type { ServerRates };

/** `chronyc tracking` fields plus the system jitter from the history ring. */
export interface SystemStatus extends SystemReport {
  /** RMS of successive clock-update offsets (ntpd `sys_jitter`), seconds. */
  jitter_s: number;
}

export interface StatusSnapshot {
  version: string;
  /** Unix seconds when this snapshot was taken. */
  time: number;
  uptime_s: number;
  driver: string;
  driver_reason: string;
  workers: number;
  listen: string[];
  /** What `/healthz` answers. */
  health: { healthy: boolean; reason: string };
  system: SystemStatus;
  sources: SourceReport[];
  /** Engine event counters; absent until the engine reports them. */
  engine_counters?: EngineCounters;
  server: ServerCounters;
  /** Null until the history ring holds a sample at least a second old. */
  server_rates: ServerRates | null;
  /** Null when anycast is off. */
  anycast: AnycastReport | null;
  /** The NTS-KE server; absent when `nts.ke_listen` is empty. */
  nts_ke?: NtsKeStatus;
  /** The broadcast server's destinations; absent without `[[broadcast]]`. */
  broadcast?: BroadcastStatus[];
  process: { resident_memory_bytes: number; history_bytes: number };
}

/** `/status` `broadcast[]`: one `[[broadcast]]` destination and its counters since it opened. */
export interface BroadcastStatus {
  address: string;
  interval_s: number;
  /** Key ID the packets are signed with, 0 = none (`insecure`). */
  key: number;
  /** Packets handed to the kernel. */
  sent: number;
  /** Intervals skipped because the node was not synchronised. */
  unsynchronised: number;
  /** Why the destination cannot be served, "" when it can. */
  error: string;
}

/** `/status` `nts_ke`: where the NTS-KE server listens and its counters since start. */
export interface NtsKeStatus {
  listen: string[];
  /** When the certificate in use stops being valid, Unix seconds; null if unknown. */
  certificate_not_after: number | null;
  connections: number;
  handshakes: number;
  record_errors: number;
  refused: number;
  tls_failures: number;
  cookies: number;
  busy: number;
  denied: number;
}

/** What the app reports of a running NTS-KE server. */
export interface NtsKeReport {
  listen: string[];
  certificateNotAfter: number | null;
  counters: NtsKeCounters;
}

/** Everything `buildSnapshot` needs, read by the caller at one instant. */
export interface SnapshotInputs {
  version: string;
  now: number;
  uptimeS: number;
  driver: string;
  driverReason: string;
  workers: number;
  listen: string[];
  engine: EngineReport;
  anycast: AnycastReport | null;
  /** Null or absent when no NTS-KE server runs. */
  ntsKe?: NtsKeReport | null;
  /** Absent or empty without `[[broadcast]]`. */
  broadcast?: BroadcastStatus[];
  counters: ServerCounters;
  rates: ServerRates | null;
  systemJitterS: number;
  residentMemoryBytes: number;
  historyBytes: number;
}

/**
 * The system report as the wire states it. `isSynchronised` (leap ≠ 3,
 * stratum 1..15) decides; when it says no, the report says what our
 * replies say: `synchronised: false`, leap 3, stratum 16, no refid and no
 * system peer, whatever the producer filled in (an engine following a
 * stratum-15 upstream reports stratum 16 with leap 0). A synchronised
 * report is returned with `synchronised: true`. Pure.
 */
export function servedSystem<T extends SystemReport>(s: T): T {
  if (isSynchronised(s)) return s.synchronised ? s : { ...s, synchronised: true };
  return {
    ...s,
    synchronised: false,
    leap: Leap.unsync,
    stratum: MAXSTRAT,
    refid: "",
    system_peer: "",
  };
}

/**
 * The sources' tally codes under `system`: `*` marks the source we are
 * synchronised to, so while `isSynchronised(system)` is false no source
 * has it (it is shown as " ", not used). Pure; returns `sources` unchanged
 * when there is nothing to demote.
 */
export function servedSources(sources: SourceReport[], system: SystemReport): SourceReport[] {
  if (isSynchronised(system) || !sources.some((r) => r.tally === "*")) return sources;
  return sources.map((r) => r.tally === "*" ? { ...r, tally: " " } : r);
}

/**
 * Why the appliance should not get traffic, or null when it should: the
 * anycast health gate when anycast is on, else `isSynchronised` on the
 * system state.
 */
export function unhealthyReason(
  engine: EngineReport,
  anycast: AnycastReport | null,
): string | null {
  if (anycast !== null && anycast.mode !== "off") {
    return anycast.healthy ? null : `anycast ${anycast.mode} unhealthy: ${anycast.reason || "?"}`;
  }
  return isSynchronised(engine.system) ? null : "not synchronised";
}

/** Builds the `/status` document; picks fields explicitly so the schema stays exact. */
export function buildSnapshot(i: SnapshotInputs): StatusSnapshot {
  const s = servedSystem(i.engine.system);
  const reason = unhealthyReason(i.engine, i.anycast);
  return {
    version: i.version,
    time: i.now,
    uptime_s: i.uptimeS,
    driver: i.driver,
    driver_reason: i.driverReason,
    workers: i.workers,
    listen: i.listen,
    health: { healthy: reason === null, reason: reason ?? "" },
    system: {
      synchronised: s.synchronised,
      leap: s.leap,
      stratum: s.stratum,
      refid: s.refid,
      system_peer: s.system_peer,
      ref_time: s.ref_time,
      offset_s: s.offset_s,
      frequency_ppm: s.frequency_ppm,
      skew_ppm: s.skew_ppm,
      root_delay_s: s.root_delay_s,
      root_dispersion_s: s.root_dispersion_s,
      update_interval_s: s.update_interval_s,
      orphan: s.orphan,
      jitter_s: i.systemJitterS,
    },
    sources: servedSources(i.engine.sources, s).map((r) => ({
      tally: r.tally,
      address: r.address,
      kind: r.kind,
      refid: r.refid,
      stratum: r.stratum,
      when_s: r.when_s,
      poll: r.poll,
      reach: r.reach,
      delay_s: r.delay_s,
      offset_s: r.offset_s,
      jitter_s: r.jitter_s,
      ...(r.state === undefined ? {} : { state: r.state }),
      ...(r.interleaved === undefined ? {} : { interleaved: r.interleaved }),
      ...(r.key === undefined ? {} : { key: r.key, authenticated: r.authenticated === true }),
      ...(r.broadcast_delay_s === undefined ? {} : { broadcast_delay_s: r.broadcast_delay_s }),
      ...(r.counters === undefined ? {} : { counters: { ...r.counters } }),
      ...(r.nts === undefined ? {} : { nts: { ...r.nts } }),
    })),
    ...(i.engine.counters === undefined ? {} : { engine_counters: { ...i.engine.counters } }),
    server: i.counters,
    server_rates: i.rates,
    anycast: i.anycast === null ? null : {
      mode: i.anycast.mode,
      state: i.anycast.state,
      healthy: i.anycast.healthy,
      reason: i.anycast.reason,
      announced: i.anycast.announced,
      nexthops: i.anycast.nexthops,
      transitions: i.anycast.transitions.map((t) => ({
        at: t.at,
        from: t.from,
        to: t.to,
        reason: t.reason,
        ...(t.subject === undefined ? {} : { subject: t.subject }),
      })),
      ...(i.anycast.error === undefined ? {} : { error: i.anycast.error }),
      ...(i.anycast.nodes === undefined ? {} : {
        nodes: i.anycast.nodes.map((n) => ({
          address: n.address,
          healthy: n.healthy,
          reason: n.reason,
        })),
      }),
    },
    ...(i.ntsKe ? { nts_ke: ntsKeStatus(i.ntsKe) } : {}),
    ...(i.broadcast && i.broadcast.length > 0
      ? { broadcast: i.broadcast.map((b) => ({ ...b })) }
      : {}),
    process: {
      resident_memory_bytes: i.residentMemoryBytes,
      history_bytes: i.historyBytes,
    },
  };
}

function ntsKeStatus(r: NtsKeReport): NtsKeStatus {
  const c = r.counters;
  return {
    listen: [...r.listen],
    certificate_not_after: r.certificateNotAfter,
    connections: c.connections,
    handshakes: c.handshakes,
    record_errors: c.recordErrors,
    refused: c.refused,
    tls_failures: c.tlsFailures,
    cookies: c.cookies,
    busy: c.busy,
    denied: c.denied,
  };
}
