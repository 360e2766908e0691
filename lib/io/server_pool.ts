/**
 * Runs the NTP server in Deno Workers, one per core by default, each with
 * its own SO_REUSEPORT sockets, so serving never waits on the engine, the
 * status page or the garbage collector of the main thread.
 */
import type { ServerCounters, ServerView } from "../contracts.ts";
import { Counter, COUNTER_COUNT } from "../ntp/server.ts";

export type { ServerCounters };
import { SharedSystemState } from "../ntp/system_state.ts";
import { TX_STORE_BYTES } from "../ntp/tx_store.ts";
import { rateLimitTableBytes } from "../ntp/rate_limit.ts";
import type { ServerOptions } from "./server_options.ts";
import type { NtsKeys } from "./nts_keys.ts";
import type { FromWorker, ToWorker, WorkerKeys } from "./server_worker.ts";
import { ffiAvailability, probeAddress } from "./udp.ts";
import { parseSocketAddress } from "../config/socket_address.ts";

export interface ServerPoolOptions {
  listen: string[];
  /**
   * First check that no other process holds each address (`probeAddress`):
   * true when the pool starts with the appliance, false for a pool that
   * takes over from ours on the same addresses.
   */
  probe?: boolean;
  /** 0 = one per CPU core. */
  workers: number;
  driver: "auto" | "ffi" | "portable";
  options: ServerOptions;
  state: SharedSystemState;
  /** The keys requests are authenticated with (none: every MAC gets a crypto-NAK). */
  keys?: WorkerKeys;
  /** Cookie secrets when the server answers NTS requests (lib/io/nts_keys.ts); null = NTS off. */
  nts?: NtsKeys | null;
}

const MAX_WORKERS = 64;

export class ServerPool implements ServerView {
  readonly driver: string;
  /** Why this driver was chosen, for the log and status. */
  readonly driverReason: string;
  /** Bound addresses; replaced by `relisten()`. */
  bound: string[];
  readonly errors: string[];
  readonly #workers: Worker[];
  readonly #counters: Float64Array;
  /** The listen addresses the workers were given (texts from the config). */
  #listen: string[] = [];
  /** The rate-limit client table every worker checks against (lib/ntp/rate_limit.ts). */
  #rateTable: SharedArrayBuffer;

  private constructor(
    workers: Worker[],
    counters: Float64Array,
    rateTable: SharedArrayBuffer,
    info: { driver: string; driverReason: string; bound: string[]; errors: string[] },
  ) {
    this.#workers = workers;
    this.#counters = counters;
    this.#rateTable = rateTable;
    this.driver = info.driver;
    this.driverReason = info.driverReason;
    this.bound = info.bound;
    this.errors = info.errors;
  }

  /** Starts the workers; resolves once each has tried to bind. */
  static async start(o: ServerPoolOptions): Promise<ServerPool> {
    const avail = ffiAvailability();
    let driver: "ffi" | "portable";
    let reason: string;
    if (o.driver === "portable") {
      driver = "portable";
      reason = 'server.driver = "portable"';
    } else if (avail.ok) {
      driver = "ffi";
      reason = "libc recvmmsg/sendmmsg with kernel receive timestamps";
    } else {
      driver = "portable";
      reason = avail.reason;
    }
    // Only the FFI driver can share a port between workers (SO_REUSEPORT).
    const count = driver === "portable"
      ? 1
      : Math.min(MAX_WORKERS, o.workers > 0 ? o.workers : navigator.hardwareConcurrency || 1);
    const counterBuf = new SharedArrayBuffer(COUNTER_COUNT * count * 8);
    const txStore = new SharedArrayBuffer(TX_STORE_BYTES);
    // One client table for all workers, so the limit is per client, not per worker.
    const rateTable = new SharedArrayBuffer(rateLimitTableBytes(o.options.rateLimit.tableSize));
    const { listen, errors: held } = o.probe
      ? await freeAddresses(o.listen, [])
      : { listen: o.listen, errors: [] };
    const workers: Worker[] = [];
    const ready: Promise<Extract<FromWorker, { kind: "ready" }>>[] = [];
    for (let slot = 0; slot < count; slot++) {
      const w = new Worker(new URL("./server_worker.ts", import.meta.url), { type: "module" });
      workers.push(w);
      ready.push(
        new Promise((resolve) => {
          const onReady = (e: MessageEvent<FromWorker>) => {
            if (e.data.kind !== "ready") return;
            w.removeEventListener("message", onReady);
            resolve(e.data);
          };
          w.addEventListener("message", onReady);
        }),
      );
      const init: ToWorker = {
        kind: "init",
        listen,
        driver,
        reusePort: count > 1,
        options: o.options,
        state: o.state.buffer,
        counters: counterBuf,
        txStore,
        rateTable,
        slot,
        keys: o.keys ?? { keys: [], trusted: [] },
        nts: o.nts ?? null,
      };
      w.postMessage(init);
    }
    const results = await Promise.all(ready);
    const first = results[0]!;
    const note = results.find((r) => r.driverNote)?.driverNote;
    const pool = new ServerPool(workers, new Float64Array(counterBuf), rateTable, {
      driver: first.driver,
      driverReason: note ?? reason,
      bound: first.bound,
      errors: [...held, ...new Set(results.flatMap((r) => r.errors))],
    });
    pool.#listen = listen;
    return pool;
  }

  get workerCount(): number {
    return this.#workers.length;
  }

  /** Counters summed over all workers. */
  counters(): ServerCounters {
    const sum = new Float64Array(COUNTER_COUNT);
    for (let i = 0; i < this.#counters.length; i++) sum[i % COUNTER_COUNT]! += this.#counters[i]!;
    // The send latency is a gauge per worker: the mean of the workers that have one.
    let latencyNs = 0, measured = 0;
    for (let i = Counter.sendLatencyNs; i < this.#counters.length; i += COUNTER_COUNT) {
      if (this.#counters[i]! > 0) {
        latencyNs += this.#counters[i]!;
        measured++;
      }
    }
    const c = (k: keyof typeof Counter) => sum[Counter[k]]!;
    return {
      received: c("received"),
      answered: c("answered"),
      kod_rate: c("kodRate"),
      kod_deny: c("kodDeny"),
      rate_limited: c("kodRate") + c("dropRateLimited"),
      denied: c("kodDeny") + c("dropDenied"),
      dropped: {
        malformed: c("dropMalformed"),
        mode: c("dropMode"),
        control: c("dropControl"),
        rate_limited: c("dropRateLimited"),
        denied: c("dropDenied"),
      },
      send_errors: c("sendErrors"),
      send_latency_us: measured ? Math.round(latencyNs / measured) / 1000 : 0,
      interleaved: c("interleaved"),
      authenticated: c("authenticated"),
      crypto_nak: c("cryptoNak"),
      bad_mac: c("badMac"),
      nts: {
        requests: c("ntsRequests"),
        naks: c("ntsNak"),
        bad_authenticator: c("ntsBadAuth"),
      },
    };
  }

  /** Gives every worker new cookie secrets (a reload), or turns NTS off (null). */
  setNts(nts: NtsKeys | null): void {
    this.#broadcast({ kind: "nts", nts });
  }

  /**
   * Applies new access and rate-limit options (reload) without rebinding.
   * The rate-limit client table is kept (clients keep their state) unless
   * `rate_limit.table_size` changed its size; then every worker moves to
   * one new, empty table.
   */
  reconfigure(options: ServerOptions): void {
    const bytes = rateLimitTableBytes(options.rateLimit.tableSize);
    if (bytes !== this.#rateTable.byteLength) this.#rateTable = new SharedArrayBuffer(bytes);
    this.#broadcast({ kind: "options", options, rateTable: this.#rateTable });
  }

  /** Hands every worker a new key table (key file reread, trusted keys changed). */
  setKeys(keys: WorkerKeys): void {
    this.#broadcast({ kind: "keys", keys });
  }

  /**
   * Reload with a new `server.listen`: each worker opens the new addresses,
   * then closes the ones no longer listed; unchanged sockets keep serving,
   * so requests to them are never dropped. Resolves with the bind errors.
   */
  async relisten(next: string[]): Promise<string[]> {
    const { listen, errors: held } = await freeAddresses(next, this.#listen);
    this.#listen = listen;
    const replies = await Promise.all(
      this.#workers.map((w) =>
        new Promise<Extract<FromWorker, { kind: "listened" }>>((resolve) => {
          const onReply = (e: MessageEvent<FromWorker>) => {
            if (e.data.kind !== "listened") return;
            w.removeEventListener("message", onReply);
            resolve(e.data);
          };
          w.addEventListener("message", onReply);
          w.postMessage({ kind: "listen", listen } satisfies ToWorker);
        })
      ),
    );
    this.bound = replies[0]?.bound ?? [];
    return [...held, ...new Set(replies.flatMap((r) => r.errors))];
  }

  /**
   * Runs `fn` while no worker takes requests off its sockets (they wait
   * in the kernel's queue with their receive timestamps), then lets each
   * worker run its packet loop privately for a moment before it serves
   * again. For the start-up memory trim (lib/app.ts): the page faults it
   * causes land in that private run, not between a reading and a send. A
   * worker that does not answer within `timeoutMs` is not waited for.
   */
  async whileHeld<T>(fn: () => T, timeoutMs = 2000): Promise<T> {
    await this.#all("hold", "held", timeoutMs);
    try {
      return fn();
    } finally {
      await this.#all("release", "released", timeoutMs);
    }
  }

  /** Sends `send` to every worker and waits for each to answer `reply` (or `timeoutMs`). */
  #all(send: "hold" | "release", reply: "held" | "released", timeoutMs: number): Promise<void[]> {
    return Promise.all(this.#workers.map((w) =>
      new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(t);
          w.removeEventListener("message", on);
          resolve();
        };
        const on = (e: MessageEvent<FromWorker>) => {
          if (e.data.kind === reply) done();
        };
        const t = setTimeout(done, timeoutMs);
        w.addEventListener("message", on);
        w.postMessage({ kind: send } satisfies ToWorker);
      })
    ));
  }

  async stop(): Promise<void> {
    await Promise.all(this.#workers.map((w) =>
      new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 500);
        w.addEventListener("message", (e: MessageEvent<FromWorker>) => {
          if (e.data.kind === "stopped") {
            clearTimeout(t);
            resolve();
          }
        });
        w.postMessage({ kind: "stop" } satisfies ToWorker);
      })
    ));
    for (const w of this.#workers) w.terminate();
  }

  #broadcast(m: ToWorker): void {
    for (const w of this.#workers) w.postMessage(m);
  }
}

/**
 * Splits `listen` into the addresses no other process holds and one error
 * line for each that is held (udp.ts `probeAddress`). Addresses on a port
 * of `ours` (the pool's own, while it still binds them) are not probed: our
 * own sockets would answer for them.
 */
async function freeAddresses(
  listen: string[],
  ours: string[],
): Promise<{ listen: string[]; errors: string[] }> {
  const ownPorts = new Set(
    ours.map((t) => parseSocketAddress(t)).flatMap((a) => typeof a === "string" ? [] : [a.port]),
  );
  const free: string[] = [], errors: string[] = [];
  for (const text of listen) {
    const a = parseSocketAddress(text);
    const err = typeof a === "string" || ours.includes(text) || ownPorts.has(a.port)
      ? null
      : await probeAddress(a);
    if (err) errors.push(err);
    else free.push(text);
  }
  return { listen: free, errors };
}
