import assert from "assert";
import { serverContext } from "../helpers/fixtures.ts";
import { newClientAddress, parseIp, setClientAddress } from "../../lib/ntp/address.ts";
import { asciiRefid, Leap, parsePacket } from "../../lib/ntp/packet.ts";
import {
  Counter,
  REPLY_LENGTH,
  REPLY_SEAL,
  respond,
  type ServerContext,
  stampTransmit,
} from "../../lib/ntp/server.ts";
import { type SystemState, unsyncedState } from "../../lib/ntp/system_state.ts";
import { CookieKeyring } from "../../lib/nts/cookie.ts";
import { NtsServer } from "../../lib/nts/server.ts";
import { COOKIE_JAR_SIZE, NtsSession } from "../../lib/nts/client.ts";
import { EF_NTS_COOKIE_PLACEHOLDER, EF_UNIQUE_IDENTIFIER } from "../../lib/nts/ef.ts";

function synced(): SystemState {
  return { ...unsyncedState(-20), leap: Leap.none, stratum: 2, refid: 0xc0000201, refTime: 1.8e9 };
}

const from = newClientAddress();
setClientAddress(from, parseIp("192.0.2.50")!, 0, 4, 40000);

function nodeContext(secret: number): ServerContext {
  const ring = new CookieKeyring([new Uint8Array(32).fill(secret)], 2);
  return serverContext(synced(), { nts: new NtsServer(ring) });
}

/** A session as a KE with `ctx`'s keyring would leave it. */
function keyedSession(ctx: ServerContext, aeadId = 15): NtsSession {
  const n = aeadId === 15 ? 32 : 16;
  const c2s = crypto.getRandomValues(new Uint8Array(n)),
    s2c = crypto.getRandomValues(new Uint8Array(n));
  const cookies = (ctx.nts as NtsServer).keyring.makeCookies(aeadId, c2s, s2c, 8);
  return new NtsSession({ aeadId, c2s, s2c, cookies });
}

function clientHeader(xmt: number): Uint8Array {
  const h = new Uint8Array(48);
  h[0] = (4 << 3) | 3;
  new DataView(h.buffer).setUint32(40, xmt);
  return h;
}

/** The server's whole path: respond, stamp, seal (what the drivers do). */
function serve(ctx: ServerContext, req: Uint8Array): { r: number; reply: Uint8Array } {
  const out = new Uint8Array(2048);
  const r = respond(req, req.length, from, 1_800_000_016, 250_000_000, ctx, out, 0);
  if (r === 0) return { r, reply: new Uint8Array(0) };
  stampTransmit(out, 0, ctx.system, 1_800_000_016, 300_000_000);
  if (r & REPLY_SEAL) ctx.nts!.seal(out, 0, r & REPLY_LENGTH);
  return { r, reply: out.slice(0, r & REPLY_LENGTH) };
}

Deno.test("NTS server: an authenticated request gets an authenticated reply with fresh cookies", () => {
  for (const aeadId of [15, 30]) {
    const ctx = nodeContext(1);
    const s = keyedSession(ctx, aeadId);
    for (let poll = 0; poll < 20; poll++) {
      const req = s.request(clientHeader(1000 + poll))!;
      s.seal(req);
      const { r, reply } = serve(ctx, req);
      assert.ok(r & REPLY_SEAL, "sealed after the stamp");
      assert.equal(reply.length, req.length, "as long as the request, never longer");
      const p = parsePacket(reply);
      assert.ok(typeof p !== "string");
      assert.equal(p.mode, 4);
      assert.equal(p.stratum, 2);
      assert.equal(p.extensions[0]!.type, EF_UNIQUE_IDENTIFIER);
      assert.equal(s.verify(reply), "ok", s.lastError);
      assert.equal(s.cookies.length, COOKIE_JAR_SIZE, "the jar stays full");
    }
    assert.equal(ctx.counters[Counter.ntsRequests], 20);
    assert.equal(ctx.counters[Counter.answered], 20);
    assert.equal(ctx.counters[Counter.ntsNak], 0);
  }
});

Deno.test("NTS server: placeholders ask for more cookies, an emptier jar is refilled", () => {
  const ctx = nodeContext(1);
  const s = keyedSession(ctx);
  s.cookies.splice(3); // 3 left: one used, 2 kept, 5 placeholders
  const req = s.request(clientHeader(5))!;
  const p = parsePacket(req);
  assert.ok(typeof p !== "string");
  assert.equal(p.extensions.filter((e) => e.type === EF_NTS_COOKIE_PLACEHOLDER).length, 5);
  s.seal(req);
  const { reply } = serve(ctx, req);
  assert.equal(s.verify(reply), "ok");
  assert.equal(s.cookies.length, 8);
});

Deno.test("NTS server: a cookie of another fleet gets an NTS NAK; a bad authenticator too", () => {
  const a = nodeContext(1), b = nodeContext(2);
  const s = keyedSession(a);
  const req = s.request(clientHeader(7))!;
  s.seal(req);
  const { r, reply } = serve(b, req);
  assert.equal(r & REPLY_SEAL, 0, "a NAK is not authenticated");
  const p = parsePacket(reply);
  assert.ok(typeof p !== "string");
  assert.equal(p.stratum, 0);
  assert.equal(p.refid, asciiRefid("NTSN"));
  assert.deepEqual(p.extensions.map((e) => e.type), [EF_UNIQUE_IDENTIFIER]);
  assert.equal(s.verify(reply), "nak");
  assert.equal(b.counters[Counter.ntsNak], 1);
  assert.equal(b.counters[Counter.ntsBadAuth], 0);
  // Same fleet, but xmt changed after the authenticator was computed.
  const req2 = s.request(clientHeader(8))!;
  s.seal(req2);
  req2[47]! ^= 1;
  assert.equal(s.verify(serve(a, req2).reply), "nak");
  assert.equal(a.counters[Counter.ntsBadAuth], 1);
});

Deno.test("NTS server: a node with the same master secret answers another node's client", () => {
  const a = nodeContext(9), b = nodeContext(9);
  const s = keyedSession(a);
  const req = s.request(clientHeader(9))!;
  s.seal(req);
  assert.equal(s.verify(serve(b, req).reply), "ok");
});

Deno.test("NTS client: a reply is accepted once, only authentic, only for the request in flight", () => {
  const ctx = nodeContext(1);
  const s = keyedSession(ctx);
  const req = s.request(clientHeader(11))!;
  s.seal(req);
  const { reply } = serve(ctx, req);
  const forged = reply.slice();
  forged[40]! ^= 1; // the server's xmt is covered
  assert.equal(s.verify(forged), "bad");
  assert.equal(s.verify(reply), "ok");
  assert.equal(s.verify(reply), "bad", "a replay");
  // A plain reply is never accepted.
  const plain = reply.slice(0, 48);
  s.request(clientHeader(12));
  assert.equal(s.verify(plain), "bad");
});

Deno.test("NTS server: plain requests stay plain; malformed NTS requests are dropped", () => {
  const ctx = nodeContext(1);
  const { r, reply } = serve(ctx, clientHeader(1));
  assert.equal(r, 48);
  assert.equal(reply.length, 48);
  const s = keyedSession(ctx);
  const req = s.request(clientHeader(2))!;
  s.seal(req);
  // Without its authenticator (cut off): dropped, not answered in clear.
  const cut = req.slice(0, req.length - 40);
  assert.equal(serve(ctx, cut).r, 0);
  assert.equal(ctx.counters[Counter.dropMalformed], 1);
  // A server without NTS answers the same request as a plain one.
  const plainCtx = serverContext(synced());
  assert.equal(serve(plainCtx, req).r, 48);
});

Deno.test("NTS server: mangled NTS requests never throw, and are dropped or NAKed", () => {
  const ctx = nodeContext(1);
  const s = keyedSession(ctx);
  let seed = 12345;
  const rand = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
  for (let i = 0; i < 3000; i++) {
    if (s.cookies.length === 0) s.cookies.push(...keyedSession(ctx).cookies);
    const req = s.request(clientHeader(i))!;
    s.seal(req);
    const n = 1 + Math.floor(rand() * 4);
    for (let j = 0; j < n; j++) {
      const at = 48 + Math.floor(rand() * (req.length - 48));
      req[at] = Math.floor(rand() * 256);
    }
    const cut = rand() < 0.2 ? req.subarray(0, 48 + Math.floor(rand() * (req.length - 48))) : req;
    const { r, reply } = serve(ctx, cut.slice());
    if (r === 0) continue;
    const p = parsePacket(reply);
    assert.ok(typeof p !== "string");
    // Answered: a NAK, a plain reply (the fields no longer parse as NTS ones), or an authentic one.
    assert.ok(reply.length <= cut.length || reply.length === 48);
  }
});
