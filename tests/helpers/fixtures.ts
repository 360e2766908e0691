/** Plain values several unit tests build on. */
import type { Action, Engine, EngineOptions } from "../../lib/engine/engine.ts";
import { canonicalIp } from "../../lib/engine/refid.ts";
import { sourceId, type Transmit } from "../../lib/engine/source.ts";
import { AccessList, type Cidr, parseCidr } from "../../lib/ntp/access.ts";
import { RateLimiter } from "../../lib/ntp/rate_limit.ts";
import { COUNTER_COUNT, type ServerContext, stampTransmit } from "../../lib/ntp/server.ts";
import type { SystemState } from "../../lib/ntp/system_state.ts";
import type { QueryResult } from "../../lib/ntp/query.ts";

/** A good reply to a self-query or node check: stratum 8, LOCL, 100 µs off. */
export function queryReply(over: Partial<QueryResult> = {}): QueryResult {
  return {
    offset: 0.0001,
    delay: 0.0002,
    stratum: 8,
    refid: "LOCL",
    leap: 0,
    version: 4,
    poll: 0,
    precision: -20,
    rootDelay: 0,
    rootDisp: 0,
    ...over,
  };
}

/** Engine options with the config defaults (orphan wait shortened to 10 s). */
export function engineOptions(
  sources: EngineOptions["sources"],
  extra: Partial<EngineOptions> = {},
): EngineOptions {
  return {
    sources,
    stepThreshold: 0.128,
    panicThreshold: 1000,
    orphanStratum: 7,
    orphanWait: 10,
    minSources: 1,
    precision: -20,
    localRefid: 0x0a000001,
    driftPpm: null,
    ...extra,
  };
}

/** An engine whose `handleIncoming` takes no `sent`: `driven()` supplies it. */
export type DrivenEngine = Omit<Engine, "handleIncoming"> & {
  handleIncoming(
    host: string,
    port: number,
    bytes: Uint8Array,
    t4: number,
    rand?: () => number,
  ): Action[];
};

/**
 * Wraps an engine in the driver's bookkeeping, ideally: each send leaves
 * at the time of the call that produced it (symmetric packets stamped with
 * the served time then), and each packet comes back with the last send to
 * its source, as lib/io/engine_driver.ts does with kernel timestamps.
 */
export function driven(engine: Engine): DrivenEngine {
  const last = new Map<string, Transmit>();
  const record = (actions: Action[], t: number): Action[] => {
    for (const a of actions) {
      if (a.kind !== "send") continue;
      if (a.stampXmt) {
        const sec = Math.floor(t);
        stampTransmit(a.bytes, 0, engine.systemState(), sec, (t - sec) * 1e9);
      }
      last.set(a.source, { xmt: parsedXmt(a.bytes), t1: t });
    }
    return actions;
  };
  const sentTo = (host: string, port: number): Transmit | null => {
    const ip = canonicalIp(host);
    const exact = last.get(sourceId(ip, port));
    if (exact) return exact;
    for (const [id, s] of last) if (engine.associations.get(id)?.opts.host === ip) return s;
    return null;
  };
  const wrapped: Record<string, unknown> = {
    handleIncoming: (h: string, p: number, b: Uint8Array, t4: number, rand = Math.random) =>
      record(engine.handleIncoming(h, p, b, t4, sentTo(h, p), rand), t4),
    handleTimer: (now: number, rand?: () => number) => record(engine.handleTimer(now, rand), now),
    reconfigure: (o: Parameters<Engine["reconfigure"]>[0], now: number) =>
      record(engine.reconfigure(o, now), now),
    addResolved: (s: number | string, addrs: string[], now: number) =>
      record(engine.addResolved(s, addrs, now), now),
  };
  return new Proxy(engine, {
    get(target, prop) {
      if (typeof prop === "string" && prop in wrapped) return wrapped[prop];
      const v = Reflect.get(target, prop, target);
      return typeof v === "function" ? v.bind(target) : v;
    },
  }) as unknown as DrivenEngine;
}

function parsedXmt(bytes: Uint8Array): bigint {
  return new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(40);
}

/**
 * A server context that answers everyone (IPv4 and IPv6), with rate
 * limiting off and fresh counters, serving `system`; `over` replaces fields
 * (a `txStore` for interleaved mode, an access list, a limiter …).
 */
export function serverContext(
  system: SystemState,
  over: Partial<ServerContext> = {},
): ServerContext {
  return {
    system,
    access: new AccessList(["0.0.0.0/0", "::/0"].map((c) => parseCidr(c) as Cidr), []),
    limiter: new RateLimiter({ intervalS: 0, burst: 1 }),
    denyKod: false,
    rateKod: true,
    minPoll: 0,
    counters: new Float64Array(COUNTER_COUNT),
    ...over,
  };
}
