/**
 * The NTP server's answer to one request, without I/O (RFC 5905 A.5.3
 * `fast_xmit`, with chrony's and ntpsec's practice):
 *
 * - versions 1–4 are answered with the request's version; mode 3 gets
 *   mode 4, an unknown peer's mode 1 gets mode 2, an NTPv1 mode-0 request
 *   from a port other than 123 gets mode 4;
 * - modes 2, 4, 5 and control modes 6 and 7 are never answered;
 * - `org` is the request's `xmt`, `rec` the kernel receive time, and
 *   `xmt` is left for the driver to stamp just before sending
 *   (`stampTransmit`);
 * - the reply is the 48-byte header, never larger than the request; with
 *   NTS (`ctx.nts`) the NTS fields follow it (as long as the request);
 * - a request with a MAC (symmetric keys, RFC 5905 §9.2 and A.5.1.1
 *   `fast_xmit`): a valid MAC of a trusted key gets a reply with a MAC by
 *   that key and the request's digest length (the driver seals it after
 *   stamping `xmt`, `REPLY_SEAL`); an unknown or untrusted key or a wrong
 *   digest gets a crypto-NAK, a 4-octet MAC of key ID 0, as ntpd does
 *   (chronyd stays silent; docs/design/authentication.md says why).
 * - with a leap smear published in the system state (`server.leap_smear_s`),
 *   `rec` and `xmt` are smeared time (lib/ntp/leap.ts `smearRamp`).
 *
 * `respond` writes into a caller-owned buffer and allocates nothing for a
 * plain request, since it runs for every packet; a request with a MAC
 * costs the verdict object and what the digest library allocates (two
 * digests: the request's checked here, the reply's made by `seal`).
 */
import type { ClientAddress } from "./address.ts";
import type { AccessList } from "./access.ts";
import type { MacCheck } from "../contracts.ts";
import { asciiRefid, HEADER_LEN, Leap, Mode, walkTrailer } from "./packet.ts";
import { leapOnDay } from "./leap.ts";
import type { RateLimiter } from "./rate_limit.ts";
import { isSynchronised, PHI, servedCorrectionAt, type SystemState } from "./system_state.ts";
import { toShort, writeUnixTime } from "./timestamp.ts";
import type { SavedTx, TxStore } from "./tx_store.ts";

/** Indexes into a server's counter array. */
export const Counter = {
  received: 0,
  answered: 1,
  kodRate: 2,
  kodDeny: 3,
  dropMalformed: 4,
  dropMode: 5,
  dropControl: 6,
  dropRateLimited: 7,
  dropDenied: 8,
  sendErrors: 9,
  interleaved: 10,
  /** Requests with NTS fields (RFC 8915), whatever became of them. */
  ntsRequests: 11,
  /** NTS NAKs sent: a cookie that did not open, or an authenticator that did not verify. */
  ntsNak: 12,
  /** NTS requests whose cookie opened but whose authenticator did not verify (NAKed too). */
  ntsBadAuth: 13,
  /** Requests with a valid MAC of a trusted key, answered with a MAC. */
  authenticated: 14,
  /** Requests answered with a crypto-NAK: unknown or untrusted key, or a bad MAC. */
  cryptoNak: 15,
  /** Requests whose MAC did not match (or had the wrong length for its key): also in cryptoNak. */
  badMac: 16,
  /**
   * A gauge, not a count: the worker's send latency estimate in ns, added
   * to basic replies' transmit timestamps (lib/io/reply_latency.ts).
   */
  sendLatencyNs: 17,
} as const;
export const COUNTER_COUNT = 18;

/**
 * Flags `respond` ORs into a reply's length: the reply is an interleaved
 * one whose xmt is already written (do not stamp it); the reply's
 * transmit time should be saved for the client's next request; the reply
 * must be sealed (`Responder.seal`: an NTS authenticator or a MAC over
 * the stamped `xmt`) after the stamp and before the send.
 */
export const REPLY_STAMPED = 0x1000;
export const REPLY_SAVE_TX = 0x2000;
export const REPLY_SEAL = 0x4000;
/** The length part of what `respond` returns (replies up to 4095 bytes). */
export const REPLY_LENGTH = 0xfff;

/** Results of `NtsResponder.check`. */
export const NTS_NONE = 0;
export const NTS_OK = 1;
export const NTS_NAK = 2;
export const NTS_DROP = 3;

/**
 * The NTS part of the server (lib/nts/server.ts), present when NTS is on.
 * `check` looks at a client request's NTS fields (NTS_NONE: it has none,
 * answer it plainly; NTS_OK; NTS_NAK: answer with kiss code NTSN; NTS_DROP:
 * malformed). `finish` appends the reply's NTS fields after its header
 * and returns the reply's whole length (0: no reply). `seal` completes
 * the authenticator once `xmt` is stamped.
 */
export interface NtsResponder {
  check(req: Uint8Array, length: number): number;
  /** Whether the last `check` NAKed for the authenticator (the cookie opened). */
  readonly badAuthenticator: boolean;
  finish(req: Uint8Array, length: number, out: Uint8Array, outOffset: number, nak: boolean): number;
  seal(out: Uint8Array, outOffset: number, length: number): void;
}

/** Returned by `respond` for a packet the server does not answer itself. */
export const NO_REPLY = 0;

const NTP_PORT = 123;
const REFID_RATE = asciiRefid("RATE");
const REFID_DENY = asciiRefid("DENY");
const REFID_NTSN = asciiRefid("NTSN");
const MAX_POLL = 17;

export interface ServerContext {
  system: SystemState;
  access: AccessList;
  limiter: RateLimiter;
  /** Answer denied clients with KoD DENY instead of dropping. */
  denyKod: boolean;
  /** Answer rate-limited clients with KoD RATE (at most once per interval). */
  rateKod: boolean;
  /** Lowest poll exponent we advertise: log2 of the rate-limit interval. */
  minPoll: number;
  counters: Float64Array;
  /** Transmit times of earlier replies, for interleaved mode; absent = basic mode only. */
  txStore?: TxStore;
  /** NTS (RFC 8915); absent = requests with NTS fields are answered as plain ones. */
  nts?: NtsResponder;
  /**
   * Checks a request's MAC (lib/auth/mac.ts `checkMac` over the worker's
   * keys); absent = no keys at all: a request with a MAC gets a crypto-NAK.
   */
  auth?: { check(req: Uint8Array, length: number, version: number): MacCheck };
}

const saved: SavedTx = { sec: 0, nsec: 0 };
/** Without keys every MAC is of an unknown key. */
const NO_AUTH: MacCheck = { kind: "unknown-key", keyId: 0, dataLength: 0 };

/** Log2 of the rate-limit interval, rounded up: the poll we ask clients to keep. */
export function minPollFor(intervalS: number): number {
  return intervalS > 0 ? Math.min(MAX_POLL, Math.max(0, Math.ceil(Math.log2(intervalS)))) : 0;
}

/**
 * Builds the reply to `req[0..length)` into `out[outOffset..)` (48 bytes,
 * up to `length` with NTS or a MAC). Returns `NO_REPLY`, or the reply's length
 * ORed with `REPLY_STAMPED` / `REPLY_SAVE_TX` / `REPLY_SEAL`;
 * counts the outcome. `rxSec`/`rxNsec` is the raw (uncorrected) receive
 * time.
 *
 * Interleaved mode (RFC 9769 §2, chrony's server): a client request whose
 * `org` is the `rec` of an earlier reply found in `ctx.txStore` gets
 * `org` = its own `rec` and `xmt` = when that earlier reply really left.
 * Requests with a non-zero `org` or `rec` (what interleaved clients, and
 * ntpd-style clients, send) ask the driver to save their reply's transmit
 * time (`REPLY_SAVE_TX`); requests with both zero cost nothing more.
 */
export function respond(
  req: Uint8Array,
  length: number,
  client: ClientAddress,
  rxSec: number,
  rxNsec: number,
  ctx: ServerContext,
  out: Uint8Array,
  outOffset = 0,
): number {
  const c = ctx.counters;
  c[Counter.received]!++;
  if (length < HEADER_LEN) {
    c[Counter.dropMalformed]!++;
    return NO_REPLY;
  }
  const b0 = req[0]!;
  const version = (b0 >> 3) & 7;
  let mode = b0 & 7;
  if (mode === Mode.control || mode === Mode.private) {
    c[Counter.dropControl]!++;
    return NO_REPLY;
  }
  if (version < 1 || version > 4) {
    c[Counter.dropMalformed]!++;
    return NO_REPLY;
  }
  // The MAC's length (0: none); extension fields are walked over.
  const macLength = length > HEADER_LEN
    ? walkTrailer(new DataView(req.buffer, req.byteOffset, length), length, version)
    : 0;
  if (macLength === "bad-extension") {
    c[Counter.dropMalformed]!++;
    return NO_REPLY;
  }
  if (mode === Mode.reserved && version === 1 && client.port !== NTP_PORT) mode = Mode.client;
  let replyMode: number;
  if (mode === Mode.client) {
    replyMode = Mode.server;
  } else if (mode === Mode.symmetricActive || mode === Mode.symmetricPassive) {
    if (mode === Mode.symmetricPassive) {
      c[Counter.dropMode]!++;
      return NO_REPLY;
    }
    replyMode = Mode.symmetricPassive; // stateless: no association is made
  } else {
    c[Counter.dropMode]!++;
    return NO_REPLY;
  }

  // `view` spans the whole buffer (cached, no allocation per packet), so
  // its offsets are `o`; `out` indexes are `outOffset`.
  const view = viewOf(out);
  const o = out.byteOffset + outOffset;
  const rxTime = rxSec + rxNsec * 1e-9;
  let kodRefid = 0;
  if (!ctx.access.allows(client)) {
    if (!ctx.denyKod) {
      c[Counter.dropDenied]!++;
      return NO_REPLY;
    }
    c[Counter.kodDeny]!++;
    kodRefid = REFID_DENY;
  } else {
    const verdict = ctx.limiter.check(client, rxTime, ctx.rateKod);
    if (verdict === "drop") {
      c[Counter.dropRateLimited]!++;
      return NO_REPLY;
    }
    if (verdict === "kod") {
      c[Counter.kodRate]!++;
      kodRefid = REFID_RATE;
    }
  }
  // NTS (RFC 8915 §5.7), only for requests with fields, after the limiter (crypto costs).
  let nts = NTS_NONE;
  if (ctx.nts && length > HEADER_LEN && kodRefid === 0 && replyMode === Mode.server) {
    nts = ctx.nts.check(req, length);
    if (nts !== NTS_NONE) c[Counter.ntsRequests]!++;
    if (nts === NTS_DROP) {
      c[Counter.dropMalformed]!++;
      return NO_REPLY;
    }
    if (nts === NTS_NAK) {
      c[Counter.ntsNak]!++;
      if (ctx.nts.badAuthenticator) c[Counter.ntsBadAuth]!++;
      kodRefid = REFID_NTSN;
    }
  }

  // A MAC (not with NTS: its fields carry their own authenticator). After
  // access and rate limit, as chrony: a flood costs no digests. `tail` is
  // what follows the header: nothing, a crypto-NAK (4) or key ID + digest.
  let tail = 0;
  if (macLength > 0 && nts === NTS_NONE) {
    const mac = ctx.auth?.check(req, length, version) ?? NO_AUTH;
    if (mac.kind === "ok") {
      c[Counter.authenticated]!++;
      tail = length - mac.dataLength;
      for (let i = 0; i < 4; i++) out[outOffset + HEADER_LEN + i] = req[mac.dataLength + i]!;
    } else if (mac.kind !== "none") {
      c[Counter.cryptoNak]!++;
      if (mac.kind === "bad-mac") c[Counter.badMac]!++;
      tail = 4;
      view.setUint32(o + HEADER_LEN, 0);
    }
  }
  const plain = tail > 4 ? (HEADER_LEN + tail) | REPLY_SEAL : HEADER_LEN + tail;

  const s = ctx.system;
  const reqPoll = (req[2]! << 24) >> 24; // int8
  const poll = Math.min(MAX_POLL, Math.max(reqPoll, ctx.minPoll));
  // Served time: the correction, and the leap smear while one is published.
  const corr = servedCorrectionAt(s, rxTime);
  if (kodRefid !== 0) {
    // Kiss-o'-Death (RFC 5905 §7.4): LI 3, stratum 0, the code as refid.
    view.setUint8(o, (Leap.unsync << 6) | (version << 3) | replyMode);
    view.setUint8(o + 1, 0);
    view.setInt8(o + 2, poll);
    view.setInt8(o + 3, s.precision);
    view.setUint32(o + 4, 0);
    view.setUint32(o + 8, 0);
    view.setUint32(o + 12, kodRefid);
    view.setUint32(o + 16, 0);
    view.setUint32(o + 20, 0);
  } else {
    const synced = isSynchronised(s);
    // A leap is announced only on its day (30 June, 31 December) of the served time (leap.ts).
    const leap = synced ? leapOnDay(s.leap, rxTime + corr) : Leap.unsync;
    view.setUint8(o, (leap << 6) | (version << 3) | replyMode);
    view.setUint8(o + 1, synced ? s.stratum : 0);
    view.setInt8(o + 2, poll);
    view.setInt8(o + 3, s.precision);
    view.setUint32(o + 4, toShort(s.rootDelay));
    const age = s.refTime > 0 ? Math.max(0, rxTime + corr - s.refTime) : 0;
    view.setUint32(o + 8, toShort(s.rootDisp + PHI * age));
    view.setUint32(o + 12, synced ? s.refid : 0);
    if (s.refTime > 0) {
      const refSec = Math.floor(s.refTime);
      writeUnixTime(view, o + 16, refSec, (s.refTime - refSec) * 1e9, 0);
    } else {
      view.setUint32(o + 16, 0);
      view.setUint32(o + 20, 0);
    }
    c[Counter.answered]!++;
  }
  writeUnixTime(view, o + 32, rxSec, rxNsec, corr);
  if (nts !== NTS_NONE) {
    // NTS replies: basic mode, the fields after the header, sealed after the stamp.
    for (let i = 0; i < 8; i++) out[outOffset + 24 + i] = req[40 + i]!;
    view.setUint32(o + 40, 0);
    view.setUint32(o + 44, 0);
    const n = ctx.nts!.finish(req, length, out, outOffset, nts === NTS_NAK);
    if (n === 0) return NO_REPLY;
    return nts === NTS_OK ? n | REPLY_SEAL : n;
  }
  const store = ctx.txStore;
  if (store && kodRefid === 0 && replyMode === Mode.server) {
    const orgHi = u32(req, 24), orgLo = u32(req, 28);
    const recHi = u32(req, 32), recLo = u32(req, 36);
    if ((orgHi | orgLo) !== 0 && store.lookup(orgHi, orgLo, saved)) {
      // Interleaved: org = the request's rec, xmt = the earlier reply's real send time.
      for (let i = 0; i < 8; i++) out[outOffset + 24 + i] = req[32 + i]!;
      const t = saved.sec + saved.nsec * 1e-9;
      writeUnixTime(view, o + 40, saved.sec, saved.nsec, servedCorrectionAt(s, t));
      c[Counter.interleaved]!++;
      return plain | REPLY_STAMPED | REPLY_SAVE_TX;
    }
    if ((orgHi | orgLo | recHi | recLo) !== 0) {
      for (let i = 0; i < 8; i++) out[outOffset + 24 + i] = req[40 + i]!;
      view.setUint32(o + 40, 0);
      view.setUint32(o + 44, 0);
      return plain | REPLY_SAVE_TX;
    }
  }
  // org = request xmt, copied byte for byte.
  for (let i = 0; i < 8; i++) out[outOffset + 24 + i] = req[40 + i]!;
  view.setUint32(o + 40, 0);
  view.setUint32(o + 44, 0);
  return plain;
}

/**
 * Writes the transmit timestamp of a reply built by `respond`, as late as
 * possible (with the leap smear `system` carries, if any; our own peer
 * packets are stamped with the engine's `clockState()`, which has none).
 */
export function stampTransmit(
  out: Uint8Array,
  outOffset: number,
  system: SystemState,
  txSec: number,
  txNsec: number,
): void {
  const view = viewOf(out);
  writeUnixTime(
    view,
    out.byteOffset + outOffset + 40,
    txSec,
    txNsec,
    servedCorrectionAt(system, txSec + txNsec * 1e-9),
  );
}

/** Big-endian uint32 at `at` (no view: `viewOf` caches the reply buffer's). */
function u32(b: Uint8Array, at: number): number {
  return ((b[at]! << 24) | (b[at + 1]! << 16) | (b[at + 2]! << 8) | b[at + 3]!) >>> 0;
}

let cachedBuffer: ArrayBufferLike | null = null;
let cachedView: DataView | null = null;

/**
 * A DataView over all of `bytes.buffer`, kept for the next call: drivers
 * reuse one reply buffer, so the packet path allocates no views.
 */
function viewOf(bytes: Uint8Array): DataView {
  if (bytes.buffer !== cachedBuffer) {
    cachedBuffer = bytes.buffer;
    cachedView = new DataView(bytes.buffer);
  }
  return cachedView!;
}
