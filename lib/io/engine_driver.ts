/**
 * Runs the peer engine against the real world: one UDP socket per
 * client-mode source (node:dgram, receive time read when the datagram is
 * delivered), symmetric peers through the server's own port (ServerPool
 * forward/sendTo), timers, name resolution, statistics files and the
 * driftfile. Everything it does is what the engine's actions ask for.
 */
import dgram from "node:dgram";
import { lookup } from "node:dns/promises";
import type { Config } from "../config/mod.ts";
import { type Clock, VirtualClock } from "../engine/clock.ts";
import { type Action, Engine, type EngineReconfig } from "../engine/engine.ts";
import type { EngineReport } from "../engine/report.ts";
import { refidOfAddress } from "../engine/refid.ts";
import { parseSocketAddress } from "../config/socket_address.ts";
import type { SystemState } from "../ntp/system_state.ts";
import { logger } from "../log.ts";
import { realtimeSeconds } from "./realtime.ts";
import { appendStats, readDrift, writeDrift } from "./stats_files.ts";

/** How often the driftfile is rewritten (ntpd and chrony: hourly; also at stop). */
export const DRIFT_SAVE_MS = 3600_000;

export interface EngineDriverOptions {
  config: Config;
  precision: number;
  /** Publishes new system state to the server workers. */
  publish(s: SystemState): void;
  /**
   * Sends a symmetric-mode packet from the server port. With `stamp`, the
   * transmit timestamp is written right before it leaves, and reported
   * back through `EngineDriver.sent(stamp, xmt)`.
   */
  sendFromServerPort(bytes: Uint8Array, host: string, port: number, stamp?: number): void;
  /** Tells the server which hosts are configured peers. */
  setPeers(hosts: string[]): void;
  /** Clock to steer; default: virtual with `clock.control = false`, else the kernel. */
  clock?: Clock;
  /** Driftfile save interval, ms (default DRIFT_SAVE_MS; tests shorten it). */
  driftSaveMs?: number;
}

/** The engine's view of a config: sources and the live part of `[clock]`. */
export function engineReconfig(
  c: Config,
): EngineReconfig & { stats: boolean; localRefid: number } {
  return {
    sources: c.source.map((s) => ({
      address: s.address,
      kind: s.kind,
      iburst: s.iburst,
      prefer: s.prefer,
      minPoll: s.minPoll,
      maxPoll: s.maxPoll,
      maxSources: s.maxSources,
    })),
    stepThreshold: c.clock.stepThresholdMs / 1000,
    panicThreshold: c.clock.panicThresholdS,
    orphanStratum: c.clock.orphanStratum,
    orphanWait: c.clock.orphanWaitS,
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
  readonly #sockets = new Map<string, dgram.Socket>();
  #timer: ReturnType<typeof setTimeout> | null = null;
  #driftTimer: ReturnType<typeof setInterval> | null = null;
  #stopped = false;
  readonly #unresolved = new Set<string>();

  private constructor(o: EngineDriverOptions, engine: Engine) {
    this.#o = o;
    this.#config = o.config;
    this.engine = engine;
  }

  /** Reads the driftfile, creates the engine and starts polling. */
  static async start(o: EngineDriverOptions): Promise<EngineDriver> {
    const c = o.config;
    const { ppm: drift, warning } = await readDrift(c.clock.driftfile);
    let clock = o.clock;
    if (!clock) {
      if (c.clock.control) {
        const { LinuxClock } = await import("./clock_linux.ts");
        clock = new LinuxClock();
      } else {
        clock = new VirtualClock();
      }
    }
    const engine = new Engine(
      {
        ...engineReconfig(c),
        precision: o.precision,
        driftPpm: drift,
        confirmSends: true,
      },
      clock,
      realtimeSeconds(),
    );
    const d = new EngineDriver(o, engine);
    if (drift !== null) d.#log.info(`Frequency ${drift.toFixed(3)} ppm from ${c.clock.driftfile}`);
    if (warning) d.#log.warn(warning);
    o.setPeers(engine.peerHosts());
    d.#driftTimer = setInterval(() => void d.saveDrift(), o.driftSaveMs ?? DRIFT_SAVE_MS);
    d.#run(engine.handleTimer(realtimeSeconds()));
    return d;
  }

  /** A symmetric-mode packet the server forwarded (configured peer). */
  forward(bytes: Uint8Array, host: string, port: number, rxSec: number, rxNsec: number): void {
    if (this.#stopped) return;
    this.#run(
      this.engine.handleIncoming(
        host,
        port,
        bytes,
        rxSec + rxNsec * 1e-9,
        Math.random,
        realtimeSeconds(),
      ),
    );
  }

  /**
   * The server worker sent the packet of a send with `stamp`: `xmt` is the
   * transmit timestamp it carried (null: not sent).
   */
  sent(stamp: number, xmt: bigint | null): void {
    if (this.#stopped) return;
    this.#run(this.engine.confirmTransmit(stamp, xmt, realtimeSeconds()));
  }

  /** Status for the status page. */
  report(): EngineReport {
    return this.engine.report(realtimeSeconds());
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
    this.#run(this.engine.reconfigure(engineReconfig(next), realtimeSeconds()));
    this.#o.setPeers(this.engine.peerHosts());
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
    for (const s of this.#sockets.values()) s.close();
    this.#sockets.clear();
    await this.saveDrift();
  }

  #run(actions: Action[]): void {
    if (this.#stopped) return;
    for (const a of actions) {
      switch (a.kind) {
        case "send":
          if (a.mode === 3) this.#sendClient(a.source, a.host, a.port, a.bytes);
          else this.#o.sendFromServerPort(a.bytes, a.host, a.port, a.stamp);
          break;
        case "setTimer": {
          if (this.#timer) clearTimeout(this.#timer);
          const ms = Math.max(0, Math.min(3600_000, (a.at - realtimeSeconds()) * 1000));
          this.#timer = setTimeout(() => this.#run(this.engine.handleTimer(realtimeSeconds())), ms);
          break;
        }
        case "log":
          if (a.level === "warning") this.#log.warn(a.message);
          else this.#log.info(a.message);
          break;
        case "demobilize":
          this.#sockets.get(a.source)?.close();
          this.#sockets.delete(a.source);
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
    this.#run(this.engine.addResolved(source, addresses, realtimeSeconds()));
    this.#o.setPeers(this.engine.peerHosts());
  }

  #sendClient(id: string, host: string, port: number, bytes: Uint8Array): void {
    let s = this.#sockets.get(id);
    if (!s) {
      s = dgram.createSocket(host.includes(":") ? "udp6" : "udp4");
      s.on("error", () => {}); // ICMP unreachable and the like: the reach register shows it
      s.on("message", (msg: Uint8Array, rinfo: dgram.RemoteInfo) => {
        const recv = realtimeSeconds();
        if (this.#stopped) return;
        this.#run(this.engine.handleIncoming(rinfo.address, rinfo.port, new Uint8Array(msg), recv));
      });
      this.#sockets.set(id, s);
    }
    s.send(bytes, port, host);
  }
}
