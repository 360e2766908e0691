/**
 * The broadcast server (`[[broadcast]]`, RFC 5905 mode 5): every
 * `interval_s` seconds, while the published system state is synchronised
 * (an orphan parent's is), a mode 5 packet to each configured group or
 * broadcast address, port 123. Built by lib/ntp/broadcast.ts; sent here.
 *
 * Each destination has a socket of the engine's transport
 * (source_socket.ts): bound to the server's listen address and port with
 * SO_REUSEADDR/SO_REUSEPORT and connected to the destination, as the
 * symmetric peers' sockets are, so the packets come from port 123 of the
 * server (where a listener's calibration requests then go) and, being
 * connected, the socket never takes a share of the server's requests.
 * The transmit timestamp is written from a clock reading taken right
 * before the send, and the MAC, which covers it, after it (as the server
 * workers do with replies).
 */
import type { BroadcastConfig, Config } from "../config/mod.ts";
import { parseSocketAddress } from "../config/socket_address.ts";
import { buildBroadcast, mayBroadcast, pollOfInterval } from "../ntp/broadcast.ts";
import { HEADER_LEN } from "../ntp/packet.ts";
import { stampTransmit } from "../ntp/server.ts";
import { servedCorrectionAt, type SystemState } from "../ntp/system_state.ts";
import { logger } from "../log.ts";
import { interfaceIndex } from "./libc.ts";
import { realtimeSeconds } from "./realtime.ts";
import { SourceSockets } from "./source_socket.ts";

/**
 * Signs a broadcast with key `keyId`: `length` bytes of MAC (key ID and
 * digest) that `write` appends after `buf[0..48)`; a string says why it
 * cannot (no such key).
 */
export type BroadcastSigner = (
  keyId: number,
) => { length: number; write(buf: Uint8Array): void } | string;

/** Per destination, for status and tests. */
export interface BroadcastReport {
  address: string;
  interval_s: number;
  key: number;
  /** Packets handed to the kernel. */
  sent: number;
  /** Intervals skipped because we were not synchronised. */
  unsynchronised: number;
  /** Why the destination cannot be served ("" when it can). */
  error: string;
}

interface Destination {
  cfg: BroadcastConfig;
  id: string;
  report: BroadcastReport;
  timer: ReturnType<typeof setTimeout> | null;
}

/** The running broadcast server. */
export class BroadcastServer {
  readonly #log = logger("broadcast");
  readonly #sockets: SourceSockets;
  readonly #state: () => SystemState;
  #sign: BroadcastSigner | null;
  #dests: Destination[] = [];
  #stopped = false;

  /**
   * Starts sending to `config.broadcast`'s destinations; `state` is the
   * published system state (what the server workers answer with), `sign`
   * the MAC maker for keyed destinations (null: no keys). Throws when the
   * FFI transport cannot be opened.
   */
  constructor(config: Config, state: () => SystemState, sign: BroadcastSigner | null) {
    this.#state = state;
    this.#sign = sign;
    this.#sockets = new SourceSockets(() => {}); // connected to a group: nothing comes back
    this.reconfigure(config, sign);
  }

  /** Destinations and their counters. */
  report(): BroadcastReport[] {
    return this.#dests.map((d) => ({ ...d.report }));
  }

  /** Packets the transport could not send (all destinations). */
  get sendErrors(): number {
    return this.#sockets.counters.sendErrors;
  }

  /** A reload: every destination is reopened from `next` (counters start again). */
  reconfigure(next: Config, sign: BroadcastSigner | null): void {
    this.#sign = sign;
    for (const d of this.#dests) this.#close(d);
    this.#dests = next.broadcast.map((cfg) => this.#open(cfg, next.server.listen));
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    for (const d of this.#dests) this.#close(d);
    await this.#sockets.stop();
  }

  #close(d: Destination): void {
    if (d.timer !== null) clearTimeout(d.timer);
    d.timer = null;
    this.#sockets.close(d.id);
  }

  #open(cfg: BroadcastConfig, listen: string[]): Destination {
    const id = `broadcast ${cfg.address}`;
    const d: Destination = {
      cfg,
      id,
      timer: null,
      report: {
        address: cfg.address,
        interval_s: cfg.intervalS,
        key: cfg.key,
        sent: 0,
        unsynchronised: 0,
        error: "",
      },
    };
    const fail = (why: string) => {
      d.report.error = why;
      this.#log.error(`Broadcast to ${cfg.address}: ${why}`);
      return d;
    };
    const ifindex = cfg.interface === "" ? 0 : interfaceIndex(cfg.interface);
    if (cfg.interface !== "" && ifindex === 0) return fail(`no interface ${cfg.interface}`);
    if (cfg.key !== 0) {
      const m = this.#sign ? this.#sign(cfg.key) : "no auth.keyfile";
      if (typeof m === "string") return fail(`key ${cfg.key}: ${m}`);
    } else if (cfg.insecure) {
      this.#log.warn(
        `Broadcast to ${cfg.address} without a MAC (insecure = true): listeners cannot tell it from a forgery (BCP 223)`,
      );
    }
    const err = this.#sockets.open(id, {
      host: cfg.address,
      port: 123,
      local: localOf(cfg.address, listen),
      broadcast: { ttl: cfg.ttl, ifindex },
    });
    if (err) return fail(err);
    this.#log.info(`Broadcasting to ${cfg.address} every ${cfg.intervalS} s`);
    // The first one soon, so a server synchronised already is heard at once.
    d.timer = setTimeout(() => this.#tick(d), 1000 * Math.random());
    return d;
  }

  #tick(d: Destination): void {
    if (this.#stopped) return;
    d.timer = setTimeout(() => this.#tick(d), d.cfg.intervalS * 1000);
    const state = this.#state();
    if (!mayBroadcast(state)) {
      d.report.unsynchronised++;
      return;
    }
    const mac = d.cfg.key !== 0 && this.#sign ? this.#sign(d.cfg.key) : null;
    if (typeof mac === "string") {
      d.report.error = `key ${d.cfg.key}: ${mac}`;
      return;
    }
    const buf = new Uint8Array(HEADER_LEN + (mac?.length ?? 0));
    const t = realtimeSeconds();
    buildBroadcast(buf, state, pollOfInterval(d.cfg.intervalS), t + servedCorrectionAt(state, t));
    const queued = this.#sockets.send(d.id, buf, (bytes, sec, nsec) => {
      stampTransmit(bytes, 0, state, sec, nsec);
      mac?.write(bytes);
    });
    if (queued) d.report.sent++;
  }
}

/** Where a destination's packets leave from: the server's listen address of that family, its port. */
function localOf(address: string, listen: string[]): { host: string; port: number } {
  const v6 = address.includes(":");
  for (const l of listen) {
    const s = parseSocketAddress(l);
    if (typeof s !== "string" && (s.family === 6) === v6) return { host: s.hostname, port: s.port };
  }
  return { host: v6 ? "::" : "0.0.0.0", port: 123 };
}
