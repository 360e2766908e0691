/**
 * Runs the peer engine against the real world: one timestamped UDP socket
 * per association (source_socket.ts: kernel receive and transmit
 * timestamps; symmetric peers from the server's port), timers, name
 * resolution, statistics files and the driftfile. Everything it does is
 * what the engine's actions ask for; it owns every timestamp the engine
 * sees (t1 and t4), so nothing is stamped after an event-loop hop.
 */
import { CAP_SYS_TIME, hasCapability } from "./capabilities.ts";
import { lookup } from "node:dns/promises";
import type { Config } from "../config/mod.ts";
import { type Clock, VirtualClock } from "../engine/clock.ts";
import {
  type Action,
  Engine,
  type EngineReconfig,
  sourceKey,
  splitHostPort,
} from "../engine/engine.ts";
import type { EngineReport } from "../engine/report.ts";
import { canonicalIp, refidOfAddress } from "../engine/refid.ts";
import { parseSocketAddress } from "../config/socket_address.ts";
import { stampTransmit } from "../ntp/server.ts";
import { Mode } from "../ntp/packet.ts";
import type { SystemState } from "../ntp/system_state.ts";
import { logger } from "../log.ts";
import { realtimeSeconds } from "./realtime.ts";
import { appendStats, readDrift, writeDrift } from "./stats_files.ts";
import { describeLeapTable, loadLeapFile } from "./leap_file.ts";
import { type SourceEndpoint, SourceSockets, type XmtWriter } from "./source_socket.ts";
import type { AuthKeys } from "../auth/keys.ts";
import { macLength, writeMac } from "../auth/mac.ts";
import { HEADER_LEN } from "../ntp/packet.ts";
import { interfaceIndex } from "./libc.ts";
import { type KeyExchange, type NtsSourceConfig, NtsSources } from "./nts_sources.ts";
import { ntsKeyExchange } from "./nts_ke_client.ts";
import { installOpensslSiv } from "./openssl_siv.ts";

/** How often the driftfile is rewritten (ntpd and chrony: hourly; also at stop). */
export const DRIFT_SAVE_MS = 3600_000;

export interface EngineDriverOptions {
  config: Config;
  precision: number;
  /** Publishes new system state to the server workers. */
  publish(s: SystemState): void;
  /** Clock to steer; default: virtual with `clock.control = false`, else the kernel. */
  clock?: Clock;
  /** Driftfile save interval, ms (default DRIFT_SAVE_MS; tests shorten it). */
  driftSaveMs?: number;
  /** Symmetric keys for sources with `key` (default: none). */
  keys?: AuthKeys;
  /** NTS-KE of `nts = true` sources (default: lib/io/nts_ke_client.ts over OpenSSL). */
  keyExchange?: KeyExchange;
}

/** The engine's view of a config: sources, the live part of `[clock]`, `local_stratum`. */
export function engineReconfig(
  c: Config,
): EngineReconfig & {
  stats: boolean;
  localRefid: number;
  localStratum: number;
  leapSmear: number;
} {
  return {
    sources: c.source.map((s) => ({
      address: s.address,
      kind: s.kind,
      iburst: s.iburst,
      prefer: s.prefer,
      minPoll: s.minPoll,
      maxPoll: s.maxPoll,
      maxSources: s.maxSources,
      xleave: s.xleave,
      key: s.key,
      requireAuth: s.requireAuth,
      insecure: s.insecure,
      ...(s.nts ? { ntsPort: s.ntsPort } : {}),
    })),
    stepThreshold: c.clock.stepThresholdMs / 1000,
    panicThreshold: c.clock.panicThresholdS,
    orphanStratum: c.clock.orphanStratum,
    orphanWait: c.clock.orphanWaitS,
    localStratum: c.server.localStratum,
    leapSmear: c.server.leapSmearS,
    minSources: c.clock.minSources,
    stats: c.stats.dir !== "",
    localRefid: localRefid(c.server.listen),
  };
}

/** The refid we announce as orphan parent: our first specific listen address, else an interface's. */
export function localRefid(listen: string[]): number {
  for (const l of listen) {
    const a = parseSocketAddress(l);
    if (typeof a !== "string" && a.hostname !== "0.0.0.0" && a.hostname !== "::") {
      return refidOfAddress(a.hostname);
    }
  }
  try {
    const ifs = Deno.networkInterfaces().filter((i) =>
      i.family === "IPv4" && i.address !== "127.0.0.1"
    );
    if (ifs[0]) return refidOfAddress(ifs[0].address);
  } catch { /* no --allow-sys: fall through */ }
  return refidOfAddress("127.0.0.1");
}

/** The running engine and its I/O. */
export class EngineDriver {
  readonly engine: Engine;
  readonly #o: EngineDriverOptions;
  /** The config in force (replaced by `reconfigure`). */
  #config: Config;
  readonly #log = logger("engine");
  /** Null when FFI is not available (no --allow-ffi): sources then stay unreachable. */
  readonly #sockets: SourceSockets | null;
  /** Associations whose socket failed to open, logged once each until it opens. */
  readonly #failed = new Set<string>();
  #timer: ReturnType<typeof setTimeout> | null = null;
  #driftTimer: ReturnType<typeof setInterval> | null = null;
  #stopped = false;
  readonly #unresolved = new Set<string>();
  #keys: AuthKeys;
  /** Sources whose key is missing from the key file, logged once each until it is back. */
  readonly #keyMissing = new Set<string>();
  /** Listener socket id (the broadcast source's `sourceKey`) → where it listens ("host port interface"). */
  readonly #listeners = new Map<string, string>();
  /** This host's addresses: our own broadcasts, looped back to a listener, are not a server heard. */
  #ownAddresses = new Set<string>();
  /** NTS state of `nts = true` sources' associations (keys, cookies, KE). */
  readonly #nts: NtsSources;
  /** The endpoint each NTS association's socket is connected to ("host port"). */
  readonly #ntsOpen = new Map<string, string>();

  private constructor(o: EngineDriverOptions, engine: Engine) {
    this.#o = o;
    this.#config = o.config;
    this.engine = engine;
    this.#keys = o.keys ?? { keys: new Map(), trusted: new Set() };
    engine.setKeys(this.#keys);
    this.#nts = new NtsSources(
      o.keyExchange ?? ntsKeyExchange,
      (level, line) => level === "warning" ? this.#log.warn(line) : this.#log.info(line),
      realtimeSeconds,
    );
    let sockets: SourceSockets | null = null;
    try {
      sockets = new SourceSockets((id, bytes, t4, from) =>
        from ? this.#heard(id, bytes, t4, from) : this.#incoming(id, bytes, t4)
      );
    } catch (e) {
      this.#log.error(
        `Sources need the FFI socket driver (--allow-ffi on Linux): ${
          e instanceof Error ? e.message : e
        }`,
      );
    }
    this.#sockets = sockets;
  }

  /** Reads the driftfile, creates the engine and starts polling. */
  static async start(o: EngineDriverOptions): Promise<EngineDriver> {
    const c = o.config;
    const { ppm: drift, warning } = await readDrift(c.clock.driftfile);
    let clock = o.clock;
    if (!clock) {
      if (c.clock.control && hasCapability(CAP_SYS_TIME) === false) {
        // Without it every adjtimex fails: serve what we believe instead of stopping.
        logger("engine").error(
          "clock.control = true, but this process lacks CAP_SYS_TIME: serving without steering " +
            "the clock (run as root or grant CAP_SYS_TIME, or set clock.control = false)",
        );
        clock = new VirtualClock();
      } else if (c.clock.control) {
        const { LinuxClock } = await import("./clock_linux.ts");
        clock = new LinuxClock();
      } else {
        clock = new VirtualClock();
      }
    }
    const leap = loadLeapFile(c.clock.leapfile);
    const engine = new Engine(
      {
        ...engineReconfig(c),
        precision: o.precision,
        driftPpm: drift,
        leapTable: typeof leap === "string" ? null : leap,
      },
      clock,
      realtimeSeconds(),
    );
    const d = new EngineDriver(o, engine);
    if (drift !== null) d.#log.info(`Frequency ${drift.toFixed(3)} ppm from ${c.clock.driftfile}`);
    if (warning) d.#log.warn(warning);
    if (typeof leap === "string") d.#log.error(`${leap}; leap seconds come from the sources`);
    else if (leap) d.#log.info(describeLeapTable(leap));
    d.#driftTimer = setInterval(() => void d.saveDrift(), o.driftSaveMs ?? DRIFT_SAVE_MS);
    d.#listen(c);
    d.#run(engine.handleTimer(realtimeSeconds()));
    return d;
  }

  /**
   * Status for the status page: the engine's, with the NTS state of NTS
   * sources. An NTS association is named by its NTS-KE server
   * (`host:nts_port`); its `address` (and `system_peer`) shows where its
   * NTP goes once a key exchange named that, as `peers` should.
   */
  report(): EngineReport {
    const r = this.engine.report(realtimeSeconds());
    for (const s of r.sources) {
      const nts = this.#nts.report(s.address);
      if (!nts) continue;
      s.nts = nts;
      if (nts.ntp_server === "") continue;
      if (r.system.system_peer === s.address) r.system.system_peer = nts.ntp_server;
      s.address = nts.ntp_server;
    }
    return r;
  }

  /**
   * A reload: hands the new sources and clock settings to the engine
   * (kept sources keep their state) and uses the new driftfile and stats
   * paths from now on. `clock.control` only changes on restart.
   */
  reconfigure(next: Config): void {
    if (this.#stopped) return;
    if (next.clock.control !== this.#config.clock.control) {
      this.#log.warn("clock.control changes on restart only; keeping the running clock");
    }
    this.#config = next;
    // The leap file is read again at every reload; a bad one keeps the table in force.
    const leap = loadLeapFile(next.clock.leapfile);
    const before = this.engine.opts.leapTable ?? null;
    if (typeof leap === "string") this.#log.error(`${leap}; keeping the leap table in force`);
    else if (leap && JSON.stringify(leap) !== JSON.stringify(before)) {
      this.#log.info(describeLeapTable(leap));
    }
    this.#run(
      this.engine.reconfigure(
        { ...engineReconfig(next), ...(typeof leap === "string" ? {} : { leapTable: leap }) },
        realtimeSeconds(),
      ),
    );
    this.#listen(next);
  }

  /**
   * Opens a listener for each broadcast source of `c` that has none yet
   * (bound to its group or broadcast address, joined on its interface) and
   * closes those of sources that are gone. A listener that cannot open is
   * one error line; the reload after the cause is fixed tries again.
   */
  #listen(c: Config): void {
    const sockets = this.#sockets;
    if (!sockets) return;
    try {
      this.#ownAddresses = new Set(Deno.networkInterfaces().map((i) => canonicalIp(i.address)));
    } catch { /* no --allow-sys: the engine still ignores its refid address */ }
    const want = new Map<string, Config["source"][number]>();
    for (const s of c.source) {
      if (s.kind !== "broadcast") continue;
      // The engine's own identity of the source: what handleBroadcast looks it up by.
      const es = this.engine.opts.sources.find((x) =>
        x.kind === "broadcast" && x.address === s.address
      );
      if (es) want.set(sourceKey(es), s);
    }
    const where = (s: Config["source"][number]) => `${s.address} ${s.interface}`;
    for (const [id, at] of [...this.#listeners]) {
      const s = want.get(id);
      if (s && where(s) === at) continue;
      // Gone, or its interface changed: closed here, reopened below.
      sockets.close(id);
      this.#listeners.delete(id);
    }
    for (const [id, s] of want) {
      if (this.#listeners.has(id)) continue;
      const { host, port } = splitHostPort(s.address, 123);
      const ifindex = s.interface === "" ? 0 : interfaceIndex(s.interface);
      if (s.interface !== "" && ifindex === 0) {
        this.#log.error(`Broadcast source ${s.address}: no interface ${s.interface}`);
        continue;
      }
      const err = sockets.listen(id, { host, port, ifindex });
      if (err) {
        this.#log.error(`Cannot listen for broadcasts: ${err}`);
        continue;
      }
      this.#listeners.set(id, where(s));
      if (s.insecure) {
        this.#log.warn(
          `Broadcast source ${s.address}: insecure = true: unauthenticated broadcasts are used (anyone on the LAN can steer this clock; BCP 223)`,
        );
      }
      this.#log.info(`Listening for broadcasts on ${s.address}`);
    }
  }

  /** A datagram on a broadcast listener, from `from`, with its kernel receive time. */
  #heard(id: string, bytes: Uint8Array, t4: number, from: { host: string; port: number }): void {
    if (this.#stopped) return;
    if (!this.#listeners.has(id) || this.#ownAddresses.has(canonicalIp(from.host))) return;
    const source = id; // a listener's id is its source's `sourceKey`
    this.#safely(
      `broadcast from ${from.host}`,
      () => this.engine.handleBroadcast(source, from.host, from.port, bytes, t4),
    );
  }

  /** New symmetric keys (key file reread on SIGHUP, `auth.trusted_keys` changed). */
  setKeys(keys: AuthKeys): void {
    this.#keys = keys;
    this.engine.setKeys(keys);
    this.#keyMissing.clear();
  }

  /** Writes the current frequency to the driftfile (once the clock was updated at least once). */
  async saveDrift(): Promise<void> {
    if (this.engine.discipline.updates === 0) return;
    const err = await writeDrift(this.#config.clock.driftfile, this.engine.discipline.freq * 1e6);
    if (err) this.#log.warn(err);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    if (this.#driftTimer) clearInterval(this.#driftTimer);
    await this.#sockets?.stop();
    await this.saveDrift();
  }

  #run(actions: Action[]): void {
    if (this.#stopped) return;
    for (const a of actions) {
      switch (a.kind) {
        case "send":
          this.#send(a);
          break;
        case "setTimer": {
          if (this.#timer) clearTimeout(this.#timer);
          const ms = Math.max(0, Math.min(3600_000, (a.at - realtimeSeconds()) * 1000));
          this.#timer = setTimeout(
            () => this.#safely("poll timer", () => this.engine.handleTimer(realtimeSeconds())),
            ms,
          );
          break;
        }
        case "log":
          if (a.level === "warning") this.#log.warn(a.message);
          else this.#log.info(a.message);
          break;
        case "demobilize":
          this.#sockets?.close(a.source);
          this.#nts.forget(a.source);
          this.#ntsOpen.delete(a.source);
          break;
        case "resolve":
          void this.#resolve(a.name, a.source);
          break;
        case "stats": {
          const dir = this.#config.stats.dir;
          if (dir === "") break;
          void appendStats(dir, a.file, a.day, a.line).then((err) => err && this.#log.warn(err));
          break;
        }
      }
    }
    this.#o.publish(this.engine.systemState());
  }

  /** Resolves a source's name; a failed lookup is an empty answer, the engine retries later. */
  async #resolve(name: string, source: string): Promise<void> {
    let addresses: string[] = [];
    try {
      addresses = (await lookup(name, { all: true })).map((r) => r.address);
    } catch (e) {
      // Logged once until the name resolves again: the engine retries every few minutes.
      if (!this.#unresolved.has(name)) {
        this.#log.warn(`Cannot resolve source ${name}: ${e instanceof Error ? e.message : e}`);
      }
      this.#unresolved.add(name);
    }
    if (addresses.length > 0) this.#unresolved.delete(name);
    if (this.#stopped) return;
    this.#safely(
      `addresses of ${name}`,
      () => this.engine.addResolved(source, addresses, realtimeSeconds()),
    );
  }

  /** A datagram on an association's socket, with its kernel receive time. */
  #incoming(id: string, bytes: Uint8Array, t4: number): void {
    if (this.#stopped) return;
    const a = this.engine.associations.get(id);
    if (!a) return;
    if (this.#nts.has(id)) {
      // Only authentic replies reach the engine (their header; the fields were checked).
      const header = this.#nts.accept(id, bytes);
      if (!header) return;
      bytes = header;
    }
    const sent = this.#sockets?.lastSent(id) ?? null;
    this.#safely(
      `packet from ${id}`,
      () => this.engine.handleIncoming(a.opts.host, a.opts.port, bytes, t4, sent),
    );
  }

  /**
   * Runs an engine call and its actions. Nothing a source or a packet does
   * may end the process: an exception (a bug) is one error line, and the
   * engine goes on with the next packet or timer.
   */
  #safely(what: string, call: () => Action[]): void {
    try {
      this.#run(call());
    } catch (e) {
      this.#log.error(`Engine: ${what}: ${e instanceof Error ? e.message : e}`);
      if (this.#stopped) return;
      // The failed call may have lost its setTimer: poll again shortly.
      if (this.#timer) clearTimeout(this.#timer);
      this.#timer = setTimeout(
        () => this.#safely("poll timer", () => this.engine.handleTimer(realtimeSeconds())),
        1000,
      );
    }
  }

  /** The NTS settings of association `id`'s source, or null when it is not `nts = true`. */
  #ntsConfig(id: string): NtsSourceConfig | null {
    const key = this.engine.sourceOf(id);
    const src = key === undefined
      ? undefined
      : this.#config.source.find((s) =>
        sourceKey({ ...s, ntsPort: s.nts ? s.ntsPort : 0 }) === key
      );
    if (!src?.nts) return null;
    return { host: splitHostPort(src.address, 123).host, port: src.ntsPort, caFile: src.caFile };
  }

  /**
   * An NTS association's poll: the request with its NTS fields, sent to
   * the server the KE named, its authenticator computed right after the
   * xmt write. Without cookies nothing is sent; a KE starts instead.
   */
  #sendNts(a: Extract<Action, { kind: "send" }>, sockets: SourceSockets): void {
    const req = this.#nts.request(a.source, a.bytes, a.host);
    const ep = this.#nts.endpoint(a.source);
    if (!req || !ep) return;
    const where = `${ep.host} ${ep.port}`;
    if (!sockets.has(a.source) || this.#ntsOpen.get(a.source) !== where) {
      const err = sockets.open(a.source, ep);
      if (err) {
        if (!this.#failed.has(a.source)) this.#log.error(`Cannot open a socket for ${err}`);
        this.#failed.add(a.source);
        return;
      }
      this.#failed.delete(a.source);
      this.#ntsOpen.set(a.source, where);
    }
    sockets.send(a.source, req.bytes, (bytes, sec, nsec) => {
      if (a.stampXmt) stampTransmit(bytes, 0, this.engine.clockState(), sec, nsec);
      req.seal(bytes);
    });
  }

  #send(a: Extract<Action, { kind: "send" }>): void {
    const sockets = this.#sockets;
    if (!sockets) return;
    const nts = this.#ntsConfig(a.source);
    if (nts) {
      installOpensslSiv(); // once: AES-SIV from libcrypto for the authenticators (cached)
      this.#nts.track(a.source, nts);
      return this.#sendNts(a, sockets);
    }
    if (this.#nts.has(a.source)) {
      // No longer NTS (a reload): plain packets go to the configured address.
      this.#nts.forget(a.source);
      this.#ntsOpen.delete(a.source);
      sockets.close(a.source);
    }
    if (!sockets.has(a.source)) {
      const err = sockets.open(a.source, this.#endpoint(a));
      if (err) {
        // The reach register shows the failure; the line says why, once.
        if (!this.#failed.has(a.source)) this.#log.error(`Cannot open a socket for ${err}`);
        this.#failed.add(a.source);
        return;
      }
      this.#failed.delete(a.source);
    }
    // Symmetric packets carry the served time of the clock reading taken
    // right before the send, as the server's replies do (on UTC: never smeared).
    const stamp: XmtWriter | undefined = a.stampXmt
      ? (bytes, sec, nsec) => stampTransmit(bytes, 0, this.engine.clockState(), sec, nsec)
      : undefined;
    if (a.key === 0) {
      sockets.send(a.source, a.bytes, stamp);
      return;
    }
    // The MAC covers xmt: it is made after the stamp, right before the send.
    const key = this.#keys.keys.get(a.key);
    if (!key) {
      // Config checks keep this from happening at start; a key file edited since can.
      if (!this.#keyMissing.has(a.source)) {
        this.#log.error(`${a.source}: key ${a.key} is not in the key file; not sending`);
      }
      this.#keyMissing.add(a.source);
      return;
    }
    const bytes = new Uint8Array(HEADER_LEN + 4 + macLength(key.type));
    bytes.set(a.bytes.subarray(0, HEADER_LEN));
    sockets.send(a.source, bytes, (b, sec, nsec) => {
      stamp?.(b, sec, nsec);
      writeMac(key, b, 0, HEADER_LEN);
    });
  }

  /** Where an association's socket sends from: symmetric peers from the server's address and port. */
  #endpoint(a: Extract<Action, { kind: "send" }>): SourceEndpoint {
    if (a.mode === Mode.client) return { host: a.host, port: a.port };
    const v6 = a.host.includes(":");
    for (const l of this.#config.server.listen) {
      const s = parseSocketAddress(l);
      if (typeof s !== "string" && (s.family === 6) === v6) {
        return { host: a.host, port: a.port, local: { host: s.hostname, port: s.port } };
      }
    }
    return { host: a.host, port: a.port, local: { host: v6 ? "::" : "0.0.0.0", port: 123 } };
  }
}
