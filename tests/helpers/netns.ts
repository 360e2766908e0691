/**
 * A network lab for the anycast tests, built from network namespaces:
 * one router, N nodes and a client, joined by veth pairs, with lab-only
 * addresses. Every name starts with `eta-` and a random suffix, so test
 * files running in parallel never collide. `close()` kills every process
 * the lab started and deletes the namespaces (and with them the veths).
 *
 * Addresses: node i (1-based) is 10.0.i.2 behind router port 10.0.i.1;
 * the client is 10.0.100.2 behind 10.0.100.1.
 */

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs argv and returns its output; never throws for a non-zero exit. */
export async function sh(argv: string[], env?: Record<string, string>): Promise<Run> {
  const out = await new Deno.Command(argv[0]!, {
    args: argv.slice(1),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    ...(env ? { env } : {}),
  }).output();
  const d = new TextDecoder();
  return { code: out.code, stdout: d.decode(out.stdout), stderr: d.decode(out.stderr) };
}

/** Runs argv and throws with its stderr when it fails. */
export async function must(argv: string[]): Promise<string> {
  const r = await sh(argv);
  if (r.code !== 0) throw new Error(`${argv.join(" ")}: exit ${r.code}: ${r.stderr.trim()}`);
  return r.stdout;
}

export interface Bird {
  ns: string;
  socket: string;
  child: Deno.ChildProcess;
  birdc(...args: string[]): Promise<Run>;
  stop(): Promise<void>;
}

export interface Lab {
  id: string;
  /** Temp directory for configs, sockets, pid files. */
  dir: string;
  router: string;
  nodes: string[];
  client: string;
  /** Node i's (0-based) address. */
  nodeAddr(i: number): string;
  /** The router's address on node i's link. */
  routerAddr(i: number): string;
  clientAddr: string;
  /** Runs argv inside namespace `ns`. */
  exec(ns: string, argv: string[]): Promise<Run>;
  /** Starts `bird -f` in `ns` with `config`, its own socket and pid file; waits until it answers. */
  startBird(ns: string, name: string, config: string): Promise<Bird>;
  /** Registers a process for close() to kill. */
  track(stop: () => Promise<unknown>): void;
  close(): Promise<void>;
}

/** A short random lab id: `eta-` + 5 hex digits. */
export function labId(): string {
  return `eta-${
    crypto.getRandomValues(new Uint32Array(1))[0]!.toString(16).padStart(8, "0").slice(0, 5)
  }`;
}

/** Creates one namespace with lo up; returns its name. */
export async function makeNetns(name: string): Promise<string> {
  await must(["ip", "netns", "add", name]);
  await must(["ip", "-n", name, "link", "set", "lo", "up"]);
  return name;
}

/** Deletes a namespace, ignoring errors (it may be gone). */
export async function deleteNetns(name: string): Promise<void> {
  await sh(["ip", "netns", "del", name]);
}

/** Builds the lab; on any failure it tears down what it made and rethrows. */
export async function buildLab(opts: { nodes?: number } = {}): Promise<Lab> {
  const id = labId();
  const n = opts.nodes ?? 3;
  const dir = await Deno.makeTempDir({ prefix: `${id}-` });
  const router = `${id}-r`;
  const client = `${id}-c`;
  const nodes = Array.from({ length: n }, (_, i) => `${id}-n${i + 1}`);
  const made: string[] = [];
  const stops: (() => Promise<unknown>)[] = [];
  const lab: Lab = {
    id,
    dir,
    router,
    nodes,
    client,
    nodeAddr: (i) => `10.0.${i + 1}.2`,
    routerAddr: (i) => `10.0.${i + 1}.1`,
    clientAddr: "10.0.100.2",
    exec: (ns, argv) => sh(["ip", "netns", "exec", ns, ...argv]),
    async startBird(ns, name, config) {
      const conf = `${dir}/${name}.conf`;
      const socket = `${dir}/${name}.ctl`;
      await Deno.writeTextFile(conf, config);
      const child = new Deno.Command("ip", {
        args: [
          "netns",
          "exec",
          ns,
          "bird",
          "-f",
          "-c",
          conf,
          "-s",
          socket,
          "-P",
          `${dir}/${name}.pid`,
        ],
        stdin: "null",
        stdout: "null",
        stderr: "piped",
      }).spawn();
      const errText = new Response(child.stderr).text();
      const bird: Bird = {
        ns,
        socket,
        child,
        birdc: (...args) => sh(["birdc", "-s", socket, ...args]),
        async stop() {
          try {
            child.kill("SIGTERM");
          } catch { /* gone */ }
          await child.status;
          await errText;
        },
      };
      stops.push(() => bird.stop());
      for (let i = 0; i < 100; i++) {
        if ((await bird.birdc("show", "status")).code === 0) return bird;
        const st = await Promise.race([child.status, new Promise((r) => setTimeout(r, 50))]);
        if (st) throw new Error(`bird ${name} exited: ${await errText}`);
      }
      throw new Error(`bird ${name} did not answer on ${socket}`);
    },
    track(stop) {
      stops.push(stop);
    },
    async close() {
      for (const s of stops.reverse()) await s().catch(() => {});
      for (const ns of made) await deleteNetns(ns);
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
  try {
    for (const ns of [router, client, ...nodes]) {
      await makeNetns(ns);
      made.push(ns);
    }
    const link = async (peer: string, rIf: string, pIf: string, rAddr: string, pAddr: string) => {
      await must([
        "ip",
        "-n",
        router,
        "link",
        "add",
        rIf,
        "type",
        "veth",
        "peer",
        "name",
        pIf,
        "netns",
        peer,
      ]);
      await must(["ip", "-n", router, "addr", "add", `${rAddr}/24`, "dev", rIf]);
      await must(["ip", "-n", peer, "addr", "add", `${pAddr}/24`, "dev", pIf]);
      await must(["ip", "-n", router, "link", "set", "dev", rIf, "up"]);
      await must(["ip", "-n", peer, "link", "set", "dev", pIf, "up"]);
      await must(["ip", "-n", peer, "route", "add", "default", "via", rAddr]);
    };
    for (let i = 0; i < n; i++) {
      await link(nodes[i]!, `n${i + 1}`, "uplink", lab.routerAddr(i), lab.nodeAddr(i));
    }
    await link(client, "c", "uplink", "10.0.100.1", lab.clientAddr);
    await must(["ip", "netns", "exec", router, "sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    return lab;
  } catch (e) {
    await lab.close();
    throw e;
  }
}

/** Polls `fn` every `everyMs` until it returns true; resolves with the elapsed ms, or -1 on timeout. */
export async function waitFor(
  fn: () => Promise<boolean>,
  timeoutMs: number,
  everyMs = 20,
): Promise<number> {
  const t0 = performance.now();
  while (performance.now() - t0 < timeoutMs) {
    if (await fn()) return performance.now() - t0;
    await new Promise((r) => setTimeout(r, everyMs));
  }
  return -1;
}

/** The gateways of `prefix` in `ns`'s kernel table ([] when no route). */
export async function routeNexthops(ns: string, prefix: string): Promise<string[]> {
  const r = await sh(["ip", "-n", ns, "-j", "route", "show", "exact", prefix]);
  const routes = JSON.parse(r.stdout || "[]") as {
    gateway?: string;
    nexthops?: { gateway?: string }[];
  }[];
  const out: string[] = [];
  for (const x of routes) {
    if (x.gateway) out.push(x.gateway);
    for (const h of x.nexthops ?? []) if (h.gateway) out.push(h.gateway);
  }
  return out.sort();
}
