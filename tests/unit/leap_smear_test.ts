/**
 * The server-side leap smear (issue 12 item 4; lib/ntp/leap.ts `smearOffset`,
 * lib/ntp/system_state.ts `servedCorrectionAt`): the served time is slewed
 * linearly across a window centred on the leap, so clients never see
 * 23:59:60; the clock itself stays on UTC.
 */
import assert from "assert";
import { serverContext } from "../helpers/fixtures.ts";
import { newClientAddress, parseIp, setClientAddress } from "../../lib/ntp/address.ts";
import { loadConfig } from "../../lib/config/mod.ts";
import { smearOffset, smearRamp } from "../../lib/ntp/leap.ts";
import { Leap, parsePacket } from "../../lib/ntp/packet.ts";
import { respond, stampTransmit } from "../../lib/ntp/server.ts";
import {
  servedCorrectionAt,
  SharedSystemState,
  type SystemState,
  unsyncedState,
} from "../../lib/ntp/system_state.ts";
import { toUnixSeconds } from "../../lib/ntp/timestamp.ts";

/** 2017-01-01 00:00:00 UTC: the end of the last leap day so far. */
const L = Date.parse("2017-01-01T00:00:00Z") / 1000;
const W = 86_400;

Deno.test("smearOffset: 0 before the window, half a second at the leap, exactly 1 s after", () => {
  for (const [leap, sign] of [[Leap.insert, -1], [Leap.delete, 1]] as const) {
    assert.equal(smearOffset(L, leap, W, L - W), 0);
    assert.equal(smearOffset(L, leap, W, L - W / 2), 0, "window start");
    assert.equal(smearOffset(L, leap, W, L), sign * 0.5, "at the leap");
    assert.equal(smearOffset(L, leap, W, L - W / 4), sign * 0.25);
    assert.equal(smearOffset(L, leap, W, L + W / 2), sign * 1, "window end");
    assert.equal(smearOffset(L, leap, W, L + W), sign * 1, "after the window");
    assert.equal(smearOffset(L, leap, W, L + 10 * W), sign * 1);
  }
  // No smear: no window, or no leap.
  assert.equal(smearOffset(L, Leap.insert, 0, L), 0);
  assert.equal(smearOffset(L, Leap.none, W, L), 0);
  assert.equal(smearOffset(L, Leap.unsync, W, L + W), 0);
  // Another window: 2 h.
  assert.equal(smearOffset(L, Leap.insert, 7200, L + 1800), -0.75);
});

Deno.test("smearOffset: served time is monotonic, its rate 1 ∓ 1/window", () => {
  for (const leap of [Leap.insert, Leap.delete]) {
    for (const w of [2, 60, 7200, W]) {
      let prev = -Infinity;
      const step = w / 1000;
      for (let t = L - w; t <= L + w; t += step) {
        const served = t + smearOffset(L, leap, w, t);
        assert.ok(served > prev, `leap ${leap}, window ${w}: back at ${t - L}`);
        prev = served;
      }
    }
    // Inside the window the served second is 1 ∓ 1/W long.
    const rate = (smearOffset(L, leap, W, L + 100) - smearOffset(L, leap, W, L - 100)) / 200;
    assert.ok(Math.abs(rate - (leap === Leap.insert ? -1 : 1) / W) < 1e-15, String(rate));
  }
  assert.equal(smearRamp(10, 20, 1, 15), -0.5);
});

/** A smearing state: the ramp of a 24 h insert smear; `stepped` once the clock inserted it. */
function smearing(stepped: boolean): SystemState {
  return {
    ...unsyncedState(-20),
    leap: Leap.none,
    stratum: 2,
    refid: 1,
    refTime: L - 100,
    smearFrom: L - W / 2,
    smearTo: L + W / 2,
    smearChange: 1,
    smearStepped: stepped ? 1 : 0,
  };
}

Deno.test("the served correction is continuous across the clock's leap step", () => {
  // Before the step the clock (UTC) reads the elapsed scale; after it, one second less.
  for (const e of [L - 0.5, L + 0.001, L + 0.5, L + 3600, L + W / 2 + 1, L + W]) {
    const before = e + servedCorrectionAt(smearing(false), e);
    const after = (e - 1) + servedCorrectionAt(smearing(true), e - 1);
    assert.ok(Math.abs(before - after) < 1e-9, `at ${e - L}: ${before - after}`);
    assert.ok(Math.abs(before - (e + smearOffset(L, Leap.insert, W, e))) < 1e-9);
  }
  // After the window a stepped clock's served time is UTC itself.
  assert.equal(servedCorrectionAt(smearing(true), L + W), 0);
  // No smear published: the plain correction.
  const plain = { ...smearing(false), smearTo: 0, corrOffset: 0.25 };
  assert.equal(servedCorrectionAt(plain, L), 0.25);
  // Workers read the smear through the shared state.
  const shared = new SharedSystemState();
  shared.write(smearing(true));
  const got = unsyncedState(0);
  assert.ok(shared.read(got));
  assert.deepEqual(got, smearing(true));
});

Deno.test("replies carry smeared rec and xmt, LI 0", () => {
  const ctx = serverContext(smearing(false));
  const c = newClientAddress();
  setClientAddress(c, parseIp("192.0.2.50")!, 0, 4, 40000);
  const req = new Uint8Array(48);
  req[0] = (4 << 3) | 3;
  const reply = (rx: number, tx: number) => {
    const out = new Uint8Array(48);
    const rs = Math.floor(rx), ts = Math.floor(tx);
    assert.equal(respond(req, 48, c, rs, Math.round((rx - rs) * 1e9), ctx, out), 48);
    stampTransmit(out, 0, ctx.system, ts, Math.round((tx - ts) * 1e9));
    const p = parsePacket(out);
    assert.ok(typeof p !== "string");
    return { li: p.leap, rec: toUnixSeconds(p.rec, L), xmt: toUnixSeconds(p.xmt, L) };
  };
  const near = (a: number, b: number, what: string) =>
    assert.ok(Math.abs(a - b) < 1e-6, `${what}: ${a - L} vs ${b - L}`);
  // At the leap: half a second behind; 6 h before: a quarter.
  let r = reply(L, L + 0.001);
  assert.equal(r.li, Leap.none);
  near(r.rec, L - 0.5, "rec at the leap");
  near(r.xmt, L + 0.001 - 0.5 - 0.001 / W, "xmt at the leap");
  r = reply(L - W / 4, L - W / 4);
  near(r.rec, L - W / 4 - 0.25, "rec 6 h before");
  near(r.xmt, L - W / 4 - 0.25, "xmt 6 h before");
  // Before the window: unchanged.
  r = reply(L - W, L - W);
  near(r.rec, L - W, "rec before the window");
  // After the clock inserted the second (it reads 23:59:59.5 again at elapsed L + 0.5).
  ctx.system = smearing(true);
  r = reply(L - 0.5, L - 0.5);
  near(r.rec, L + 0.5 - 0.5 - 0.5 / W, "rec after the step");
  near(r.xmt, r.rec, "xmt after the step");
  // No smear published: rec and xmt are the clock's.
  ctx.system = { ...smearing(false), smearTo: 0 };
  r = reply(L, L);
  near(r.rec, L, "rec without smear");
  near(r.xmt, L, "xmt without smear");
});

Deno.test("server.leap_smear_s: 0 by default, 0..86400", () => {
  const ok = loadConfig("[server]\nleap_smear_s = 86400\n", "t.toml");
  assert.ok(ok.ok);
  assert.equal(ok.config.server.leapSmearS, 86400);
  const def = loadConfig("", "t.toml");
  assert.ok(def.ok);
  assert.equal(def.config.server.leapSmearS, 0);
  const bad = loadConfig("[server]\nleap_smear_s = 100000\n", "t.toml");
  assert.ok(!bad.ok);
  assert.match(bad.errors.join("\n"), /leap_smear_s/);
});
