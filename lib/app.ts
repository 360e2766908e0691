/**
 * Wires the configuration to the drivers and the core: server workers,
 * system state, status server, signals. Returns the process exit code.
 */
import type { Config } from "./config/mod.ts";
import { ServerPool } from "./io/server_pool.ts";
import { serverOptionsFrom } from "./io/server_options.ts";
import { measurePrecision, realtimeSeconds } from "./io/realtime.ts";
import { logger, setupLogging } from "./log.ts";
import { asciiRefid, formatRefid, Leap } from "./ntp/packet.ts";
import {
  MAXSTRAT,
  SharedSystemState,
  type SystemState,
  unsyncedState,
} from "./ntp/system_state.ts";
import type { StatusSnapshot } from "./status/snapshot.ts";
import { startStatusServer, type StatusServer } from "./status/server.ts";
import { VERSION } from "./version.ts";

/** How often the reference time of a `local_stratum` server is refreshed. */
const LOCAL_REFRESH_MS = 16_000;

/** System state of a server with no upstream that serves as `stratum` (chrony `local`). */
export function localState(stratum: number, precision: number, now: number): SystemState {
  return {
    ...unsyncedState(precision),
    leap: Leap.none,
    stratum,
    refid: asciiRefid("LOCL"),
    refTime: now,
  };
}

export async function runApp(config: Config, configPath: string | null): Promise<number> {
  await setupLogging(config.log.level);
  const log = logger("app");
  const started = performance.now();
  log.info(`edge-time ${VERSION} starting with ${configPath ?? "the embedded default config"}`);

  const precision = measurePrecision();
  const shared = new SharedSystemState();
  let system: SystemState = unsyncedState(precision);
  const publish = (s: SystemState) => {
    system = s;
    shared.write(s);
  };
  const local = config.server.localStratum;
  publish(local > 0 ? localState(local, precision, realtimeSeconds()) : system);

  const pool = await ServerPool.start({
    listen: config.server.listen,
    workers: config.server.workers,
    driver: config.server.driver,
    options: serverOptionsFrom(config),
    state: shared,
  });
  const serverLog = logger("server");
  for (const e of pool.errors) serverLog.error(e);
  if (pool.bound.length === 0) {
    serverLog.error("No listen address could be bound; stopping");
    await pool.stop();
    return 1;
  }
  serverLog.info(
    `Serving NTP on ${
      pool.bound.join(", ")
    } with ${pool.workerCount} worker(s), driver ${pool.driver} (${pool.driverReason})`,
  );

  const timers: ReturnType<typeof setInterval>[] = [];
  if (local > 0) {
    timers.push(
      setInterval(() => publish(localState(local, precision, realtimeSeconds())), LOCAL_REFRESH_MS),
    );
  }

  const snapshot = (): StatusSnapshot => ({
    version: VERSION,
    uptime_s: Math.round((performance.now() - started) / 1000),
    driver: pool.driver,
    driver_reason: pool.driverReason,
    workers: pool.workerCount,
    listen: pool.bound,
    system: {
      synchronised: system.leap !== Leap.unsync && system.stratum < MAXSTRAT,
      leap: system.leap,
      stratum: system.stratum,
      refid: formatRefid(system.refid, system.stratum),
      ref_time: system.refTime,
      root_delay_ms: system.rootDelay * 1e3,
      root_dispersion_ms: system.rootDisp * 1e3,
      precision: system.precision,
      offset_s: system.corrOffset,
    },
    server: pool.counters(),
  });

  let status: StatusServer | null = null;
  if (config.status.listen !== "") {
    try {
      status = startStatusServer(config.status.listen, {
        snapshot,
        unhealthyReason: () =>
          system.leap === Leap.unsync || system.stratum >= MAXSTRAT ? "not synchronised" : null,
      });
      logger("status").info(`Status page on http://${status.address}/status`);
    } catch (e) {
      logger("status").error(
        `Cannot listen on ${config.status.listen}: ${e instanceof Error ? e.message : e}`,
      );
    }
  }

  const stop = Promise.withResolvers<string>();
  const signals: Deno.Signal[] = ["SIGTERM", "SIGINT"];
  const onSignal: Record<string, () => void> = {};
  for (const sig of signals) {
    onSignal[sig] = () => stop.resolve(sig);
    Deno.addSignalListener(sig, onSignal[sig]);
  }
  const why = await stop.promise;
  log.info(`Stopping on ${why}`);
  for (const sig of signals) Deno.removeSignalListener(sig, onSignal[sig]!);
  for (const t of timers) clearInterval(t);
  await Promise.all([pool.stop(), status?.close()]);
  return 0;
}
