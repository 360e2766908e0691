/**
 * Logging setup: one line per event on stderr,
 * `2026-11-25T09:00:00.000Z INFO  server: message`. The library behind the
 * "log" import-map name is LogTape; only this file configures it.
 */
import { configure, getLogger, type Logger, type LogRecord } from "log";

export type LogLevel = "debug" | "info" | "warning" | "error";

function format(r: LogRecord): string {
  const msg = r.message.map((m) => (typeof m === "string" ? m : JSON.stringify(m))).join("");
  return `${new Date(r.timestamp).toISOString()} ${r.level.toUpperCase().padEnd(7)} ${
    r.category.slice(1).join(".")
  }: ${msg}`;
}

export async function setupLogging(level: LogLevel): Promise<void> {
  await configure({
    reset: true,
    sinks: { stderr: (r: LogRecord) => console.error(format(r)) },
    loggers: [
      { category: ["edge-time"], lowestLevel: level, sinks: ["stderr"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["stderr"] },
    ],
  });
}

/** A logger for one part of the appliance, e.g. `logger("server")`. */
export function logger(part: string): Logger {
  return getLogger(["edge-time", part]);
}
