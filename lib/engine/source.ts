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
  type PacketHeader,
  serializePacket,
} from "../ntp/packet.ts";
import { MAXSTRAT, PHI } from "../ntp/system_state.ts";
import { diff, fromUnixSeconds, type NtpTimestamp, toUnixSeconds } from "../ntp/timestamp.ts";
import { ClockFilter, type FilterOutput, type Sample } from "./filter.ts";
import { MAXDIST } from "./select.ts";
import { replyProblem } from "../ntp/reply_check.ts";
import { SourceStats } from "./discipline.ts";
import type { SystemVars } from "./system.ts";
import type { MacCheck } from "../contracts.ts";
import {
  BROADCAST_UNREACH_LIMIT,
  broadcastOffset,
  calibratedDelay,
  CALIBRATION_BROADCASTS,
  type CalibrationPoint,
  type CalibrationSample,
  RECALIBRATE_AFTER,
} from "./broadcast.ts";

export type SourceKind = "server" | "pool" | "peer" | "broadcast";

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
     * Write the served time of a clock reading taken right before the send
     * into the packet's transmit timestamp (symmetric mode: the peer uses
     * it as its T3). Otherwise the packet leaves as built.
     */
    stampXmt: boolean;
    /** Symmetric key ID whose MAC the driver appends after the stamp; 0 = none. */
    key: number;
  }
  | { kind: "log"; level: "info" | "warning"; message: string }
  | { kind: "demobilize"; source: string; reason: string };

/**
 * What the driver knows of the last packet it sent on an association: the
 * transmit timestamp the packet carried (`xmt`, NTP 32.32) and when it
 * really left (`t1`, raw Unix seconds: the kernel's transmit timestamp, or
 * the clock read right before the send). The shape ntpd-rs passes to
 * `handle_incoming` as the send timestamp.
 */
export interface Transmit {
  xmt: NtpTimestamp;
  t1: number;
  /** Whether `t1` is the kernel's transmit timestamp (symmetric interleaved mode sends only those). */
  kernel?: boolean;
}

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
  /** Packet rejected for its MAC (missing, crypto-NAK, other key, wrong digest). */
  auth: number;
  /** Broadcast client: mode 5 packets heard. */
  broadcasts: number;
  /** Broadcast client: mode 5 packets heard before the delay was calibrated (not used). */
  uncalibrated: number;
}

/**
 * One configured source (the `[[source]]` table): the one source
 * configuration type. Each association takes its options from it
 * (`SourceOptions`), with the address resolved.
 */
export interface EngineSource {
  /** IP address or name ("host" or "host:port"). */
  address: string;
  kind: SourceKind;
  iburst: boolean;
  prefer: boolean;
  /** log2 seconds. */
  minPoll: number;
  /** log2 seconds. */
  maxPoll: number;
  /** Pool members to keep (pool sources). */
  maxSources: number;
  /** Interleaved mode (RFC 9769, chrony `xleave`): client mode for server and pool sources, symmetric mode for peers. */
  xleave: boolean;
  /**
   * Symmetric key ID (0 = none): our packets carry its MAC, and a packet
   * from the source counts only with a valid MAC of this key.
   */
  key?: number;
  /** Only authenticated packets count (requires `key`; config checks it). */
  requireAuth?: boolean;
  /**
   * `broadcast` only: use broadcasts without a MAC (BCP 223 advises
   * against it); absent = false.
   */
  insecure?: boolean;
  /**
   * NTS sources: the NTS-KE port (absent or 0 = not NTS). The association
   * is then named by the KE server, `host:ntsPort` (lib/engine/associations.ts
   * `sourceEndpoint`); the driver sends its NTP where the KE said.
   */
  ntsPort?: number;
}

/** Options of one association: its configured source's, with the address resolved. */
export type SourceOptions =
  & Omit<
    EngineSource,
    "address" | "maxSources" | "key" | "requireAuth" | "ntsPort"
  >
  & {
    /** Symmetric key ID, 0 = none. */
    key: number;
    requireAuth: boolean;
    host: string;
    port: number;
    /** Name of the pool this member came from, "" otherwise. */
    pool: string;
  };

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
  system: SystemVars;
  /** Uniform in [0, 1). */
  rand(): number;
}

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
  /** Whether the last sample came from an interleaved reply. */
  interleaved = false;
  /** Whether the last packet accepted from the source had a valid MAC of our key. */
  authenticated = false;
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
    auth: 0,
    broadcasts: 0,
    uncalibrated: 0,
  };
  /**
   * Broadcast client (kind "broadcast", RFC 5905 §8, ntpd's broadcast
   * client): the broadcast delay δ the calibration measured (broadcast.ts
   * `calibratedDelay`), seconds; null until then. Each later broadcast
   * gives offset T3 − T4 + δ/2.
   */
  bdelay: number | null = null;
  /** Calibration: the client/server samples and the raw broadcasts heard meanwhile. */
  #calibration: CalibrationSample[] = [];
  #heard: CalibrationPoint[] = [];
  /** Broadcast samples since δ was last measured; RECALIBRATE_AFTER of them start a new volley. */
  #sinceCalibration = 0;
  /** A new volley is under way while the δ in force is still used. */
  #recalibrating = false;
  // Protocol state (RFC 5905 names). Basic mode: the xmt of the request a
  // reply answered (a request is answered once). Symmetric mode: what the
  // peer sent last, echoed in our next packet (`org`, `rec`).
  #answered: NtpTimestamp = 0n;
  #org: NtpTimestamp = 0n;
  #rec: NtpTimestamp = 0n;
  #lastRxXmt: NtpTimestamp = 0n;
  /**
   * Interleaved client mode (RFC 9769): the last valid exchange's times
   * (t1, t4 raw seconds; t2 the server's receive timestamp, which our next
   * request sends back as `org`), and the `rec` our last request carried,
   * which an interleaved reply echoes as its `org`.
   */
  #prev: { t1: number; t2: NtpTimestamp; t4: number } | null = null;
  #sentRec: NtpTimestamp = 0n;
  /**
   * Symmetric interleaved mode (RFC 9769 §3, chrony's peers with `xleave`):
   * the peer's last packet that answered our last one told when it got
   * ours (`peerRec`, its rec) and the driver when ours really left
   * (`ourTx`, the kernel's stamp, raw seconds; null when it had none).
   * Our next packet may then carry that pair as org and xmt, if we sent
   * nothing since (`sendsSinceAck`). `prevRxT4` is when the peer's previous
   * packet arrived, which an interleaved packet's xmt dates.
   */
  #sym = { peerRec: 0n as NtpTimestamp, ourTx: null as number | null, sendsSinceAck: 1 };
  #prevRxT4 = -1;
  #logged = new Set<string>();

  constructor(opts: SourceOptions, now: number, rand: () => number) {
    this.opts = opts;
    this.id = sourceId(opts.host, opts.port);
    this.mode = opts.kind === "peer" ? Mode.symmetricActive : Mode.client;
    this.hpoll = opts.minPoll;
    // A broadcast association starts with the calibration volley, iburst or not.
    this.burst = opts.iburst || opts.kind === "broadcast" ? BURST_COUNT : 0;
    // Spread the first polls a little so many sources do not fire together.
    this.nextPoll = now + rand();
  }

  /** Seconds between polls for the current poll exponent. */
  get pollInterval(): number {
    return 2 ** this.hpoll;
  }

  /**
   * Takes the system variables a valid packet carries (RFC 5905 §8
   * packet(): leap, stratum, refid, root delay and dispersion, precision,
   * reference time). An unsynchronised source is marked so; a root
   * distance at or above MAXDIST leaves the last values in place.
   */
  #takeHeader(p: NtpPacket, t4: number, ctx: SourceContext): "ok" | "unsync" | "distance" {
    if (p.leap === Leap.unsync || p.stratum >= MAXSTRAT || p.stratum === 0) {
      this.leap = Leap.unsync;
      this.stratum = MAXSTRAT;
      return "unsync";
    }
    if (p.rootDelay / 2 + p.rootDisp >= MAXDIST) return "distance";
    this.leap = p.leap;
    this.stratum = p.stratum;
    this.refid = p.refid;
    this.rootDelay = p.rootDelay;
    this.rootDisp = p.rootDisp;
    this.precision = p.precision;
    this.refTime = p.ref === 0n ? 0 : toUnixSeconds(p.ref, ctx.served(t4));
    return "ok";
  }

  /**
   * `#takeHeader` for a packet that is a sample: counts an unsynchronised
   * source or one too far away (logged once) and says whether to go on.
   */
  #header(p: NtpPacket, t4: number, ctx: SourceContext, actions: SourceAction[]): boolean {
    const header = this.#takeHeader(p, t4, ctx);
    if (header === "unsync") this.counters.unsync++;
    if (header === "distance") {
      this.counters.distance++;
      const l = this.#once("distance", "warning", `${this.id}: root distance above ${MAXDIST} s`);
      if (l) actions.push(l);
    }
    return header === "ok";
  }

  /**
   * Brings a symmetric peer's next packet forward to within `spread`
   * seconds of `now` (raw Unix seconds), so the peer learns a change of
   * our system variables (an orphan parent claim) at once instead of up to
   * a poll interval later. Client associations are left alone: a server
   * does not care about our stratum.
   */
  announce(now: number, spread: number, rand: () => number): void {
    if (this.mode !== Mode.symmetricActive || this.state !== "active") return;
    this.nextPoll = Math.min(this.nextPoll, now + spread * rand());
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
    o: Pick<
      SourceOptions,
      "iburst" | "prefer" | "minPoll" | "maxPoll" | "xleave" | "key" | "requireAuth"
    >,
    now: number,
  ): void {
    if (o.iburst && !this.opts.iburst && this.reach === 0 && this.state === "active") {
      this.burst = BURST_COUNT;
      this.nextPoll = Math.min(this.nextPoll, now);
    }
    this.opts.iburst = o.iburst;
    this.opts.prefer = o.prefer;
    this.opts.xleave = o.xleave;
    this.opts.key = o.key;
    this.opts.requireAuth = o.requireAuth;
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
    if (this.opts.kind === "broadcast" && this.bdelay !== null && !this.#recalibrating) {
      return this.#listenTimer(now, ctx);
    }
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

  /**
   * A calibrated broadcast association sends nothing: its timer only ages
   * the reach register, once per broadcast interval (the packets' poll, or
   * ours when longer), and forgets a server not heard for
   * BROADCAST_UNREACH_LIMIT intervals (ntpd demobilises such an
   * ephemeral association too).
   */
  #listenTimer(now: number, ctx: SourceContext): SourceAction[] {
    if (this.unreach > BROADCAST_UNREACH_LIMIT) {
      this.nextPoll = Infinity;
      return [{ kind: "demobilize", source: this.id, reason: "no broadcast heard" }];
    }
    const interval = Math.max(this.pollInterval, 2 ** Math.max(0, Math.min(17, this.ppoll)));
    this.nextPoll = now + interval * (1 + 0.02 * ctx.rand());
    return [];
  }

  #transmit(now: number, ctx: SourceContext): SourceAction {
    this.counters.sent++;
    if (this.mode === Mode.client) {
      // A random transmit timestamp: the origin check then also proves the
      // reply came from someone who saw our request (RFC 5905 §15, ntpd-rs).
      // Interleaved: org and rec name the last exchange, so the server can
      // answer with the transmit time of its reply to it (RFC 9769 §2);
      // after a missed reply we ask in basic mode (chrony does likewise).
      const xleave = this.opts.xleave && this.#prev !== null && this.unreach <= 1;
      this.#sentRec = xleave ? fromUnixSeconds(ctx.served(this.#prev!.t4)) : 0n;
      const xmt = (BigInt(Math.floor(ctx.rand() * 2 ** 32)) << 32n) |
        BigInt(Math.floor(ctx.rand() * 2 ** 32));
      return this.#send(Mode.client, false, {
        leap: Leap.unsync,
        version: 4,
        mode: Mode.client,
        stratum: 0,
        poll: this.hpoll,
        precision: ctx.precision,
        rootDelay: 0,
        rootDisp: 0,
        refid: 0,
        ref: 0n,
        org: xleave ? this.#prev!.t2 : 0n,
        rec: this.#sentRec,
        xmt,
      });
    }
    return this.#symmetricPacket(Mode.symmetricActive, 4, now, ctx);
  }

  /**
   * A symmetric packet to the peer. Interleaved (RFC 9769 §3) when `xleave`
   * is on and the peer's last packet answered our last one, whose kernel
   * transmit stamp we have: org is the peer's receive time of that packet
   * and xmt its kernel transmit time, so the peer pairs two exact stamps.
   * Otherwise basic: org echoes the peer's last xmt and the driver writes
   * xmt right before the send. Either way rec is when the peer's last
   * packet arrived, and it is remembered: an interleaved answer echoes it.
   */
  #symmetricPacket(mode: number, version: number, now: number, ctx: SourceContext): SourceAction {
    const sym = this.#sym;
    const xleave = this.opts.xleave && sym.sendsSinceAck === 0 && sym.ourTx !== null &&
      sym.peerRec !== 0n;
    // Every packet's rec differs from the earlier ones' (chrony fuzzes its
    // low bits): the peer echoes it as org, and packets sent without news
    // from the peer in between would otherwise carry one rec, so an answer
    // to the first would pass for an answer to the last (off by 233 ps per
    // packet at most).
    const rec = this.#rec !== 0n && this.#rec <= this.#sentRec ? this.#sentRec + 1n : this.#rec;
    this.#sentRec = rec;
    return this.#send(mode, !xleave, {
      ...this.#systemHeader(ctx),
      version,
      mode,
      poll: this.hpoll,
      org: xleave ? sym.peerRec : this.#org,
      rec,
      // Basic: replaced by the driver right before the send.
      xmt: fromUnixSeconds(ctx.served(xleave ? sym.ourTx! : now)),
    });
  }

  /** Header fields that carry our system variables (symmetric packets). */
  #systemHeader(ctx: SourceContext) {
    const s = ctx.system;
    return {
      leap: s.leap,
      stratum: s.leap === Leap.unsync ? 0 : s.stratum,
      precision: ctx.precision,
      rootDelay: s.rootDelay,
      rootDisp: s.rootDisp,
      refid: s.refid,
      ref: s.refTime > 0 ? fromUnixSeconds(s.refTime) : 0n,
    };
  }

  #send(mode: number, stampXmt: boolean, p: PacketHeader): SourceAction {
    this.#answered = 0n; // a new packet: its answer is yet to come
    this.#sym.sendsSinceAck++;
    return {
      kind: "send",
      source: this.id,
      host: this.opts.host,
      port: this.opts.port,
      mode,
      bytes: serializePacket(p),
      stampXmt,
      key: this.opts.key,
    };
  }

  /**
   * A packet from this source: `t4` is when it arrived (raw Unix seconds,
   * the kernel's receive timestamp) and `sent` what the driver knows of
   * the last packet it sent here (null: nothing yet). Applies the tests of
   * RFC 5905 §8 (duplicate, origin, unsynchronised, distance) and of RFC
   * 9769 for interleaved replies. Returns actions and, when the clock
   * filter produced a new estimate, its output.
   */
  handleIncoming(
    p: NtpPacket,
    t4: number,
    sent: Transmit | null,
    ctx: SourceContext,
    mac: MacCheck = NO_MAC,
  ): { actions: SourceAction[]; output: FilterOutput | null; fresh: boolean } {
    const actions: SourceAction[] = [];
    const none = { actions, output: null, fresh: false };
    if (this.state !== "active") return none;
    this.counters.received++;
    const symmetric = this.mode === Mode.symmetricActive;
    if (
      symmetric
        ? p.mode !== Mode.symmetricActive && p.mode !== Mode.symmetricPassive
        : p.mode !== Mode.server
    ) {
      return none;
    }
    // Test 5 (RFC 5905 §8 access/authentication), before any state is
    // touched: a forged packet must not even count as seen (replay test).
    // Logged once per episode: until a packet authenticates again.
    if (this.opts.key !== 0) {
      const why = macProblem(mac, this.opts.key);
      if (why !== null) {
        this.counters.auth++;
        this.authenticated = false;
        const l = this.#once(
          "auth",
          "warning",
          `${this.id}: ${symmetric ? "packet" : "reply"} dropped: ${why}`,
        );
        if (l) actions.push(l);
        return none;
      }
      this.#logged.delete("auth");
    }
    this.authenticated = mac.kind === "ok" && mac.keyId === this.opts.key;
    if (p.xmt === this.#lastRxXmt || p.xmt === 0n) {
      this.counters.replay++;
      const l = this.#once("replay", "warning", `${this.id}: duplicate or replayed packet dropped`);
      if (l) actions.push(l);
      return none;
    }
    this.#lastRxXmt = p.xmt;
    const rx = fromUnixSeconds(ctx.served(t4));
    // Test 2 (origin): basic, the reply echoes the xmt of our last packet;
    // interleaved, it echoes the rec our last request carried.
    const basic = sent !== null && p.org !== 0n && p.org === sent.xmt && p.org !== this.#answered;
    // Interleaved: client mode, the reply echoes the rec our last request
    // carried; symmetric mode (RFC 9769 §3), the peer's packet echoes the
    // rec of our last packet and its xmt dates the peer's previous packet.
    const interleaved = !basic && this.#sentRec !== 0n && p.org === this.#sentRec &&
      (!symmetric || (this.opts.xleave && sent !== null && this.#prevRxT4 > 0));
    const prevRxT4 = this.#prevRxT4;
    if (symmetric) {
      // Remember what the peer sent; our next packet echoes it.
      this.#org = p.xmt;
      this.#rec = rx;
      this.#prevRxT4 = t4;
      if ((basic || interleaved) && sent !== null) {
        // It answers our last packet: the pair an interleaved packet of ours carries.
        this.#sym = { peerRec: p.rec, ourTx: sent.kernel ? sent.t1 : null, sendsSinceAck: 0 };
      }
      if (p.mode === Mode.symmetricActive) {
        // Answer a configured peer's active packet with a passive one, so it
        // gets a sample at its own pace (basic: the driver writes the
        // transmit timestamp right before the send, and the peer takes
        // (rec, xmt) as the time we held its packet).
        actions.push(this.#symmetricPacket(Mode.symmetricPassive, p.version, t4, ctx));
        this.counters.sent++;
      }
    }
    if (!basic && !interleaved) {
      if (symmetric && (p.org === 0n || p.mode === Mode.symmetricActive)) {
        // A peer's own poll that crossed ours is normal in symmetric mode.
        // When it echoes our last packet (already answered), it is as
        // authentic as the answer was: take its system variables, so a
        // change the peer announces (an orphan parent claim, `announce`)
        // is known now rather than at our next poll. No sample.
        if (sent !== null && p.org !== 0n && p.org === sent.xmt) this.#takeHeader(p, t4, ctx);
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
    // The checks every client of ours applies to a server's reply
    // (reply_check.ts: kiss codes, synchronisation, zero timestamps, root
    // distance), after the origin test above, which needs this
    // association's state. Symmetric packets keep RFC 5905's own tests.
    const problem = symmetric ? null : replyProblem(p.org, p);
    if (symmetric ? p.stratum === 0 && p.leap === Leap.unsync : problem?.kind === "kiss") {
      this.#kiss(p, t4, actions);
      return none;
    }
    if (problem?.kind === "zero" || problem?.kind === "distance") {
      if (problem.kind === "zero") this.counters.bogus++;
      else this.counters.distance++;
      const l = this.#once(
        problem.kind,
        "warning",
        `${this.id}: reply dropped: ${problem.message}`,
      );
      if (l) actions.push(l);
      return none;
    }
    const prev = this.#prev;
    if (basic) this.#answered = sent!.xmt;
    else if (!symmetric) this.#sentRec = 0n;
    if (!symmetric && this.opts.xleave) {
      this.#prev = sent ? { t1: sent.t1, t2: p.rec, t4 } : null;
    }
    this.reach |= 1;
    this.unreach = 0;
    this.ppoll = p.poll;
    if (!this.#header(p, t4, ctx, actions)) return none;
    this.interleaved = interleaved;
    // Interleaved: the reply completes the previous exchange with the
    // transmit time the server took after its reply to it had left.
    let at = t4, t1: NtpTimestamp, t2: NtpTimestamp, t4n = rx;
    if (interleaved && symmetric) {
      // Our last packet one way (t1 when it left, t2 = rec when the peer got
      // it), the peer's previous packet the other (t3 = xmt when it left,
      // t4 when it got here): two exact pairs (chrony's interleaved peers).
      at = prevRxT4;
      t1 = fromUnixSeconds(ctx.served(sent!.t1));
      t2 = p.rec;
      t4n = fromUnixSeconds(ctx.served(prevRxT4));
    } else if (interleaved) {
      if (!prev) return none;
      at = prev.t4;
      t1 = fromUnixSeconds(ctx.served(prev.t1));
      t2 = prev.t2;
      t4n = fromUnixSeconds(ctx.served(prev.t4));
    } else {
      t1 = fromUnixSeconds(ctx.served(sent!.t1));
      t2 = p.rec;
    }
    const t3 = p.xmt;
    const offset = (diff(t2, t1) + diff(t3, t4n)) / 2;
    const delay = Math.max(diff(t4n, t1) - diff(t3, t2), 2 ** ctx.precision);
    const disp = 2 ** ctx.precision + 2 ** p.precision + PHI * Math.max(0, diff(t4n, t1));
    this.lastSample = at;
    this.#logged.delete("rate"); // a later RATE kiss is a new episode
    const sample: Sample = { t: at, y: offset + ctx.correction(at), delay, disp };
    this.stats.add(sample.t, sample.y, delay);
    if (this.opts.kind === "broadcast" && (this.bdelay === null || this.#recalibrating)) {
      this.#calibration.push({ t: at, y: sample.y, delay });
      if (this.#calibration.length > 16) this.#calibration.shift();
      this.#calibrate(t4, actions);
    }
    return { actions, output: this.filter.add(sample, ctx.residual, ctx.precision), fresh: true };
  }

  /**
   * Tries to end the calibration (broadcast.ts `calibratedDelay`) at raw
   * time `now`: once it has δ the association stops sending and listens.
   */
  #calibrate(now: number, actions: SourceAction[]): void {
    // During the volley wait for CALIBRATION_BROADCASTS bracketed broadcasts; once it is
    // over (long broadcast intervals), the first one will do.
    const d = calibratedDelay(
      this.#calibration,
      this.#heard,
      this.burst > 0 ? CALIBRATION_BROADCASTS : 1,
    );
    if (d === null) return;
    const rtt = Math.min(...this.#calibration.map((s) => s.delay));
    this.bdelay = d;
    this.#calibration = [];
    this.#heard = [];
    this.#recalibrating = false;
    if (this.#sinceCalibration >= 0) this.#sinceCalibration = 0; // -1: the second one is done
    this.burst = 0;
    this.nextPoll = now + Math.max(this.pollInterval, 2 ** Math.max(0, Math.min(17, this.ppoll)));
    actions.push({
      kind: "log",
      level: "info",
      message: `${this.id}: broadcast delay calibrated: ${(d * 1e3).toFixed(3)} ms (round trip ${
        (rtt * 1e3).toFixed(3)
      } ms)`,
    });
  }

  /**
   * A broadcast (mode 5) from this association's server, already admitted
   * by the engine (broadcast.ts `admitBroadcast`; `authenticated`: with a
   * valid MAC of our key), heard at raw time `t4`.
   * Duplicates and replays are dropped, the header tests applied as for a
   * reply; once the delay is calibrated the packet is a sample with offset
   * T3 − T4 + delay/2 and the calibrated delay.
   */
  handleBroadcast(
    p: NtpPacket,
    t4: number,
    ctx: SourceContext,
    authenticated = false,
  ): { actions: SourceAction[]; output: FilterOutput | null; fresh: boolean } {
    const actions: SourceAction[] = [];
    const none = { actions, output: null, fresh: false };
    if (this.state !== "active" || p.mode !== Mode.broadcast) return none;
    this.counters.broadcasts++;
    if (p.xmt === this.#lastRxXmt || p.xmt === 0n) {
      this.counters.replay++;
      const l = this.#once("replay", "warning", `${this.id}: duplicate or replayed packet dropped`);
      if (l) actions.push(l);
      return none;
    }
    this.#lastRxXmt = p.xmt;
    this.authenticated = authenticated;
    this.ppoll = p.poll;
    this.reach |= 1;
    this.unreach = 0;
    if (!this.#header(p, t4, ctx, actions)) return none;
    if (this.bdelay === null) {
      // The calibration exchanges run on the poll timer; until they end a
      // broadcast alone cannot tell the one-way delay. What it says is kept
      // to compare with them.
      this.counters.uncalibrated++;
      const y = diff(p.xmt, fromUnixSeconds(ctx.served(t4))) + ctx.correction(t4);
      this.#heard.push({ t: t4, y });
      if (this.#heard.length > 8) this.#heard.shift();
      this.#calibrate(t4, actions);
      if (this.bdelay !== null) return none; // the next broadcast is the first sample
      if (this.counters.sent >= BURST_COUNT && this.#calibration.length === 0) {
        const l = this.#once(
          "uncalibrated",
          "warning",
          `${this.id}: broadcasts heard, but no valid reply to the calibration requests (does the server allow us, and share the key?); its broadcasts are not used`,
        );
        if (l) actions.push(l);
      }
      return none;
    }
    const delay = this.bdelay;
    const offset = broadcastOffset(p.xmt, fromUnixSeconds(ctx.served(t4)), delay);
    const disp = 2 ** ctx.precision + 2 ** p.precision + PHI * delay;
    this.lastSample = t4;
    const sample: Sample = { t: t4, y: offset + ctx.correction(t4), delay, disp };
    this.stats.add(sample.t, sample.y, delay);
    this.#recalibrate(sample.y - delay / 2, t4, actions);
    return { actions, output: this.filter.add(sample, ctx.residual, ctx.precision), fresh: true };
  }

  /**
   * Measures δ again, once, RECALIBRATE_AFTER broadcast samples after the
   * first calibration (`y`: this broadcast's raw T3 − T4, raw frame): the
   * server's send latency is learnt from its own transmit stamps after a
   * few sends (lib/io/send_latency.ts), so the first δ, taken from its
   * first broadcasts, may include what later broadcasts no longer carry.
   * The δ in force is used until the new volley ends.
   */
  #recalibrate(y: number, now: number, actions: SourceAction[]): void {
    if (this.#recalibrating) {
      this.#heard.push({ t: now, y });
      if (this.#heard.length > 8) this.#heard.shift();
      this.#calibrate(now, actions);
      return;
    }
    if (this.#sinceCalibration < 0 || ++this.#sinceCalibration < RECALIBRATE_AFTER) return;
    this.#sinceCalibration = -1; // once: later path changes wait for a new mobilisation
    this.#recalibrating = true;
    this.burst = BURST_COUNT;
    this.nextPoll = Math.min(this.nextPoll, now);
  }

  /**
   * A kiss-o'-death (RFC 5905 §7.4). RATE: end any burst at once, poll
   * less often, and wait the poll interval plus four more before the next
   * request (chrony's back-off); one log line per episode. DENY, RSTR: stop.
   */
  #kiss(p: NtpPacket, now: number, actions: SourceAction[]): void {
    if (p.refid === KISS_RATE) {
      this.counters.kodRate++;
      this.burst = 0;
      const want = Math.max(this.hpoll + 1, p.poll);
      this.hpoll = Math.min(this.opts.maxPoll, Math.max(this.opts.minPoll, want));
      this.nextPoll = now + 5 * this.pollInterval;
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

const NO_MAC: MacCheck = { kind: "none" };

/** Why a packet's MAC verdict does not authenticate it with key `key`, or null when it does. */
export function macProblem(mac: MacCheck, key: number): string | null {
  switch (mac.kind) {
    case "ok":
      return mac.keyId === key ? null : `MAC of key ${mac.keyId}, not ${key}`;
    case "none":
      return `no MAC (key ${key} required)`;
    case "crypto-nak":
      return `crypto-NAK (the other side does not know or trust key ${key}, or its key ${key} differs from ours)`;
    case "unknown-key":
      return `MAC of unknown key ${mac.keyId}`;
    case "untrusted":
      return `MAC of untrusted key ${mac.keyId}`;
    case "bad-mac":
      return `bad MAC (key ${mac.keyId}): wrong key or tampered`;
  }
}

/** The key of an association: "host:port", IPv6 in brackets. */
export function sourceId(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}
