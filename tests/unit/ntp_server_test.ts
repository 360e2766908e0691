import assert from "assert";
import { serverContext } from "../helpers/fixtures.ts";
import { AccessList, type Cidr, parseCidr } from "../../lib/ntp/access.ts";
import { RateLimiter } from "../../lib/ntp/rate_limit.ts";
import { newClientAddress, parseIp, setClientAddress } from "../../lib/ntp/address.ts";
import { asciiRefid, Leap, parsePacket } from "../../lib/ntp/packet.ts";
import {
  Counter,
  minPollFor,
  NO_REPLY,
  respond,
  type ServerContext,
  stampTransmit,
} from "../../lib/ntp/server.ts";
import { type SystemState, unsyncedState } from "../../lib/ntp/system_state.ts";
import { diff, fromUnix } from "../../lib/ntp/timestamp.ts";
import { CHRONY_REQUEST, hex, NTPDIG_REQUEST, toHex } from "../fixtures/requests.ts";

const cidrs = (...s: string[]) => s.map((x) => parseCidr(x) as Cidr);

/** A synchronised stratum-2 server whose reference is 192.0.2.1. */
function syncedState(): SystemState {
  return {
    ...unsyncedState(-20),
    leap: Leap.none,
    stratum: 2,
    refid: 0xc0000201,
    refTime: 1_800_000_000,
    rootDelay: 0.0125,
    rootDisp: 0.001,
  };
}

function context(over: Partial<ServerContext> = {}): ServerContext {
  return serverContext(syncedState(), over);
}

function client(ip = "192.0.2.50", port = 40000) {
  const c = newClientAddress();
  const b = parseIp(ip)!;
  setClientAddress(c, b, 0, b.length as 4 | 16, port);
  return c;
}

function answer(
  req: Uint8Array,
  ctx = context(),
  from = client(),
  rx = [1_800_000_016, 250_000_000],
) {
  const out = new Uint8Array(64);
  const n = respond(req, req.length, from, rx[0]!, rx[1]!, ctx, out, 0);
  if (n > 0) stampTransmit(out, 0, ctx.system, rx[0]!, rx[1]! + 40_000);
  return { n, out: out.subarray(0, Math.max(n, 0)), ctx };
}

Deno.test("respond() gives byte-exact replies to captured requests", async (t) => {
  // Fields: LI 0, version copied, mode 4, stratum 2, poll copied, precision -20,
  // root delay 0.0125 s, root dispersion 0.001 s + 15 ppm * 16.25 s age,
  // refid 192.0.2.1, ref 1800000000.0, org = request xmt, rec = rx, xmt = rx + 40 µs.
  await t.step("ntpdig", () => {
    const { n, out } = answer(hex(NTPDIG_REQUEST));
    assert.equal(n, 48);
    assert.equal(
      toHex(out),
      "240200ec0000033300000052c0000201eef4508000000000eeb12463f6f6b000eef4509040000000eef4509040029f16",
    );
  });
  await t.step("chronyd", () => {
    const { out } = answer(hex(CHRONY_REQUEST));
    assert.equal(
      toHex(out),
      "240206ec0000033300000052c0000201eef4508000000000190da85cb79f8e82eef4509040000000eef4509040029f16",
    );
  });
});

Deno.test("respond() follows RFC 5905 fast_xmit field by field", async (t) => {
  const req = hex(CHRONY_REQUEST);
  const { out } = answer(req);
  const p = parsePacket(out);
  assert.ok(typeof p !== "string");
  await t.step("org is the request's xmt", () => assert.equal(p.org, 0x190da85cb79f8e82n));
  await t.step("rec is the receive time, xmt later", () => {
    assert.equal(p.rec, fromUnix(1_800_000_016, 250_000_000));
    assert.ok(diff(p.xmt, p.rec) > 0 && diff(p.xmt, p.rec) < 1e-4);
  });
  await t.step("stratum, refid, root delay and precision come from the system state", () => {
    assert.deepEqual([p.stratum, p.refid, p.precision], [2, 0xc0000201, -20]);
    assert.ok(Math.abs(p.rootDelay - 0.0125) < 1 / 65536);
  });
  await t.step("root dispersion grows with the reference age", () => {
    assert.ok(p.rootDisp > 0.001 && Math.abs(p.rootDisp - (0.001 + 15e-6 * 16.25)) < 2 / 65536);
  });
});

Deno.test("respond() copies the version and maps modes like chrony", async (t) => {
  const req = hex(CHRONY_REQUEST);
  for (const v of [1, 2, 3, 4]) {
    await t.step(`v${v} mode 3 gets v${v} mode 4`, () => {
      req[0] = (v << 3) | 3;
      const { out } = answer(req);
      assert.equal(out[0]! & 0x3f, (v << 3) | 4);
    });
  }
  await t.step("an unknown peer's mode 1 gets a stateless mode 2", () => {
    req[0] = (4 << 3) | 1;
    assert.equal(answer(req).out[0]! & 7, 2);
  });
  await t.step("NTPv1 mode 0 from a client port gets mode 4", () => {
    req[0] = 1 << 3;
    const r = answer(req);
    assert.equal(r.n, 48);
    assert.equal(r.out[0]! & 7, 4);
  });
  await t.step("NTPv1 mode 0 from port 123 is not answered", () => {
    req[0] = 1 << 3;
    assert.equal(answer(req, context(), client("192.0.2.50", 123)).n, NO_REPLY);
  });
  for (
    const [mode, counter] of [[0, "dropMode"], [2, "dropMode"], [4, "dropMode"], [5, "dropMode"], [
      6,
      "dropControl",
    ], [7, "dropControl"]] as const
  ) {
    await t.step(`v4 mode ${mode} is not answered and counted as ${counter}`, () => {
      req[0] = (4 << 3) | mode;
      const r = answer(req);
      assert.equal(r.n, NO_REPLY);
      assert.equal(r.ctx.counters[Counter[counter]], 1);
    });
  }
});

Deno.test("respond() drops malformed requests and never answers larger than asked", async (t) => {
  await t.step("shorter than 48 bytes", () => {
    const r = answer(hex(CHRONY_REQUEST).subarray(0, 47));
    assert.equal(r.n, NO_REPLY);
    assert.equal(r.ctx.counters[Counter.dropMalformed], 1);
  });
  await t.step("version 0 and 5", () => {
    for (const v of [0, 5]) {
      const req = hex(CHRONY_REQUEST);
      req[0] = (v << 3) | 3;
      assert.equal(answer(req).n, NO_REPLY);
    }
  });
  await t.step("a bad extension field", () => {
    const req = new Uint8Array(60);
    req.set(hex(CHRONY_REQUEST));
    assert.equal(answer(req).n, NO_REPLY);
  });
  await t.step("a request with a MAC and no keys gets a crypto-NAK, no longer than asked", () => {
    const req = new Uint8Array(68);
    req.set(hex(CHRONY_REQUEST));
    req[51] = 1; // key ID 1
    const { n, out } = answer(req);
    assert.equal(n, 52);
    assert.equal(toHex(out.subarray(48, 52)), "00000000");
  });
  await t.step("extension fields without a MAC get the plain header", () => {
    const req = new Uint8Array(48 + 32);
    req.set(hex(CHRONY_REQUEST));
    req.set([0x02, 0x04, 0x00, 0x20], 48);
    assert.equal(answer(req).n, 48);
  });
});

Deno.test("respond() without a time source says so: LI 3, stratum 0", () => {
  const ctx = context({ system: unsyncedState(-20) });
  const { out } = answer(hex(CHRONY_REQUEST), ctx);
  const p = parsePacket(out);
  assert.ok(typeof p !== "string");
  assert.deepEqual([p.leap, p.stratum, p.refid, p.ref], [3, 0, 0, 0n]);
});

Deno.test("respond() advertises max(request poll, rate-limit minimum)", () => {
  const req = hex(CHRONY_REQUEST); // poll 6
  assert.equal(answer(req, context({ minPoll: minPollFor(2) })).out[2], 6);
  req[2] = 0;
  assert.equal(answer(req, context({ minPoll: minPollFor(2) })).out[2], 1);
  assert.equal(minPollFor(16), 4);
  assert.equal(minPollFor(0), 0);
});

Deno.test("respond() applies the virtual clock correction to rec and xmt", () => {
  const system = { ...syncedState(), corrOffset: 0.5, corrFreq: 1e-6, corrEpoch: 1_800_000_000 };
  const { out } = answer(hex(CHRONY_REQUEST), context({ system }));
  const p = parsePacket(out);
  assert.ok(typeof p !== "string");
  const expected = 0.5 + 1e-6 * 16.25;
  assert.ok(Math.abs(diff(p.rec, fromUnix(1_800_000_016, 250_000_000)) - expected) < 1e-9);
});

Deno.test("respond() enforces allow/deny with optional KoD DENY", async (t) => {
  const access = new AccessList(cidrs("0.0.0.0/0"), cidrs("192.0.2.0/24"));
  await t.step("denied clients are dropped by default", () => {
    const r = answer(hex(CHRONY_REQUEST), context({ access }));
    assert.equal(r.n, NO_REPLY);
    assert.equal(r.ctx.counters[Counter.dropDenied], 1);
  });
  await t.step("with deny_kod they get KoD DENY", () => {
    const r = answer(hex(CHRONY_REQUEST), context({ access, denyKod: true }));
    const p = parsePacket(r.out);
    assert.ok(typeof p !== "string");
    assert.deepEqual([p.leap, p.stratum, p.refid, p.mode], [3, 0, asciiRefid("DENY"), 4]);
    assert.equal(p.org, 0x190da85cb79f8e82n);
  });
  await t.step("other clients are served", () => {
    assert.equal(answer(hex(CHRONY_REQUEST), context({ access }), client("198.51.100.1")).n, 48);
  });
});

Deno.test("respond() rate-limits a client with KoD RATE, then drops", () => {
  const ctx = context({ limiter: new RateLimiter({ intervalS: 2, burst: 2 }), minPoll: 1 });
  const req = hex(CHRONY_REQUEST);
  const codes: string[] = [];
  for (let i = 0; i < 5; i++) {
    const r = answer(req, ctx, client(), [1_800_000_000, i * 1_000_000]);
    const p = r.n > 0 ? parsePacket(r.out) : null;
    codes.push(p === null ? "drop" : typeof p === "string" ? p : p.stratum === 0 ? "kod" : "ok");
  }
  assert.deepEqual(codes, ["ok", "ok", "kod", "drop", "drop"]);
  assert.equal(ctx.counters[Counter.kodRate], 1);
  assert.equal(ctx.counters[Counter.dropRateLimited], 2);
});
