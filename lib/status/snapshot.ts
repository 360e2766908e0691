/** The shape of `GET /status`; field names and units are documented in the README. */
import type { ServerCounters } from "../io/server_pool.ts";

export interface SystemStatus {
  synchronised: boolean;
  leap: number;
  stratum: number;
  refid: string;
  /** Unix seconds of the last update, 0 when never. */
  ref_time: number;
  root_delay_ms: number;
  root_dispersion_ms: number;
  precision: number;
  /** Current virtual or kernel correction, seconds. */
  offset_s: number;
}

export interface StatusSnapshot {
  version: string;
  uptime_s: number;
  driver: string;
  driver_reason: string;
  workers: number;
  listen: string[];
  system: SystemStatus;
  server: ServerCounters;
}
