/**
 * Fake inputs for the status tests: an engine report with three sources,
 * an anycast node report, server counters, and a StatusModel over them
 * with a fixed clock, so handler tests need no sockets and no appliance.
 */
import type { AnycastReport } from "../../lib/anycast/report.ts";
import type { EngineReport } from "../../lib/engine/report.ts";
import type { ServerCounters } from "../../lib/contracts.ts";
import { History } from "../../lib/status/history.ts";
import { StatusModel } from "../../lib/status/mod.ts";

export const T0 = 1_790_000_000;

export function fakeEngine(over: Partial<EngineReport["system"]> = {}): EngineReport {
  return {
    system: {
      synchronised: true,
      leap: 0,
      stratum: 2,
      refid: "192.0.2.1",
      system_peer: "192.0.2.1",
      ref_time: T0 - 10,
      offset_s: 12e-6,
      frequency_ppm: -3.25,
      skew_ppm: 0.2,
      root_delay_s: 0.0012,
      root_dispersion_s: 0.0004,
      update_interval_s: 64,
      orphan: false,
      ...over,
    },
    sources: [
      {
        tally: "*",
        address: "192.0.2.1",
        kind: "server",
        refid: ".GPS.",
        stratum: 1,
        when_s: 12,
        poll: 6,
        reach: 0o377,
        delay_s: 0.00123,
        offset_s: 12e-6,
        jitter_s: 4e-6,
      },
      {
        tally: "+",
        address: "ntp-b.example.net",
        kind: "pool",
        refid: "198.51.100.7",
        stratum: 2,
        when_s: 40,
        poll: 6,
        reach: 0o17,
        delay_s: 0.0215,
        offset_s: -0.00031,
        jitter_s: 0.00012,
      },
      {
        tally: "x",
        address: "2001:db8::7b",
        kind: "peer",
        refid: "LOCL",
        stratum: 5,
        when_s: -1,
        poll: 4,
        reach: 0,
        delay_s: 0,
        offset_s: 0,
        jitter_s: 0,
        state: "denied",
        counters: { kod_deny: 1 },
      },
    ],
    counters: {
      malformed: 1,
      unknown_source: 2,
      bogus: 3,
      replay: 0,
      kod_rate: 0,
      kod_deny: 1,
      panic: 0,
      steps: 1,
      spikes: 0,
      clock_updates: 42,
      broadcast_received: 0,
      broadcast_unauthenticated: 0,
      broadcast_bad_mac: 0,
      broadcast_bad_mode: 0,
      broadcast_full: 0,
    },
  };
}

export function fakeAnycast(healthy = true): AnycastReport {
  return {
    mode: "node",
    state: healthy ? "announced" : "withdrawn",
    healthy,
    reason: healthy ? "" : "offset 0.2 s exceeds 0.1 s",
    announced: healthy ? ["192.0.2.123/32"] : [],
    nexthops: [],
    error: "",
    transitions: [
      { at: T0 - 600, from: "withdrawn", to: "announced", reason: "healthy", subject: "gate" },
      ...(healthy
        ? []
        : [{ at: T0 - 5, from: "announced", to: "withdrawn", reason: 'offset "0.2 s" <high>' }]),
    ],
  };
}

export function fakeCounters(scale = 1): ServerCounters {
  return {
    received: 1000 * scale,
    answered: 950 * scale,
    kod_rate: 10 * scale,
    kod_deny: 5 * scale,
    rate_limited: 30 * scale,
    denied: 7 * scale,
    dropped: {
      malformed: 3 * scale,
      mode: 5 * scale,
      control: 5 * scale,
      rate_limited: 20 * scale,
      denied: 2 * scale,
    },
    send_errors: 1 * scale,
    send_latency_us: 3.2,
    interleaved: 2 * scale,
    authenticated: 4 * scale,
    crypto_nak: 3 * scale,
    bad_mac: 1 * scale,
    nts: { requests: 4 * scale, naks: 1 * scale, bad_authenticator: 0 },
  };
}

export interface FakeState {
  now: number;
  engine: EngineReport;
  anycast: AnycastReport | null;
  counters: ServerCounters;
}

/** A StatusModel over `state` (mutate it between calls); `throwIn` makes a getter fail. */
export function fakeModel(
  state: Partial<FakeState> = {},
  opts: { history?: History; throwIn?: "engine" } = {},
): { model: StatusModel; state: FakeState } {
  const s: FakeState = {
    now: T0,
    engine: fakeEngine(),
    anycast: null,
    counters: fakeCounters(),
    ...state,
  };
  const model = new StatusModel({
    version: "9.9.9-test",
    pool: () => ({
      driver: "ffi-recvmmsg",
      driverReason: "test",
      workerCount: 2,
      bound: ["127.0.0.1:123"],
      counters: () => s.counters,
    }),
    now: () => s.now,
    uptimeS: () => 3723,
    engine: () => {
      if (opts.throwIn === "engine") throw new Error("engine report unavailable");
      return s.engine;
    },
    anycast: () => s.anycast,
    residentMemoryBytes: () => 50 * 2 ** 20,
  }, opts.history ?? new History({ capacity: 64 }));
  return { model, state: s };
}
