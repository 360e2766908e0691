/**
 * Leap seconds (lib/ntp/leap.ts, issue 12 item 4): chrony's rule — a leap is
 * announced and armed only on 30 June or 31 December (UTC, of the served
 * time), by majority of the selectable sources, or by the leap file, which
 * overrides the sources for the days it covers.
 */
import assert from "assert";
import { AccessList, type Cidr, parseCidr } from "../../lib/ntp/access.ts";
import { newClientAddress, parseIp, setClientAddress } from "../../lib/ntp/address.ts";
import {
  decideLeap,
  endOfDay,
  isLeapDay,
  leapOnDay,
  type LeapTable,
  majorityLeapOf,
  NTP_UNIX_OFFSET,
  parseLeapFile,
} from "../../lib/ntp/leap.ts";
import { Leap, parsePacket } from "../../lib/ntp/packet.ts";
import { RateLimiter } from "../../lib/ntp/rate_limit.ts";
import { COUNTER_COUNT, respond, type ServerContext } from "../../lib/ntp/server.ts";
import { unsyncedState } from "../../lib/ntp/system_state.ts";

const at = (iso: string) => Date.parse(iso) / 1000;
const NOV29 = at("2016-11-29T12:00:00Z");
const JUN30 = at("2015-06-30T12:00:00Z");
const DEC31 = at("2016-12-31T23:59:59.5Z");
const JAN1 = at("2017-01-01T00:00:00.5Z");
const FIXTURE = new URL("../fixtures/leap-seconds.list", import.meta.url);

Deno.test("leap days: only 30 June and 31 December, UTC", () => {
  assert.equal(isLeapDay(NOV29), false);
  assert.equal(isLeapDay(JUN30), true);
  assert.equal(isLeapDay(DEC31), true);
  assert.equal(isLeapDay(at("2016-12-31T00:00:00Z")), true);
  assert.equal(isLeapDay(at("2016-12-30T23:59:59.9Z")), false);
  assert.equal(isLeapDay(JAN1), false);
  assert.equal(isLeapDay(at("2016-06-29T23:59:59Z")), false);
  assert.equal(isLeapDay(at("2016-07-01T00:00:00Z")), false);
  assert.equal(endOfDay(DEC31), at("2017-01-01T00:00:00Z"));
});

Deno.test("the chrony rule: sources' majority, on the day only", () => {
  assert.equal(decideLeap(NOV29, Leap.insert, null), Leap.none, "29 November: no");
  assert.equal(decideLeap(JUN30, Leap.insert, null), Leap.insert, "30 June: yes");
  assert.equal(decideLeap(DEC31, Leap.insert, null), Leap.insert, "31 December: yes");
  assert.equal(decideLeap(DEC31, Leap.delete, null), Leap.delete);
  assert.equal(decideLeap(JAN1, Leap.insert, null), Leap.none, "the day after: cleared");
  // Majority of the selectable sources.
  assert.equal(majorityLeapOf([1, 0, 0]), Leap.none, "a minority: no");
  assert.equal(majorityLeapOf([1, 1, 0, 0]), Leap.none, "a tie: no");
  assert.equal(majorityLeapOf([1, 1, 0]), Leap.insert);
  assert.equal(majorityLeapOf([2, 2, 1]), Leap.delete);
  assert.equal(majorityLeapOf([]), Leap.none);
  assert.equal(decideLeap(DEC31, majorityLeapOf([1, 0, 0]), null), Leap.none);
});

Deno.test("the wire announces a leap only on its day", () => {
  const cidrs = (...s: string[]) => s.map((x) => parseCidr(x) as Cidr);
  const ctx: ServerContext = {
    system: { ...unsyncedState(-20), leap: Leap.insert, stratum: 2, refid: 1, refTime: NOV29 },
    access: new AccessList(cidrs("0.0.0.0/0"), []),
    limiter: new RateLimiter({ intervalS: 0, burst: 1 }),
    denyKod: false,
    rateKod: false,
    minPoll: 0,
    counters: new Float64Array(COUNTER_COUNT),
  };
  const c = newClientAddress();
  const ip = parseIp("192.0.2.50")!;
  setClientAddress(c, ip, 0, 4, 40000);
  const req = new Uint8Array(48);
  req[0] = (4 << 3) | 3;
  const li = (t: number) => {
    const out = new Uint8Array(48);
    assert.equal(respond(req, 48, c, Math.floor(t), 0, ctx, out), 48);
    const p = parsePacket(out);
    assert.ok(typeof p !== "string");
    return p.leap;
  };
  assert.equal(li(NOV29), Leap.none, "29 November: LI 0 although the state says 1");
  assert.equal(li(DEC31), Leap.insert, "31 December: LI 1");
  assert.equal(li(JAN1), Leap.none, "1 January: LI 0");
  // The served time counts (the virtual correction), not the raw clock.
  ctx.system.corrOffset = -1;
  assert.equal(li(at("2017-01-01T00:00:00.2Z")), Leap.insert, "served 23:59:59.2: still LI 1");
  ctx.system.leap = Leap.unsync;
  assert.equal(li(DEC31), Leap.unsync, "3 passes unchanged");
  assert.equal(leapOnDay(Leap.none, DEC31), Leap.none);
});

function fixture(): LeapTable {
  const t = parseLeapFile(Deno.readTextFileSync(FIXTURE), "leap-seconds.list");
  assert.ok(typeof t !== "string", String(t));
  return t;
}

Deno.test("leap-seconds.list: parsed, hash verified, expiry read", () => {
  const t = fixture();
  assert.equal(t.hashVerified, true);
  assert.deepEqual(t.leaps.map((l) => [new Date(l.at * 1000).toISOString(), l.change, l.tai]), [
    ["2012-07-01T00:00:00.000Z", 1, 35],
    ["2015-07-01T00:00:00.000Z", 1, 36],
    ["2017-01-01T00:00:00.000Z", 1, 37],
  ]);
  assert.equal(t.expires, 3991593600 - NTP_UNIX_OFFSET);
  assert.equal(new Date(t.expires * 1000).toISOString(), "2026-06-28T00:00:00.000Z");
  // The system's copy, when there is one, parses and verifies too.
  try {
    const sys = parseLeapFile(Deno.readTextFileSync("/usr/share/zoneinfo/leap-seconds.list"), "x");
    assert.ok(typeof sys !== "string" && sys.hashVerified, String(sys));
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
});

Deno.test("leap file overrides the sources for the days it covers", () => {
  const t = fixture();
  // Listed: announced even when no source says so.
  assert.equal(decideLeap(DEC31, Leap.none, t), Leap.insert);
  assert.equal(decideLeap(at("2015-06-30T01:00:00Z"), Leap.none, t), Leap.insert);
  // Not listed: sources announcing one are ignored.
  assert.equal(decideLeap(at("2016-06-30T12:00:00Z"), Leap.insert, t), Leap.none);
  assert.equal(decideLeap(at("2016-06-30T12:00:00Z"), Leap.delete, t), Leap.none);
  // Never on another day, file or not.
  assert.equal(decideLeap(NOV29, Leap.insert, t), Leap.none);
  // Past its expiry the sources decide again.
  assert.equal(decideLeap(at("2026-12-31T12:00:00Z"), Leap.insert, t), Leap.insert);
  assert.equal(decideLeap(at("2026-12-31T12:00:00Z"), Leap.none, t), Leap.none);
});

Deno.test("leap-seconds.list errors are one line FILE:LINE: message", () => {
  const good = Deno.readTextFileSync(FIXTURE);
  const lines = good.split("\n");
  const edit = (i: number, to: string) => lines.map((l, k) => k === i ? to : l).join("\n");
  const idx = (prefix: string) => lines.findIndex((l) => l.startsWith(prefix));
  const cases: [string, RegExp][] = [
    [edit(idx("#$"), "#$\t3960057601"), /^f:14: SHA-1 .*#h line/],
    [edit(idx("3692217600"), "3692217600\t38"), /^f:12: TAI-UTC changes by 2 s/],
    [edit(idx("3692217600"), "3692217601\t37"), /^f:12: 3692217601 is not a UTC midnight/],
    [edit(idx("3692217600"), "3550089600\t37"), /^f:12: 3550089600 is not after/],
    [edit(idx("3692217600"), "soon 37"), /^f:12: expected "NTP-SECONDS TAI-UTC"/],
    [edit(idx("#@"), "#@ never"), /^f:7: "#@" needs NTP seconds/],
    [edit(idx("#@"), "#"), /^f:1: no "#@" expiry line/],
    [edit(idx("#h"), "#h 1 2 3"), /^f:14: the #h line needs five hex words/],
  ];
  for (const [text, want] of cases) {
    const r = parseLeapFile(text, "f");
    assert.equal(typeof r, "string", `accepted: ${want}`);
    assert.match(r as string, want);
    assert.equal((r as string).split("\n").length, 1);
  }
  // Without a #h line the file is taken unverified.
  const r = parseLeapFile(edit(idx("#h"), "#"), "f");
  assert.ok(typeof r !== "string" && !r.hashVerified);
});

Deno.test("clock.leapfile is read by the driver: a table, none, or one error line", async () => {
  const { loadLeapFile, describeLeapTable } = await import("../../lib/io/leap_file.ts");
  assert.equal(loadLeapFile(""), null);
  const t = loadLeapFile(FIXTURE.pathname);
  assert.ok(t && typeof t !== "string");
  assert.match(describeLeapTable(t), /3 leaps, last before 2017-01-01, expires 2026-06-28, SHA-1/);
  const missing = loadLeapFile("/nonexistent/leap-seconds.list");
  assert.match(String(missing), /^\/nonexistent\/leap-seconds\.list: cannot read: /);
  assert.equal(String(missing).split("\n").length, 1);
});
