/**
 * The status model the app wires up: reads the engine, anycast and server
 * reports through getters the app passes in, keeps the history ring, and
 * answers the handler. No I/O here; the getters and `now` are the seams.
 */
import type { AnycastReport } from "../anycast/report.ts";
import type { EngineReport } from "../engine/report.ts";
import type { ServerView } from "../contracts.ts";
import type { StatusProvider } from "./handler.ts";
import { type ChartSeries, History } from "./history.ts";
import {
  type BroadcastStatus,
  buildSnapshot,
  type NtsKeReport,
  type StatusSnapshot,
} from "./snapshot.ts";

export { SAMPLE_INTERVAL_S } from "./history.ts";
export { startStatusServer } from "./server.ts";
export type { StatusServer } from "./server.ts";

/** Getters the status model reads at request and sample time. */
export interface StatusInputs {
  version: string;
  /** The server pool now (a reload may replace it). */
  pool: () => ServerView;
  /** Unix seconds (served time). */
  now: () => number;
  uptimeS: () => number;
  engine: () => EngineReport;
  /** Null when anycast is off. */
  anycast: () => AnycastReport | null;
  residentMemoryBytes: () => number;
  /** The NTS-KE server; null (or no getter) while none runs. */
  ntsKe?: () => NtsKeReport | null;
  /** The broadcast server's destinations (none: empty or no getter). */
  broadcast?: () => BroadcastStatus[];
}

/** Status provider backed by live getters and a history ring. */
export class StatusModel implements StatusProvider {
  readonly history: History;
  readonly #in: StatusInputs;

  constructor(inputs: StatusInputs, history = new History()) {
    this.#in = inputs;
    this.history = history;
  }

  /** Adds one history sample; the app calls this every `SAMPLE_INTERVAL_S`. */
  sample(): void {
    this.history.add(this.#in.now(), this.#in.engine(), this.#in.pool().counters());
  }

  snapshot(): StatusSnapshot {
    const i = this.#in;
    const now = i.now();
    const pool = i.pool();
    const counters = pool.counters();
    return buildSnapshot({
      version: i.version,
      now,
      uptimeS: i.uptimeS(),
      driver: pool.driver,
      driverReason: pool.driverReason,
      workers: pool.workerCount,
      listen: pool.bound,
      engine: i.engine(),
      anycast: i.anycast(),
      ntsKe: i.ntsKe?.() ?? null,
      broadcast: i.broadcast?.() ?? [],
      counters,
      rates: this.history.rates(now, counters),
      systemJitterS: this.history.systemJitter,
      residentMemoryBytes: i.residentMemoryBytes(),
      historyBytes: this.history.bytes,
    });
  }

  series(now: number): ChartSeries {
    return this.history.series(now);
  }
}
