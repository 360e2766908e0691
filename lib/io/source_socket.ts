/**
 * The UDP transport of the peer engine's sources: one connected socket per
 * association, through libc via Deno FFI, with kernel timestamps both ways
 * (chrony's ntp_io_linux.c practice):
 *
 * - receive: `SO_TIMESTAMPNS`, the time the kernel took the datagram in;
 * - transmit: `SO_TIMESTAMPING` with `SOF_TIMESTAMPING_TX_SOFTWARE`, the time
 *   the datagram was handed to the device, read back from `MSG_ERRQUEUE`
 *   with the packet itself, which is matched by its transmit timestamp;
 * - the clock is read right before each `send`; that reading is t1 until
 *   the kernel's stamp replaces it, and the transmit timestamp written into
 *   symmetric-mode packets.
 *
 * Client and pool sources get a socket on an ephemeral port, connected to
 * the server (as chronyd's client sockets: replies from anyone else never
 * reach it). Symmetric peers must be answered from the server's port, so
 * their socket binds the server's listen address with SO_REUSEADDR and
 * SO_REUSEPORT and connects to the peer: Linux delivers a datagram to the
 * connected socket whose 4-tuple matches it exactly before any socket of
 * the server's reuseport group (connected sockets are never picked by the
 * group's hash), so the peer's packets come here and everyone else's go to
 * the server workers.
 *
 * All sockets are watched by one `poll` on a pool thread (nonblocking FFI),
 * so the event loop keeps turning; an eventfd wakes it when the set
 * changes. The event loop's latency shows in nothing: both timestamps are
 * the kernel's. On each wake-up the error queue (transmit stamps) is read
 * before the data (replies), so a reply that came back on loopback before
 * we read its request's transmit stamp still finds that stamp (chrony reads
 * the error queue first for the same reason). A stamp that arrives later
 * still replaces t1 of the last send (chrony's `update_tx_timestamp`); the
 * reply already handled keeps the clock reading.
 */
import { SendLatency } from "./send_latency.ts";
import { formatIp, parseIp } from "../ntp/address.ts";
import {
  addressOf,
  AF_INET,
  AF_INET6,
  CLOCK_REALTIME,
  CMSG_DATA,
  EAGAIN,
  EFD_CLOEXEC,
  EFD_NONBLOCK,
  EINTR,
  errnoName,
  IP_ADD_MEMBERSHIP,
  IP_MULTICAST_IF,
  IP_MULTICAST_TTL,
  IPPROTO_IP,
  IPPROTO_IPV6,
  IPV6_ADD_MEMBERSHIP,
  IPV6_MULTICAST_HOPS,
  IPV6_MULTICAST_IF,
  libc,
  MSG_DONTWAIT,
  MSG_ERRQUEUE,
  MSGHDR,
  POLLERR,
  POLLIN,
  SCM_TIMESTAMPING,
  SCM_TIMESTAMPNS,
  SO_BROADCAST,
  SO_REUSEADDR,
  SO_REUSEPORT,
  SO_TIMESTAMPING,
  SO_TIMESTAMPNS,
  SOCK_CLOEXEC,
  SOCK_DGRAM,
  SOCK_NONBLOCK,
  SOF_TIMESTAMPING_SOFTWARE,
  SOF_TIMESTAMPING_TX_SOFTWARE,
  SOL_SOCKET,
  writeSockaddr,
} from "./libc.ts";

/** What the driver knows of the last packet it sent on an association. */
export interface SentPacket {
  /** The transmit timestamp the packet carried (NTP 32.32). */
  xmt: bigint;
  /** When it left, raw Unix seconds: the kernel's stamp, else the clock read before the send. */
  t1: number;
  /** Whether `t1` is the kernel's transmit timestamp. */
  kernel: boolean;
}

/** Where a source socket sends from and to. */
export interface SourceEndpoint {
  host: string;
  port: number;
  /** Bind here first (symmetric peers: the server's listen address and port). */
  local?: { host: string; port: number };
  /**
   * A broadcast server's socket (`host` a group or broadcast address):
   * SO_BROADCAST, and for a group the TTL (IPv6: hop limit) and the
   * outgoing interface (`ifindex`, 0 = the route's).
   */
  broadcast?: { ttl: number; ifindex: number };
}

/** A broadcast listener: bound to a group or broadcast address and port, joined on `ifindex` (0 = the route's). */
export interface ListenerEndpoint {
  host: string;
  port: number;
  ifindex: number;
}

/** Writes the transmit timestamp into `bytes` from a raw clock reading, right before the send. */
export type XmtWriter = (bytes: Uint8Array, sec: number, nsec: number) => void;

/**
 * Called for each datagram from a socket's peer: `t4` is the kernel
 * receive time, raw Unix seconds; `from` is the sender (listeners only).
 */
export type PacketHandler = (
  id: string,
  bytes: Uint8Array,
  t4: number,
  from?: { host: string; port: number },
) => void;

/** Counts of the transport, for status and tests. */
export interface SourceSocketCounters {
  sent: number;
  sendErrors: number;
  received: number;
  /** Sends whose t1 became the kernel's transmit timestamp. */
  kernelTx: number;
  /** Datagrams whose receive time is the kernel's. */
  kernelRx: number;
  /** Loop steps that threw (a handler or an xmt writer): counted, the loop goes on. */
  handlerErrors: number;
}

const SLOT = 2048;
const CTRL = 512;
/** Bytes that make V8 put a typed array's storage outside its moving heap. */
const OFF_HEAP = 128;
const IDLE_POLL_MS = 1000;
const NTP_HEADER = 48;

interface Sock {
  id: string;
  fd: number;
  /** Peer address as bytes and port, to drop anything else that reaches the socket. */
  ip: Uint8Array;
  port: number;
  last: SentPacket | null;
  /** A listener: datagrams from anyone, handed on with their sender. */
  listen: boolean;
  /** Length of the last packet sent (NTS packets carry fields after the header). */
  lastLength: number;
}

/**
 * A non-blocking UDP socket with kernel receive timestamps (`SO_TIMESTAMPNS`)
 * for association `id`, and `fail(what)`, which closes it and returns the
 * one-line error naming `what` and errno; or that line when it cannot be made.
 */
function stampingSocket(
  id: string,
  v6: boolean,
): { fd: number; fail: (what: string) => string } | string {
  const c = libc();
  const fd = c.socket(v6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return `${id}: socket() failed: ${errnoName(c.errno())}`;
  const fail = (what: string): string => {
    const e = errnoName(c.errno());
    c.close(fd);
    return `${id}: ${what} failed: ${e}`;
  };
  if (!setInt(fd, SOL_SOCKET, SO_TIMESTAMPNS, 1)) return fail("SO_TIMESTAMPNS");
  return { fd, fail };
}

function setInt(fd: number, level: number, opt: number, value: number): boolean {
  const v = new Int32Array([value]);
  return libc().setsockopt(fd, level, opt, new Uint8Array(v.buffer), 4) === 0;
}

/** Sets an IPv4 option that takes a struct ip_mreqn: group (or none), any local address, ifindex. */
function setMreqn(fd: number, opt: number, group: Uint8Array | null, ifindex: number): boolean {
  const m = new Uint8Array(12);
  if (group) m.set(group, 0);
  new DataView(m.buffer).setInt32(8, ifindex, true);
  return libc().setsockopt(fd, IPPROTO_IP, opt, m, 12) === 0;
}

/** The engine's sockets, watched by one poll loop. */
export class SourceSockets {
  /** Reading-to-kernel-stamp latency of our sends; symmetric `xmt`s are written that much later. */
  readonly sendLatency = new SendLatency();
  readonly counters: SourceSocketCounters = {
    sent: 0,
    sendErrors: 0,
    received: 0,
    kernelTx: 0,
    kernelRx: 0,
    handlerErrors: 0,
  };
  readonly #onPacket: PacketHandler;
  readonly #socks = new Map<string, Sock>();
  /** Packets `send` queued for the loop to send between two polls. */
  readonly #outbox: { s: Sock; bytes: Uint8Array; writeXmt: XmtWriter | undefined }[] = [];
  readonly #efd: number;
  #changed = true;
  #stopped = false;
  readonly #loop: Promise<void>;
  // One receive buffer set, reused for every read (the loop is the only reader).
  readonly #hdr = new Uint8Array(OFF_HEAP);
  readonly #hdr32 = new Uint32Array(this.#hdr.buffer);
  readonly #hdr64 = new BigUint64Array(this.#hdr.buffer);
  readonly #iov = new Uint8Array(OFF_HEAP);
  readonly #buf = new Uint8Array(SLOT);
  readonly #name = new Uint8Array(OFF_HEAP);
  readonly #ctrl = new Uint8Array(CTRL);
  readonly #ctrlView = new DataView(this.#ctrl.buffer);
  readonly #ts = new BigInt64Array(OFF_HEAP / 8);
  readonly #tsBytes = new Uint8Array(this.#ts.buffer);
  readonly #sa = new Uint8Array(OFF_HEAP);

  /** Opens the poll loop; throws when libc cannot be reached through FFI. */
  constructor(onPacket: PacketHandler) {
    this.#onPacket = onPacket;
    const c = libc();
    this.#efd = c.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (this.#efd < 0) throw new Error(`eventfd failed: ${errnoName(c.errno())}`);
    const iov64 = new BigUint64Array(this.#iov.buffer);
    iov64[0] = addressOf(this.#buf);
    iov64[1] = BigInt(SLOT);
    this.#hdr64[MSGHDR.name / 8] = addressOf(this.#name);
    this.#hdr64[MSGHDR.iov / 8] = addressOf(this.#iov);
    this.#hdr64[MSGHDR.iovlen / 8] = 1n;
    this.#hdr64[MSGHDR.control / 8] = addressOf(this.#ctrl);
    this.#loop = this.#run();
  }

  /**
   * Opens the socket of association `id`. Returns null, or one line saying
   * why it cannot (for example `127.0.0.1:123: bind failed: EADDRINUSE`).
   */
  open(id: string, to: SourceEndpoint): string | null {
    this.close(id);
    const c = libc();
    const ip = parseIp(to.host);
    if (!ip) return `${id}: not an IP address`;
    if (!(to.port > 0 && to.port < 65536)) return `${id}: port ${to.port} is out of range`;
    const v6 = ip.length === 16;
    const made = stampingSocket(id, v6);
    if (typeof made === "string") return made;
    const { fd, fail } = made;
    // Without transmit stamps t1 is the clock read before the send: worse, not broken.
    setInt(
      fd,
      SOL_SOCKET,
      SO_TIMESTAMPING,
      SOF_TIMESTAMPING_TX_SOFTWARE | SOF_TIMESTAMPING_SOFTWARE,
    );
    if (to.local) {
      const lip = parseIp(to.local.host);
      if (!lip || (lip.length === 16) !== v6) return fail("bind (address family)");
      setInt(fd, SOL_SOCKET, SO_REUSEADDR, 1);
      setInt(fd, SOL_SOCKET, SO_REUSEPORT, 1);
      const n = writeSockaddr(this.#sa, lip, to.local.port);
      if (c.bind(fd, this.#sa, n) !== 0) return fail(`bind to port ${to.local.port}`);
    }
    if (to.broadcast) {
      // SO_BROADCAST before connect: connecting to a broadcast address needs it.
      if (!v6 && !setInt(fd, SOL_SOCKET, SO_BROADCAST, 1)) return fail("SO_BROADCAST");
      const { ttl, ifindex } = to.broadcast;
      if (v6) {
        if (!setInt(fd, IPPROTO_IPV6, IPV6_MULTICAST_HOPS, ttl)) return fail("IPV6_MULTICAST_HOPS");
        if (ifindex && !setInt(fd, IPPROTO_IPV6, IPV6_MULTICAST_IF, ifindex)) {
          return fail("IPV6_MULTICAST_IF");
        }
      } else if ((ip[0]! & 0xf0) === 0xe0) {
        if (!setInt(fd, IPPROTO_IP, IP_MULTICAST_TTL, ttl)) return fail("IP_MULTICAST_TTL");
        if (ifindex && !setMreqn(fd, IP_MULTICAST_IF, null, ifindex)) {
          return fail("IP_MULTICAST_IF");
        }
      }
    }
    const n = writeSockaddr(this.#sa, ip, to.port);
    if (c.connect(fd, this.#sa, n) !== 0) return fail("connect");
    this.#socks.set(id, { id, fd, ip, port: to.port, last: null, listen: false, lastLength: 0 });
    this.#wake();
    return null;
  }

  /**
   * Opens broadcast listener `id`: a socket bound to the group or
   * broadcast address and port (SO_REUSEADDR and SO_REUSEPORT, beside the
   * server's wildcard sockets: a datagram to a group or broadcast address
   * reaches every socket bound to it or to the wildcard, and unicast never
   * reaches this one), with kernel receive timestamps, joined to the group
   * for a multicast address. Returns null, or one line saying why not.
   */
  listen(id: string, at: ListenerEndpoint): string | null {
    this.close(id);
    const c = libc();
    const ip = parseIp(at.host);
    if (!ip) return `${id}: not an IP address`;
    const v6 = ip.length === 16;
    const made = stampingSocket(id, v6);
    if (typeof made === "string") return made;
    const { fd, fail } = made;
    setInt(fd, SOL_SOCKET, SO_REUSEADDR, 1);
    setInt(fd, SOL_SOCKET, SO_REUSEPORT, 1);
    const n = writeSockaddr(this.#sa, ip, at.port);
    if (c.bind(fd, this.#sa, n) !== 0) return fail(`bind to ${at.host} port ${at.port}`);
    if (v6) {
      const mreq = new Uint8Array(20);
      mreq.set(ip, 0);
      new DataView(mreq.buffer).setUint32(16, at.ifindex, true);
      if (c.setsockopt(fd, IPPROTO_IPV6, IPV6_ADD_MEMBERSHIP, mreq, 20) !== 0) {
        return fail("IPV6_ADD_MEMBERSHIP");
      }
    } else if ((ip[0]! & 0xf0) === 0xe0 && !setMreqn(fd, IP_ADD_MEMBERSHIP, ip, at.ifindex)) {
      return fail("IP_ADD_MEMBERSHIP");
    }
    this.#socks.set(id, { id, fd, ip, port: at.port, last: null, listen: true, lastLength: 0 });
    this.#wake();
    return null;
  }

  /** Closes the socket of association `id`, if open. */
  close(id: string): void {
    const s = this.#socks.get(id);
    if (!s) return;
    this.#socks.delete(id);
    libc().close(s.fd);
    this.#wake();
  }

  /** Whether association `id` has a socket. */
  has(id: string): boolean {
    return this.#socks.has(id);
  }

  /**
   * Queues `bytes` for association `id`'s socket; the loop sends it within
   * one event-loop turn (see `#flushSends`). The clock is read right
   * before the system call; with `writeXmt` that reading is written into
   * the packet as its transmit timestamp. Returns false when there is no
   * such socket or the packet is shorter than an NTP header; a send the
   * kernel refuses is counted in `sendErrors`.
   */
  send(id: string, bytes: Uint8Array, writeXmt?: XmtWriter): boolean {
    const s = this.#socks.get(id);
    if (!s || bytes.length < NTP_HEADER) return false;
    this.#outbox.push({ s, bytes, writeXmt });
    this.#wake();
    return true;
  }

  /**
   * Sends what `send` queued. The loop calls it while no `poll` is in
   * flight: a thread asleep in `poll` on the socket is woken by the
   * transmit timestamp the kernel queues during `send()` and preempts the
   * sending thread before the packet reaches the receive path, which put
   * 2–35 µs between t1 and the peer's receive stamp on loopback instead of
   * 2 µs. Then the stamps are read at once: software stamps are queued
   * within `send()` on loopback and most drivers.
   */
  #flushSends(): void {
    const c = libc();
    const sent = new Set<Sock>();
    for (const { s, bytes, writeXmt } of this.#outbox.splice(0)) {
      if (this.#socks.get(s.id) !== s) continue; // closed meanwhile
      c.clock_gettime(CLOCK_REALTIME, this.#tsBytes);
      const sec = Number(this.#ts[0]), nsec = Number(this.#ts[1]);
      if (writeXmt) {
        // The departure as well as we can predict it (send_latency.ts).
        const at = nsec + Math.round(this.sendLatency.estimate * 1e9);
        writeXmt(bytes, sec + Math.floor(at / 1e9), at % 1e9);
      }
      let r: number;
      do r = Number(
        c.send(s.fd, bytes as Uint8Array<ArrayBuffer>, BigInt(bytes.length), 0),
      ); while (
        r < 0 && c.errno() === EINTR
      );
      if (r < 0) {
        this.counters.sendErrors++;
        continue;
      }
      this.counters.sent++;
      const xmt = new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(40);
      s.last = { xmt, t1: sec + nsec * 1e-9, kernel: false };
      s.lastLength = bytes.length;
      sent.add(s);
    }
    for (const s of sent) this.#readErrors(s);
  }

  /** The last packet sent on association `id`, or null. */
  lastSent(id: string): SentPacket | null {
    return this.#socks.get(id)?.last ?? null;
  }

  /** Closes every socket and ends the loop. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    for (const id of [...this.#socks.keys()]) this.close(id);
    this.#wake();
    await this.#loop;
    libc().close(this.#efd);
  }

  #wake(): void {
    this.#changed = true;
    libc().write(this.#efd, new Uint8Array(new BigUint64Array([1n]).buffer), 8n);
  }

  async #run(): Promise<void> {
    const c = libc();
    let pfd = new Uint8Array(OFF_HEAP);
    let pfd32 = new Int32Array(pfd.buffer);
    let order: Sock[] = [];
    const drain = new Uint8Array(8);
    while (!this.#stopped) {
      if (this.#outbox.length > 0) this.#guarded(() => this.#flushSends());
      if (this.#changed) {
        this.#changed = false;
        order = [...this.#socks.values()];
        const size = Math.max(OFF_HEAP, (order.length + 1) * 8);
        if (size > pfd.length) {
          pfd = new Uint8Array(size);
          pfd32 = new Int32Array(pfd.buffer);
        }
        pfd32[0] = this.#efd;
        pfd32[1] = POLLIN;
        order.forEach((s, i) => {
          pfd32[(i + 1) * 2] = s.fd;
          pfd32[(i + 1) * 2 + 1] = POLLIN; // POLLERR is always reported
        });
      }
      const n = order.length + 1;
      const ready = await c.poll_async(pfd, BigInt(n), IDLE_POLL_MS);
      if (this.#stopped) break;
      if (ready <= 0) continue;
      if ((pfd32[1]! >>> 16) !== 0) c.read(this.#efd, drain, 8n);
      for (let i = 0; i < order.length; i++) {
        const revents = pfd32[(i + 1) * 2 + 1]! >>> 16;
        const s = order[i]!;
        if (revents === 0 || this.#socks.get(s.id) !== s) continue;
        if ((revents & POLLERR) !== 0) this.#guarded(() => this.#readErrors(s));
        if ((revents & POLLIN) !== 0) this.#guarded(() => this.#readPackets(s));
      }
    }
  }

  /** Runs one step of the loop; a failure is counted, never the end of the loop. */
  #guarded(step: () => void): void {
    try {
      step();
    } catch {
      this.counters.handlerErrors++;
    }
  }

  /** One recvmsg into the shared buffers; returns the length, or -1 when nothing more is there. */
  #recv(fd: number, flags: number): number {
    const c = libc();
    for (;;) {
      this.#hdr32[MSGHDR.namelen / 4] = 32;
      this.#hdr64[MSGHDR.controllen / 8] = BigInt(CTRL);
      this.#hdr32[MSGHDR.flags / 4] = 0;
      const r = Number(c.recvmsg(fd, this.#hdr, flags | MSG_DONTWAIT));
      if (r >= 0) return r;
      const e = c.errno();
      if (e === EINTR) continue;
      // EAGAIN: drained. Anything else (ICMP unreachable reported as
      // ECONNREFUSED, say) is consumed by this call: the reach register shows it.
      if (e === EAGAIN) return -1;
      if (flags & MSG_ERRQUEUE) return -1;
    }
  }

  /**
   * Walks the control messages of the last read; returns the timespec of
   * the first one of `type` at SOL_SOCKET (seconds), or -1.
   */
  #stamp(type: number): number {
    const len = Number(this.#hdr64[MSGHDR.controllen / 8]);
    const v = this.#ctrlView;
    for (let off = 0; off + CMSG_DATA <= len;) {
      const cmLen = v.getUint32(off, true);
      if (cmLen < CMSG_DATA) break;
      if (v.getInt32(off + 8, true) === SOL_SOCKET && v.getInt32(off + 12, true) === type) {
        const sec = Number(v.getBigInt64(off + CMSG_DATA, true));
        const nsec = Number(v.getBigInt64(off + CMSG_DATA + 8, true));
        if (sec !== 0 || nsec !== 0) return sec + nsec * 1e-9;
      }
      off += (cmLen + 7) & ~7;
    }
    return -1;
  }

  /**
   * Transmit stamps: the looped-back packet ends with our NTP packet
   * (`lastLength` bytes, fields included), matched by its xmt.
   */
  #readErrors(s: Sock): void {
    for (;;) {
      const len = this.#recv(s.fd, MSG_ERRQUEUE);
      if (len < 0) return;
      const t = this.#stamp(SCM_TIMESTAMPING);
      if (t < 0 || len < s.lastLength || s.lastLength < NTP_HEADER || !s.last) continue;
      const xmt = new DataView(this.#buf.buffer).getBigUint64(len - s.lastLength + 40);
      if (xmt !== s.last.xmt) continue; // an older send's stamp
      if (!s.last.kernel) this.sendLatency.add(t - s.last.t1);
      s.last.t1 = t;
      if (!s.last.kernel) this.counters.kernelTx++;
      s.last.kernel = true;
    }
  }

  #readPackets(s: Sock): void {
    const c = libc();
    for (;;) {
      const len = this.#recv(s.fd, 0);
      if (len < 0) return;
      if (!s.listen && !this.#fromPeer(s)) continue;
      let t4 = this.#stamp(SCM_TIMESTAMPNS);
      if (t4 < 0) {
        c.clock_gettime(CLOCK_REALTIME, this.#tsBytes);
        t4 = Number(this.#ts[0]) + Number(this.#ts[1]) * 1e-9;
      } else this.counters.kernelRx++;
      this.counters.received++;
      try {
        const bytes = this.#buf.slice(0, Math.min(len, SLOT));
        if (s.listen) this.#onPacket(s.id, bytes, t4, this.#sender());
        else this.#onPacket(s.id, bytes, t4);
      } catch {
        // The handler's own failure must not end the loop every source depends on.
        this.counters.handlerErrors++;
      }
      if (this.#socks.get(s.id) !== s) return; // closed by the handler
    }
  }

  /** The sender of the last datagram read (its sockaddr). */
  #sender(): { host: string; port: number } {
    const nm = this.#name;
    const port = (nm[2]! << 8) | nm[3]!;
    const family = nm[0]! | (nm[1]! << 8);
    const host = family === AF_INET6 ? formatIp(nm.slice(8, 24)) : formatIp(nm.slice(4, 8));
    return { host, port };
  }

  /** Whether the last datagram came from the socket's peer (a packet queued before connect may not). */
  #fromPeer(s: Sock): boolean {
    const nm = this.#name;
    const port = (nm[2]! << 8) | nm[3]!;
    if (port !== s.port) return false;
    const at = s.ip.length === 4 ? 4 : 8;
    for (let i = 0; i < s.ip.length; i++) if (nm[at + i] !== s.ip[i]) return false;
    return true;
  }
}
