/**
 * A server worker: owns its sockets (one per listen address, sharing the
 * port with the other workers through SO_REUSEPORT on the FFI driver),
 * answers requests with the pure server core, and counts into its own
 * slot of a shared counter array. System state arrives through shared
 * memory; control messages (listen, stop, reconfigure) by postMessage.
 */
/// <reference lib="deno.worker" />
import { AccessList } from "../ntp/access.ts";
import { newClientAddress, setClientAddress } from "../ntp/address.ts";
import { RateLimiter } from "../ntp/rate_limit.ts";
import {
  Counter,
  COUNTER_COUNT,
  minPollFor,
  respond,
  type ServerContext,
  stampTransmit,
} from "../ntp/server.ts";
import { SharedSystemState, unsyncedState } from "../ntp/system_state.ts";
import { parseSocketAddress, type SocketAddress } from "../config/socket_address.ts";
import { cidrs, type ServerOptions } from "./server_options.ts";
import type { Responder, ServerSocket } from "./server_socket.ts";
import { ffiAvailability, openServerSocket } from "./udp.ts";
import { TxStore } from "../ntp/tx_store.ts";
import { checkMac, MAX_MAC_LENGTH, writeMac } from "../auth/mac.ts";
import { HEADER_LEN } from "../ntp/packet.ts";
import { useOpenSslDigests } from "./openssl_mac.ts";
import type { KeyTable, SymmetricKey } from "../auth/keys.ts";

/** The keys a worker answers with (cloneable: key file contents and `auth.trusted_keys`). */
export interface WorkerKeys {
  keys: SymmetricKey[];
  trusted: number[];
}
import { CookieKeyring } from "../nts/cookie.ts";
import { NtsServer } from "../nts/server.ts";
import type { NtsKeys } from "./nts_keys.ts";
import { installOpensslSiv } from "./openssl_siv.ts";

export type ToWorker =
  | {
    kind: "init";
    listen: string[];
    driver: "ffi" | "portable";
    reusePort: boolean;
    options: ServerOptions;
    state: SharedArrayBuffer;
    counters: SharedArrayBuffer;
    /** The interleaved-mode store shared by all workers (lib/ntp/tx_store.ts). */
    txStore: SharedArrayBuffer;
    /** The rate-limit client table shared by all workers (lib/ntp/rate_limit.ts). */
    rateTable: SharedArrayBuffer;
    slot: number;
    /** Symmetric keys requests are authenticated with (lib/auth). */
    keys: WorkerKeys;
    /** Cookie secrets when this node answers NTS requests; null = NTS off. */
    nts: NtsKeys | null;
  }
  /** Reload: a new key table (key file reread, `auth.trusted_keys` changed). */
  | { kind: "keys"; keys: WorkerKeys }
  /** Reload: new cookie secrets (the master key file is reread), or NTS off. */
  | { kind: "nts"; nts: NtsKeys | null }
  /** Reload: new access and rate-limit options, over this (possibly the same) client table. */
  | { kind: "options"; options: ServerOptions; rateTable: SharedArrayBuffer }
  /** Reload: close sockets no longer listed, open the new ones, keep the rest. */
  | { kind: "listen"; listen: string[] }
  /** Stop taking requests off the sockets (they queue in the kernel) until "release". */
  | { kind: "hold" }
  /** Run the packet loop over a private socket (code pages back in), then serve again. */
  | { kind: "release" }
  | { kind: "stop" };

export type FromWorker =
  | { kind: "ready"; driver: string; driverNote: string; bound: string[]; errors: string[] }
  | { kind: "listened"; bound: string[]; errors: string[] }
  | { kind: "held" }
  | { kind: "released" }
  | { kind: "stopped" };

function post(msg: FromWorker): void {
  self.postMessage(msg);
}

/** Synthetic requests the driver's loop answers after a hold, before serving again. */
const RELEASE_WARM_UP = 2_000;

/** Synthetic requests `warmUp` answers before the sockets open. */
const WARM_UP_ROUNDS = 20_000;

/**
 * Runs the reply path (respond, stampTransmit) on synthetic requests
 * before the sockets open, so the first real requests meet optimised
 * code rather than the interpreter and the JIT: without it the first
 * seconds after a start serve with several times the usual stamping
 * error. Scratch counters, no rate limiter and no transmit store: it
 * leaves no trace in what the server reports or remembers.
 */
function warmUp(ctx: ServerContext): void {
  const scratch = scratchContext(ctx);
  const client = newClientAddress();
  setClientAddress(client, new Uint8Array([127, 0, 0, 1]), 0, 4, 40000);
  const req = new Uint8Array(48);
  req[0] = (4 << 3) | 3; // NTPv4 client
  const out = new Uint8Array(48);
  const now = Date.now() / 1000;
  for (let i = 0; i < WARM_UP_ROUNDS; i++) {
    req[47] = i & 0xff;
    const sec = Math.floor(now), nsec = (i * 997) % 1e9;
    respond(req, 48, client, sec, nsec, scratch, out, 0);
    stampTransmit(out, 0, scratch.system, sec, nsec);
  }
}

/** `ctx` with scratch counters, no rate limiter and no transmit store: a warm-up leaves no trace. */
function scratchContext(ctx: ServerContext): ServerContext {
  const { txStore: _store, ...rest } = ctx;
  return {
    ...rest,
    counters: new Float64Array(COUNTER_COUNT),
    limiter: new RateLimiter({ intervalS: 0, burst: 1 }),
  };
}

let sockets: ServerSocket[] = [];
/** The listen text each socket was opened for (reload compares these). */
const socketListen = new Map<ServerSocket, string>();

async function start(init: Extract<ToWorker, { kind: "init" }>): Promise<void> {
  const shared = new SharedSystemState(init.state);
  const system = unsyncedState(0);
  shared.read(system);
  let seen = shared.version;
  const counters = new Float64Array(init.counters, init.slot * COUNTER_COUNT * 8, COUNTER_COUNT);
  const ctx: ServerContext = {
    system,
    access: new AccessList([], []),
    limiter: new RateLimiter({ intervalS: 0, burst: 1, tableSize: 4 }),
    denyKod: false,
    rateKod: false,
    minPoll: 0,
    counters,
    txStore: new TxStore(init.txStore),
  };
  let keys: KeyTable = new Map();
  let trusted: ReadonlySet<number> = new Set();
  let libcrypto = false;
  const setKeys = (k: WorkerKeys) => {
    keys = new Map(k.keys.map((key) => [key.id, key]));
    trusted = new Set(k.trusted);
    // libcrypto is loaded once, and only when there is a key to digest with;
    // where FFI is denied the library digests stay (lib/auth/digest.ts).
    if (!libcrypto && keys.size > 0) {
      useOpenSslDigests();
      libcrypto = true;
    }
  };
  setKeys(init.keys);
  ctx.auth = { check: (req, length, version) => checkMac(keys, trusted, req, length, version) };
  const configure = (o: ServerOptions, rateTable: SharedArrayBuffer) => {
    ctx.access = new AccessList(cidrs(o.allow), cidrs(o.deny));
    ctx.limiter = new RateLimiter(o.rateLimit, rateTable);
    ctx.denyKod = o.denyKod;
    ctx.rateKod = o.rateLimit.kod;
    ctx.minPoll = minPollFor(o.rateLimit.intervalS);
  };
  configure(init.options, init.rateTable);
  const setNts = (k: NtsKeys | null) => {
    if (k) installOpensslSiv(); // AES-SIV with AES-NI: most of an NTS reply's cost
    if (!k) delete ctx.nts;
    else if (ctx.nts instanceof NtsServer) ctx.nts.keyring.update(k.secrets, k.acceptDays);
    else ctx.nts = new NtsServer(new CookieKeyring(k.secrets, k.acceptDays));
  };
  setNts(init.nts);
  warmUp(ctx);

  const refresh = () => {
    const v = shared.version;
    if (v !== seen) {
      shared.read(system);
      seen = v;
    }
  };
  // What the responder serves from: a scratch copy during the driver's
  // warm-up, then `ctx`. One responder object for both, so the code the
  // warm-up optimised sees the same shapes afterwards (no deoptimisation
  // on the first real request).
  let serving = ctx;
  const responder: Responder = {
    respond(req, length, client, rxSec, rxNsec, out, outOffset) {
      refresh();
      return respond(req, length, client, rxSec, rxNsec, serving, out, outOffset);
    },
    stamp(out, outOffset, txSec, txNsec) {
      stampTransmit(out, outOffset, system, txSec, txNsec);
    },
    seal(out, outOffset, length) {
      // A MAC reply is at most 48 + 36 octets (key ID, whole SHA256 digest);
      // an NTS reply is longer (unique identifier and authenticator fields).
      if (length <= HEADER_LEN + MAX_MAC_LENGTH) {
        // respond wrote the request's key ID at 48 and left the digest's room.
        const at = outOffset + HEADER_LEN;
        const id =
          ((out[at]! << 24) | (out[at + 1]! << 16) | (out[at + 2]! << 8) | out[at + 3]!) >>>
          0;
        const key = keys.get(id);
        if (key) writeMac(key, out, outOffset, HEADER_LEN, length - HEADER_LEN - 4);
      } else {
        ctx.nts?.seal(out, outOffset, length);
      }
    },
    saveTx(out, outOffset, txSec, txNsec) {
      const v = new DataView(out.buffer, out.byteOffset + outOffset + 32, 8);
      serving.txStore?.save(v.getUint32(0), v.getUint32(4), txSec, txNsec);
    },
    sendFailed() {
      serving.counters[Counter.sendErrors]!++;
    },
    sendLatency(seconds) {
      serving.counters[Counter.sendLatencyNs] = Math.round(seconds * 1e9);
    },
  };

  const errors: string[] = [];
  let driverNote = "";
  const open = async (list: string[], errs: string[]) => {
    for (const text of list) {
      const addr = parseSocketAddress(text) as SocketAddress;
      try {
        const opened = await openServerSocket(addr, init.driver, init.reusePort);
        if (opened.note) driverNote = opened.note;
        sockets.push(opened.socket);
        socketListen.set(opened.socket, text);
      } catch (e) {
        errs.push(e instanceof Error ? e.message : String(e));
      }
    }
  };
  /** Runs the driver's packet loop on `requests` synthetic requests through a private socket. */
  const warmDriver = async (requests?: number) => {
    if (init.driver !== "ffi" || !ffiAvailability().ok) return;
    const { warmUpDriver } = await import("./udp_ffi.ts");
    serving = scratchContext(ctx);
    try {
      await warmUpDriver(responder, requests);
    } finally {
      serving = ctx;
    }
  };
  // The packet loop itself, before the real sockets open: JIT-compiled.
  await warmDriver();
  await open(init.listen, errors);
  post({
    kind: "ready",
    driver: sockets[0]?.driver ?? init.driver,
    driverNote,
    bound: sockets.map((s) => s.address),
    errors,
  });
  self.onmessage = (e: MessageEvent<ToWorker>) => {
    const m = e.data;
    if (m.kind === "options") configure(m.options, m.rateTable);
    else if (m.kind === "keys") setKeys(m.keys);
    else if (m.kind === "nts") setNts(m.nts);
    else if (m.kind === "listen") {
      // Open the new addresses before closing the old ones; unchanged ones are untouched.
      const have = new Set(socketListen.values());
      const gone = sockets.filter((s) => !m.listen.includes(socketListen.get(s) ?? ""));
      const before = sockets.length;
      const errs: string[] = [];
      void open(m.listen.filter((t) => !have.has(t)), errs).then(() => {
        for (const s of sockets.slice(before)) void s.serve(responder);
        for (const s of gone) {
          s.close();
          socketListen.delete(s);
        }
        sockets = sockets.filter((s) => !gone.includes(s));
        post({ kind: "listened", bound: sockets.map((s) => s.address), errors: errs });
      });
    } else if (m.kind === "hold") {
      for (const s of sockets) s.hold();
      post({ kind: "held" });
    } else if (m.kind === "release") {
      // After the start-up trim the loop's code pages are gone: a short
      // run brings them back before a real request has to wait for them.
      void warmDriver(RELEASE_WARM_UP).finally(() => {
        for (const s of sockets) s.release();
        post({ kind: "released" });
      });
    } else if (m.kind === "stop") {
      for (const s of sockets) s.close();
      sockets = [];
      post({ kind: "stopped" });
    }
  };
  await Promise.all(sockets.map((s) => s.serve(responder)));
}

self.onmessage = (e: MessageEvent<ToWorker>) => {
  if (e.data.kind === "init") void start(e.data);
};
