/**
 * Wires the configuration to the drivers and the core: server workers,
 * system state, status server, signals. Returns the process exit code.
 */
import { type Config, loadConfig, missingSourceKeys } from "./config/mod.ts";
import { ServerPool } from "./io/server_pool.ts";
import { serverOptionsFrom } from "./io/server_options.ts";
import { loadNtsKeys, localSecret, type NtsKeys, ntsServing } from "./io/nts_keys.ts";
import { installOpensslSiv } from "./io/openssl_siv.ts";
import { CookieKeyring, secretTag } from "./nts/cookie.ts";
import { measurePrecision, realtimeSeconds } from "./io/realtime.ts";
import { logger, setupLogging } from "./log.ts";
import { formatRefid, HEADER_LEN } from "./ntp/packet.ts";
import { fallbackVars, REFID_LOCL } from "./engine/fallback.ts";
import {
  isSynchronised,
  SharedSystemState,
  type SystemState,
  unsyncedState,
} from "./ntp/system_state.ts";
import type { EngineReport } from "./engine/report.ts";
import { EngineDriver } from "./io/engine_driver.ts";
import {
  type BroadcastReport,
  BroadcastServer,
  type BroadcastSigner,
} from "./io/broadcast_server.ts";
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
import { type NtsKeHandle, startNtsKe } from "./io/nts_ke_listener.ts";
import { keAccess, type MakeCookies } from "./nts/ke_server.ts";
import { SUPPORTED_AEADS } from "./nts/aead.ts";
import type { NtsKeReport } from "./status/snapshot.ts";
import { describePlan, isNoop, planReload, type ReloadPlan } from "./reload.ts";
import type { AuthKeys } from "./auth/keys.ts";
import { macLength, writeMac } from "./auth/mac.ts";
import { describeKeys, readKeys, sameKeys, workerKeys } from "./io/key_file.ts";
import { useOpenSslDigests } from "./io/openssl_mac.ts";
import { checkCaFiles } from "./io/nts_files.ts";

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
 * One part of the running appliance — local stratum, server, logging,
 * status, engine, anycast — with one lifecycle: its `start…Part` function
 * starts it, `reload` hands it every valid new config, `stop` ends it.
 * `runApp` keeps them in start order; one that throws is logged and skipped.
 */
export interface AppPart {
  name: string;
  /**
   * SIGHUP with a valid new config; `plan` says what changed (sources are
   * matched by kind and address). Parts hear it in start order; one that
   * returns false rejects the reload and later parts do not hear of it
   * (the server, when nothing could be bound).
   */
  reload(next: Config, plan: ReloadPlan): void | boolean | Promise<void | boolean>;
  /**
   * SIGHUP, every time, after `reload` (or alone when the config did not
   * change): files the part reads are read again (the NTS-KE certificate,
   * renewed in place by certbot and the like).
   */
  reread?(current: Config): void | Promise<void>;
  /** SIGTERM/SIGINT: withdraw anycast, save the drift file, close sockets. */
  stop(): void | Promise<void>;
  /** It closes sockets: stopped after the other parts, so NTP is answered while anycast withdraws. */
  readonly closesSockets?: boolean;
}

/** What the parts share: the published system state, the running engine, the server. */
interface AppContext {
  readonly precision: number;
  /** The system state the server workers read (shared memory). */
  readonly shared: SharedSystemState;
  /** Publishes system state to the server workers (and the status page). */
  publish(s: SystemState): void;
  /** The last published system state. */
  system(): SystemState;
  /** The config in force (replaced once a reload has gone through every part). */
  config(): Config;
  /** Serves `local_stratum` from the app while no engine runs (0: stop). */
  serveLocal(stratum: number): void;
  engine: EngineDriver | null;
  pool: ServerPool | null;
  /** The symmetric keys in force (auth.keyfile, auth.trusted_keys). */
  keys(): AuthKeys;
  /** The broadcast server's destinations and counters ([] when none). */
  broadcast: () => BroadcastReport[];
  /**
   * The cookie keyring of this node while it answers NTS (the server
   * workers hold copies): the NTS-KE server makes its cookies with it.
   */
  ntsKeyring: CookieKeyring | null;
  /** The NTS-KE server while it runs (status page). */
  ntsKe: NtsKeHandle | null;
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

/** `local_stratum` without sources: the app publishes the fallback state itself. */
function startLocalPart(ctx: AppContext, stratum: number): AppPart {
  ctx.serveLocal(stratum);
  return {
    name: "local stratum",
    reload(next, plan) {
      // With sources the engine applies local_stratum itself, on reconfigure.
      if (!plan.localStratum || ctx.engine) return;
      ctx.serveLocal(next.server.localStratum);
      if (next.server.localStratum === 0) ctx.publish(unsyncedState(ctx.precision));
    },
    stop: () => ctx.serveLocal(0),
  };
}

/** The server workers; null when no listen address could be bound. */
async function startServerPart(ctx: AppContext, config: Config): Promise<AppPart | null> {
  const log = logger("server");
  // NTS cookie secrets: the master key file's, else one random secret for this process.
  const local = localSecret();
  let ntsKeys: NtsKeys | null = null;
  /**
   * The keys `c` asks for; a file that cannot be used keeps the keys in
   * force. The cookie-key line (tags only) is logged when the keys change
   * and at every read of a master key file, so a reload confirms it.
   */
  const readNtsKeys = async (c: Config): Promise<NtsKeys | null> => {
    if (!ntsServing(c)) return null;
    const r = await loadNtsKeys(c, local);
    if ("error" in r) {
      log.error(`${r.error}; ${ntsKeys ? "keeping the cookie keys in force" : "NTS is off"}`);
      return ntsKeys;
    }
    if (r.warning) log.warning(r.warning);
    const tags = r.keys.secrets.map((k) => secretTag(k).toString(16).padStart(2, "0"));
    const before = ntsKeys?.secrets.map((k) => secretTag(k).toString(16).padStart(2, "0"));
    const changed = r.keys.origin !== ntsKeys?.origin || tags.join() !== before?.join();
    if (changed || c.nts.masterKeyFile !== "") {
      // The tags (8 bits of HKDF of each secret, as in the key ids) tell secrets apart, safely.
      log.info(
        `NTS cookie keys from ${r.keys.origin} (${r.keys.secrets.length} secret(s), tags ${
          tags.join(", ")
        }; cookies made with ${tags[0]}), AES-SIV from ${installOpensslSiv()}`,
      );
    }
    return r.keys;
  };
  const setKeyring = (k: NtsKeys | null) => {
    ntsKeys = k;
    if (!k) ctx.ntsKeyring = null;
    else if (ctx.ntsKeyring) ctx.ntsKeyring.update(k.secrets, k.acceptDays);
    else ctx.ntsKeyring = new CookieKeyring(k.secrets, k.acceptDays);
  };
  setKeyring(await readNtsKeys(config));
  const poolOptions = (c: Config) => ({
    listen: c.server.listen,
    workers: c.server.workers,
    driver: c.server.driver,
    options: serverOptionsFrom(c),
    state: ctx.shared,
    keys: workerKeys(ctx.keys()),
    nts: ntsKeys,
  });
  // A second edge-time on our addresses would share them through SO_REUSEPORT: probe first.
  let pool = await ServerPool.start({ ...poolOptions(config), probe: true });
  for (const e of pool.errors) log.error(e);
  if (pool.bound.length === 0) {
    log.error("No listen address could be bound; stopping");
    await pool.stop();
    return null;
  }
  log.info(
    `Serving NTP on ${
      pool.bound.join(", ")
    } with ${pool.workerCount} worker(s), driver ${pool.driver} (${pool.driverReason})`,
  );
  ctx.pool = pool;

  /** Rebinds the server for `next`; false (and the old sockets kept) when nothing could be bound. */
  const rebind = async (next: Config): Promise<boolean> => {
    const b = ctx.config().server, a = next.server;
    if (b.workers === a.workers && b.driver === a.driver) {
      for (const e of await pool.relisten(a.listen)) log.error(e);
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
      log.warning("Rebound with a short gap: the old sockets did not share their ports");
      if (fresh.bound.length === 0) {
        for (const e of fresh.errors) log.error(e);
        await fresh.stop();
        pool = ctx.pool = await ServerPool.start(poolOptions(ctx.config()));
        return false;
      }
    } else {
      if (fresh.bound.length === 0) {
        for (const e of fresh.errors) log.error(e);
        await fresh.stop();
        return false;
      }
      await pool.stop();
    }
    for (const e of fresh.errors) log.error(e);
    pool = ctx.pool = fresh;
    return true;
  };
  return {
    name: "server",
    closesSockets: true,
    async reload(next, plan) {
      if (plan.rebindServer && !(await rebind(next))) {
        logger("app").error(
          "Reload rejected: no listen address could be bound; keeping the running config",
        );
        return false;
      }
      // A relistened pool keeps its workers and so its old options (a new pool has them already).
      if (plan.reconfigureServer) pool.reconfigure(serverOptionsFrom(next));
      // The master key file is reread at every reload, changed or not (a rotation).
      setKeyring(await readNtsKeys(next));
      pool.setNts(ntsKeys);
      return true;
    },
    stop: () => pool.stop(),
  };
}

/** The log level, the one logging setting a reload changes. */
function startLogPart(): AppPart {
  return {
    name: "log",
    async reload(next, plan) {
      if (plan.logLevel) await setupLogging(next.log.level);
    },
    stop() {},
  };
}

/**
 * The peer engine, while [[source]]s exist: it publishes the system state,
 * local_stratum included (its fallback whenever no source is selected). A
 * reload starts it when the first sources appear, reconfigures it in place
 * (kept sources keep their state), and stops it when the last one goes
 * (back to local_stratum served by the app).
 */
async function startEnginePart(ctx: AppContext, config: Config): Promise<AppPart> {
  const start = async (c: Config) => {
    ctx.serveLocal(0);
    ctx.engine = await EngineDriver.start({
      config: c,
      precision: ctx.precision,
      publish: ctx.publish,
      keys: ctx.keys(),
    });
  };
  if (config.source.length > 0) await start(config);
  return {
    name: "engine",
    async reload(next) {
      if (ctx.engine && next.source.length > 0) return ctx.engine.reconfigure(next);
      if (next.source.length > 0) {
        logger("engine").info("Sources configured: starting the peer engine");
        return await start(next);
      }
      if (!ctx.engine) return;
      const old = ctx.engine;
      ctx.engine = null;
      await old.stop(); // saves the drift file
      logger("engine").info("No sources left: peer engine stopped");
      ctx.serveLocal(next.server.localStratum);
      if (next.server.localStratum === 0) ctx.publish(unsyncedState(ctx.precision));
    },
    stop: () => ctx.engine?.stop(),
  };
}

/**
 * The broadcast server (`[[broadcast]]`): sends the published system
 * state, so it serves whatever the server workers serve (the engine's
 * state, or `local_stratum` without sources). A reload that changes the
 * destinations or the server's listen addresses reopens them.
 */
function startBroadcastPart(ctx: AppContext, config: Config): AppPart {
  let server: BroadcastServer | null = null;
  const open = (c: Config) => {
    try {
      server = new BroadcastServer(c, ctx.system, broadcastSigner(ctx));
    } catch (e) {
      logger("broadcast").error(`Broadcast needs the FFI socket driver: ${message(e)}`);
    }
  };
  if (config.broadcast.length > 0) open(config);
  ctx.broadcast = () => server?.report() ?? [];
  return {
    name: "broadcast",
    reload(next, plan) {
      if (!plan.broadcast && !plan.rebindServer) return;
      if (server) server.reconfigure(next, broadcastSigner(ctx));
      else if (next.broadcast.length > 0) open(next);
    },
    stop: () => server?.stop(),
  };
}

/**
 * The MAC maker for broadcast destinations with a key: the key is looked
 * up in the keys in force at each packet (a reread key file takes effect
 * at the next broadcast; a key of another type waits for a reload that
 * reopens the destination, since its MAC length is fixed then).
 */
function broadcastSigner(ctx: AppContext): BroadcastSigner {
  return (keyId) => {
    const key = ctx.keys().keys.get(keyId);
    if (!key) return "not in the key file";
    const digest = macLength(key.type);
    return {
      length: 4 + digest,
      write(buf: Uint8Array) {
        const now = ctx.keys().keys.get(keyId);
        writeMac(now && macLength(now.type) === digest ? now : key, buf, 0, HEADER_LEN);
      },
    };
  };
}

/**
 * The NTS-KE server (RFC 8915 §4) while `nts.ke_listen` is set: TLS on TCP,
 * cookies from the node's cookie keyring. A certificate that cannot be used
 * is one error line and NTS-KE stays off (at start) or keeps the old one
 * (reload); every SIGHUP rereads the certificate and key files.
 */
async function startNtsKePart(ctx: AppContext, config: Config): Promise<AppPart> {
  const log = logger("nts-ke");
  let ke: NtsKeHandle | null = null;
  const makeCookies: MakeCookies = (aeadId, c2s, s2c, count) => {
    if (!ctx.ntsKeyring) throw new Error("no NTS cookie keys on this node");
    return ctx.ntsKeyring.makeCookies(aeadId, c2s, s2c, count);
  };
  const negotiation = (c: Config) => ({
    ntpServer: c.nts.ntpServer === "" ? undefined : c.nts.ntpServer,
    ntpPort: c.nts.ntpPort === 0 ? undefined : c.nts.ntpPort,
    // Whom the NTP server answers may make a key exchange (chronyd does the same).
    allowed: keAccess(c.server.allow, c.server.deny),
  });
  const start = async (c: Config): Promise<void> => {
    if (c.nts.keListen.length === 0) return;
    if (!ctx.ntsKeyring) {
      // Every KE would end in Error 2: no listener until the cookie keys are there.
      log.error(
        `NTS-KE is off: no NTS cookie keys (${
          c.nts.masterKeyFile || "nts.master_key_file"
        } could not be used); a reload with a usable file starts it`,
      );
      return;
    }
    try {
      const h = await startNtsKe({
        listen: c.nts.keListen,
        certificate: c.nts.certificate,
        privateKey: c.nts.privateKey,
        ...negotiation(c),
        makeCookies,
        supportedAeads: [...SUPPORTED_AEADS], // what the NTS NTP path can open (lib/nts/aead.ts)
        log,
      });
      for (const e of h.errors) log.error(e);
      if (h.bound.length === 0) {
        await h.stop();
        return;
      }
      ke = h;
      ctx.ntsKe = h;
      log.info(`NTS-KE on ${h.bound.join(", ")} (certificate ${c.nts.certificate})`);
    } catch (e) {
      log.error(`${message(e)}; NTS-KE is off`);
    }
  };
  const stop = async () => {
    const h = ke;
    ke = null;
    ctx.ntsKe = null;
    await h?.stop();
  };
  await start(config);
  let restarted = false;
  return {
    name: "nts-ke",
    closesSockets: true,
    async reload(next) {
      const b = ctx.config().nts, a = next.nts;
      restarted = false;
      if (JSON.stringify(a.keListen) !== JSON.stringify(b.keListen)) {
        await stop();
        await start(next);
        restarted = true;
      } else ke?.configure(negotiation(next));
    },
    async reread(current) {
      if (restarted) return void (restarted = false); // just loaded
      if (ke) {
        if (ke.reload(current.nts.certificate, current.nts.privateKey)) {
          log.info(`NTS-KE certificate reloaded from ${current.nts.certificate}`);
        }
      } else await start(current); // a certificate that failed at start may be fixed now
    },
    stop,
  };
}

/** The engine's report, or one made from the published state while no engine runs. */
function reportOf(ctx: AppContext): EngineReport {
  return ctx.engine?.report() ??
    engineReportFromState(
      ctx.system(),
      ctx.config().server.localStratum > 0 ? LOCAL_REFRESH_MS / 1e3 : 0,
    );
}

/** Anycast: announce (node) or route (router) only while time is good; withdraw before the sockets close. */
async function startAnycastPart(
  ctx: AppContext,
  config: Config,
): Promise<{ part: AppPart; runtime: AnycastRuntime } | null> {
  if (config.anycast.mode === "off") return null;
  const runtime = await startAnycast(config, () => {
    const s = (ctx.engine?.report() ?? engineReportFromState(ctx.system(), 0)).system;
    return { leap: s.leap, stratum: s.stratum, offsetS: s.offset_s };
  });
  return {
    runtime,
    part: {
      name: "anycast",
      reload: (_next, plan) => {
        if (plan.anycast) logger("anycast").warning("Anycast settings change on restart only");
      },
      stop: () => runtime.stop(),
    },
  };
}

/** The status page and its history ring (sampled every SAMPLE_INTERVAL_S). */
function startStatusPart(
  ctx: AppContext,
  config: Config,
  o: { started: number; anycast: AnycastRuntime | null },
): AppPart {
  const log = logger("status");
  const model = new StatusModel({
    version: VERSION,
    pool: () => ctx.pool!,
    now: realtimeSeconds,
    uptimeS: () => Math.round((performance.now() - o.started) / 1000),
    engine: () => reportOf(ctx),
    anycast: () => o.anycast?.report() ?? null,
    residentMemoryBytes: () => Deno.memoryUsage().rss,
    ntsKe: (): NtsKeReport | null =>
      ctx.ntsKe && {
        listen: ctx.ntsKe.bound,
        certificateNotAfter: ctx.ntsKe.certificate().notAfter,
        counters: ctx.ntsKe.counters(),
      },
    broadcast: () => ctx.broadcast(),
  });
  model.sample();
  const sampler = setInterval(() => model.sample(), SAMPLE_INTERVAL_S * 1000);
  const listen = (address: string): StatusServer | null => {
    if (address === "") return null;
    const s = startStatusServer(address, model);
    log.info(`Status page on http://${s.address}/status`);
    return s;
  };
  let server: StatusServer | null = null;
  try {
    server = listen(config.status.listen);
  } catch (e) {
    log.error(`Cannot listen on ${config.status.listen}: ${statusBindReason(e)}`);
  }
  return {
    name: "status",
    closesSockets: true,
    async reload(next, plan) {
      if (!plan.status) return;
      const old = server;
      try {
        server = listen(next.status.listen);
        await old?.close();
      } catch {
        // The new address may overlap the old one (127.0.0.1:P → 0.0.0.0:P): free it first.
        await old?.close();
        try {
          server = listen(next.status.listen);
        } catch (e) {
          log.error(`Cannot listen on ${next.status.listen}: ${statusBindReason(e)}`);
          server = listen(ctx.config().status.listen);
        }
      }
    },
    async stop() {
      clearInterval(sampler);
      await server?.close();
    },
  };
}

/** Why the status server could not listen, in the words the NTP listener uses. */
function statusBindReason(e: unknown): string {
  if (e instanceof Deno.errors.AddrInUse) {
    return "address already in use (is another edge-time running? set status.listen)";
  }
  if (e instanceof Deno.errors.PermissionDenied) return "permission denied";
  return message(e);
}

/**
 * Runs the appliance until SIGTERM/SIGINT. `keys`: the symmetric keys
 * `config` names, already read and checked (main.ts `readConfig`); none
 * when absent (the embedded default config has no key file).
 */
export async function runApp(
  config: Config,
  configPath: string | null,
  keys: AuthKeys = { keys: new Map(), trusted: new Set() },
): Promise<number> {
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
  let authKeys = keys;
  const started = performance.now();
  log.info(`edge-time ${VERSION} starting with ${configPath ?? "the embedded default config"}`);
  if (config.auth.keyfile !== "") log.info(describeKeys(config.auth.keyfile, keys));
  const digests = useOpenSslDigests();
  if (digests) log.debug(`MAC digests from node:crypto and noble (${digests})`);

  const precision = measurePrecision();
  const shared = new SharedSystemState();
  let system: SystemState = unsyncedState(precision);
  let localTimer: ReturnType<typeof setInterval> | undefined;
  const ctx: AppContext = {
    precision,
    shared,
    publish(s) {
      system = s;
      shared.write(s);
    },
    system: () => system,
    config: () => current,
    serveLocal(stratum) {
      clearInterval(localTimer);
      localTimer = undefined;
      if (stratum === 0) return;
      ctx.publish(localState(stratum, precision, realtimeSeconds()));
      localTimer = setInterval(
        () => ctx.publish(localState(stratum, precision, realtimeSeconds())),
        LOCAL_REFRESH_MS,
      );
    },
    engine: null,
    pool: null,
    keys: () => authKeys,
    broadcast: () => [],
    ntsKeyring: null,
    ntsKe: null,
  };

  // The local state is published before the workers answer. Reloads reach
  // the parts in this list's order, the server first: it alone can reject
  // a reload, before any other part has changed. Sockets close last.
  const local = startLocalPart(ctx, config.server.localStratum);
  const server = await startServerPart(ctx, config);
  if (!server) {
    local.stop();
    return 1;
  }
  const parts: AppPart[] = [server, local, startLogPart(), await startEnginePart(ctx, config)];
  parts.push(await startNtsKePart(ctx, config));
  parts.push(startBroadcastPart(ctx, config));
  const anycast = await startAnycastPart(ctx, config);
  if (anycast) parts.push(anycast.part);
  parts.push(startStatusPart(ctx, config, { started, anycast: anycast?.runtime ?? null }));

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
    // NTS sources' CA files, checked as check-config does; a bad one fails that source's KE only.
    for (const e of checkCaFiles(next, text, configPath)) {
      log.error(`${e}; key exchanges with this source fail until it is fixed`);
    }
    // The key file is reread at every SIGHUP. A bad one is one line and
    // the keys in force stay; a source key the keys lack rejects the reload.
    const k = readKeys(next, text, configPath);
    if (k.warning) log.warning(k.warning);
    const fileErrors = k.errors.filter((e) => !e.startsWith(`${configPath}:`));
    let nextKeys: AuthKeys = { keys: authKeys.keys, trusted: new Set(next.auth.trustedKeys) };
    if (k.keys && fileErrors.length === 0) nextKeys = k.keys;
    else if (fileErrors.length > 0) {
      const more = fileErrors.length > 1 ? ` (and ${fileErrors.length - 1} more)` : "";
      log.error(`${fileErrors[0]}${more}; keeping the keys in force`);
    }
    const missing = missingSourceKeys(next, new Set(nextKeys.keys.keys()), text, configPath);
    if (missing.length > 0) {
      for (const e of missing) log.error(e);
      log.error(`Reload rejected (${missing.length} error(s)); keeping the running config`);
      return;
    }
    const keysChanged = !sameKeys(authKeys, nextKeys);
    const plan = planReload(current, next);
    if (keysChanged) {
      authKeys = nextKeys;
      ctx.pool?.setKeys(workerKeys(nextKeys));
      ctx.engine?.setKeys(nextKeys);
      log.info(describeKeys(next.auth.keyfile || "(no key file)", nextKeys));
    }
    if (isNoop(plan)) {
      // The NTS master key file is reread on every SIGHUP (a secret rotation changes no config).
      if (next.nts.masterKeyFile !== "") {
        await parts.find((p) => p.name === "server")?.reload(next, plan);
      }
      await rereadFiles(current);
      return log.info(`Reloaded ${configPath}: no change`);
    }
    for (const p of parts) {
      try {
        if ((await p.reload(next, plan)) === false) return;
      } catch (e) {
        log.error(`Reload of ${p.name} failed: ${message(e)}`);
      }
    }
    current = next;
    await rereadFiles(current);
    log.info(`Reloaded ${configPath}: ${describePlan(plan)}`);
  };
  /** Every SIGHUP: the parts read their files again (certificates), config changed or not. */
  const rereadFiles = async (c: Config): Promise<void> => {
    for (const p of parts) {
      try {
        await p.reread?.(c);
      } catch (e) {
        log.error(`Rereading the files of ${p.name} failed: ${message(e)}`);
      }
    }
  };

  // Reloads run one at a time, in the order the signals came.
  let reloading = Promise.resolve();
  const onHup = () => reloading = reloading.then(reload).catch((e) => log.error(message(e)));
  Deno.removeSignalListener("SIGHUP", hupEarlyListener);
  Deno.addSignalListener("SIGHUP", onHup);
  // The trim makes the next touch of each code page a page fault: the
  // workers hold their sockets meanwhile and touch the serving path again
  // on a private socket before they take the next request.
  if (ctx.pool) await ctx.pool.whileHeld(trimStartupMemory);
  else trimStartupMemory();
  if (hupEarly) onHup();

  const why = await stop.promise;
  log.info(`Stopping on ${why}`);
  Deno.removeSignalListener("SIGHUP", onHup);
  await within(reloading, 300);
  for (const sig of signals) Deno.removeSignalListener(sig, onSignal[sig]!);
  // Parts first (withdraw anycast while we still answer, save the drift file), then sockets.
  const stopAll = (list: AppPart[]) =>
    Promise.all(list.map(async (p) => {
      try {
        await p.stop();
      } catch (e) {
        log.error(`Stopping ${p.name} failed: ${message(e)}`);
      }
    }));
  if (!(await within(stopAll(parts.filter((p) => !p.closesSockets)), STOP_PARTS_MS))) {
    log.warning(`Parts did not stop within ${STOP_PARTS_MS} ms; closing anyway`);
  }
  await within(stopAll(parts.filter((p) => p.closesSockets)), STOP_SOCKETS_MS);
  log.info("Stopped");
  return 0;
}
