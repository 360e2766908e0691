/**
 * The client-side reply checks (`checkReply`, RFC 5905 §8 / RFC 4330 §5):
 * as a pure function, through `edge-time query` against a scripted
 * upstream that answers with each kind of bad reply, and through the
 * anycast self-query and router node checks.
 */
import assert from "assert";
import dgram from "node:dgram";
import { checkReply, kissCode } from "../../lib/ntp/reply_check.ts";
import { asciiRefid, Leap, Mode, type NtpPacket, serializePacket } from "../../lib/ntp/packet.ts";
import { addSeconds, fromUnix, type NtpTimestamp } from "../../lib/ntp/timestamp.ts";
import { realAnycastIo } from "../../lib/anycast/mod.ts";
import { type AnycastConfig, planOneShot } from "../../lib/anycast/runtime.ts";
import { defaultConfig } from "../../lib/config/mod.ts";
import { FakeCommandRunner, FakeFileStore } from "../../lib/io/command_runner.ts";
import { mainArgv } from "../helpers/edge_time.ts";

const T1: NtpTimestamp = fromUnix(1_800_000_000, 0);

/** A good reply to a request sent at T1: stratum 2, 1 ms each way, 10 µs in the server. */
function reply(over: Partial<NtpPacket> = {}): NtpPacket {
  return {
    leap: Leap.none,
    version: 4,
    mode: Mode.server,
    stratum: 2,
    poll: 6,
    precision: -20,
    rootDelay: 0.01,
    rootDisp: 0.001,
    refid: 0xc0000201,
    ref: addSeconds(T1, -30),
    org: T1,
    rec: addSeconds(T1, 0.001),
    xmt: addSeconds(T1, 0.00101),
    extensions: [],
    macLength: 0,
    ...over,
  };
}

Deno.test("checkReply() passes a good reply and names each fault", async (t) => {
  const t4 = addSeconds(T1, 0.00201);
  await t.step("good", () => assert.equal(checkReply(T1, reply(), t4), null));
  const cases: [string, Partial<NtpPacket>, string | null][] = [
    ["mode 3", { mode: Mode.client }, "reply has mode 3, expected 4 (server)"],
    ["mode 2", { mode: Mode.symmetricPassive }, "reply has mode 2, expected 4 (server)"],
    ["origin", { org: addSeconds(T1, 1) }, "origin timestamp does not match our request"],
    [
      "KoD RATE",
      { leap: Leap.unsync, stratum: 0, refid: asciiRefid("RATE"), rec: 0n, xmt: 0n },
      "kiss-o'-death RATE",
    ],
    ["KoD DENY", { stratum: 0, refid: asciiRefid("DENY") }, "kiss-o'-death DENY"],
    ["KoD RSTR", { stratum: 0, refid: asciiRefid("RSTR") }, "kiss-o'-death RSTR"],
    [
      "unsynchronised (LI 3, stratum 0, refid 0)",
      { leap: Leap.unsync, stratum: 0, refid: 0 },
      "server is not synchronised (leap 3, stratum 0)",
    ],
    ["LI 3", { leap: Leap.unsync }, "server is not synchronised (leap 3, stratum 2)"],
    ["stratum 16", { stratum: 16 }, "server is not synchronised (leap 0, stratum 16)"],
    ["xmt zero", { xmt: 0n }, "transmit timestamp is zero"],
    ["rec zero", { rec: 0n }, "receive timestamp is zero"],
    ["root distance", { rootDelay: 2, rootDisp: 15 }, "root distance 16.000 s is not below 16 s"],
    // t4 − t1 = 2.01 ms: an xmt 2.06 ms after rec (−50 µs) is stamping noise; 2.2 ms is not.
    ["a delay of −50 µs is noise", { xmt: addSeconds(T1, 0.00306) }, null],
    [
      "a delay of −190 µs is not",
      { xmt: addSeconds(T1, 0.0032) },
      "negative round-trip delay -0.000190 s",
    ],
    [
      "negative delay",
      { xmt: addSeconds(T1, 0.01) },
      "negative round-trip delay -0.006990 s",
    ],
  ];
  for (const [name, over, want] of cases) {
    await t.step(name, () => assert.equal(checkReply(T1, reply(over), t4), want));
  }
  await t.step("without a receive time the delay is not checked", () => {
    assert.equal(checkReply(T1, reply({ xmt: addSeconds(T1, 0.01) })), null);
  });
  await t.step("kiss codes are printable ASCII with trailing NULs only", () => {
    assert.equal(kissCode(asciiRefid("RATE")), "RATE");
    assert.equal(kissCode(asciiRefid("X")), "X");
    assert.equal(kissCode(0), "");
    assert.equal(kissCode(0x00415445), "");
    assert.equal(kissCode(0x7f000001), "");
  });
});

/** The reply (or replies, in order) to a request; null: silence. */
type Script = (
  org: NtpTimestamp,
  now: NtpTimestamp,
) => Partial<NtpPacket> | Partial<NtpPacket>[] | null;

/** A UDP server on 127.0.0.1 that answers each request as `script` says. */
async function scriptedUpstream(script: Script) {
  const sock = dgram.createSocket("udp4");
  sock.on("message", (msg: Uint8Array, rinfo: { address: string; port: number }) => {
    const org = new DataView(msg.buffer, msg.byteOffset).getBigUint64(40);
    const ms = Date.now();
    const now = fromUnix(Math.floor(ms / 1000), (ms % 1000) * 1e6);
    const over = script(org, now);
    if (over === null) return;
    for (const o of Array.isArray(over) ? over : [over]) {
      const p = { ...reply({ org, rec: now, xmt: addSeconds(now, 0.00001), ref: now }), ...o };
      sock.send(serializePacket(p), rinfo.port, rinfo.address);
    }
  });
  await new Promise<void>((r) => sock.bind(0, "127.0.0.1", () => r()));
  return { port: sock.address().port, close: () => sock.close() };
}

async function query(port: number) {
  const [deno, ...argv] = mainArgv("query", "--timeout", "300", `127.0.0.1:${port}`) as [
    string,
    ...string[],
  ];
  const out = await new Deno.Command(deno, {
    args: argv,
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(20_000),
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** Each bad reply and the one line `query` must print for it. */
const BAD: [string, Script, string][] = [
  ["transmit timestamp zero", () => ({ xmt: 0n }), "transmit timestamp is zero"],
  ["receive timestamp zero", () => ({ rec: 0n }), "receive timestamp is zero"],
  [
    "KoD RATE (stratum 0, rec = xmt = 0)",
    () => ({ leap: Leap.unsync, stratum: 0, refid: asciiRefid("RATE"), rec: 0n, xmt: 0n }),
    "kiss-o'-death RATE",
  ],
  [
    "KoD DENY",
    () => ({ leap: Leap.unsync, stratum: 0, refid: asciiRefid("DENY"), rec: 0n, xmt: 0n }),
    "kiss-o'-death DENY",
  ],
  [
    "unsynchronised server",
    () => ({ leap: Leap.unsync, stratum: 0, refid: 0 }),
    "server is not synchronised (leap 3, stratum 0)",
  ],
  ["stratum 16", () => ({ stratum: 16 }), "server is not synchronised (leap 0, stratum 16)"],
  ["mode 3", () => ({ mode: Mode.client }), "reply has mode 3, expected 4 (server)"],
  [
    "server time running backwards",
    (_org, now) => ({ rec: now, xmt: addSeconds(now, 5) }),
    "negative round-trip delay",
  ],
  [
    "only replies to other requests",
    (org) => ({ org: org ^ 0xffffn }),
    "origin timestamp does not match our request",
  ],
];

Deno.test("edge-time query exits 1 with one line for each bad reply", async (t) => {
  for (const [name, script, want] of BAD) {
    await t.step(name, async () => {
      const up = await scriptedUpstream(script);
      try {
        const r = await query(up.port);
        assert.equal(r.code, 1, r.stdout + r.stderr);
        assert.equal(r.stdout, "");
        const lines = r.stderr.trimEnd().split("\n");
        assert.equal(lines.length, 1, r.stderr);
        assert.ok(lines[0]!.startsWith(`127.0.0.1:${up.port}: ${want}`), r.stderr);
      } finally {
        up.close();
      }
    });
  }
  await t.step("a good reply prints offset and delay, exit 0", async () => {
    const up = await scriptedUpstream(() => ({}));
    try {
      const r = await query(up.port);
      assert.equal(r.code, 0, r.stderr);
      assert.match(
        r.stdout,
        new RegExp(`^127\\.0\\.0\\.1:${up.port} stratum 2 refid 192\\.0\\.2\\.1 leap 0 offset `),
      );
    } finally {
      up.close();
    }
  });
  await t.step("a stale reply before the right one is ignored", async () => {
    const up = await scriptedUpstream((org) => [{ org: org ^ 0xffffn, xmt: 0n }, {}]);
    try {
      const r = await query(up.port);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, / stratum 2 /);
    } finally {
      up.close();
    }
  });
});

function anycastConfig(over: (c: AnycastConfig) => void): AnycastConfig {
  const c = defaultConfig().anycast;
  c.addresses = ["127.0.0.1/32"];
  c.bird.includeFile = "";
  c.router = { vip: "192.0.2.123/32", nodes: ["127.0.0.1"], hashPolicy: "l4", port: 123 };
  over(c);
  return c;
}

/** `ip` and `sysctl` as a host holding 127.0.0.1/32 with no VIP route; queries are real. */
function io() {
  const runner = new FakeCommandRunner((argv) => {
    const s = argv.join(" ");
    if (s.startsWith("ip -j addr show dev lo")) {
      return {
        code: 0,
        stdout: JSON.stringify([{
          ifname: "lo",
          addr_info: [{ family: "inet", local: "127.0.0.1", prefixlen: 32 }],
        }]),
        stderr: "",
      };
    }
    if (s.startsWith("ip -j route show")) return { code: 0, stdout: "[]", stderr: "" };
    if (s.startsWith("sysctl -n")) return { code: 0, stdout: "1\n1\n", stderr: "" };
    return { code: 1, stdout: "", stderr: `unexpected ${s}` };
  });
  return { ...realAnycastIo(), runner, files: new FakeFileStore("/nonexistent/") };
}

Deno.test("the anycast self-query and router node checks use the same reply checks", async (t) => {
  for (const [name, script, want] of BAD.slice(0, 6)) {
    await t.step(name, async () => {
      const up = await scriptedUpstream(script);
      try {
        const node = await planOneShot(anycastConfig((c) => c.mode = "node"), io(), {
          kind: "apply",
          selfPort: up.port,
        });
        assert.ok(typeof node !== "string", String(node));
        assert.equal(node.notes[0], `health: bad: self-query 127.0.0.1:${up.port}: ${want}`);
        const router = await planOneShot(
          anycastConfig((c) => {
            c.mode = "router";
            c.router.port = up.port;
          }),
          io(),
          { kind: "apply", selfPort: 123 },
        );
        assert.ok(typeof router !== "string", String(router));
        assert.ok(router.notes.includes(`node 127.0.0.1: query: ${want}`), router.notes.join("\n"));
      } finally {
        up.close();
      }
    });
  }
  await t.step("a good reply is healthy", async () => {
    const up = await scriptedUpstream(() => ({}));
    try {
      const node = await planOneShot(anycastConfig((c) => c.mode = "node"), io(), {
        kind: "apply",
        selfPort: up.port,
      });
      assert.ok(typeof node !== "string");
      assert.equal(node.notes[0], "health: good");
    } finally {
      up.close();
    }
  });
});
