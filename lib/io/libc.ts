/**
 * The few libc calls the Linux UDP driver needs, through Deno FFI, with
 * the constants and struct layouts of Linux on 64-bit (x86_64, aarch64):
 * LP64, so pointers and size_t are 8 bytes and `struct msghdr` is 56.
 */

/** Socket and errno constants (Linux, asm-generic). */
export const AF_INET = 2;
export const AF_INET6 = 10;
export const SOCK_DGRAM = 2;
export const SOCK_NONBLOCK = 0o4000;
export const SOCK_CLOEXEC = 0o2000000;
export const SOL_SOCKET = 1;
export const SO_REUSEADDR = 2;
export const SO_SNDBUF = 7;
export const SO_RCVBUF = 8;
export const SO_REUSEPORT = 15;
export const SO_BROADCAST = 6;
export const SO_RCVBUFFORCE = 33;
/** SO_TIMESTAMPNS_OLD: struct timespec in the cmsg; same layout as the new one on LP64. */
export const SO_TIMESTAMPNS = 35;
export const SCM_TIMESTAMPNS = SO_TIMESTAMPNS;
/** SO_TIMESTAMPING_OLD: kernel transmit timestamps, read back from the error queue. */
export const SO_TIMESTAMPING = 37;
export const SCM_TIMESTAMPING = SO_TIMESTAMPING;
/** SOF_TIMESTAMPING_* flags (linux/net_tstamp.h). */
export const SOF_TIMESTAMPING_TX_SOFTWARE = 1 << 1;
export const SOF_TIMESTAMPING_SOFTWARE = 1 << 4;
export const SOF_TIMESTAMPING_OPT_RX_FILTER = 1 << 17;
export const IPPROTO_IP = 0;
export const IPPROTO_IPV6 = 41;
export const IP_PKTINFO = 8;
export const IP_MTU_DISCOVER = 10;
/** struct ip_mreqn (group, local address, ifindex): 12 bytes. */
export const IP_MULTICAST_IF = 32;
export const IP_MULTICAST_TTL = 33;
export const IP_ADD_MEMBERSHIP = 35;
export const IPV6_MULTICAST_IF = 17;
export const IPV6_MULTICAST_HOPS = 18;
/** struct ipv6_mreq (group, ifindex): 20 bytes. */
export const IPV6_ADD_MEMBERSHIP = 20;
export const IP_PMTUDISC_PROBE = 3;
export const IPV6_V6ONLY = 26;
export const IPV6_RECVPKTINFO = 49;
export const IPV6_PKTINFO = 50;
export const MSG_DONTWAIT = 0x40;
export const MSG_TRUNC = 0x20;
export const MSG_ERRQUEUE = 0x2000;
export const POLLIN = 1;
export const POLLERR = 8;
export const EFD_NONBLOCK = 0o4000;
export const EFD_CLOEXEC = 0o2000000;
export const CLOCK_REALTIME = 0;

export const EINTR = 4;
export const EAGAIN = 11;

/** errno numbers to the names `bindReason` understands, and a few more for messages. */
const ERRNO_NAMES: Record<number, string> = {
  1: "EPERM",
  2: "ENOENT",
  9: "EBADF",
  13: "EACCES",
  19: "ENODEV",
  22: "EINVAL",
  97: "EAFNOSUPPORT",
  98: "EADDRINUSE",
  99: "EADDRNOTAVAIL",
  101: "ENETUNREACH",
  111: "ECONNREFUSED",
  113: "EHOSTUNREACH",
};

export function errnoName(errno: number): string {
  return ERRNO_NAMES[errno] ?? `errno ${errno}`;
}

/** struct msghdr / mmsghdr layout (bytes). */
export const MSGHDR = {
  name: 0,
  namelen: 8,
  iov: 16,
  iovlen: 24,
  control: 32,
  controllen: 40,
  flags: 48,
  /** struct mmsghdr: msghdr then `unsigned int msg_len`, padded to 64. */
  msgLen: 56,
  size: 64,
} as const;
export const IOVEC_SIZE = 16;
/** sizeof(struct sockaddr_in6), enough for either family. */
export const SOCKADDR_SIZE = 28;
/** struct cmsghdr: size_t len, int level, int type, then data at 16. */
export const CMSG_DATA = 16;

/** CMSG_SPACE(n) on LP64. */
export function cmsgSpace(n: number): number {
  return CMSG_DATA + ((n + 7) & ~7);
}

const SYMBOLS = {
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  connect: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  send: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
  recvmsg: { parameters: ["i32", "buffer", "i32"], result: "isize" },
  sendmsg: { parameters: ["i32", "buffer", "i32"], result: "isize" },
  recvmmsg: { parameters: ["i32", "buffer", "u32", "i32", "pointer"], result: "i32" },
  sendmmsg: { parameters: ["i32", "buffer", "u32", "i32"], result: "i32" },
  /** sendmmsg on a pool thread: a sender that must not hold the event loop (warmUpDriver). */
  sendmmsg_async: {
    name: "sendmmsg",
    parameters: ["i32", "buffer", "u32", "i32"],
    result: "i32",
    nonblocking: true,
  },
  sendto: { parameters: ["i32", "buffer", "usize", "i32", "buffer", "u32"], result: "isize" },
  recvfrom: {
    parameters: ["i32", "buffer", "usize", "i32", "pointer", "pointer"],
    result: "isize",
  },
  close: { parameters: ["i32"], result: "i32" },
  if_nametoindex: { parameters: ["buffer"], result: "u32" },
  eventfd: { parameters: ["u32", "i32"], result: "i32" },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32" },
  /** poll on a pool thread: the worker's event loop keeps turning while idle. */
  poll_async: {
    name: "poll",
    parameters: ["buffer", "u64", "i32"],
    result: "i32",
    nonblocking: true,
  },
  clock_gettime: { parameters: ["i32", "buffer"], result: "i32" },
  gettid: { parameters: [], result: "i32" },
  open: { parameters: ["buffer", "i32"], result: "i32" },
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  madvise: { parameters: ["pointer", "usize", "i32"], result: "i32" },
  setpriority: { parameters: ["i32", "u32", "i32"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
} as const satisfies Deno.ForeignLibraryInterface;

export type Libc = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"] & {
  /** errno of the last failed call on this thread. */
  errno(): number;
};

let cached: Libc | undefined;

/** Opens libc once per thread (worker); throws if it cannot. */
export function libc(): Libc {
  if (cached) return cached;
  const lib = Deno.dlopen("libc.so.6", SYMBOLS);
  const s = lib.symbols;
  const loc = s.__errno_location();
  const view = loc ? new Deno.UnsafePointerView(loc) : null;
  cached = Object.assign(Object.create(null), s, {
    errno: () => view ? view.getInt32() : 0,
  }) as Libc;
  return cached;
}

const PRIO_PROCESS = 0;

/**
 * Gives the calling thread a nice value of `nice` (negative = favoured), so
 * the kernel runs NTP serving ahead of the main thread (status page, engine)
 * and other processes when the CPUs are busy. On Linux nice is per thread.
 * Returns false where it is not allowed (no root or CAP_SYS_NICE).
 */
export function favourThisThread(nice: number): boolean {
  const c = libc();
  return c.setpriority(PRIO_PROCESS, c.gettid(), nice) === 0;
}

const O_RDONLY = 0;
const O_CLOEXEC = 0o2000000;

/**
 * Reads a whole (small, procfs) file through libc. Deno refuses /proc/self
 * to anything short of --allow-all; FFI, which we hold, is as strong.
 */
export function readProcFile(path: string): string {
  const c = libc();
  const fd = c.open(new TextEncoder().encode(path + "\0"), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw new Error(`${path}: ${errnoName(c.errno())}`);
  const decoder = new TextDecoder();
  const buf = new Uint8Array(65536);
  let text = "";
  try {
    for (;;) {
      const n = Number(c.read(fd, buf, BigInt(buf.length)));
      if (n < 0 && c.errno() === EINTR) continue;
      if (n < 0) throw new Error(`${path}: ${errnoName(c.errno())}`);
      if (n === 0) break;
      text += decoder.decode(buf.subarray(0, n), { stream: true });
    }
  } finally {
    c.close(fd);
  }
  return text + decoder.decode();
}

/** Whether libc can be opened through FFI here; the reason if not. */
export function probeLibc(): string | null {
  try {
    libc();
    return null;
  } catch (e) {
    return `cannot open libc.so.6 through FFI (${e instanceof Error ? e.message : e})`;
  }
}

/** Address of a buffer, as a bigint, for storing into C structs. */
export function addressOf(buf: Uint8Array): bigint {
  return BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(buf as Uint8Array<ArrayBuffer>)));
}

/** The index of network interface `name`, or 0 when there is none. */
export function interfaceIndex(name: string): number {
  return libc().if_nametoindex(new TextEncoder().encode(name + "\0"));
}

/** Fills a sockaddr_in / sockaddr_in6 for `ip` (4 or 16 bytes); returns its length. */
export function writeSockaddr(into: Uint8Array, ip: Uint8Array, port: number): number {
  into.fill(0);
  const v = new DataView(into.buffer, into.byteOffset, into.byteLength);
  v.setUint16(0, ip.length === 4 ? AF_INET : AF_INET6, true);
  v.setUint16(2, port, false);
  if (ip.length === 4) {
    into.set(ip, 4);
    return 16;
  }
  into.set(ip, 8);
  return SOCKADDR_SIZE;
}
