/**
 * The anycast driver: every `interval_ms` it gathers the health inputs
 * (self-query or node queries, drain file), feeds the gate, reads the
 * current state (`ip -j …`, the include file, sysctl), plans and applies.
 * Every subprocess goes through the `CommandRunner`, every file through
 * the `FileStore`, every NTP query through `query`: all three are seams,
 * so the loop runs in tests against fakes.
 *
 * Failures (no `ip`, no `birdc`, BIRD not running, an unwritable include
 * file) are one error line each and retried with exponential backoff; the
 * NTP service never depends on them.
 */
import type { Config } from "../config/mod.ts";
import type { CommandRunner, FileStore } from "./seams.ts";
import type { QueryResult } from "../ntp/query.ts";
import { parseSocketAddress } from "../config/socket_address.ts";
import {
  type GateTransition,
  HealthGate,
  healthReason,
  keepTransition,
  queryReason,
} from "./health.ts";
import {
  type Action,
  canonicalCidr,
  HASH_KEYS,
  hashValue,
  includeText,
  isV6,
  parseAddrJson,
  parseBirdReply,
  parseIncludeText,
  parseRouteJson,
  planNode,
  planRouter,
  type RouterState,
} from "./plan.ts";
import type { AnycastReport } from "./report.ts";

/** Longest wait between retries of a failing apply. */
const MAX_BACKOFF_MS = 30_000;

export type AnycastConfig = Config["anycast"];

/** The I/O seams of the anycast helper. */
export interface AnycastIo {
  runner: CommandRunner;
  files: FileStore;
  /**
   * One NTP client exchange whose reply passed `checkReply`; rejects with
   * a one-line message (no reply, or why the reply is not time).
   */
  query(host: string, port: number, timeoutMs: number): Promise<QueryResult>;
}

/** What the node knows about its own clock, read at every check. */
export interface LocalTime {
  /** Leap indicator and stratum of the system state the server answers with. */
  leap: number;
  stratum: number;
  /** Offset of the system clock from the engine's estimate of true time, seconds. */
  offsetS: number;
}

/** Where log lines go (a LogTape logger fits). */
export interface LogSink {
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
}

export interface RuntimeOptions {
  anycast: AnycastConfig;
  /** Port of the local NTP server, for the self-query. */
  selfPort: number;
  local(): LocalTime;
  log: LogSink;
  /** Unix seconds (for transitions); default `Date.now() / 1000`. */
  now?: () => number;
}

/** Port of the first `server.listen` address (the self-query target port). */
export function selfQueryPort(listen: readonly string[]): number {
  for (const l of listen) {
    const a = parseSocketAddress(l);
    if (typeof a !== "string") return a.port;
  }
  return 123;
}

/** Host part of a prefix: "192.0.2.123/32" → "192.0.2.123". */
function host(prefix: string): string {
  return prefix.split("/")[0]!;
}

/** Outcome of running a list of actions. */
export interface ApplyResult {
  /** The first failure as one line, null when all worked. */
  error: string | null;
  warnings: string[];
  /** `birdc configure` succeeded during this apply. */
  birdConfigured: boolean;
}

/** Runs `actions` in order, stopping at the first failure. */
export async function applyActions(
  io: AnycastIo,
  actions: readonly Action[],
): Promise<ApplyResult> {
  const res: ApplyResult = { error: null, warnings: [], birdConfigured: false };
  for (const a of actions) {
    if (a.kind === "write") {
      try {
        await io.files.writeAtomic(a.path, a.text);
      } catch (e) {
        res.error = `Cannot write the BIRD include file: ${e instanceof Error ? e.message : e}`;
        return res;
      }
      continue;
    }
    const r = await io.runner.run(a.argv);
    const cmd = a.argv.join(" ");
    if (a.check === "exit") {
      if (r.code !== 0) {
        const msg = (r.stderr.trim() || r.stdout.trim() || `exit code ${r.code}`).split("\n")[0];
        res.error = `${cmd} failed: ${msg}`;
        return res;
      }
    } else {
      const b = parseBirdReply(r);
      if (!b.ok && a.check === "birdc") {
        res.error = `${cmd} failed: ${b.message}`;
        return res;
      }
      if (!b.ok) {
        res.warnings.push(`${cmd}: ${b.message} (is appliance/bird-anycast.conf included?)`);
      }
      if (b.ok && a.check === "birdc") res.birdConfigured = true;
    }
  }
  return res;
}

/** Reads what the node holds: addresses on the interface and the include file. */
export async function readNodeState(
  io: AnycastIo,
  cfg: AnycastConfig,
): Promise<{ held: string[]; include: string | null } | string> {
  const r = await io.runner.run(["ip", "-j", "addr", "show", "dev", cfg.interface]);
  if (r.code !== 0) {
    return `ip -j addr show dev ${cfg.interface} failed: ${
      (r.stderr.trim() || `exit code ${r.code}`).split("\n")[0]
    }`;
  }
  let held: string[];
  try {
    held = parseAddrJson(r.stdout);
  } catch {
    return `ip -j addr show dev ${cfg.interface}: cannot parse its JSON output`;
  }
  let include: string | null = null;
  if (cfg.bird.includeFile !== "") {
    try {
      include = await io.files.read(cfg.bird.includeFile);
    } catch (e) {
      return e instanceof Error ? e.message : String(e);
    }
  }
  return { held, include };
}

/** Reads the router's VIP route and multipath hash policy. */
export async function readRouterState(
  io: AnycastIo,
  cfg: AnycastConfig,
): Promise<RouterState | string> {
  const vip = canonicalCidr(cfg.router.vip);
  const fam = isV6(vip) ? ["-6"] : [];
  const argv = ["ip", ...fam, "-j", "route", "show", "exact", vip];
  const r = await io.runner.run(argv);
  if (r.code !== 0) {
    return `${argv.join(" ")} failed: ${(r.stderr.trim() || `exit code ${r.code}`).split("\n")[0]}`;
  }
  let nexthops: string[] | null;
  try {
    nexthops = parseRouteJson(r.stdout);
  } catch {
    return `${argv.join(" ")}: cannot parse its JSON output`;
  }
  const s = await io.runner.run(["sysctl", "-n", ...HASH_KEYS]);
  const [v4, v6] = s.code === 0 ? s.stdout.trim().split(/\s+/) : [];
  return { nexthops, hashPolicy: { v4: v4 ?? null, v6: v6 ?? null } };
}

/** Mode-independent: the report a runtime gives when anycast is off. */
export function offReport(): AnycastReport {
  return {
    mode: "off",
    state: "off",
    healthy: true,
    reason: "",
    announced: [],
    nexthops: [],
    transitions: [],
  };
}

/**
 * The anycast loop for node or router mode. `start()` reconciles stale
 * state and begins the checks; `stop()` withdraws (node mode) before the
 * NTP server stops, so clients are steered away first.
 */
export class AnycastRuntime {
  readonly #o: RuntimeOptions;
  readonly #io: AnycastIo;
  readonly #cfg: AnycastConfig;
  readonly #now: () => number;
  readonly #gate: HealthGate;
  readonly #nodeGates = new Map<string, HealthGate>();
  readonly #transitions: GateTransition[] = [];
  #timer: ReturnType<typeof setTimeout> | null = null;
  #stopped = false;
  /** Serialises applies, so stop() never races a tick. */
  #chain: Promise<void> = Promise.resolve();
  #configured: string | null = null;
  #held: string[] = [];
  #nexthops: string[] = [];
  #drain = false;
  #failures = 0;
  #retryAt = 0;
  #error = "";
  #hashSet = false;
  #started = false;

  constructor(opts: RuntimeOptions, io: AnycastIo) {
    this.#o = opts;
    this.#io = io;
    this.#cfg = opts.anycast;
    this.#now = opts.now ?? (() => Date.now() / 1000);
    const { rise, fall } = this.#cfg.health;
    this.#gate = new HealthGate({ rise, fall });
    for (const n of this.#cfg.router.nodes) {
      this.#nodeGates.set(n, new HealthGate({ rise, fall, subject: n }));
    }
  }

  /**
   * Reconciles stale state (node: hold the addresses, announce nothing yet)
   * and starts checking every interval; `loop: false` leaves the checks to
   * `tick()` (tests).
   */
  async start(opts: { loop?: boolean } = {}): Promise<void> {
    const c = this.#cfg;
    this.#o.log.info(
      c.mode === "node"
        ? `Anycast node mode: ${c.addresses.join(", ")} on ${c.interface}${
          c.bird.includeFile === "" ? " (no BIRD)" : `, BIRD include ${c.bird.includeFile}`
        }`
        : `Anycast router mode: ${c.router.vip} via ${
          c.router.nodes.join(", ")
        }, hash ${c.router.hashPolicy}`,
    );
    if (c.mode === "node") await this.#apply({ hold: true, announce: false }, true);
    this.#started = true;
    if (opts.loop ?? true) this.#schedule(0);
  }

  /** Stops checking; in node mode withdraws the announcement and the addresses. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    await this.#chain;
    if (this.#cfg.mode !== "node") return;
    const t0 = performance.now();
    await this.#apply({ hold: false, announce: false }, true);
    if (this.#error === "") {
      this.#o.log.info(`Anycast withdrawn in ${(performance.now() - t0).toFixed(0)} ms`);
    }
  }

  /** The current state for /status and /healthz. */
  report(): AnycastReport {
    const c = this.#cfg;
    const transitions = this.#transitions.map((t) => ({ ...t }));
    if (c.mode === "router") {
      const nodes = [...this.#nodeGates].map(([address, g]) => ({
        address,
        healthy: g.healthy,
        reason: g.reason,
      }));
      const any = nodes.some((n) => n.healthy);
      return {
        mode: "router",
        state: this.#nexthops.length > 0 ? "routed" : "no route",
        healthy: any,
        reason: any ? "" : "no healthy node",
        announced: this.#nexthops.length > 0 ? [canonicalCidr(c.router.vip)] : [],
        nexthops: [...this.#nexthops],
        transitions,
        error: this.#error,
        nodes,
      };
    }
    const announced = parseIncludeText(this.#configured);
    const state = !this.#started
      ? "starting"
      : this.#drain
      ? "draining"
      : c.bird.includeFile === ""
      ? (this.#gate.healthy ? "holding" : "unhealthy")
      : announced.length > 0
      ? "announced"
      : "withdrawn";
    return {
      mode: "node",
      state,
      healthy: this.#gate.healthy,
      reason: this.#gate.healthy ? "" : this.#gate.reason || "rising",
      announced,
      nexthops: [],
      transitions,
      error: this.#error,
    };
  }

  /** One check and apply; exposed so tests can step the loop without timers. */
  async tick(): Promise<void> {
    if (this.#cfg.mode === "node") await this.#tickNode();
    else await this.#tickRouter();
  }

  #schedule(ms: number): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(async () => {
      const t0 = performance.now();
      try {
        await this.tick();
      } catch (e) {
        this.#o.log.error(`Anycast check failed: ${e instanceof Error ? e.message : e}`);
      }
      const spent = performance.now() - t0;
      this.#schedule(Math.max(0, this.#cfg.health.intervalMs - spent));
    }, ms);
  }

  #note(t: GateTransition | null): void {
    if (t === null) return;
    keepTransition(this.#transitions, t);
    const who = t.subject === "gate" ? "Anycast health" : `Anycast node ${t.subject}`;
    const line = `${who}: ${t.from} → ${t.to} (${t.reason})`;
    if (t.to === "healthy") this.#o.log.info(line);
    else this.#o.log.warn(line);
  }

  /** Timeout of one health query: a check must finish within its interval. */
  #queryTimeout(): number {
    return Math.max(20, Math.min(1000, Math.floor(this.#cfg.health.intervalMs * 0.8)));
  }

  async #tickNode(): Promise<void> {
    const c = this.#cfg;
    const [drain, selfQuery] = await Promise.all([
      this.#io.files.exists(c.drainFile),
      this.#selfQuery(),
    ]);
    if (this.#stopped) return;
    this.#drain = drain;
    const local = this.#o.local();
    const reason = healthReason(
      { ...local, drain, selfQuery },
      { maxOffsetMs: c.health.maxOffsetMs },
    );
    this.#note(this.#gate.update(this.#now(), reason, { immediate: drain }));
    await this.#apply({ hold: true, announce: this.#gate.healthy }, false);
  }

  /** Queries every service address; the first bad answer wins. */
  async #selfQuery(): Promise<QueryResult | string> {
    const results = await Promise.all(this.#cfg.addresses.map(async (p) => {
      try {
        return await this.#io.query(host(p), this.#o.selfPort, this.#queryTimeout());
      } catch (e) {
        return e instanceof Error ? e.message : String(e);
      }
    }));
    const opts = { maxOffsetMs: this.#cfg.health.maxOffsetMs };
    return results.find((r) => queryReason(r, "", opts) !== "") ?? results[0] ??
      "no service address configured";
  }

  async #tickRouter(): Promise<void> {
    const c = this.#cfg;
    const opts = { maxOffsetMs: c.health.maxOffsetMs };
    const checks = await Promise.all(c.router.nodes.map(async (n) => {
      try {
        return await this.#io.query(n, c.router.port, this.#queryTimeout());
      } catch (e) {
        return e instanceof Error ? e.message : String(e);
      }
    }));
    if (this.#stopped) return;
    const now = this.#now();
    c.router.nodes.forEach((n, i) => {
      this.#note(this.#nodeGates.get(n)!.update(now, queryReason(checks[i]!, "query", opts)));
    });
    const healthy = c.router.nodes.filter((n) => this.#nodeGates.get(n)!.healthy);
    await this.#apply({ hold: true, announce: true, healthy }, false);
  }

  /** Plans and applies one desired state, honouring the backoff unless `force`. */
  #apply(
    want: { hold: boolean; announce: boolean; healthy?: string[] },
    force: boolean,
  ): Promise<void> {
    const run = async () => {
      if (!force && (this.#stopped || performance.now() < this.#retryAt)) return;
      const error = await this.#applyOnce(want);
      if (error === null) {
        if (this.#failures > 0) {
          this.#o.log.info(`Anycast apply works again after ${this.#failures} failed attempt(s)`);
        }
        this.#failures = 0;
        this.#retryAt = 0;
        this.#error = "";
        return;
      }
      this.#failures++;
      const delay = Math.min(MAX_BACKOFF_MS, this.#cfg.health.intervalMs * 2 ** this.#failures);
      this.#retryAt = performance.now() + delay;
      this.#error = error;
      this.#o.log.error(
        `${error} (attempt ${this.#failures}; retrying in ${(delay / 1000).toFixed(1)} s)`,
      );
    };
    this.#chain = this.#chain.then(run, run);
    return this.#chain;
  }

  async #applyOnce(
    want: { hold: boolean; announce: boolean; healthy?: string[] },
  ): Promise<string | null> {
    const c = this.#cfg;
    if (c.mode === "node") {
      const cur = await readNodeState(this.#io, c);
      if (typeof cur === "string") return cur;
      this.#held = cur.held;
      const actions = planNode(
        { addresses: c.addresses, interface: c.interface, ...c.bird },
        { ...cur, configured: this.#configured },
        want,
      );
      if (actions.length === 0) return null;
      const r = await applyActions(this.#io, actions);
      if (r.birdConfigured) this.#configured = includeText(want.announce ? c.addresses : []);
      for (const w of r.warnings) this.#o.log.warn(w);
      if (r.error === null) {
        const names = actions.map((a) => a.kind === "run" ? a.argv.join(" ") : `write ${a.path}`);
        this.#o.log.info(
          `Anycast ${want.announce ? "announce" : "withdraw"}: ${names.join("; ")}`,
        );
      }
      return r.error;
    }
    const cur = await readRouterState(this.#io, c);
    if (typeof cur === "string") return cur;
    this.#nexthops = cur.nexthops ?? [];
    const hash = hashValue(c.router.hashPolicy);
    if (this.#hashSet) {
      for (const [k, v] of [[HASH_KEYS[0], cur.hashPolicy.v4], [HASH_KEYS[1], cur.hashPolicy.v6]]) {
        if (v !== hash) {
          this.#o.log.warn(`${k} was reset to ${v ?? "?"}; setting it back to ${hash}`);
        }
      }
    }
    const healthy = want.healthy ?? [];
    const actions = planRouter(c.router, cur, healthy);
    if (actions.length === 0) return null;
    const r = await applyActions(this.#io, actions);
    if (r.error !== null) return r.error;
    if (actions.some((a) => a.kind === "run" && a.argv[0] === "sysctl")) {
      const check = await readRouterState(this.#io, c);
      if (typeof check === "string") return check;
      if (check.hashPolicy.v4 !== hash || check.hashPolicy.v6 !== hash) {
        return `fib_multipath_hash_policy is ${check.hashPolicy.v4}/${check.hashPolicy.v6} after setting it to ${hash}`;
      }
      this.#hashSet = true;
      this.#o.log.info(
        `Multipath hash policy set to ${c.router.hashPolicy.toUpperCase()} (fib_multipath_hash_policy = ${hash})`,
      );
    }
    if (actions.some((a) => a.kind === "run" && a.argv.includes("route"))) {
      this.#o.log.info(
        healthy.length === 0
          ? `Anycast route ${c.router.vip} removed: no healthy node`
          : `Anycast route ${c.router.vip} via ${healthy.join(", ")}`,
      );
      this.#nexthops = [...healthy];
    }
    return null;
  }
}

/** What `edge-time anycast plan|apply|withdraw` computed. */
export interface OneShotPlan {
  /** Health and state notes, printed as `# …` lines before the commands. */
  notes: string[];
  actions: Action[];
}

/**
 * Plans one shot of `apply` (one health check, no hysteresis) or
 * `withdraw` (announce nothing, hold nothing, remove the route) for the
 * current state. BIRD's loaded config is unknown here, so node mode
 * always includes `birdc configure`.
 */
export async function planOneShot(
  cfg: AnycastConfig,
  io: AnycastIo,
  opts: { kind: "apply" | "withdraw"; selfPort: number },
): Promise<OneShotPlan | string> {
  const notes: string[] = [];
  const maxOffsetMs = cfg.health.maxOffsetMs;
  if (cfg.mode === "off") return `anycast.mode is "off"; nothing to do`;
  if (cfg.mode === "node") {
    const cur = await readNodeState(io, cfg);
    if (typeof cur === "string") return cur;
    let announce = false;
    if (opts.kind === "apply") {
      const missing = cfg.addresses.filter((a) => !cur.held.includes(canonicalCidr(a)));
      let reason: string;
      if (await io.files.exists(cfg.drainFile)) reason = "drain file present";
      else if (missing.length > 0) {
        reason = `${missing.join(", ")} not on ${cfg.interface} yet; apply again to announce`;
      } else {
        reason = "";
        for (const a of cfg.addresses) {
          const r = await io.query(host(a), opts.selfPort, 1000).catch((e: Error) => e.message);
          reason ||= queryReason(r, `self-query ${host(a)}:${opts.selfPort}`, { maxOffsetMs });
        }
      }
      announce = reason === "";
      notes.push(announce ? "health: good" : `health: bad: ${reason}`);
    }
    const hold = opts.kind === "apply";
    const actions = planNode(
      { addresses: cfg.addresses, interface: cfg.interface, ...cfg.bird },
      { ...cur, configured: null },
      { hold, announce },
    );
    return { notes, actions };
  }
  const cur = await readRouterState(io, cfg);
  if (typeof cur === "string") return cur;
  notes.push(`route ${cfg.router.vip}: ${cur.nexthops?.join(", ") ?? "none"}`);
  const healthy: string[] = [];
  if (opts.kind === "apply") {
    for (const n of cfg.router.nodes) {
      const r = await io.query(n, cfg.router.port, 1000).catch((e: Error) => e.message);
      const reason = queryReason(r, "query", { maxOffsetMs });
      notes.push(`node ${n}: ${reason === "" ? "good" : reason}`);
      if (reason === "") healthy.push(n);
    }
  }
  return { notes, actions: planRouter(cfg.router, cur, healthy) };
}
