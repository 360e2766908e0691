/**
 * Wires the configuration to the drivers and the core: server workers,
 * system state, status server, signals. Returns the process exit code.
 */
import { type Config, loadConfig } from "./config/mod.ts";
import { ServerPool } from "./io/server_pool.ts";
import { serverOptionsFrom } from "./io/server_options.ts";
import { measurePrecision, realtimeSeconds } from "./io/realtime.ts";
import { logger, setupLogging } from "./log.ts";
import { formatRefid } from "./ntp/packet.ts";
import { fallbackVars, REFID_LOCL } from "./engine/fallback.ts";
import {
  isSynchronised,
  SharedSystemState,
  type SystemState,
  unsyncedState,
} from "./ntp/system_state.ts";
import type { EngineReport } from "./engine/report.ts";
import { EngineDriver } from "./io/engine_driver.ts";
import { dropExecutablePages } from "./io/memory.ts";
import { probeLibc } from "./io/libc.ts";
import {
  SAMPLE_INTERVAL_S,
  startStatusServer,
  StatusModel,
  type StatusServer,
} from "./status/mod.ts";
import { VERSION } from "./version.ts";
import { type AnycastRuntime, startAnycast } from "./anycast/mod.ts";
import { describePlan, isNoop, planReload, type ReloadPlan } from "./reload.ts";

/** How often the reference time of a `local_stratum` server is refreshed. */
const LOCAL_REFRESH_MS = 16_000;

/**
 * System state of a server with no sources that serves as `stratum`
 * (chrony `local`): the engine's fallback state (lib/engine/fallback.ts)
 * at `now`, which the engine announces itself while it runs.
 */
export function localState(stratum: number, precision: number, now: number): SystemState {
  return {
    ...unsyncedState(precision),
    ...fallbackVars({ kind: "local", stratum, refid: REFID_LOCL }, now),
  };
}

/**
 * The status page's view of a server with no engine yet (local stratum or
 * unsynchronised): tracking from the published system state, no sources.
 * The engine replaces this with its own report.
 */
export function engineReportFromState(s: SystemState, updateIntervalS: number): EngineReport {
  return {
    system: {
      synchronised: isSynchronised(s),
      leap: s.leap,
      stratum: s.stratum,
      refid: formatRefid(s.refid, s.stratum),
      system_peer: "",
      ref_time: s.refTime,
      offset_s: 0, // nothing measured without upstream sources
      frequency_ppm: s.corrFreq * 1e6,
      skew_ppm: 0,
      root_delay_s: s.rootDelay,
      root_dispersion_s: s.rootDisp,
      update_interval_s: updateIntervalS,
      orphan: false,
    },
    sources: [],
  };
}

/**
 * A part of the appliance that takes part in reload and stop (engine,
 * anycast, stats). `runApp` registers each in `parts`; the reload and stop
 * sequences call them in order, and one that throws is logged and skipped.
 */
export interface AppPart {
  name: string;
  /** SIGHUP with a valid new config; `plan.sources` matches sources by kind and address. */
  reload?(next: Config, plan: ReloadPlan): void | Promise<void>;
  /** SIGTERM/SIGINT, before the sockets close: withdraw anycast, save the drift file. */
  stop?(): void | Promise<void>;
}

/** Parts get this long to stop; sockets and status close after. Exit stays under 2 s. */
const STOP_PARTS_MS = 1000;
const STOP_SOCKETS_MS = 700;

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Resolves when `p` settles or after `ms`, whichever comes first; true if `p` settled. */
function within(p: Promise<unknown>, ms: number): Promise<boolean> {
  let t: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    p.then(() => true, () => true),
    new Promise<boolean>((r) => t = setTimeout(() => r(false), ms)),
  ]).finally(() => clearTimeout(t));
}

/** Start-up is over: hand back the executable's pages it alone needed (lib/io/memory.ts). */
function trimStartupMemory(): void {
  if (Deno.build.os !== "linux" || probeLibc() !== null) return;
  const r = dropExecutablePages();
  const mb = (b: number) => (b / 1048576).toFixed(1);
  const log = logger("app");
  if (r.error) log.debug(`Start-up pages kept: ${r.error}`);
  else log.info(`Start-up code pages given back: RSS ${mb(r.before)} -> ${mb(r.after)} MB`);
}

export async function runApp(config: Config, configPath: string | null): Promise<number> {
  // Until the reload handler is ready a SIGHUP is remembered, not fatal (its default action).
  let hupEarly = false;
  const hupEarlyListener = () => hupEarly = true;
  Deno.addSignalListener("SIGHUP", hupEarlyListener);
  // SIGTERM/SIGINT are caught from the start too: one that arrives while we
  // start up still gets the clean stop (drift saved, anycast withdrawn).
  const stop = Promise.withResolvers<string>();
  const signals: Deno.Signal[] = ["SIGTERM", "SIGINT"];
  const onSignal: Record<string, () => void> = {};
  for (const sig of signals) {
    onSignal[sig] = () => stop.resolve(sig);
    Deno.addSignalListener(sig, onSignal[sig]);
  }
  await setupLogging(config.log.level);
  const log = logger("app");
  let current = config;
  const parts: AppPart[] = [];
  const started = performance.now();
  log.info(`edge-time ${VERSION} starting with ${configPath ?? "the embedded default config"}`);

  const precision = measurePrecision();
  const shared = new SharedSystemState();
  let system: SystemState = unsyncedState(precision);
  const publish = (s: SystemState) => {
    system = s;
    shared.write(s);
  };
  let localTimer: ReturnType<typeof setInterval> | undefined;
  const serveLocal = (stratum: number) => {
    clearInterval(localTimer);
    localTimer = undefined;
    if (stratum === 0) return;
    publish(localState(stratum, precision, realtimeSeconds()));
    localTimer = setInterval(
      () => publish(localState(stratum, precision, realtimeSeconds())),
      LOCAL_REFRESH_MS,
    );
  };
  serveLocal(config.server.localStratum);

  const poolOptions = (c: Config) => ({
    listen: c.server.listen,
    workers: c.server.workers,
    driver: c.server.driver,
    options: serverOptionsFrom(c),
    state: shared,
  });
  let pool = await ServerPool.start(poolOptions(config));
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
  let anycast: AnycastRuntime | null = null;

  // The peer engine, while [[source]]s exist: it publishes the system state,
  // local_stratum included (its fallback whenever no source is selected).
  // A reload starts it when the first sources appear, reconfigures it in
  // place (kept sources keep their state), and stops it when the last one
  // goes (back to local_stratum served from here).
  let engine: EngineDriver | null = null;
  const startEngine = async (c: Config) => {
    serveLocal(0);
    engine = await EngineDriver.start({
      config: c,
      precision,
      publish,
    });
  };
  if (config.source.length > 0) await startEngine(config);
  parts.push({
    name: "engine",
    stop: () => engine?.stop(),
    reload: async (next) => {
      if (engine && next.source.length > 0) return engine.reconfigure(next);
      if (next.source.length > 0) {
        logger("engine").info("Sources configured: starting the peer engine");
        return await startEngine(next);
      }
      if (!engine) return;
      const old = engine;
      engine = null;
      await old.stop(); // saves the drift file
      logger("engine").info("No sources left: peer engine stopped");
      serveLocal(next.server.localStratum);
      if (next.server.localStratum === 0) publish(unsyncedState(precision));
    },
  });

  const statusModel = new StatusModel({
    version: VERSION,
    pool: () => pool,
    now: realtimeSeconds,
    uptimeS: () => Math.round((performance.now() - started) / 1000),
    engine: () =>
      engine?.report() ??
        engineReportFromState(system, current.server.localStratum > 0 ? LOCAL_REFRESH_MS / 1e3 : 0),
    anycast: () => anycast?.report() ?? null,
    residentMemoryBytes: () => Deno.memoryUsage().rss,
  });
  if (config.anycast.mode !== "off") {
    // Announce (node) or route (router) only while time is good; withdraw before the sockets close.
    anycast = await startAnycast(config, () => {
      const s = (engine?.report() ?? engineReportFromState(system, 0)).system;
      return { leap: s.leap, stratum: s.stratum, offsetS: s.offset_s };
    });
    const rt = anycast;
    parts.push({
      name: "anycast",
      stop: () => rt.stop(),
      reload: (_next, plan) => {
        if (plan.anycast) logger("anycast").warning("Anycast settings change on restart only");
      },
    });
  }
  // The history ring behind the 24 h chart and the server rates.
  statusModel.sample();
  timers.push(setInterval(() => statusModel.sample(), SAMPLE_INTERVAL_S * 1000));

  const startStatus = (listen: string): StatusServer | null => {
    if (listen === "") return null;
    const s = startStatusServer(listen, statusModel);
    logger("status").info(`Status page on http://${s.address}/status`);
    return s;
  };
  let status: StatusServer | null = null;
  try {
    status = startStatus(config.status.listen);
  } catch (e) {
    logger("status").error(`Cannot listen on ${config.status.listen}: ${message(e)}`);
  }

  /** Rebinds the server for `next`; false (and the old sockets kept) when nothing could be bound. */
  const rebind = async (next: Config): Promise<boolean> => {
    const b = current.server, a = next.server;
    if (b.workers === a.workers && b.driver === a.driver) {
      for (const e of await pool.relisten(a.listen)) serverLog.error(e);
      if (pool.bound.length > 0) return true;
      await pool.relisten(b.listen);
      return false;
    }
    // Workers or driver changed: a new pool, started before the old one stops.
    let fresh = await ServerPool.start(poolOptions(next));
    if (fresh.bound.length < pool.bound.length && fresh.errors.length > 0) {
      // The old sockets hold the ports (no SO_REUSEPORT): hand over with a short gap.
      await fresh.stop();
      await pool.stop();
      fresh = await ServerPool.start(poolOptions(next));
      serverLog.warning("Rebound with a short gap: the old sockets did not share their ports");
      if (fresh.bound.length === 0) {
        for (const e of fresh.errors) serverLog.error(e);
        await fresh.stop();
        pool = await ServerPool.start(poolOptions(current));
        return false;
      }
    } else {
      if (fresh.bound.length === 0) {
        for (const e of fresh.errors) serverLog.error(e);
        await fresh.stop();
        return false;
      }
      await pool.stop();
    }
    for (const e of fresh.errors) serverLog.error(e);
    pool = fresh;
    return true;
  };

  /** SIGHUP: re-reads the config file; a config that fails validation changes nothing. */
  const reload = async (): Promise<void> => {
    if (configPath === null) {
      log.warning("SIGHUP ignored: running on the embedded default config, no file to re-read");
      return;
    }
    let text: string;
    try {
      text = await Deno.readTextFile(configPath);
    } catch (e) {
      log.error(`${configPath}: cannot read: ${message(e)}; keeping the running config`);
      return;
    }
    const r = loadConfig(text, configPath);
    if (!r.ok) {
      for (const e of r.errors) log.error(e);
      log.error(`Reload rejected (${r.errors.length} error(s)); keeping the running config`);
      return;
    }
    const next = r.config;
    const plan = planReload(current, next);
    if (isNoop(plan)) return log.info(`Reloaded ${configPath}: no change`);
    if (plan.rebindServer && !(await rebind(next))) {
      log.error("Reload rejected: no listen address could be bound; keeping the running config");
      return;
    }
    if (plan.logLevel) await setupLogging(next.log.level);
    // A relistened pool keeps its workers and so its old options (a new pool has them already).
    if (plan.reconfigureServer) pool.reconfigure(serverOptionsFrom(next));
    if (plan.localStratum && !engine) {
      // (With sources the engine applies local_stratum itself, on reconfigure.)
      serveLocal(next.server.localStratum);
      if (next.server.localStratum === 0) publish(unsyncedState(precision));
    }
    if (plan.status) {
      const old = status;
      try {
        status = startStatus(next.status.listen);
        await old?.close();
      } catch {
        // The new address may overlap the old one (127.0.0.1:P → 0.0.0.0:P): free it first.
        await old?.close();
        try {
          status = startStatus(next.status.listen);
        } catch (e) {
          logger("status").error(`Cannot listen on ${next.status.listen}: ${message(e)}`);
          status = startStatus(current.status.listen);
        }
      }
    }
    for (const p of parts) {
      try {
        await p.reload?.(next, plan);
      } catch (e) {
        log.error(`Reload of ${p.name} failed: ${message(e)}`);
      }
    }
    current = next;
    log.info(`Reloaded ${configPath}: ${describePlan(plan)}`);
  };

  // Reloads run one at a time, in the order the signals came.
  let reloading = Promise.resolve();
  const onHup = () => reloading = reloading.then(reload).catch((e) => log.error(message(e)));
  Deno.removeSignalListener("SIGHUP", hupEarlyListener);
  Deno.addSignalListener("SIGHUP", onHup);
  trimStartupMemory();
  if (hupEarly) onHup();

  const why = await stop.promise;
  log.info(`Stopping on ${why}`);
  Deno.removeSignalListener("SIGHUP", onHup);
  await within(reloading, 300);
  for (const sig of signals) Deno.removeSignalListener(sig, onSignal[sig]!);
  for (const t of timers) clearInterval(t);
  clearInterval(localTimer);
  // Parts first (withdraw anycast while we still answer, save the drift file), then sockets.
  const partsDone = Promise.all(parts.map(async (p) => {
    try {
      await p.stop?.();
    } catch (e) {
      log.error(`Stopping ${p.name} failed: ${message(e)}`);
    }
  }));
  if (!(await within(partsDone, STOP_PARTS_MS))) {
    log.warning(`Parts did not stop within ${STOP_PARTS_MS} ms; closing anyway`);
  }
  await within(Promise.all([pool.stop(), status?.close()]), STOP_SOCKETS_MS);
  log.info("Stopped");
  return 0;
}
