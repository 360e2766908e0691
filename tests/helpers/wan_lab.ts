/**
 * A WAN-like link between two network namespaces, for tests and benchmarks:
 * `up` (the upstream side, 10.201.0.1) and `client` (10.201.0.2), on one
 * /24, with a delay, a jitter and a loss probability in each direction.
 *
 * Where the kernel has sch_netem, the two namespaces share one veth pair
 * with a `netem` qdisc on each end. Elsewhere a third namespace, `mid`,
 * holds bench/delay_relay.c, which bridges its two veths (one to each
 * side) and holds every frame for its delay. Both give the same link: base
 * delay plus a uniform jitter in [0, jitter), independent per direction;
 * netem may reorder frames when jitter is set, the relay never does.
 *
 * Names start with `eta-` and a random suffix (tests/helpers/netns.ts),
 * IPv6 is off in every namespace, and every address lives inside the
 * lab's namespaces only. `close()` stops what the lab started and deletes
 * the namespaces, which deletes the veths.
 */
import { buildC } from "./ntpload.ts";
import { deleteNetns, labId, makeNetns, must, type Run, sh } from "./netns.ts";

/** One direction's (here: both directions') impairment. */
export interface Impairment {
  /** One-way base delay, ms (>= 0). */
  delayMs: number;
  /** Uniform jitter added on top of the base, ms: delay in [delayMs, delayMs + jitterMs). */
  jitterMs?: number;
  /** Loss probability per frame, 0..1. */
  loss?: number;
  /** Frames that may wait per direction; more are dropped (default 1000). */
  queue?: number;
}

/** The relay's counters for one direction (see bench/delay_relay.c). */
export interface RelayCounters {
  received: number;
  forwarded: number;
  lost: number;
  overflow: number;
  ignored: number;
  send_errors: number;
  queued: number;
}

/** Relay counters: a_to_b is upstream → client. */
export interface RelayStats {
  a_to_b: RelayCounters;
  b_to_a: RelayCounters;
}

export interface WanLab {
  id: string;
  /** Temp directory for configs, sockets and pid files of what runs in the lab. */
  dir: string;
  /** "netem" when the kernel has sch_netem, else "relay". */
  mode: "netem" | "relay";
  /** Upstream-side namespace and its address. */
  up: string;
  upAddr: string;
  /** Client-side namespace and its address. */
  client: string;
  clientAddr: string;
  /** The relay's namespace (mode "relay"), else null. */
  mid: string | null;
  impairment: Required<Impairment>;
  /** Runs argv inside namespace `ns` and waits for it; never throws for a non-zero exit. */
  exec(ns: string, argv: string[]): Promise<Run>;
  /** Changes the link's impairment (restarts the relay, or `tc qdisc change`). */
  setImpairment(imp: Impairment): Promise<void>;
  /** The relay's counters so far; null in netem mode. */
  relayStats(): Promise<RelayStats | null>;
  /** Registers a stop function for close() to call (last registered, first called). */
  track(stop: () => Promise<unknown>): void;
  close(): Promise<void>;
}

export interface WanLabOptions {
  /** "auto" (default): netem where `tc qdisc add … netem` works, else the relay. */
  mode?: "auto" | "netem" | "relay";
  /** Relay random seed, for reproducible draws. */
  seed?: number;
}

const UP_ADDR = "10.201.0.1";
const CLIENT_ADDR = "10.201.0.2";

/** Checks an impairment and fills in defaults; throws a one-line Error on bad values. */
export function checkImpairment(imp: Impairment): Required<Impairment> {
  const r = { jitterMs: 0, loss: 0, queue: 1000, ...imp };
  const bad = (what: string, v: number, lo: number, hi: number) =>
    !(v >= lo && v <= hi) && `${what} must be in [${lo}, ${hi}], got ${v}`;
  const err = bad("delayMs", r.delayMs, 0, 60000) || bad("jitterMs", r.jitterMs, 0, 60000) ||
    bad("loss", r.loss, 0, 1) || bad("queue", r.queue, 1, 1e6) ||
    (!Number.isInteger(r.queue) && `queue must be an integer, got ${r.queue}`);
  if (err) throw new Error(`wan_lab: ${err}`);
  return r;
}

/** netem arguments for `imp`: uniform [base, base + jitter) as netem's `delay MU SIGMA`. */
export function netemArgs(imp: Required<Impairment>): string[] {
  const mu = imp.delayMs + imp.jitterMs / 2, sigma = imp.jitterMs / 2;
  return [
    "delay",
    `${mu}ms`,
    ...(sigma > 0 ? [`${sigma}ms`] : []),
    ...(imp.loss > 0 ? ["loss", "random", `${imp.loss * 100}%`] : []),
    "limit",
    String(imp.queue),
  ];
}

/** A running bench/delay_relay with its stdout read line by line. */
export class Relay {
  #child: Deno.ChildProcess;
  #lines: string[] = [];
  #waiters: ((line: string) => void)[] = [];
  #pump: Promise<void>;
  #stderr: Promise<string>;

  private constructor(child: Deno.ChildProcess) {
    this.#child = child;
    this.#stderr = new Response(child.stderr).text();
    this.#pump = (async () => {
      let buf = "";
      for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
        buf += chunk;
        for (let nl; (nl = buf.indexOf("\n")) >= 0; buf = buf.slice(nl + 1)) {
          const line = buf.slice(0, nl);
          const w = this.#waiters.shift();
          if (w) w(line);
          else this.#lines.push(line);
        }
      }
    })();
  }

  /** Starts the relay in `ns` between `ifA` and `ifB`; resolves once it printed "ready". */
  static async start(
    bin: string,
    ns: string,
    ifs: [string, string],
    imp: Required<Impairment>,
    seed: number | undefined,
  ): Promise<Relay> {
    const args = ["-d", imp.delayMs, "-j", imp.jitterMs, "-l", imp.loss, "-q", imp.queue]
      .map(String);
    if (seed !== undefined) args.push("-s", String(seed));
    const child = new Deno.Command("ip", {
      args: ["netns", "exec", ns, bin, ...args, ...ifs],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const relay = new Relay(child);
    const first = await Promise.race([
      relay.#nextLine(5000),
      child.status.then(() => null),
    ]);
    if (first !== "ready") {
      await relay.stop();
      throw new Error(`delay_relay did not start: ${(await relay.#stderr).trim() || first}`);
    }
    return relay;
  }

  #nextLine(timeoutMs: number): Promise<string | null> {
    const queued = this.#lines.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    return new Promise((resolve) => {
      const w = (l: string) => (clearTimeout(t), resolve(l));
      const t = setTimeout(() => {
        this.#waiters.splice(this.#waiters.indexOf(w), 1);
        resolve(null);
      }, timeoutMs);
      this.#waiters.push(w);
    });
  }

  /** Asks for the counters (SIGUSR1) and parses the line the relay prints. */
  async stats(): Promise<RelayStats> {
    this.#lines.length = 0;
    this.#child.kill("SIGUSR1");
    const line = await this.#nextLine(2000);
    if (!line) throw new Error("delay_relay printed no counters");
    return JSON.parse(line) as RelayStats;
  }

  async stop(): Promise<void> {
    try {
      this.#child.kill("SIGTERM");
    } catch { /* gone */ }
    const killer = setTimeout(() => {
      try {
        this.#child.kill("SIGKILL");
      } catch { /* gone */ }
    }, 2000);
    await this.#child.status;
    clearTimeout(killer);
    await this.#pump.catch(() => {});
    await this.#stderr.catch(() => "");
  }
}

/** Builds bench/out/delay_relay from bench/delay_relay.c when missing or stale; returns its path. */
export function buildRelay(): Promise<string> {
  return buildC(new URL("../../bench/delay_relay.c", import.meta.url).pathname, "delay_relay");
}

/** Whether this process can build a lab: null when it can, else the reason it cannot. */
export function wanLabUnavailable(): string | null {
  if (Deno.uid() !== 0) return "needs root (network namespaces, veths, packet sockets)";
  return null;
}

/**
 * Builds the lab with `imp` on both directions. Rejects with an Error
 * (one line) when a step fails, after removing what it made.
 */
/**
 * Builders for a lab of network namespaces joined by veth pairs, IPv4 only
 * (no router solicitations or DAD frames on the links). Every namespace is
 * pushed onto `made` before it is set up, so a teardown that deletes `made`
 * removes it even when setting it up failed. Each throws one line on failure.
 */
export function namespaceLinks(made: string[]) {
  const netns = async (name: string) => {
    made.push(name);
    await makeNetns(name);
    await must([
      "ip",
      "netns",
      "exec",
      name,
      "sysctl",
      "-qw",
      "net.ipv6.conf.all.disable_ipv6=1",
      "net.ipv6.conf.default.disable_ipv6=1",
    ]);
  };
  /** A veth pair: `name` in `ns`, `peer` in `peerNs`. */
  const veth = (ns: string, name: string, peerNs: string, peer: string) =>
    must([
      "ip",
      "-n",
      ns,
      "link",
      "add",
      name,
      "type",
      "veth",
      "peer",
      "name",
      peer,
      "netns",
      peerNs,
    ]);
  /** Brings `ifname` up in `ns`, with `addr`/24 when given. */
  const up = async (ns: string, ifname: string, addr: string | null) => {
    if (addr) await must(["ip", "-n", ns, "addr", "add", `${addr}/24`, "dev", ifname]);
    await must(["ip", "-n", ns, "link", "set", "dev", ifname, "up"]);
  };
  return { netns, veth, up };
}

export async function buildWanLab(imp: Impairment, opts: WanLabOptions = {}): Promise<WanLab> {
  let current = checkImpairment(imp);
  const mode = opts.mode ?? "auto";
  const id = labId();
  const dir = await Deno.makeTempDir({ prefix: `${id}-` });
  const up = `${id}-up`, client = `${id}-cl`, mid = `${id}-mid`;
  const made: string[] = [];
  const stops: (() => Promise<unknown>)[] = [];
  let relay: Relay | null = null;
  let relayBin = "";

  const close = async () => {
    await relay?.stop();
    relay = null;
    for (const s of stops.reverse()) await s().catch(() => {});
    stops.length = 0;
    for (const ns of made) await deleteNetns(ns);
    made.length = 0;
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  const { netns, veth, up: upLink } = namespaceLinks(made);
  const tcNetem = (verb: "add" | "change", ns: string, ifname: string) =>
    sh(["ip", "netns", "exec", ns, "tc", "qdisc", verb, "dev", ifname, "root", "netem"].concat(
      netemArgs(current),
    ));

  try {
    await netns(up);
    await netns(client);
    let chosen: "netem" | "relay" = "relay";
    if (mode !== "relay") {
      // One veth pair straight between the two sides, netem on each end.
      await veth(up, "up0", client, "cl0");
      const a = await tcNetem("add", up, "up0");
      const b = a.code === 0 ? await tcNetem("add", client, "cl0") : a;
      if (b.code === 0) chosen = "netem";
      else if (mode === "netem") throw new Error(`netem is not available: ${b.stderr.trim()}`);
      else await must(["ip", "-n", up, "link", "del", "up0"]); // and its peer
    }
    if (chosen === "relay") {
      relayBin = await buildRelay();
      await netns(mid);
      await veth(mid, "ra", up, "up0");
      await veth(mid, "rb", client, "cl0");
      await upLink(mid, "ra", null);
      await upLink(mid, "rb", null);
    }
    await upLink(up, "up0", UP_ADDR);
    await upLink(client, "cl0", CLIENT_ADDR);
    if (chosen === "relay") {
      relay = await Relay.start(relayBin, mid, ["ra", "rb"], current, opts.seed);
    }

    return {
      id,
      dir,
      mode: chosen,
      up,
      upAddr: UP_ADDR,
      client,
      clientAddr: CLIENT_ADDR,
      mid: chosen === "relay" ? mid : null,
      get impairment() {
        return { ...current };
      },
      exec: (ns, argv) => sh(["ip", "netns", "exec", ns, ...argv]),
      async setImpairment(next) {
        current = checkImpairment(next);
        if (chosen === "netem") {
          for (const [ns, ifname] of [[up, "up0"], [client, "cl0"]] as const) {
            const r = await tcNetem("change", ns, ifname);
            if (r.code !== 0) throw new Error(`tc qdisc change netem: ${r.stderr.trim()}`);
          }
          return;
        }
        await relay?.stop();
        relay = null;
        relay = await Relay.start(relayBin, mid, ["ra", "rb"], current, opts.seed);
      },
      relayStats: () => relay ? relay.stats() : Promise.resolve(null),
      track(stop) {
        stops.push(stop);
      },
      close,
    };
  } catch (e) {
    await close();
    throw e;
  }
}

export interface ChronydProc {
  dir: string;
  /** The command socket, for `chronyc -h SOCKET` (a path works from any namespace). */
  socket: string;
  pid: number;
  /** Runs `chronyc -h SOCKET -n ARGS`; resolves with stdout, rejects with its stderr on failure. */
  chronyc(...args: string[]): Promise<string>;
  /** stdout and stderr so far. */
  logs(): string;
  stop(): Promise<void>;
}

/**
 * Starts `chronyd -x -d -u root` (never touches the clock) with `lines` as
 * its config plus a private pid file and command socket, inside namespace
 * `ns` (null: this one). Resolves once the command socket answers; rejects
 * with its log when it exits or does not answer within 10 s.
 */
export async function startChronydIn(ns: string | null, lines: string[]): Promise<ChronydProc> {
  const dir = await Deno.makeTempDir({ prefix: "wan-lab-chrony-" });
  const socket = `${dir}/chronyd.sock`;
  const conf = [...lines, `pidfile ${dir}/chronyd.pid`, `bindcmdaddress ${socket}`, "cmdport 0"];
  await Deno.writeTextFile(`${dir}/chrony.conf`, conf.join("\n") + "\n");
  const argv = ["chronyd", "-x", "-d", "-u", "root", "-f", `${dir}/chrony.conf`];
  const child = new Deno.Command(ns ? "ip" : argv[0]!, {
    args: ns ? ["netns", "exec", ns, ...argv] : argv.slice(1),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let log = "";
  let exited = false;
  const status = child.status.then(() => exited = true);
  const pump = async (s: ReadableStream<Uint8Array>) => {
    for await (const c of s.pipeThrough(new TextDecoderStream())) log += c;
  };
  const pumps = Promise.all([pump(child.stdout), pump(child.stderr)]);
  const chronyc = async (...args: string[]) => {
    const r = await sh(["chronyc", "-h", socket, "-n", ...args]);
    if (r.code !== 0) throw new Error(`chronyc ${args.join(" ")}: ${r.stderr.trim()}`);
    return r.stdout;
  };
  const proc: ChronydProc = {
    dir,
    socket,
    pid: child.pid,
    chronyc,
    logs: () => log,
    async stop() {
      try {
        child.kill("SIGTERM");
      } catch { /* gone */ }
      await status;
      await pumps;
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
  for (let i = 0; i < 100 && !exited; i++) {
    if (await chronyc("tracking").then(() => true, () => false)) return proc;
    await new Promise((r) => setTimeout(r, 100));
  }
  await proc.stop();
  throw new Error(`chronyd did not answer on ${socket}: ${log.trim().split("\n").pop()}`);
}
