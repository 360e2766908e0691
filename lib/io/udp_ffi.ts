/**
 * Linux UDP driver over libc `recvmmsg`/`sendmmsg` through Deno FFI.
 *
 * - Up to BATCH datagrams per system call each way; every datagram carries
 *   its own kernel receive timestamp (SO_TIMESTAMPNS), so batching does
 *   not blur `rec`.
 * - The transmit time is read (clock_gettime, ~25 ns in C) right before
 *   each `sendmmsg`, plus the thread's measured send latency
 *   (reply_latency.ts). Unless a read filled a whole batch, each reply is
 *   stamped and sent on its own, as chronyd does. A full read (a backlog)
 *   goes out in chunks of SEND_CHUNK, one `sendmmsg` and one reading each,
 *   reply k of a chunk stamped t0 + k * c (c the kernel's measured time per
 *   message), so `xmt` is when the kernel starts on that reply. Only a
 *   backlog that lasts SUSTAINED_MS goes out a whole batch per `sendmmsg`
 *   (10-20 % less worker CPU per packet, the highest rate), with stamps
 *   that coarse. Spaced stamps are a guess: with batches of more than 4
 *   spaced over 64, bursty clients at 40 000 req/s saw p99 |offset| of
 *   8.9 us where a reading per reply gives 1.4 us, and a server's first
 *   second (its queue fills while it starts) 10-50 us
 *   (docs/benchmarks/serving.md).
 * - Before a worker binds, `warmUpDriver` runs this loop over a private
 *   socket (JIT), and after the start-up memory trim the app holds the
 *   sockets (`hold`/`release`) while the loop runs privately again, so
 *   no page fault lands between a reading and its send.
 * - Replies leave with DF set (IP_PMTUDISC_PROBE): the kernel then gives
 *   them IP ID 0 instead of hashing a fresh one for each (RFC 6864 allows
 *   it for atomic datagrams), a few % of the send path. Replies are never
 *   larger than the request that reached us, so DF cannot cost a reply.
 * - A read that returns less than a full batch means the queue is empty:
 *   we wait before reading again rather than pay for an empty recvmmsg.
 * - On a wildcard address the destination address of each request comes
 *   back as IP_PKTINFO / IPV6_PKTINFO and is used as the reply's source,
 *   as chronyd does, so multi-homed and anycast hosts answer from the
 *   address that was asked.
 * - All buffers and C structs are made once per socket; the packet path
 *   allocates nothing. Buffers the kernel or a pool thread write to are
 *   pinned on the socket (the GC must neither free nor move them).
 * - SO_RCVBUF is 4 MiB: a few thousand requests, enough to ride out a
 *   pause of some milliseconds at full load, not so many that an overload
 *   turns into long queueing (a late answer is worse than none for NTP).
 * - The event loop keeps turning: while packets keep coming we read
 *   without blocking and hand control back every YIELD_MS; when the
 *   socket runs dry we wait in a blocking `poll` for at most SPIN_POLL_MS
 *   (cheapest wake-up under load), then in a `poll` on a pool thread
 *   (nonblocking FFI) that `close()` interrupts through an eventfd.
 */
import type { SocketAddress } from "../config/socket_address.ts";
import { newClientAddress, parseIp, setClientAddress } from "../ntp/address.ts";
import { NO_REPLY, REPLY_LENGTH, REPLY_SAVE_TX, REPLY_SEAL, REPLY_STAMPED } from "../ntp/server.ts";
import {
  addressOf,
  AF_INET,
  AF_INET6,
  CLOCK_REALTIME,
  CMSG_DATA,
  cmsgSpace,
  EAGAIN,
  EFD_CLOEXEC,
  EFD_NONBLOCK,
  EINTR,
  errnoName,
  favourThisThread,
  IOVEC_SIZE,
  IP_MTU_DISCOVER,
  IP_PKTINFO,
  IP_PMTUDISC_PROBE,
  IPPROTO_IP,
  IPPROTO_IPV6,
  IPV6_PKTINFO,
  IPV6_RECVPKTINFO,
  IPV6_V6ONLY,
  libc,
  MSG_DONTWAIT,
  MSG_ERRQUEUE,
  MSG_TRUNC,
  MSGHDR,
  POLLERR,
  POLLIN,
  SCM_TIMESTAMPING,
  SCM_TIMESTAMPNS,
  SO_RCVBUF,
  SO_RCVBUFFORCE,
  SO_REUSEADDR,
  SO_REUSEPORT,
  SO_SNDBUF,
  SO_TIMESTAMPING,
  SO_TIMESTAMPNS,
  SOCK_CLOEXEC,
  SOCK_DGRAM,
  SOCK_NONBLOCK,
  SOCKADDR_SIZE,
  SOF_TIMESTAMPING_OPT_RX_FILTER,
  SOF_TIMESTAMPING_SOFTWARE,
  SOF_TIMESTAMPING_TX_SOFTWARE,
  SOL_SOCKET,
  writeSockaddr,
} from "./libc.ts";
import { BindError, bindReason, type Responder, type ServerSocket } from "./server_socket.ts";
import { ReplyLatency } from "./reply_latency.ts";

/** Datagrams per recvmmsg. */
export const BATCH = 64;
/** Nice value of server worker threads (the main thread keeps 0); needs root or CAP_SYS_NICE. */
export const SERVER_NICE = -10;
/** Replies per sendmmsg when behind, each chunk with its own clock reading (see the loop). */
export const SEND_CHUNK = 8;
/**
 * Full reads for this long (ms) make a sustained backlog, answered in whole
 * batches, one sendmmsg each: the highest rate, with coarser stamps.
 */
export const SUSTAINED_MS = 50;
/**
 * What this thread's sockets have learnt of the send path, shared by all
 * of them (each worker is a thread with its own copy of this module), so
 * a socket opened later, or after `warmUpDriver`, starts from it: the send
 * latency added to basic replies (reply_latency.ts), and the kernel's time
 * per message in a batched `sendmmsg`, which starts at a typical value
 * rather than 0 (0 would stamp a whole batch with one time).
 */
const threadLatency = new ReplyLatency();
const threadSendCost = { ns: 2_000 };
/** Cap on a sample of the kernel's time per sent message (ns): a preempted call says little. */
const SEND_COST_MAX_NS = 20_000;
/** Weight of a new sample in the running estimate of that time. */
const SEND_COST_GAIN = 1 / 8;
/** Receive buffer per datagram; longer ones are truncated and dropped as malformed. */
const SLOT = 2048;
/** A plain reply (the tail of a looped-back frame on the error queue). */
const REPLY = 48;
/** Room for one reply: NTS replies are as long as their request (at most SLOT). */
const TX_SLOT = SLOT;
/** Room for the timestamp and pktinfo cmsgs (and an SCM_TIMESTAMPING one on older kernels). */
const RX_CTRL = 192;
/** A looped-back reply with its headers, from the error queue. */
const ERR_SLOT = 256;
/** Receive buffer (see the header comment). */
const RCVBUF = 4 << 20;
const YIELD_MS = 10;
const SPIN_POLL_MS = 2;
const IDLE_POLL_MS = 1000;
/** Bytes that make V8 put a typed array's storage outside its moving heap. */
const OFF_HEAP = 128;

function format(ip: string, port: number, family: 4 | 6): string {
  return family === 6 ? `[${ip}]:${port}` : `${ip}:${port}`;
}

function setInt(fd: number, level: number, opt: number, value: number): boolean {
  const v = new Int32Array([value]);
  return libc().setsockopt(fd, level, opt, new Uint8Array(v.buffer), 4) === 0;
}

/** Opens, configures and binds a socket; throws BindError with one clear line. */
export function openFfiSocket(addr: SocketAddress, reusePort: boolean): Promise<ServerSocket> {
  try {
    return Promise.resolve(open(addr, reusePort));
  } catch (e) {
    return Promise.reject(e);
  }
}

function open(addr: SocketAddress, reusePort: boolean): ServerSocket {
  const c = libc();
  const text = format(addr.hostname, addr.port, addr.family);
  const ip = parseIp(addr.hostname);
  if (!ip) throw new BindError(text, "not an IP address");
  const v6 = addr.family === 6;
  const fd = c.socket(v6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    const e = errnoName(c.errno());
    throw new BindError(text, bindReason(e, `socket() failed: ${e}`));
  }
  const fail = (what: string): never => {
    const e = errnoName(c.errno());
    c.close(fd);
    throw new BindError(text, bindReason(e, `${what} failed: ${e}`));
  };
  const wildcard = ip.every((b) => b === 0);
  if (v6 && !setInt(fd, IPPROTO_IPV6, IPV6_V6ONLY, 1)) fail("IPV6_V6ONLY");
  setInt(fd, SOL_SOCKET, SO_REUSEADDR, 1);
  if (reusePort && !setInt(fd, SOL_SOCKET, SO_REUSEPORT, 1)) fail("SO_REUSEPORT");
  if (!setInt(fd, SOL_SOCKET, SO_TIMESTAMPNS, 1)) fail("SO_TIMESTAMPNS");
  // Report software transmit timestamps, generated only for the replies that
  // ask (interleaved clients, see the loop); RX_FILTER (Linux 6.10) keeps
  // them off received packets, which SO_TIMESTAMPNS already stamps.
  if (
    !setInt(
      fd,
      SOL_SOCKET,
      SO_TIMESTAMPING,
      SOF_TIMESTAMPING_SOFTWARE | SOF_TIMESTAMPING_OPT_RX_FILTER,
    )
  ) setInt(fd, SOL_SOCKET, SO_TIMESTAMPING, SOF_TIMESTAMPING_SOFTWARE);
  // Beyond net.core.rmem_max needs CAP_NET_ADMIN; otherwise take what we may.
  if (!setInt(fd, SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)) setInt(fd, SOL_SOCKET, SO_RCVBUF, RCVBUF);
  setInt(fd, SOL_SOCKET, SO_SNDBUF, 1 << 20);
  // DF on replies (see the header comment); IPv6 has no ID on unfragmented packets.
  if (!v6) setInt(fd, IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_PROBE);
  if (wildcard) {
    if (v6) setInt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, 1);
    else setInt(fd, IPPROTO_IP, IP_PKTINFO, 1);
  }
  const sa = new Uint8Array(SOCKADDR_SIZE);
  const saLen = writeSockaddr(sa, ip, addr.port);
  if (c.bind(fd, sa, saLen) !== 0) fail("bind");
  const lenBuf = new Uint32Array([SOCKADDR_SIZE]);
  c.getsockname(fd, sa, new Uint8Array(lenBuf.buffer));
  const boundPort = (sa[2]! << 8) | sa[3]!;
  const efd = c.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (efd < 0) fail("eventfd");
  return new FfiSocket(fd, efd, format(addr.hostname, boundPort, addr.family), v6, wildcard);
}

/**
 * Binds a plain UDP socket to `addr` (no address or port sharing) and
 * closes it: null when that works, else the BindError line (see
 * udp.ts `probeAddress`).
 */
/**
 * Replies per `sendmmsg` for a batch of `m` that came while behind, after
 * `fullForMs` ms of full reads (-1: the last read was not full): chunks of
 * SEND_CHUNK, each with its own clock reading, until the backlog has
 * lasted SUSTAINED_MS; then the whole batch, for the highest rate.
 */
export function sendChunk(m: number, fullForMs: number): number {
  return fullForMs >= SUSTAINED_MS ? m : Math.min(m, SEND_CHUNK);
}

/** Requests `warmUpDriver` sends by default. */
export const WARM_UP_REQUESTS = 4_000;

/**
 * Runs this driver's packet loop (receive, respond, stamp, send, the
 * latency samples) on `requests` synthetic NTP requests through a private
 * socket on 127.0.0.1, before a worker binds its real addresses: the
 * first real requests then meet code the JIT has optimised, not the
 * interpreter (the first second after a start served with ~10× the usual
 * p99 |offset| without it; docs/benchmarks/serving.md). The requests come
 * in bursts of 16 and 64, so both the reply-by-reply and the batched path
 * run; they are sent from a pool thread (a nonblocking FFI call), so the
 * loop serves them on this thread as it serves clients. `responder` should
 * write to scratch state. Resolves when they are answered or after
 * `deadlineMs`; never throws (a warm-up that cannot run is skipped).
 */
export async function warmUpDriver(
  responder: Responder,
  requests = WARM_UP_REQUESTS,
  deadlineMs = 2000,
): Promise<void> {
  let sock: ServerSocket;
  try {
    sock = await openFfiSocket({ family: 4, hostname: "127.0.0.1", port: 0 }, false);
  } catch {
    return;
  }
  let answered = 0;
  const served = sock.serve(responder);
  const c = libc();
  const fd = c.socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  try {
    const to = new Uint8Array(SOCKADDR_SIZE);
    const len = writeSockaddr(
      to,
      new Uint8Array([127, 0, 0, 1]),
      Number(sock.address.split(":").pop()),
    );
    if (fd < 0 || c.connect(fd, to, len) !== 0) return;
    // 64 requests, each its own iovec and mmsghdr (connected: no name).
    const reqs = new Uint8Array(BATCH * REPLY);
    const iov = new BigUint64Array(BATCH * IOVEC_SIZE / 8);
    const hdrs = new Uint8Array(Math.max(OFF_HEAP, BATCH * MSGHDR.size));
    const hdr64 = new BigUint64Array(hdrs.buffer);
    const base = addressOf(reqs), iovBase = addressOf(new Uint8Array(iov.buffer));
    for (let i = 0; i < BATCH; i++) {
      reqs[i * REPLY] = (4 << 3) | 3; // NTPv4 client
      reqs[i * REPLY + 47] = i;
      iov[i * 2] = base + BigInt(i * REPLY);
      iov[i * 2 + 1] = BigInt(REPLY);
      hdr64[(i * MSGHDR.size + MSGHDR.iov) / 8] = iovBase + BigInt(i * IOVEC_SIZE);
      hdr64[(i * MSGHDR.size + MSGHDR.iovlen) / 8] = 1n;
    }
    const drain = new Uint8Array(2048);
    const end = performance.now() + deadlineMs;
    // Four sends in flight (pool threads), so the loop rarely runs dry.
    for (let round = 0; answered < requests && performance.now() < end; round++) {
      await Promise.all([16, 16, 16, BATCH].map((n) => c.sendmmsg_async(fd, hdrs, n, 0)));
      while (Number(c.recvfrom(fd, drain, 2048n, MSG_DONTWAIT, null, null)) > 0) answered++;
    }
  } finally {
    if (fd >= 0) c.close(fd);
    sock.close();
    await served.catch(() => {});
    // Learnt while the code was still being optimised (or faulted back in):
    // a prior for serving, replaced by serving's own samples.
    threadLatency.restart();
  }
}

export function probeBind(addr: SocketAddress): string | null {
  const c = libc();
  const text = format(addr.hostname, addr.port, addr.family);
  const ip = parseIp(addr.hostname);
  if (!ip) return new BindError(text, "not an IP address").message;
  const v6 = addr.family === 6;
  const fd = c.socket(v6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return null; // no socket to probe with: the workers will say why
  try {
    if (v6) setInt(fd, IPPROTO_IPV6, IPV6_V6ONLY, 1);
    const sa = new Uint8Array(SOCKADDR_SIZE);
    if (c.bind(fd, sa, writeSockaddr(sa, ip, addr.port)) === 0) return null;
    const e = errnoName(c.errno());
    return e === "EADDRINUSE" ? new BindError(text, bindReason(e, e)).message : null;
  } finally {
    c.close(fd);
  }
}

/** The sockets this thread (worker) is serving. */
const serving = new Set<number>();
/** Bumped when `serving` changes, so waitAny rebuilds its pollfd array. */
let servingVersion = 0;
let pollVersion = -1;
let pollSet = new Uint8Array(0);
let pollFds = new Int32Array(0);
let pollCount = 0;
let pollCountBig = 0n;

/**
 * Blocks up to SPIN_POLL_MS for any socket of this thread; returns a
 * ready fd (`mine` first), or -1. Synchronous: only while traffic flows.
 */
/** Whether the last `waitAny` saw POLLERR on `mine` (transmit timestamps in its error queue). */
let mineErr = false;

function waitAny(mine: number): number {
  if (pollVersion !== servingVersion) {
    pollVersion = servingVersion;
    pollCount = serving.size;
    pollCountBig = BigInt(pollCount);
    pollSet = new Uint8Array(Math.max(OFF_HEAP, pollCount * 8));
    pollFds = new Int32Array(pollSet.buffer);
    let i = 0;
    for (const fd of serving) {
      pollFds[i * 2] = fd;
      pollFds[i * 2 + 1] = POLLIN;
      i++;
    }
  }
  if (libc().poll(pollSet, pollCountBig, SPIN_POLL_MS) <= 0) return -1;
  let other = -1;
  for (let i = 0; i < pollCount; i++) {
    const revents = pollFds[i * 2 + 1]! >>> 16;
    if (revents === 0) continue;
    if (pollFds[i * 2] === mine) {
      mineErr = (revents & POLLERR) !== 0;
      return mine;
    }
    other = pollFds[i * 2]!;
  }
  return other;
}

class FfiSocket implements ServerSocket {
  readonly driver = "ffi-recvmmsg";
  readonly address: string;
  readonly #fd: number;
  readonly #efd: number;
  readonly #v6: boolean;
  readonly #pktinfo: boolean;
  #closed = false;
  #serving: Promise<void> | null = null;
  /** Set while held: the loop waits for it before reading again. */
  #held: PromiseWithResolvers<void> | null = null;
  /** Buffers the C structs point into: held here so the GC never frees them under the kernel. */
  #pinned: ArrayBufferView[] = [];

  constructor(fd: number, efd: number, address: string, v6: boolean, pktinfo: boolean) {
    this.#fd = fd;
    this.#efd = efd;
    this.address = address;
    this.#v6 = v6;
    this.#pktinfo = pktinfo;
  }

  serve(responder: Responder): Promise<void> {
    // Answering on time matters more than anything else this process does.
    favourThisThread(SERVER_NICE);
    serving.add(this.#fd);
    servingVersion++;
    this.#serving ??= this.#loop(responder).finally(() => {
      serving.delete(this.#fd);
      servingVersion++;
      libc().close(this.#fd);
      libc().close(this.#efd);
    });
    return this.#serving;
  }

  hold(): void {
    this.#held ??= Promise.withResolvers<void>();
  }

  release(): void {
    this.#held?.resolve();
    this.#held = null;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.release();
    // Wakes a pending poll; the loop sees #closed and returns.
    libc().write(this.#efd, new Uint8Array(new BigUint64Array([1n]).buffer), 8n);
    if (!this.#serving) {
      libc().close(this.#fd);
      libc().close(this.#efd);
    }
  }

  /** Sends the prepared replies [from, to); one that cannot go is counted and skipped. */
  #send(hdrs: Uint8Array[], from: number, to: number, responder: Responder): void {
    const c = libc();
    let at = from;
    while (at < to) {
      const sent = c.sendmmsg(this.#fd, hdrs[at]!, to - at, 0);
      if (sent > 0) {
        at += sent;
        continue;
      }
      if (sent < 0 && c.errno() === EINTR) continue;
      responder.sendFailed();
      at++;
    }
  }

  async #loop(responder: Responder): Promise<void> {
    const c = libc();
    const fd = this.#fd;
    const v6 = this.#v6;
    const pktinfo = this.#pktinfo;

    // Receive side: BATCH mmsghdrs, each with one iovec, a name and a control buffer.
    const rxHdr = new Uint8Array(BATCH * MSGHDR.size);
    const rxHdr32 = new Uint32Array(rxHdr.buffer);
    const rxHdr64 = new BigUint64Array(rxHdr.buffer);
    const rxIov = new Uint8Array(BATCH * IOVEC_SIZE);
    const rxIov64 = new BigUint64Array(rxIov.buffer);
    const rxBuf = new Uint8Array(BATCH * SLOT);
    const rxName = new Uint8Array(BATCH * 32);
    const rxCtrl = new Uint8Array(BATCH * RX_CTRL);
    const rxCtrl32 = new Int32Array(rxCtrl.buffer);
    const reqs: Uint8Array[] = [];
    const rxNameAddr = addressOf(rxName), rxBufAddr = addressOf(rxBuf);
    const rxCtrlAddr = addressOf(rxCtrl), rxIovAddr = addressOf(rxIov);
    // Name pointers as 32-bit halves, to point reply headers at them without BigInt.
    const nameLo = new Uint32Array(BATCH), nameHi = new Uint32Array(BATCH);
    for (let i = 0; i < BATCH; i++) {
      rxIov64[i * 2] = rxBufAddr + BigInt(i * SLOT);
      rxIov64[i * 2 + 1] = BigInt(SLOT);
      const h = i * MSGHDR.size / 8;
      const name = rxNameAddr + BigInt(i * 32);
      rxHdr64[h + MSGHDR.name / 8] = name;
      nameLo[i] = Number(name & 0xffffffffn);
      nameHi[i] = Number(name >> 32n);
      rxHdr64[h + MSGHDR.iov / 8] = rxIovAddr + BigInt(i * IOVEC_SIZE);
      rxHdr64[h + MSGHDR.iovlen / 8] = 1n;
      rxHdr64[h + MSGHDR.control / 8] = rxCtrlAddr + BigInt(i * RX_CTRL);
      reqs.push(rxBuf.subarray(i * SLOT, (i + 1) * SLOT));
    }

    // Send side: one reply slot per header, and a pktinfo cmsg when bound to a wildcard.
    const txHdr = new Uint8Array(BATCH * MSGHDR.size);
    const txHdr32 = new Uint32Array(txHdr.buffer);
    const txHdr64 = new BigUint64Array(txHdr.buffer);
    const txIov = new Uint8Array(BATCH * IOVEC_SIZE);
    const txIov32 = new Uint32Array(txIov.buffer);
    const txIov64 = new BigUint64Array(txIov.buffer);
    const txBuf = new Uint8Array(BATCH * TX_SLOT);
    const infoLen = v6 ? 20 : 12;
    const txCtrlSize = cmsgSpace(infoLen);
    const txCtrl = new Uint8Array(BATCH * txCtrlSize);
    const txCtrl32 = new Int32Array(txCtrl.buffer);
    const txBufAddr = addressOf(txBuf), txIovAddr = addressOf(txIov);
    const txCtrlAddr = addressOf(txCtrl);
    const txHdrChunks: Uint8Array[] = [];
    for (let j = 0; j < BATCH; j++) {
      txIov64[j * 2] = txBufAddr + BigInt(j * TX_SLOT);
      txIov64[j * 2 + 1] = BigInt(REPLY);
      const h = j * MSGHDR.size / 8;
      txHdr64[h + MSGHDR.iov / 8] = txIovAddr + BigInt(j * IOVEC_SIZE);
      txHdr64[h + MSGHDR.iovlen / 8] = 1n;
      if (pktinfo) {
        txHdr64[h + MSGHDR.control / 8] = txCtrlAddr + BigInt(j * txCtrlSize);
        txHdr64[h + MSGHDR.controllen / 8] = BigInt(txCtrlSize);
        const k = j * txCtrlSize / 4;
        txCtrl32[k] = CMSG_DATA + infoLen; // cmsg_len (low half of a size_t)
        txCtrl32[k + 2] = v6 ? IPPROTO_IPV6 : IPPROTO_IP;
        txCtrl32[k + 3] = v6 ? IPV6_PKTINFO : IP_PKTINFO;
      }
      txHdrChunks.push(txHdr.subarray(j * MSGHDR.size));
    }
    // Replies that ask for the kernel's transmit timestamp (REPLY_SAVE_TX,
    // while we keep up) are sent with a second control buffer: their
    // pktinfo, then an SO_TIMESTAMPING cmsg. The stamps come back on the
    // error queue with the reply, whose `rec` names the store entry.
    const tsCtrlSize = (pktinfo ? txCtrlSize : 0) + cmsgSpace(4);
    const tsCtrl = new Uint8Array(Math.max(OFF_HEAP, BATCH * tsCtrlSize));
    const tsCtrl32 = new Int32Array(tsCtrl.buffer);
    const tsCtrlAddr = addressOf(tsCtrl);
    for (let j = 0; j < BATCH; j++) {
      const k = (j * tsCtrlSize + (pktinfo ? txCtrlSize : 0)) / 4;
      tsCtrl32[k] = CMSG_DATA + 4;
      tsCtrl32[k + 2] = SOL_SOCKET;
      tsCtrl32[k + 3] = SO_TIMESTAMPING;
      tsCtrl32[k + 4] = SOF_TIMESTAMPING_TX_SOFTWARE;
    }
    // Each reply's control pointer and length as two 32-bit words: switching
    // a header between the two control buffers then allocates no BigInt.
    const pointerWords = (addr: bigint, size: number) => {
      const w = new Uint32Array(BATCH * 2);
      for (let j = 0; j < BATCH; j++) {
        const p = addr + BigInt(j * size);
        w[j * 2] = Number(p & 0xffffffffn);
        w[j * 2 + 1] = Number(p >> 32n);
      }
      return w;
    };
    const tsCtrlPtr = pointerWords(tsCtrlAddr, tsCtrlSize);
    const txCtrlPtr = pktinfo ? pointerWords(txCtrlAddr, txCtrlSize) : new Uint32Array(BATCH * 2);
    const txCtrlLen = pktinfo ? txCtrlSize : 0;
    const replyFlags = new Int32Array(BATCH);
    const errHdr = new Uint8Array(OFF_HEAP);
    const errHdr32 = new Uint32Array(errHdr.buffer);
    const errHdr64 = new BigUint64Array(errHdr.buffer);
    const errIov = new BigUint64Array(OFF_HEAP / 8);
    const errBuf = new Uint8Array(ERR_SLOT);
    const errCtrl = new Uint8Array(256);
    const errCtrl32 = new Int32Array(errCtrl.buffer);
    errIov[0] = addressOf(errBuf);
    errIov[1] = BigInt(ERR_SLOT);
    errHdr64[MSGHDR.iov / 8] = addressOf(new Uint8Array(errIov.buffer));
    errHdr64[MSGHDR.iovlen / 8] = 1n;
    errHdr64[MSGHDR.control / 8] = addressOf(errCtrl);
    this.#pinned = [
      rxHdr,
      rxIov,
      rxBuf,
      rxName,
      rxCtrl,
      txHdr,
      txIov,
      txBuf,
      txCtrl,
      tsCtrl,
      errHdr,
      errIov,
      errBuf,
      errCtrl,
    ];
    /** Kernel transmit stamps asked for and not read yet. */
    let txPending = 0;
    const latency = threadLatency;
    /** Reads the error queue: each kernel transmit stamp replaces the saved reading of its reply. */
    const drainTx = () => {
      for (;;) {
        errHdr32[MSGHDR.controllen / 4] = errCtrl.length; // high word stays 0
        errHdr32[MSGHDR.flags / 4] = 0;
        const n = Number(c.recvmsg(fd, errHdr, MSG_ERRQUEUE | MSG_DONTWAIT));
        if (n < 0) {
          if (c.errno() === EINTR) continue;
          return;
        }
        txPending = Math.max(0, txPending - 1);
        const clen = errHdr32[MSGHDR.controllen / 4]!; // under 4 GiB: the high word is 0
        for (let off = 0; off + CMSG_DATA <= clen;) {
          const k = off >> 2, cmLen = errCtrl32[k]!;
          if (cmLen < CMSG_DATA) break;
          if (errCtrl32[k + 2] === SOL_SOCKET && errCtrl32[k + 3] === SCM_TIMESTAMPING) {
            const sec = (errCtrl32[k + 4]! >>> 0) + errCtrl32[k + 5]! * 4294967296;
            const nsec = errCtrl32[k + 6]!;
            // The looped-back frame ends with our 48-byte reply: a latency
            // sample, or a reply whose transmit time interleaved mode keeps.
            const len = Math.min(n, ERR_SLOT);
            if (len >= REPLY && (sec !== 0 || nsec !== 0)) {
              if (latency.matched(errBuf, len - REPLY, sec, nsec)) {
                responder.sendLatency(latency.estimateNs * 1e-9);
              } else responder.saveTx(errBuf, len - REPLY, sec, nsec);
            }
            break;
          }
          off += (cmLen + 7) & ~7;
        }
      }
    };
    // Which received datagram each reply answers (for its pktinfo).
    const replyTo = new Int32Array(BATCH);
    // Where the pktinfo cmsg of each received datagram starts (int32 index), or -1.
    const infoAt = new Int32Array(BATCH);

    // V8 keeps typed arrays under 64 bytes inside its heap, where the GC
    // moves them; a buffer a pool thread writes to (poll_async) must not move.
    const ts = new Int32Array(OFF_HEAP / 4);
    const tsBytes = new Uint8Array(ts.buffer);
    const pfd = new Uint8Array(OFF_HEAP); // two struct pollfd: the socket and the eventfd
    const pfd32 = new Int32Array(pfd.buffer);
    pfd32[0] = fd;
    pfd32[1] = POLLIN;
    pfd32[2] = this.#efd;
    pfd32[3] = POLLIN;
    const client = newClientAddress();
    const nameLen = v6 ? SOCKADDR_SIZE : 16;
    const hdrWords = MSGHDR.size / 4;
    const ctrlWords = RX_CTRL / 4;
    let lastYield = performance.now();

    // The kernel rewrites name and control lengths only in the headers it fills.
    let used = BATCH;
    // Since when every read has filled a whole batch (ms), or -1.
    let fullSince = -1;
    // The last read took less than a full batch: the queue is likely empty,
    // so wait first instead of paying for a recvmmsg that finds nothing.
    let dry = false;
    while (!this.#closed) {
      if (this.#held) {
        await this.#held.promise;
        continue;
      }
      if (dry) {
        dry = false;
        if (txPending > 0) drainTx();
        // A short blocking wait is the cheapest wake-up while traffic
        // flows. It watches every socket of this thread, so a busy socket
        // never makes another one wait: if that one is ready, we yield to it.
        const now = performance.now();
        if (now - lastYield < YIELD_MS) {
          const ready = waitAny(fd);
          if (ready === fd) {
            if (mineErr) drainTx();
            continue;
          }
          if (ready >= 0) {
            await c.poll_async(pfd, 2n, 0);
            lastYield = performance.now();
            continue;
          }
        }
        await c.poll_async(pfd, 2n, IDLE_POLL_MS);
        if (((pfd32[1]! >>> 16) & POLLERR) !== 0) drainTx();
        lastYield = performance.now();
        continue;
      }
      for (let i = 0; i < used; i++) {
        const h = i * hdrWords;
        rxHdr32[h + MSGHDR.namelen / 4] = 32;
        rxHdr32[h + MSGHDR.controllen / 4] = RX_CTRL;
        rxHdr32[h + MSGHDR.controllen / 4 + 1] = 0;
      }
      used = 0;
      const n = c.recvmmsg(fd, rxHdr, BATCH, MSG_DONTWAIT, null);
      if (n <= 0) {
        const err = n < 0 ? c.errno() : EAGAIN;
        if (err === EINTR) continue;
        if (err !== EAGAIN) {
          if (this.#closed) break;
          // A socket error (e.g. ENOMEM) must not spin the CPU; wait and retry.
          await c.poll_async(pfd, 2n, 10);
          continue;
        }
        dry = true;
        continue;
      }
      used = n;
      dry = n < BATCH;
      // Full reads for SUSTAINED_MS: a lasting backlog, not a burst or the
      // queue a hold left (see the send below).
      if (n < BATCH) fullSince = -1;
      else if (fullSince < 0) fullSince = performance.now();
      const fullForMs = fullSince < 0 ? -1 : performance.now() - fullSince;

      let m = 0;
      for (let i = 0; i < n; i++) {
        const h = i * hdrWords;
        let len = rxHdr32[h + MSGHDR.msgLen / 4]!;
        if ((rxHdr32[h + MSGHDR.flags / 4]! & MSG_TRUNC) !== 0) len = 0; // counted as malformed
        // Control messages: kernel receive time, and the address the request was sent to.
        let sec = 0, nsec = -1;
        infoAt[i] = -1;
        const ctrlLen = rxHdr32[h + MSGHDR.controllen / 4]!;
        const base = i * ctrlWords;
        for (let off = 0; off + CMSG_DATA <= ctrlLen;) {
          const k = base + (off >> 2);
          const cmLen = rxCtrl32[k]!;
          if (cmLen < CMSG_DATA) break;
          const level = rxCtrl32[k + 2]!, type = rxCtrl32[k + 3]!;
          if (level === SOL_SOCKET && type === SCM_TIMESTAMPNS) {
            sec = (rxCtrl32[k + 4]! >>> 0) + rxCtrl32[k + 5]! * 4294967296;
            nsec = rxCtrl32[k + 6]!;
          } else if (
            (level === IPPROTO_IP && type === IP_PKTINFO) ||
            (level === IPPROTO_IPV6 && type === IPV6_PKTINFO)
          ) {
            infoAt[i] = k + 4;
          }
          off += (cmLen + 7) & ~7;
        }
        if (nsec < 0) { // no kernel timestamp (should not happen): read the clock now
          c.clock_gettime(CLOCK_REALTIME, tsBytes);
          sec = (ts[0]! >>> 0) + ts[1]! * 4294967296;
          nsec = ts[2]!;
        }
        const nb = i * 32;
        const port = (rxName[nb + 2]! << 8) | rxName[nb + 3]!;
        if (v6) setClientAddress(client, rxName, nb + 8, 16, port);
        else setClientAddress(client, rxName, nb + 4, 4, port);
        const req = reqs[i]!;
        const r = responder.respond(req, len, client, sec, nsec, txBuf, m * TX_SLOT);
        if (r === NO_REPLY) continue;
        const t = m * hdrWords;
        txHdr32[t + MSGHDR.name / 4] = nameLo[i]!;
        txHdr32[t + MSGHDR.name / 4 + 1] = nameHi[i]!;
        txHdr32[t + MSGHDR.namelen / 4] = nameLen;
        txIov32[m * 4 + 2] = r & REPLY_LENGTH;
        replyFlags[m] = r;
        replyTo[m] = i;
        m++;
      }
      if (pktinfo) {
        for (let j = 0; j < m; j++) {
          const k = j * (txCtrlSize >> 2) + 4;
          const src = infoAt[replyTo[j]!]!;
          if (src < 0) {
            for (let w = 0; w < 5; w++) txCtrl32[k + w] = 0;
          } else if (v6) { // in6_pktinfo: addr[16], ifindex
            for (let w = 0; w < 5; w++) txCtrl32[k + w] = rxCtrl32[src + w]!;
          } else { // in_pktinfo: ifindex, spec_dst, addr -> send from addr
            txCtrl32[k] = 0;
            txCtrl32[k + 1] = rxCtrl32[src + 2]!;
            txCtrl32[k + 2] = 0;
          }
        }
      }
      // Keeping up (less than a whole batch of replies): each reply is
      // stamped right before its own send, as chronyd does. Behind: chunks,
      // stamps spaced by the measured cost of a message (see the header comment).
      if (m < BATCH) {
        const nowMs = performance.now();
        for (let j = 0; j < m; j++) {
          c.clock_gettime(CLOCK_REALTIME, tsBytes);
          const sec = (ts[0]! >>> 0) + ts[1]! * 4294967296, nsec = ts[2]!;
          // The departure as well as basic mode can predict it.
          let xs = sec, xn = nsec + latency.estimateNs;
          if (xn >= 1e9) {
            xs++;
            xn -= 1e9;
          }
          const f = replyFlags[j]!;
          if ((f & REPLY_STAMPED) === 0) responder.stamp(txBuf, j * TX_SLOT, xs, xn);
          if ((f & REPLY_SEAL) !== 0) responder.seal(txBuf, j * TX_SLOT, f & REPLY_LENGTH);
          if ((f & REPLY_SAVE_TX) !== 0 && (f & REPLY_LENGTH) !== REPLY) {
            // The error queue's frame is matched by a bare 48-byte reply at
            // its end: a longer one (a MAC) keeps the reading, as when behind.
            responder.saveTx(txBuf, j * TX_SLOT, xs, xn);
            this.#send(txHdrChunks, j, j + 1, responder);
            continue;
          }
          if ((f & REPLY_SAVE_TX) === 0) {
            if (
              (f & (REPLY_STAMPED | REPLY_SEAL)) !== 0 || (f & REPLY_LENGTH) !== REPLY ||
              !latency.due(nowMs)
            ) {
              this.#send(txHdrChunks, j, j + 1, responder);
              continue;
            }
            latency.sent(txBuf, j * TX_SLOT, sec, nsec);
          } else {
            // Saved now; the kernel's stamp replaces it when drainTx reads it.
            responder.saveTx(txBuf, j * TX_SLOT, xs, xn);
          }
          if (pktinfo) {
            const from = j * txCtrlSize / 4, to = j * tsCtrlSize / 4;
            for (let w = 0; w < txCtrlSize / 4; w++) tsCtrl32[to + w] = txCtrl32[from + w]!;
          }
          const hw = j * MSGHDR.size / 4;
          txHdr32[hw + MSGHDR.control / 4] = tsCtrlPtr[j * 2]!;
          txHdr32[hw + MSGHDR.control / 4 + 1] = tsCtrlPtr[j * 2 + 1]!;
          txHdr32[hw + MSGHDR.controllen / 4] = tsCtrlSize;
          this.#send(txHdrChunks, j, j + 1, responder);
          txHdr32[hw + MSGHDR.control / 4] = txCtrlPtr[j * 2]!;
          txHdr32[hw + MSGHDR.control / 4 + 1] = txCtrlPtr[j * 2 + 1]!;
          txHdr32[hw + MSGHDR.controllen / 4] = txCtrlLen;
          txPending++;
        }
        if (txPending > 0) drainTx();
      } else {
        // Behind: chunks of SEND_CHUNK replies, one clock reading and one
        // sendmmsg each, reply k of a chunk stamped t0 + k * c; in a
        // sustained backlog the whole batch in one sendmmsg.
        const chunk = sendChunk(m, fullForMs);
        for (let at = 0; at < m; at += chunk) {
          const to = Math.min(m, at + chunk);
          c.clock_gettime(CLOCK_REALTIME, tsBytes);
          const t0Sec = (ts[0]! >>> 0) + ts[1]! * 4294967296, t0Nsec = ts[2]!;
          for (let j = at; j < to; j++) {
            let sec = t0Sec;
            let ns = t0Nsec + latency.estimateNs + Math.round((j - at) * threadSendCost.ns);
            if (ns >= 1e9) {
              sec++;
              ns -= 1e9;
            }
            const f = replyFlags[j]!;
            if ((f & REPLY_STAMPED) === 0) responder.stamp(txBuf, j * TX_SLOT, sec, ns);
            if ((f & REPLY_SEAL) !== 0) responder.seal(txBuf, j * TX_SLOT, f & REPLY_LENGTH);
            // Behind: no kernel stamps (one more system call each); the spaced reading is saved.
            if ((f & REPLY_SAVE_TX) !== 0) responder.saveTx(txBuf, j * TX_SLOT, sec, ns);
          }
          this.#send(txHdrChunks, at, to, responder);
          c.clock_gettime(CLOCK_REALTIME, tsBytes);
          const took = ((ts[0]! >>> 0) + ts[1]! * 4294967296 - t0Sec) * 1e9 + ts[2]! - t0Nsec;
          const sample = Math.min(Math.max(took / (to - at), 0), SEND_COST_MAX_NS);
          threadSendCost.ns += (sample - threadSendCost.ns) * SEND_COST_GAIN;
        }
      }
      const now = performance.now();
      if (now - lastYield >= YIELD_MS) {
        // Let the event loop run (control messages, stop) while busy.
        await c.poll_async(pfd, 2n, 0);
        lastYield = performance.now();
      }
    }
  }
}
