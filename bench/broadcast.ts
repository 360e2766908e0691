/**
 * Broadcast benchmark: how well a broadcast client keeps time next to a
 * unicast client of the same server, on one LAN of namespaces
 * (tests/helpers/lan_lab.ts, a Linux bridge, no impairment).
 *
 * - h0: edge-time, `local_stratum = 3`, `[[broadcast]]` to 224.0.1.1 every
 *   `--interval` seconds, signed with SHA1 key 5;
 * - h1: edge-time, `kind = "broadcast"` source on 224.0.1.1 with key 5;
 * - h2: edge-time, a `server` source h0 with key 5, polling every
 *   `--interval` seconds (min_poll = max_poll), so both clients get one
 *   packet per interval.
 *
 * Every process reads the one kernel clock (`clock.control = false`), so the
 * truth is 0: after a warm-up, a probe (bench/client_probe.c, kernel
 * timestamps) in h1 and in h2 asks its own node for the time twice a
 * second, and |offset| is what that node serves wrong. Prints p50/p99 per
 * client and the ratio broadcast/unicast.
 *
 *   deno task bench:broadcast [--seconds N] [--warmup N] [--interval S]
 *
 * Needs root. Nothing here adjusts the machine's clock.
 */
import { checkedArgs, numberOption, parseArgs, UsageError } from "./cli_options.ts";
import { startEdgeTime } from "../tests/helpers/edge_time.ts";
import { buildC } from "../tests/helpers/ntpload.ts";
import { buildLan, type LanLab } from "../tests/helpers/lan_lab.ts";

function config(extra: string, auth: string, server = ""): string {
  return `${auth}
[server]
listen = ["0.0.0.0:123"]
workers = 1
${server}
[clock]
control = false
driftfile = ""
[status]
listen = "127.0.0.1:8123"
${extra}
`;
}

async function status(lab: LanLab, ns: string): Promise<Record<string, unknown> | null> {
  const body = await lab.httpGet(ns, 8123, "/status");
  return body === null ? null : JSON.parse(body);
}

/** Runs client_probe in `ns` against its own node; returns the offsets (s). */
async function probe(bin: string, ns: string, seconds: number): Promise<number[]> {
  const out = await new Deno.Command("ip", {
    args: ["netns", "exec", ns, bin, "-r", "2", "-d", String(seconds), "127.0.0.1:123"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) throw new Error(`client_probe: ${new TextDecoder().decode(out.stderr)}`);
  return new TextDecoder().decode(out.stdout).split("\n")
    .map((l) => l.split("\t"))
    .filter((f) => f[0] === "S")
    .map((f) => Number(f[3]));
}

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? NaN;
}

async function main(): Promise<void> {
  const v = checkedArgs(() =>
    parseArgs({
      args: Deno.args,
      options: {
        seconds: { type: "string", default: "120" },
        warmup: { type: "string", default: "40" },
        interval: { type: "string", default: "4" },
      },
    }).values
  );
  const seconds = Math.round(numberOption("seconds", v.seconds, 10, 3600));
  const warmup = numberOption("warmup", v.warmup, 0, 3600);
  const interval = Math.round(numberOption("interval", v.interval, 1, 64));
  const poll = Math.round(Math.log2(interval));
  const bin = await buildC(new URL("client_probe.c", import.meta.url).pathname, "client_probe");
  const lab = await buildLan(3);
  try {
    const file = `${lab.dir}/ntp.keys`;
    await Deno.writeTextFile(file, "5 SHA1 6d0fb2b6c2b2f4a3e58d9f5c1a0e3b2d4c5f6a7b\n");
    const auth = `[auth]\nkeyfile = "${file}"\ntrusted_keys = [5]\n`;
    const start = async (i: number, toml: string) => {
      const p = await startEdgeTime(toml, { netns: lab.hosts[i]! });
      lab.track(() => p.stop());
    };
    await start(
      0,
      config(
        `[[broadcast]]\naddress = "224.0.1.1"\ninterval_s = ${interval}\nkey = 5`,
        auth,
        "local_stratum = 3",
      ),
    );
    await start(
      1,
      config(
        `[[source]]\nkind = "broadcast"\naddress = "224.0.1.1"\nkey = 5\nmin_poll = ${poll}\nmax_poll = ${poll}`,
        auth,
      ),
    );
    await start(
      2,
      config(
        `[[source]]\naddress = "${lab.addr(0)}"\nkey = 5\nmin_poll = ${poll}\nmax_poll = ${poll}`,
        auth,
      ),
    );
    for (const i of [1, 2]) {
      for (let t = 0;; t++) {
        const s = await status(lab, lab.hosts[i]!);
        const sys = s?.system as { synchronised?: boolean; stratum?: number } | undefined;
        if (sys?.synchronised && sys.stratum === 4) break;
        if (t > 240) throw new Error(`h${i} did not synchronise`);
        await new Promise((r) => setTimeout(r, 500));
      }
    }
    console.error(`synchronised; warm-up ${warmup} s, then ${seconds} s of probes`);
    await new Promise((r) => setTimeout(r, warmup * 1000));
    const [bcast, ucast] = await Promise.all([
      probe(bin, lab.hosts[1]!, seconds),
      probe(bin, lab.hosts[2]!, seconds),
    ]);
    const s1 = await status(lab, lab.hosts[1]!);
    const src =
      (s1?.sources as { counters?: Record<string, number>; broadcast_delay_s?: number }[])[0];
    const us = (x: number) => (x * 1e6).toFixed(1);
    const row = (name: string, xs: number[]) => {
      const abs = xs.map(Math.abs);
      return `| ${name} | ${xs.length} | ${us(quantile(xs, 0.5))} | ${us(quantile(abs, 0.5))} | ${
        us(quantile(abs, 0.99))
      } |`;
    };
    const ratio = (q: number) =>
      (quantile(bcast.map(Math.abs), q) / quantile(ucast.map(Math.abs), q)).toFixed(2);
    console.log(
      [
        `date ${
          new Date().toISOString()
        }, interval ${interval} s, ${seconds} s after ${warmup} s warm-up`,
        "",
        "| client | probes | offset p50 (µs) | \\|offset\\| p50 (µs) | \\|offset\\| p99 (µs) |",
        "| --- | --- | --- | --- | --- |",
        row("broadcast (h1)", bcast),
        row("unicast (h2)", ucast),
        "",
        `broadcast/unicast: p50 ${ratio(0.5)}, p99 ${ratio(0.99)}; ` +
        `h1 calibrated delay ${us(src?.broadcast_delay_s ?? NaN)} µs, ` +
        `broadcasts heard ${src?.counters?.broadcasts ?? "?"}`,
      ].join("\n"),
    );
  } finally {
    await lab.close();
  }
}

if (import.meta.main) {
  try {
    await main();
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`bench:broadcast: ${e.message}`);
      Deno.exit(2);
    }
    throw e;
  }
}
