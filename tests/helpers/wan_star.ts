/**
 * A star of WAN-like links between network namespaces, for benchmarks of
 * topologies (bench/topology.ts): one router namespace, `hub`, and one
 * namespace per site, each site on a link of its own with its own delay,
 * jitter and loss. A packet between two sites crosses both sites' links,
 * so a site on a 1 ms link talks to a site on a 50 µs link across
 * 1.05 ms each way, and two 50 µs sites talk across 100 µs.
 *
 * Built from the pieces of the two-namespace WAN lab (tests/helpers/wan_lab.ts):
 * where the kernel has sch_netem a site's link is one veth pair with a
 * `netem` qdisc on both ends; elsewhere a middle namespace per link runs
 * bench/delay_relay.c between the hub's veth and the site's. Same link model:
 * base + U[0, jitter) per direction, independent draws, loss per frame.
 *
 * Addresses: site i (0-based) is 10.203.(i+1).2/24 behind the hub's
 * 10.203.(i+1).1, with a default route through the hub; the hub forwards.
 * Names start with `eta-` and a random suffix (tests/helpers/netns.ts),
 * IPv6 is off everywhere, and every address lives inside the lab's
 * namespaces only. `close()` stops what was registered with `track()`, the
 * relays, and deletes the namespaces (which deletes the veths).
 */
import { deleteNetns, labId, must, type Run, sh } from "./netns.ts";
import {
  buildRelay,
  checkImpairment,
  type Impairment,
  namespaceLinks,
  netemArgs,
  Relay,
  type RelayStats,
} from "./wan_lab.ts";

export interface StarSiteSpec {
  /** Short name, [a-z0-9]{1,6}; the namespace is `<lab id>-<name>`. */
  name: string;
  /** The impairment of this site's link to the hub, each direction. */
  impairment: Impairment;
}

export interface StarSite {
  name: string;
  ns: string;
  addr: string;
  /** The relay's namespace (mode "relay"), else null. */
  mid: string | null;
  impairment: Required<Impairment>;
}

export interface WanStar {
  id: string;
  /** Temp directory for configs and whatever runs in the lab. */
  dir: string;
  /** "netem" when the kernel has sch_netem, else "relay". */
  mode: "netem" | "relay";
  hub: string;
  sites: StarSite[];
  /** The site called `name`; throws when there is none. */
  site(name: string): StarSite;
  /** Runs argv inside namespace `ns` and waits for it; never throws for a non-zero exit. */
  exec(ns: string, argv: string[]): Promise<Run>;
  /** Changes one site's link (restarts its relay, or `tc qdisc change`). */
  setImpairment(name: string, imp: Impairment): Promise<void>;
  /** A site link's relay counters (a_to_b is hub → site); null in netem mode. */
  relayStats(name: string): Promise<RelayStats | null>;
  /** Registers a stop function for close() to call (last registered, first called). */
  track(stop: () => Promise<unknown>): void;
  close(): Promise<void>;
}

export interface WanStarOptions {
  /** "auto" (default): netem where `tc qdisc add … netem` works, else relays. */
  mode?: "auto" | "netem" | "relay";
  /** Relay random seed; link i uses seed + i. */
  seed?: number;
}

const MAX_SITES = 32;

/**
 * Builds the star. Rejects with a one-line Error when a step fails, after
 * removing what it made.
 */
export async function buildWanStar(
  specs: StarSiteSpec[],
  opts: WanStarOptions = {},
): Promise<WanStar> {
  if (specs.length < 1 || specs.length > MAX_SITES) {
    throw new Error(`wan_star: 1 to ${MAX_SITES} sites, got ${specs.length}`);
  }
  const names = new Set<string>();
  for (const s of specs) {
    if (!/^[a-z0-9]{1,6}$/.test(s.name) || s.name === "hub" || names.has(s.name)) {
      throw new Error(`wan_star: bad or duplicate site name "${s.name}"`);
    }
    names.add(s.name);
  }
  const imps = specs.map((s) => checkImpairment(s.impairment));
  const mode = opts.mode ?? "auto";
  const id = labId();
  const dir = await Deno.makeTempDir({ prefix: `${id}-` });
  const hub = `${id}-hub`;
  const made: string[] = [];
  const stops: (() => Promise<unknown>)[] = [];
  const relays = new Map<number, Relay>();
  let relayBin = "";
  let chosen: "netem" | "relay" = "relay";
  const sites: StarSite[] = specs.map((s, i) => ({
    name: s.name,
    ns: `${id}-${s.name}`,
    addr: `10.203.${i + 1}.2`,
    mid: null,
    impairment: imps[i]!,
  }));

  const close = async () => {
    for (const s of stops.reverse()) await s().catch(() => {});
    stops.length = 0;
    for (const r of relays.values()) await r.stop().catch(() => {});
    relays.clear();
    for (const ns of made) await deleteNetns(ns);
    made.length = 0;
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  const { netns, veth, up } = namespaceLinks(made);
  const tcNetem = (verb: "add" | "change", ns: string, ifname: string, imp: Required<Impairment>) =>
    sh(
      ["ip", "netns", "exec", ns, "tc", "qdisc", verb, "dev", ifname, "root", "netem"].concat(
        netemArgs(imp),
      ),
    );
  const startRelay = async (i: number) => {
    const s = sites[i]!;
    const seed = opts.seed === undefined ? undefined : opts.seed + i;
    relays.set(i, await Relay.start(relayBin, s.mid!, ["ra", "rb"], s.impairment, seed));
  };
  const index = (name: string) => {
    const i = sites.findIndex((s) => s.name === name);
    if (i < 0) throw new Error(`wan_star: no site "${name}"`);
    return i;
  };

  try {
    await netns(hub);
    await must(["ip", "netns", "exec", hub, "sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    for (const s of sites) await netns(s.ns);
    if (mode !== "relay") {
      // Probe on the first link: one veth pair, netem on each end.
      const s = sites[0]!;
      await veth(hub, "s0", s.ns, "up0");
      const a = await tcNetem("add", hub, "s0", s.impairment);
      const b = a.code === 0 ? await tcNetem("add", s.ns, "up0", s.impairment) : a;
      if (b.code === 0) chosen = "netem";
      else if (mode === "netem") throw new Error(`netem is not available: ${b.stderr.trim()}`);
      else await must(["ip", "-n", hub, "link", "del", "s0"]); // and its peer
    }
    if (chosen === "relay") relayBin = await buildRelay();
    for (const [i, s] of sites.entries()) {
      if (chosen === "netem") {
        if (i > 0) {
          await veth(hub, `s${i}`, s.ns, "up0");
          for (const [ns, ifname] of [[hub, `s${i}`], [s.ns, "up0"]] as const) {
            const r = await tcNetem("add", ns, ifname, s.impairment);
            if (r.code !== 0) throw new Error(`tc qdisc add netem: ${r.stderr.trim()}`);
          }
        }
      } else {
        s.mid = `${id}-m${i}`;
        await netns(s.mid);
        await veth(s.mid, "ra", hub, `s${i}`);
        await veth(s.mid, "rb", s.ns, "up0");
        await up(s.mid, "ra", null);
        await up(s.mid, "rb", null);
      }
      await up(hub, `s${i}`, `10.203.${i + 1}.1`);
      await up(s.ns, "up0", s.addr);
      await must(["ip", "-n", s.ns, "route", "add", "default", "via", `10.203.${i + 1}.1`]);
      if (chosen === "relay") await startRelay(i);
    }

    return {
      id,
      dir,
      mode: chosen,
      hub,
      sites,
      site: (name) => sites[index(name)]!,
      exec: (ns, argv) => sh(["ip", "netns", "exec", ns, ...argv]),
      async setImpairment(name, next) {
        const i = index(name), s = sites[i]!;
        s.impairment = checkImpairment(next);
        if (chosen === "netem") {
          for (const [ns, ifname] of [[hub, `s${i}`], [s.ns, "up0"]] as const) {
            const r = await tcNetem("change", ns, ifname, s.impairment);
            if (r.code !== 0) throw new Error(`tc qdisc change netem: ${r.stderr.trim()}`);
          }
          return;
        }
        await relays.get(i)?.stop();
        relays.delete(i);
        await startRelay(i);
      },
      relayStats(name) {
        const r = relays.get(index(name));
        return r ? r.stats() : Promise.resolve(null);
      },
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
