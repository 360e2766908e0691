/** Plain values several unit tests build on. */
import type { EngineOptions } from "../../lib/engine/engine.ts";
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
    kiss: "",
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
