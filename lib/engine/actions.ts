/**
 * What the engine asks its driver (lib/io/engine_driver.ts, lib/sim/) to
 * do: an association's actions (send, log, demobilise) and the engine's
 * own (timer, name resolution, stats line).
 */
import type { SourceAction } from "./source.ts";

/** What the engine asks its driver to do. */
export type Action =
  | SourceAction
  | { kind: "setTimer"; at: number }
  | {
    kind: "resolve";
    name: string;
    port: number;
    /** Index of the source in `opts.sources` when the action was made. */
    sourceIndex: number;
    /** The source's identity (`sourceKey`): pass it back to `addResolved`, it survives reloads. */
    source: string;
    want: number;
  }
  | { kind: "stats"; file: "loopstats" | "peerstats"; day: string; line: string };
