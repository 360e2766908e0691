/**
 * The anycast helper's entry for the app: builds the runtime with the real
 * drivers (subprocess runner, file store, NTP query client) and starts it.
 */
import type { Config } from "../config/mod.ts";
import { DenoCommandRunner, DenoFileStore } from "../io/command_runner.ts";
import { queryServer, ReplyRejected } from "../io/query_client.ts";
import { logger } from "../log.ts";
import { type AnycastIo, AnycastRuntime, type LocalTime, selfQueryPort } from "./runtime.ts";

export type { AnycastReport } from "./report.ts";
export { AnycastRuntime } from "./runtime.ts";

/**
 * The real I/O seams: `Deno.Command`, files, and `queryServer` with one
 * attempt, so every health query goes through `checkReply`.
 */
export function realAnycastIo(): AnycastIo {
  return {
    runner: new DenoCommandRunner(),
    files: new DenoFileStore(),
    // A rejected reply is reported by its reason: the caller names the node or address.
    query: (host, port, timeoutMs) =>
      queryServer(host, port, { timeoutMs, attempts: 1 }).catch((e) => {
        throw e instanceof ReplyRejected ? new Error(e.reason) : e;
      }),
  };
}

/** Starts the anycast loop for `config` (mode node or router); `local` reads the clock's state. */
export async function startAnycast(
  config: Config,
  local: () => LocalTime,
): Promise<AnycastRuntime> {
  const log = logger("anycast");
  const rt = new AnycastRuntime({
    anycast: config.anycast,
    selfPort: selfQueryPort(config.server.listen),
    local,
    log: { info: (m) => log.info(m), warn: (m) => log.warning(m), error: (m) => log.error(m) },
  }, realAnycastIo());
  await rt.start();
  return rt;
}
