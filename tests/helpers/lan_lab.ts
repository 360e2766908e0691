/**
 * One Ethernet LAN of network namespaces, for the broadcast and
 * multicast tests: a switch namespace holding a Linux bridge, and N host
 * namespaces, each joined to the bridge by a veth pair (`eth0` inside the
 * host). Host i (0-based) is 10.77.0.(i+2)/24; the subnet broadcast
 * address is 10.77.0.255, and 224.0.0.0/4 and ff00::/8 are routed out of
 * eth0, so multicast works with no interface named. Names start with
 * `eta-` and a random suffix (netns.ts); `close()` stops what was tracked
 * and deletes the namespaces (which deletes the veths and the bridge).
 */
import { deleteNetns, labId, makeNetns, must, type Run, sh } from "./netns.ts";

export interface LanLab {
  id: string;
  dir: string;
  /** Host namespaces, in order. */
  hosts: string[];
  /** Host i's IPv4 address. */
  addr(i: number): string;
  /** Host i's IPv6 address. */
  addr6(i: number): string;
  broadcastAddr: string;
  exec(ns: string, argv: string[]): Promise<Run>;
  /** GET http://127.0.0.1:`port``path` from inside `ns` (curl); null when it fails. */
  httpGet(ns: string, port: number, path: string): Promise<string | null>;
  track(stop: () => Promise<unknown>): void;
  close(): Promise<void>;
}

/** Builds a LAN of `hosts` namespaces; on failure it tears down what it made and rethrows. */
export async function buildLan(hosts: number): Promise<LanLab> {
  const id = labId();
  const dir = await Deno.makeTempDir({ prefix: `${id}-` });
  const sw = `${id}-sw`;
  const names = Array.from({ length: hosts }, (_, i) => `${id}-h${i}`);
  const made: string[] = [];
  const stops: (() => Promise<unknown>)[] = [];
  const lab: LanLab = {
    id,
    dir,
    hosts: names,
    addr: (i) => `10.77.0.${i + 2}`,
    addr6: (i) => `fd77::${i + 2}`,
    broadcastAddr: "10.77.0.255",
    exec: (ns, argv) => sh(["ip", "netns", "exec", ns, ...argv]),
    async httpGet(ns, port, path) {
      const r = await sh([
        "ip",
        "netns",
        "exec",
        ns,
        "curl",
        "-sf",
        "--max-time",
        "5",
        `http://127.0.0.1:${port}${path}`,
      ]);
      return r.code === 0 ? r.stdout : null;
    },
    track: (stop) => void stops.push(stop),
    async close() {
      for (const s of stops.reverse()) await s().catch(() => {});
      for (const ns of made) await deleteNetns(ns);
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
  try {
    await makeNetns(sw);
    made.push(sw);
    await must(["ip", "-n", sw, "link", "add", "br0", "type", "bridge"]);
    await must(["ip", "-n", sw, "link", "set", "br0", "up"]);
    for (let i = 0; i < hosts; i++) {
      const ns = names[i]!;
      await makeNetns(ns);
      made.push(ns);
      const port = `p${i}`;
      await must([
        "ip",
        "-n",
        sw,
        "link",
        "add",
        port,
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        ns,
      ]);
      await must(["ip", "-n", sw, "link", "set", port, "master", "br0"]);
      await must(["ip", "-n", sw, "link", "set", port, "up"]);
      await must(["ip", "-n", ns, "addr", "add", `${lab.addr(i)}/24`, "dev", "eth0"]);
      await must(["ip", "-n", ns, "addr", "add", `${lab.addr6(i)}/64`, "dev", "eth0", "nodad"]);
      await must(["ip", "-n", ns, "link", "set", "eth0", "up"]);
      await must(["ip", "-n", ns, "route", "add", "224.0.0.0/4", "dev", "eth0"]);
    }
    return lab;
  } catch (e) {
    await lab.close();
    throw e;
  }
}
