/**
 * One association with a source (RFC 5905 §9, A.5.1–A.5.4): builds the
 * packets it sends on its poll timer, checks every reply (origin, replay,
 * KoD, synchronisation, distance), keeps the 8-bit reach register and the
 * poll interval, and feeds valid samples into its clock filter.
 *
 * Like ntpd-rs's NtpSource it does no I/O: `handleTimer` and
 * `handleIncoming` take the time as an argument and return actions.
 */
import {
  asciiRefid,
  formatRefid,
  Leap,
  Mode,
  type NtpPacket,
  serializePacket,
} from "../ntp/packet.ts";
import { MAXSTRAT, PHI } from "../ntp/system_state.ts";
import { diff, fromUnixSeconds, type NtpTimestamp, toUnixSeconds } from "../ntp/timestamp.ts";
import { ClockFilter, type FilterOutput, type Sample } from "./filter.ts";
import { MAXDIST } from "./select.ts";
import { SourceStats } from "./discipline.ts";

export type SourceKind = "server" | "pool" | "peer";

/** Seconds between iburst packets, and their count (ntpd BCOUNT). */
export const BURST_INTERVAL = 2;
export const BURST_COUNT = 8;
/** Polls without a reply after which a pool member is replaced. */
export const POOL_UNREACH_LIMIT = 8;

/** What an association asks its driver to do. */
export type SourceAction =
  | {
    kind: "send";
    source: string;
    host: string;
    port: number;
    mode: number;
    bytes: Uint8Array;
    /**
     * Symmetric packets, when the driver confirms sends (`SourceContext.cookie`):
     * write the transmit timestamp right before the datagram leaves and report
     * it with `Engine.confirmTransmit(stamp, xmt, now)`.
     */
    stamp?: number;
  }
  | { kind: "log"; level: "info" | "warning"; message: string }
  | { kind: "demobilize"; source: string; reason: string };

/** Event counters of one association, as shown in status. */
export interface SourceCounters {
  sent: number;
  received: number;
  /** Reply whose origin timestamp is not our last transmit (bogus). */
  bogus: number;
  /** Packet whose transmit timestamp we already saw (replay). */
  replay: number;
  kodRate: number;
  kodDeny: number;
  /** Reply from an unsynchronised server. */
  unsync: number;
  /** Reply whose root distance exceeds MAXDIST. */
  distance: number;
}

/** Options of one association. */
export interface SourceOptions {
  host: string;
  port: number;
  kind: SourceKind;
  iburst: boolean;
  prefer: boolean;
  minPoll: number;
  maxPoll: number;
  /** Name of the pool this member came from, "" otherwise. */
  pool: string;
}

/** What an association needs from the system to build and interpret packets. */
export interface SourceContext {
  /** Served (corrected) time at raw time `t`. */
  served(t: number): number;
  /** Raw-frame offset: `y = offset + correction(t)`. */
  correction(t: number): number;
  /** Residual of a filter sample against the current correction. */
  residual(s: Sample): number;
  precision: number;
  /** Our system variables, sent in symmetric-mode packets. */
  system: {
    leap: number;
    stratum: number;
    refid: number;
    refTime: number;
    rootDelay: number;
    rootDisp: number;
  };
  /** Uniform in [0, 1). */
  rand(): number;
  /**
   * Present when the driver stamps symmetric packets at send time and
   * confirms them: a new cookie for each such send. Absent, a packet leaves
   * with the xmt it was built with.
   */
  cookie?: () => number;
}

/** A packet held until the real transmit timestamps of our sends are known. */
export interface HeldPacket {
  p: NtpPacket;
  recv: number;
  now: number;
}

/** Seconds after which a send's confirmation counts as lost (it takes milliseconds). */
export const CONFIRM_TIMEOUT_S = 1;
/** Packets held per association at most while confirmations are outstanding. */
const MAX_HELD = 4;

const KISS_RATE = asciiRefid("RATE");
const KISS_DENY = asciiRefid("DENY");
const KISS_RSTR = asciiRefid("RSTR");

/** An association. */
export class Association {
  readonly id: string;
  readonly opts: SourceOptions;
  readonly mode: number;
  /** Our poll exponent (RFC hpoll). */
  hpoll: number;
  /** The source's advertised poll exponent (RFC ppoll). */
  ppoll = 0;
  reach = 0;
  /** Polls since the last valid reply. */
  unreach = 0;
  burst = 0;
  nextPoll: number;
  state: "active" | "denied" = "active";
  // Header values from the last valid reply.
  leap: number = Leap.unsync;
  stratum: number = MAXSTRAT;
  refid = 0;
  rootDelay = 0;
  rootDisp = 0;
  precision = 0;
  /** The source's reference time (its last clock update), Unix seconds; 0 when none. */
  refTime = 0;
  /** Raw time of the last valid sample, -1 when none. */
  lastSample = -1;
  readonly filter = new ClockFilter();
  /** Regression over this source's samples. */
  readonly stats = new SourceStats();
  readonly counters: SourceCounters = {
    sent: 0,
    received: 0,
    bogus: 0,
    replay: 0,
    kodRate: 0,
    kodDeny: 0,
    unsync: 0,
    distance: 0,
  };
  // Protocol state: what we sent (xmt on the wire, t1 our served send time),
  // and for symmetric mode what the peer sent last (org/rec, RFC names).
  #xmt: NtpTimestamp = 0n;
  #t1: NtpTimestamp = 0n;
  #replyXmt: NtpTimestamp = 0n;
  #org: NtpTimestamp = 0n;
  #rec: NtpTimestamp = 0n;
  #lastRxXmt: NtpTimestamp = 0n;
  /** Sends whose real xmt the driver has not confirmed yet: cookie -> which one, raw send time. */
  #unconfirmed = new Map<number, { slot: "poll" | "reply"; at: number }>();
  #held: HeldPacket[] = [];
  #logged = new Set<string>();

  constructor(opts: SourceOptions, now: number, rand: () => number) {
    this.opts = opts;
    this.id = sourceId(opts.host, opts.port);
    this.mode = opts.kind === "peer" ? Mode.symmetricActive : Mode.client;
    this.hpoll = opts.minPoll;
    this.burst = opts.iburst ? BURST_COUNT : 0;
    // Spread the first polls a little so many sources do not fire together.
    this.nextPoll = now + rand();
  }

  /** Seconds between polls for the current poll exponent. */
  get pollInterval(): number {
    return 2 ** this.hpoll;
  }

  /** Sets the poll exponent from the system's wish, within this source's limits. */
  setPoll(exp: number): void {
    const p = Math.max(this.opts.minPoll, Math.min(this.opts.maxPoll, exp));
    if (p < this.hpoll && this.burst === 0) {
      // Shorten a pending long wait at once.
      this.nextPoll -= 2 ** this.hpoll - 2 ** p;
    }
    this.hpoll = p;
  }

  /**
   * New options from a reload; the protocol state (reach, filter,
   * regression, timestamps) stays. Turning `iburst` on for a source that
   * has not answered yet starts a burst, as at mobilisation.
   */
  update(
    o: Pick<SourceOptions, "iburst" | "prefer" | "minPoll" | "maxPoll">,
    now: number,
  ): void {
    if (o.iburst && !this.opts.iburst && this.reach === 0 && this.state === "active") {
      this.burst = BURST_COUNT;
      this.nextPoll = Math.min(this.nextPoll, now);
    }
    this.opts.iburst = o.iburst;
    this.opts.prefer = o.prefer;
    this.opts.minPoll = o.minPoll;
    this.opts.maxPoll = Math.max(o.minPoll, o.maxPoll);
    this.setPoll(this.hpoll);
  }

  /** The poll timer fired: shift reach, maybe send. */
  handleTimer(now: number, ctx: SourceContext): SourceAction[] {
    const out: SourceAction[] = [];
    if (this.state !== "active") {
      this.nextPoll = Infinity;
      return out;
    }
    this.reach = (this.reach << 1) & 0xff;
    this.unreach++;
    if (this.reach === 0 && this.unreach > 1 && this.burst === 0) {
      const msg = `${this.id}: no reply (reach 0)`;
      if (this.unreach >= POOL_UNREACH_LIMIT && this.opts.kind === "pool") {
        out.push({ kind: "demobilize", source: this.id, reason: "unreachable pool member" });
        this.nextPoll = Infinity;
        return out;
      }
      const l = this.#once("unreach", "info", msg);
      if (l) out.push(l);
    }
    for (const [cookie, u] of this.#unconfirmed) {
      if (u.at < now - CONFIRM_TIMEOUT_S) this.#unconfirmed.delete(cookie);
    }
    if (this.#unconfirmed.size === 0) this.#dropHeld();
    out.push(this.#transmit(now, ctx));
    let interval = this.pollInterval;
    if (this.burst > 0) {
      this.burst--;
      interval = BURST_INTERVAL;
    } else if (this.reach === 0 && this.unreach > BURST_COUNT) {
      // Back off while nobody answers (RFC 5905 poll_update).
      interval = 2 ** Math.min(this.opts.maxPoll, this.hpoll + 1);
    }
    this.nextPoll = now + interval * (1 - 0.02 * ctx.rand());
    return out;
  }

  #transmit(now: number, ctx: SourceContext): SourceAction {
    const t1 = fromUnixSeconds(ctx.served(now));
    let xmt = t1;
    if (this.mode === Mode.client) {
      // A random transmit timestamp: the origin check then also proves the
      // reply came from someone who saw our request (RFC 5905 §15, chrony).
      xmt = (BigInt(Math.floor(ctx.rand() * 2 ** 32)) << 32n) |
        BigInt(Math.floor(ctx.rand() * 2 ** 32));
    }
    this.#xmt = xmt;
    this.#t1 = t1;
    this.counters.sent++;
    const s = ctx.system;
    const peer = this.mode === Mode.symmetricActive;
    const bytes = serializePacket({
      leap: peer ? s.leap : Leap.unsync,
      version: 4,
      mode: this.mode,
      stratum: peer ? (s.leap === Leap.unsync ? 0 : s.stratum) : 0,
      poll: this.hpoll,
      precision: ctx.precision,
      rootDelay: peer ? s.rootDelay : 0,
      rootDisp: peer ? s.rootDisp : 0,
      refid: peer ? s.refid : 0,
      ref: peer && s.refTime > 0 ? fromUnixSeconds(s.refTime) : 0n,
      org: peer ? this.#org : 0n,
      rec: peer ? this.#rec : 0n,
      xmt,
    });
    const stamp = peer ? this.#expect("poll", now, ctx) : undefined;
    return {
      kind: "send",
      source: this.id,
      host: this.opts.host,
      port: this.opts.port,
      mode: this.mode,
      bytes,
      ...(stamp === undefined ? {} : { stamp }),
    };
  }

  /** A new cookie for a send whose xmt the driver restamps; it replaces any older one of `slot`. */
  #expect(slot: "poll" | "reply", now: number, ctx: SourceContext): number | undefined {
    if (!ctx.cookie) return undefined;
    for (const [cookie, u] of this.#unconfirmed) {
      if (u.slot === slot) this.#unconfirmed.delete(cookie);
    }
    const cookie = ctx.cookie();
    this.#unconfirmed.set(cookie, { slot, at: now });
    return cookie;
  }

  /** Whether this association waits for the confirmation with `cookie`. */
  awaits(cookie: number): boolean {
    return this.#unconfirmed.has(cookie);
  }

  /**
   * The driver reports what the send with `cookie` really carried as xmt,
   * read right before the datagram left (null: it did not go out). That
   * value is what the peer echoes as `org` and our true t1. Returns the
   * packets held meanwhile, to be handled again now (see handleIncoming).
   */
  confirmTransmit(cookie: number, xmt: NtpTimestamp | null): HeldPacket[] {
    const u = this.#unconfirmed.get(cookie);
    if (!u) return [];
    this.#unconfirmed.delete(cookie);
    if (xmt !== null && xmt !== 0n) {
      // 0n: that timestamp was used up by a reply already; it stays so.
      if (u.slot === "poll" && this.#xmt !== 0n) this.#xmt = this.#t1 = xmt;
      else if (u.slot === "reply" && this.#replyXmt !== 0n) this.#replyXmt = xmt;
    }
    if (this.#unconfirmed.size > 0) return [];
    const held = this.#held;
    this.#held = [];
    return held;
  }

  /** Held packets whose confirmation was lost: they cannot match anything we know. */
  #dropHeld(): void {
    this.counters.bogus += this.#held.length;
    this.#held = [];
  }

  /**
   * A packet from this source arrived at raw time `recv` and is handled at
   * raw time `now`. Returns actions and, when the clock filter produced a
   * new estimate, its output.
   */
  handleIncoming(
    p: NtpPacket,
    recv: number,
    ctx: SourceContext,
    now: number = recv,
  ): { actions: SourceAction[]; output: FilterOutput | null; fresh: boolean } {
    const actions: SourceAction[] = [];
    const none = { actions, output: null, fresh: false };
    if (this.state !== "active") return none;
    if (
      this.#unconfirmed.size > 0 && p.org !== 0n && p.org !== this.#xmt && p.org !== this.#replyXmt
    ) {
      // Our send and its confirmation race the peer's answer: the datagram
      // left with a timestamp read in the server worker, which reports it
      // by message, and the answer can come through another worker first.
      // An org we do not know yet may be that timestamp: hold the packet
      // until the confirmation arrives, then judge it (guessing it from a
      // window around our provisional xmt would weaken the origin check).
      this.#held.push({ p, recv, now });
      if (this.#held.length > MAX_HELD) {
        this.#held.shift();
        this.counters.bogus++;
      }
      return none;
    }
    this.counters.received++;
    const t4 = fromUnixSeconds(ctx.served(recv));
    const symmetric = this.mode === Mode.symmetricActive;
    if (
      symmetric
        ? p.mode !== Mode.symmetricActive && p.mode !== Mode.symmetricPassive
        : p.mode !== Mode.server
    ) {
      return none;
    }
    if (p.xmt === this.#lastRxXmt || p.xmt === 0n) {
      this.counters.replay++;
      const l = this.#once("replay", "warning", `${this.id}: duplicate or replayed packet dropped`);
      if (l) actions.push(l);
      return none;
    }
    this.#lastRxXmt = p.xmt;
    let t1: NtpTimestamp | null = null;
    if (p.org !== 0n && p.org === this.#xmt) {
      t1 = this.#t1;
      this.#xmt = 0n; // a reply is used once
    } else if (symmetric && p.org !== 0n && p.org === this.#replyXmt) {
      t1 = this.#replyXmt;
      this.#replyXmt = 0n;
    }
    if (symmetric) {
      // Remember what the peer sent; our next packet echoes it.
      this.#org = p.xmt;
      this.#rec = t4;
      if (p.mode === Mode.symmetricActive) {
        // Answer a configured peer's active packet with a passive one, so it
        // gets a sample at its own pace. The transmit timestamp is the time
        // of sending, not of receipt: the peer takes (rec, xmt) as the time
        // we held its packet, and a stale xmt biases its offset by half the
        // processing delay (1-3 ms between a server worker and the engine).
        const xmt = fromUnixSeconds(ctx.served(now));
        this.#replyXmt = xmt;
        const s = ctx.system;
        const stamp = this.#expect("reply", now, ctx);
        actions.push({
          kind: "send",
          source: this.id,
          host: this.opts.host,
          port: this.opts.port,
          mode: Mode.symmetricPassive,
          bytes: serializePacket({
            leap: s.leap,
            version: p.version,
            mode: Mode.symmetricPassive,
            stratum: s.leap === Leap.unsync ? 0 : s.stratum,
            poll: this.hpoll,
            precision: ctx.precision,
            rootDelay: s.rootDelay,
            rootDisp: s.rootDisp,
            refid: s.refid,
            ref: s.refTime > 0 ? fromUnixSeconds(s.refTime) : 0n,
            org: p.xmt,
            rec: t4,
            xmt,
          }),
          ...(stamp === undefined ? {} : { stamp }),
        });
        this.counters.sent++;
      }
    }
    if (p.stratum === 0 && p.leap === Leap.unsync && t1 !== null) {
      this.#kiss(p, actions);
      return none;
    }
    if (t1 === null) {
      if (symmetric && (p.org === 0n || p.mode === Mode.symmetricActive)) {
        // A peer's own poll that crossed ours is normal in symmetric mode.
        return none;
      }
      this.counters.bogus++;
      const l = this.#once(
        "bogus",
        "warning",
        `${this.id}: reply with a bogus origin timestamp dropped`,
      );
      if (l) actions.push(l);
      return none;
    }
    this.reach |= 1;
    this.unreach = 0;
    this.ppoll = p.poll;
    if (p.leap === Leap.unsync || p.stratum >= MAXSTRAT || p.stratum === 0) {
      this.counters.unsync++;
      this.leap = Leap.unsync;
      this.stratum = MAXSTRAT;
      return none;
    }
    if (p.rootDelay / 2 + p.rootDisp >= MAXDIST) {
      this.counters.distance++;
      const l = this.#once("distance", "warning", `${this.id}: root distance above ${MAXDIST} s`);
      if (l) actions.push(l);
      return none;
    }
    this.leap = p.leap;
    this.stratum = p.stratum;
    this.refid = p.refid;
    this.rootDelay = p.rootDelay;
    this.rootDisp = p.rootDisp;
    this.precision = p.precision;
    this.refTime = p.ref === 0n ? 0 : toUnixSeconds(p.ref, ctx.served(recv));
    const t2 = p.rec, t3 = p.xmt;
    const offset = (diff(t2, t1) + diff(t3, t4)) / 2;
    const delay = Math.max(diff(t4, t1) - diff(t3, t2), 2 ** ctx.precision);
    const disp = 2 ** ctx.precision + 2 ** p.precision + PHI * Math.max(0, diff(t4, t1));
    this.lastSample = recv;
    const sample: Sample = { t: recv, y: offset + ctx.correction(recv), delay, disp };
    this.stats.add(sample.t, sample.y, delay);
    return { actions, output: this.filter.add(sample, ctx.residual, ctx.precision), fresh: true };
  }

  #kiss(p: NtpPacket, actions: SourceAction[]): void {
    if (p.refid === KISS_RATE) {
      this.counters.kodRate++;
      this.burst = 0;
      const want = Math.max(this.hpoll + 1, p.poll);
      this.hpoll = Math.min(this.opts.maxPoll, Math.max(this.opts.minPoll, want));
      const l = this.#once("rate", "warning", `${this.id}: kiss-o'-death RATE, polling less often`);
      if (l) actions.push(l);
    } else if (p.refid === KISS_DENY || p.refid === KISS_RSTR) {
      this.counters.kodDeny++;
      this.state = "denied";
      this.reach = 0;
      this.nextPoll = Infinity;
      const code = formatRefid(p.refid, 0);
      actions.push({
        kind: "log",
        level: "warning",
        message: `${this.id}: kiss-o'-death ${code}, source stopped`,
      });
      actions.push({ kind: "demobilize", source: this.id, reason: `kiss-o'-death ${code}` });
    }
  }

  #once(key: string, level: "info" | "warning", message: string): SourceAction | null {
    if (this.#logged.has(key)) return null;
    this.#logged.add(key);
    return { kind: "log", level, message };
  }
}

/** The key of an association: "host:port", IPv6 in brackets. */
export function sourceId(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}
