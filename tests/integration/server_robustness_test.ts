/**
 * Robustness: 100 000+ random and mutated packets at a running edge-time,
 * on each UDP driver. The server must not crash, must answer only
 * requests that are answerable at all (mode 3, mode 1, NTPv1 mode 0, with
 * a version 1–4 and at least 48 bytes), never with more bytes than the
 * request, must still answer a valid query afterwards, and its /status
 * counters must add up with what the kernel says it delivered.
 */
import assert from "assert";
import { freeTcpPort, freeUdpPort, localServerToml, startEdgeTime } from "../helpers/edge_time.ts";
import {
  AF_INET,
  libc,
  MSG_DONTWAIT,
  SO_RCVBUFFORCE,
  SOCK_DGRAM,
  SOL_SOCKET,
  writeSockaddr,
} from "../../lib/io/libc.ts";

const PACKETS = 100_000;
const SEED = 0x5eed1234;
const NTP_UNIX = 2_208_988_800;

/** xorshift32: the same packets on every run. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

type Kind = "random" | "flipped" | "bad-ef" | "control" | "short" | "valid";

interface Packet {
  bytes: Uint8Array;
  kind: Kind;
}

function validRequest(r: () => number, len = 48): Uint8Array {
  const b = new Uint8Array(len);
  for (let i = 0; i < len; i++) b[i] = r() & 0xff;
  b[0] = (4 << 3) | 3;
  return b;
}

/** The packet mix: junk of every shape, with some valid requests among it. */
function makePacket(r: () => number, i: number): Packet {
  const k = r() % 100;
  let p: Packet;
  if (k < 35) {
    const len = r() % 601;
    const b = new Uint8Array(len);
    for (let j = 0; j < len; j++) b[j] = r() & 0xff;
    p = { bytes: b, kind: "random" };
  } else if (k < 60) {
    const b = validRequest(r, [48, 48, 68, 72, 64, 96][r() % 6]!);
    for (let f = 1 + (r() % 3); f > 0; f--) {
      const bit = r() % (b.length * 8);
      b[bit >> 3]! ^= 1 << (bit & 7);
    }
    p = { bytes: b, kind: "flipped" };
  } else if (k < 72) {
    // v4 with an extension field whose length is wrong: 0, not a multiple
    // of 4, shorter than 16, or past the end.
    const len = 48 + 16 + 4 * (r() % 8) + 28; // never a bare MAC length
    const b = validRequest(r, len);
    const v = new DataView(b.buffer);
    const bad = [0, 6, 12, 17, len - 48 + 4, 0xfffc][r() % 6]!;
    v.setUint16(50, bad);
    p = { bytes: b, kind: "bad-ef" };
  } else if (k < 82) {
    const b = validRequest(r, 12 + (r() % 500));
    b[0] = (((r() % 4) + 1) << 3) | (6 + (r() % 2));
    p = { bytes: b, kind: "control" };
  } else if (k < 90) {
    const b = validRequest(r, r() % 48);
    p = { bytes: b, kind: "short" };
  } else {
    p = { bytes: validRequest(r), kind: "valid" };
  }
  // A unique xmt where there is one, so a reply (org) names its request.
  if (p.bytes.length >= 48) {
    const v = new DataView(p.bytes.buffer);
    v.setUint32(40, 0x40000000 + i);
  }
  return p;
}

/** Whether the server may answer this packet at all (header rules only). */
function answerable(b: Uint8Array): boolean {
  if (b.length < 48) return false;
  const version = (b[0]! >> 3) & 7, mode = b[0]! & 7;
  if (version < 1 || version > 4) return false;
  return mode === 3 || mode === 1 || (mode === 0 && version === 1);
}

/** Kernel drop count of the UDP socket(s) on `port` (/proc/net/udp, last column). */
async function kernelDrops(port: number): Promise<number> {
  const hex = port.toString(16).toUpperCase().padStart(4, "0");
  let drops = 0;
  for (const f of ["/proc/net/udp", "/proc/net/udp6"]) {
    const text = await Deno.readTextFile(f).catch(() => "");
    for (const line of text.split("\n").slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols[1]?.endsWith(`:${hex}`)) drops += Number(cols[cols.length - 1]);
    }
  }
  return drops;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** At most this many packets ahead of what the server has taken in: the kernel never has to drop. */
const AHEAD = 1000;
/** Deadline of a wait for the server to catch up: for a server that never does, not a figure. */
const CATCH_UP_DEADLINE_MS = 60_000;

/**
 * A plain blocking-free UDP client on libc sendto/recvfrom: node:dgram in
 * Deno sends only a few thousand datagrams a second, too slow for 100k.
 */
class RawClient {
  readonly fd: number;
  readonly port: number;
  readonly replies: Uint8Array[] = [];
  readonly #dst = new Uint8Array(128);
  readonly #buf = new Uint8Array(2048);
  constructor(serverPort: number) {
    const c = libc();
    this.fd = c.socket(AF_INET, SOCK_DGRAM, 0);
    const size = new Int32Array([8 << 20]);
    c.setsockopt(this.fd, SOL_SOCKET, SO_RCVBUFFORCE, new Uint8Array(size.buffer), 4);
    const local = new Uint8Array(128);
    c.bind(this.fd, local, writeSockaddr(local, new Uint8Array([127, 0, 0, 1]), 0));
    const len = new Uint32Array([128]);
    c.getsockname(this.fd, local, new Uint8Array(len.buffer));
    this.port = (local[2]! << 8) | local[3]!;
    writeSockaddr(this.#dst, new Uint8Array([127, 0, 0, 1]), serverPort);
  }
  send(b: Uint8Array): void {
    // A zero-length buffer still needs a valid pointer.
    const buf = b.length ? b : this.#buf;
    libc().sendto(this.fd, buf as Uint8Array<ArrayBuffer>, BigInt(b.length), 0, this.#dst, 16);
  }
  /** Reads every reply waiting in the socket. */
  drain(): void {
    const c = libc();
    for (;;) {
      const n = Number(c.recvfrom(this.fd, this.#buf, 2048n, MSG_DONTWAIT, null, null));
      if (n < 0) return;
      this.replies.push(this.#buf.slice(0, n));
    }
  }
  close(): void {
    libc().close(this.fd);
  }
}

for (const driver of ["ffi", "portable"] as const) {
  Deno.test(`server robustness "${driver}": ${PACKETS} random and mutated packets`, async (t) => {
    const port = await freeUdpPort();
    const statusPort = freeTcpPort();
    const et = await startEdgeTime(
      localServerToml(
        port,
        statusPort,
        `driver = "${driver}"\nworkers = 1\nrate_limit = { interval_s = 0 }`,
      ),
    );
    const sock = new RawClient(port);
    const replies = sock.replies;
    try {
      const r = rng(SEED);
      const sent: Packet[] = [];
      const byTag = new Map<number, number>();
      const kinds: Record<Kind, number> = {
        random: 0,
        flipped: 0,
        "bad-ef": 0,
        control: 0,
        short: 0,
        valid: 0,
      };
      const dropsBefore = await kernelDrops(port);
      /** /status's server counters and the kernel's drops on our port since the start. */
      const counts = async () => ({
        s: (await (await fetch(`http://127.0.0.1:${statusPort}/status`)).json()).server,
        drops: (await kernelDrops(port)) - dropsBefore,
      });
      /** Polls (draining replies) until `done` holds or the deadline passes; returns the last counts. */
      const settle = async (done: (c: Awaited<ReturnType<typeof counts>>) => Promise<boolean>) => {
        let c = await counts();
        for (const end = Date.now() + CATCH_UP_DEADLINE_MS; Date.now() < end; c = await counts()) {
          sock.drain();
          if (await done(c)) break;
          await sleep(10);
        }
        return c;
      };
      await t.step(`send ${PACKETS} packets (seed ${SEED.toString(16)})`, async () => {
        for (let i = 0; i < PACKETS; i++) {
          const p = makePacket(r, i);
          sent.push(p);
          kinds[p.kind]++;
          if (p.bytes.length >= 48) byTag.set(0x40000000 + i, i);
          sock.send(p.bytes);
          // Paced (~25k/s), and never more than AHEAD packets ahead of the
          // server however slow this machine is; drops are counted anyway.
          if (i % 50 === 49) {
            sock.drain();
            await sleep(2);
          }
          if (i % AHEAD === AHEAD - 1) {
            await settle(({ s, drops }) => Promise.resolve(s.received + drops >= i + 1 - AHEAD));
          }
        }
        // Until the server has taken in (or the kernel dropped) every packet
        // and every reply it sent has arrived (or was dropped at our socket).
        await settle(async ({ s, drops }) =>
          s.received + drops >= PACKETS &&
          replies.length + (await kernelDrops(sock.port)) >= s.answered
        );
        console.log(`sent ${JSON.stringify(kinds)}, ${replies.length} replies`);
      });

      await t.step("only answerable requests got replies, none larger than its request", () => {
        let unmatched = 0;
        for (const rep of replies) {
          // A header, or a header and a crypto-NAK (key ID 0, no digest) to a
          // request whose trailer reads as a MAC with a key we do not trust.
          const nak = rep.length === 52 &&
            new DataView(rep.buffer, rep.byteOffset).getUint32(48) === 0;
          assert.ok(rep.length === 48 || nak, `a reply of ${rep.length} octets`);
          const tag = new DataView(rep.buffer, rep.byteOffset).getUint32(24);
          const i = byTag.get(tag);
          if (i === undefined) {
            unmatched++;
            continue;
          }
          const req = sent[i]!;
          assert.ok(
            answerable(req.bytes),
            `reply to a ${req.kind} packet ${i} [${req.bytes.subarray(0, 4)}]`,
          );
          assert.notEqual(req.kind, "bad-ef", `reply to bad extension field packet ${i}`);
          assert.ok(rep.length <= req.bytes.length);
        }
        assert.equal(unmatched, 0, "replies whose org matches no request");
      });

      await t.step("it still answers a valid query", async () => {
        const req = validRequest(rng(7));
        new DataView(req.buffer).setUint32(40, Math.floor(Date.now() / 1000) + NTP_UNIX);
        const before = replies.length;
        sock.send(req);
        for (let i = 0; i < 1000 && replies.length === before; i++) {
          await sleep(10);
          sock.drain();
        }
        assert.equal(replies.length, before + 1);
        assert.equal(replies[before]![0]! & 7, 4);
      });

      await t.step("/status counters add up with what the kernel delivered", async () => {
        const { s, drops } = await settle(({ s, drops }) =>
          Promise.resolve(s.received + drops >= PACKETS + 1)
        );
        console.log(`status ${JSON.stringify(s)}, kernel drops ${drops}`);
        assert.equal(s.received + drops, PACKETS + 1, "received + kernel drops = sent");
        const dropped = Object.values(s.dropped as Record<string, number>).reduce((a, b) => a + b);
        assert.equal(
          s.answered + s.kod_rate + s.kod_deny + dropped,
          s.received,
          "every received packet is answered or dropped for a reason",
        );
        const lost = await kernelDrops(sock.port);
        assert.equal(s.answered, replies.length + lost, "answered = replies seen + client drops");
        assert.ok(s.dropped.malformed > 0 && s.dropped.control > 0 && s.dropped.mode > 0);
        assert.ok(
          drops < PACKETS / 2,
          `kernel dropped ${drops}: too few packets reached the server`,
        );
      });

      await t.step("the process is still running", () => {
        assert.ok(
          !et.logs().some((l) => /panic|Uncaught|Segmentation/.test(l)),
          et.logs().join("\n"),
        );
      });
    } finally {
      sock.close();
      const code = await et.stop();
      assert.equal(code, 0, `edge-time exit code after SIGTERM:\n${et.logs().join("\n")}`);
    }
  });
}
