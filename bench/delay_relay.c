// delay_relay: a two-port Ethernet relay that holds every frame for a drawn
// delay, for WAN-like links between network namespaces in tests and
// benchmarks (tests/helpers/wan_lab.ts).
//
// Why it exists: the usual tool, `tc qdisc ... netem`, needs the sch_netem
// kernel module, which not every kernel has.
// wan_lab.ts uses netem where it works and this relay elsewhere.
//
// What it does: it runs inside a middle namespace and opens one AF_PACKET
// socket on each of two interfaces (veths whose peers sit in the two end
// namespaces). Every IPv4 or ARP frame received on one is queued and, after
// its delay, sent out of the other: a delaying L2 bridge. Nothing else is
// forwarded (IPv6, other ethertypes, frames the relay sent itself), and the
// relay refuses to run unless its own network namespace is a named one
// (/run/netns/NAME, made by `ip netns add`), so it never bridges the host's
// interfaces, only the two it was given in a namespace of the lab's.
//
// Per direction, independently, each frame:
//   - is lost with probability LOSS (-l, 0..1);
//   - else is held BASE + U[0, JITTER) ms (-d, -j): a uniform jitter on top
//     of a floor, so no frame is ever faster than BASE;
//   - leaves in arrival order: a frame whose drawn delay would let it
//     overtake the previous one waits for it (no reordering);
//   - is dropped when QUEUE frames are already waiting (-q, default 1000).
// A delay counts from the kernel's receive timestamp of the frame, and the
// relay spins through the last 50 µs before a frame is due instead of
// trusting a timer wake-up, so its own wake-up latency (tens of µs on an
// idle VM) neither lengthens the link nor makes one direction slower than
// the other: an NTP client behind it sees the upstream's true offset.
// Frames carry their virtio-net header (PACKET_VNET_HDR) through the relay,
// so checksum offload and GSO metadata survive as they would on a bridge.
//
// Build: cc -O2 -o delay_relay delay_relay.c
// Use:   delay_relay [-d MS] [-j MS] [-l LOSS] [-q N] [-s SEED] IF_A IF_B
// Prints "ready" once both sockets are open; SIGUSR1 prints a JSON line of
// counters per direction; SIGTERM/SIGINT print it and exit 0.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define VNET_HDR_LEN 10 // struct virtio_net_hdr
#define MAX_FRAME (VNET_HDR_LEN + 65536)
#define BATCH 64
#define SPIN_NS 50000 // spin the last 50 µs before a frame is due: timer wake-ups are late

typedef struct {
  int64_t due_ns;
  size_t len;
  unsigned char *data;
} pkt_t;

typedef struct {
  const char *name; // "a_to_b" or "b_to_a"
  int in, out;      // sockets: read from `in`, write to `out`
  pkt_t *ring;
  size_t head, count, cap;
  int64_t last_due_ns;
  unsigned long received, forwarded, lost, overflow, ignored, send_errors;
} dir_t;

static volatile sig_atomic_t stop_flag, stats_flag;
static double base_ms = 0, jitter_ms = 0, loss = 0;
static uint64_t rng_state;

static void on_signal(int sig) {
  if (sig == SIGUSR1) stats_flag = 1;
  else stop_flag = 1;
}

static int64_t clock_ns(clockid_t clock) {
  struct timespec t;
  clock_gettime(clock, &t);
  return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static int64_t now_ns(void) { return clock_ns(CLOCK_MONOTONIC); }

// splitmix64: small, fast, and reproducible with -s.
static double uniform01(void) {
  uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  z ^= z >> 31;
  return (double)(z >> 11) / 9007199254740992.0; // [0, 1)
}

static int open_port(const char *ifname) {
  unsigned idx = if_nametoindex(ifname);
  if (!idx) {
    fprintf(stderr, "delay_relay: no interface %s in this namespace\n", ifname);
    exit(1);
  }
  int fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK, htons(ETH_P_ALL));
  int one = 1;
  if (fd < 0 || setsockopt(fd, SOL_PACKET, PACKET_VNET_HDR, &one, sizeof one) < 0) {
    fprintf(stderr, "delay_relay: packet socket on %s: %s\n", ifname, strerror(errno));
    exit(1);
  }
  setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one); // Linux >= 4.20
  setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one);
  struct sockaddr_ll sll = {
      .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL), .sll_ifindex = (int)idx};
  if (bind(fd, (struct sockaddr *)&sll, sizeof sll) < 0) {
    fprintf(stderr, "delay_relay: bind %s: %s\n", ifname, strerror(errno));
    exit(1);
  }
  // Promiscuous while the socket is open: frames for the far end's MAC must reach us.
  struct packet_mreq mr = {.mr_ifindex = (int)idx, .mr_type = PACKET_MR_PROMISC};
  setsockopt(fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mr, sizeof mr);
  return fd;
}

// Reads up to BATCH frames from d->in and queues the ones to forward.
static void receive(dir_t *d, unsigned char *buf) {
  for (int i = 0; i < BATCH; i++) {
    struct sockaddr_ll from;
    char ctrl[128];
    struct iovec iov = {buf, MAX_FRAME};
    struct msghdr m = {.msg_name = &from, .msg_namelen = sizeof from, .msg_iov = &iov,
                       .msg_iovlen = 1, .msg_control = ctrl, .msg_controllen = sizeof ctrl};
    ssize_t n = recvmsg(d->in, &m, 0);
    if (n < 0) return; // EAGAIN, or an error we cannot act on
    // The delay counts from the kernel's receive time, not from when we woke up.
    int64_t now = now_ns(), real = clock_ns(CLOCK_REALTIME);
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
        struct timespec ts;
        memcpy(&ts, CMSG_DATA(c), sizeof ts);
        int64_t late = real - ((int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec);
        if (late > 0 && late < 1000000000) now -= late;
      }
    if (from.sll_pkttype == PACKET_OUTGOING || n < VNET_HDR_LEN + ETH_HLEN) continue;
    uint16_t type = (uint16_t)(buf[VNET_HDR_LEN + 12] << 8 | buf[VNET_HDR_LEN + 13]);
    if (type != ETH_P_IP && type != ETH_P_ARP) {
      d->ignored++;
      continue;
    }
    d->received++;
    if (loss > 0 && uniform01() < loss) {
      d->lost++;
      continue;
    }
    if (d->count == d->cap) {
      d->overflow++;
      continue;
    }
    int64_t due = now + (int64_t)((base_ms + jitter_ms * uniform01()) * 1e6);
    if (due < d->last_due_ns) due = d->last_due_ns; // keep arrival order
    unsigned char *copy = malloc((size_t)n);
    if (!copy) {
      d->overflow++;
      continue;
    }
    memcpy(copy, buf, (size_t)n);
    d->ring[(d->head + d->count) % d->cap] = (pkt_t){due, (size_t)n, copy};
    d->count++;
    d->last_due_ns = due;
  }
}

// Sends every queued frame whose time has come.
static void release(dir_t *d, int64_t now) {
  while (d->count > 0 && d->ring[d->head].due_ns <= now) {
    pkt_t *p = &d->ring[d->head];
    if (send(d->out, p->data, p->len, 0) < 0) d->send_errors++;
    else d->forwarded++;
    free(p->data);
    d->head = (d->head + 1) % d->cap;
    d->count--;
  }
}

static void print_stats(const dir_t *d) {
  printf("{");
  for (int i = 0; i < 2; i++)
    printf("%s\"%s\":{\"received\":%lu,\"forwarded\":%lu,\"lost\":%lu,\"overflow\":%lu,"
           "\"ignored\":%lu,\"send_errors\":%lu,\"queued\":%zu}",
           i ? "," : "", d[i].name, d[i].received, d[i].forwarded, d[i].lost, d[i].overflow,
           d[i].ignored, d[i].send_errors, d[i].count);
  printf("}\n");
  fflush(stdout);
}

// True when this process's network namespace is one of /run/netns/*, the
// named namespaces `ip netns add` creates: never the host's own.
static int in_named_netns(void) {
  struct stat self, other;
  if (stat("/proc/self/ns/net", &self) != 0) return 0;
  DIR *dir = opendir("/run/netns");
  if (!dir) return 0;
  int found = 0;
  char path[512];
  for (struct dirent *e; !found && (e = readdir(dir));) {
    if (e->d_name[0] == '.') continue;
    snprintf(path, sizeof path, "/run/netns/%s", e->d_name);
    found = stat(path, &other) == 0 && other.st_ino == self.st_ino && other.st_dev == self.st_dev;
  }
  closedir(dir);
  return found;
}

static double number(const char *s, double lo, double hi, const char *what) {
  char *end;
  double v = strtod(s, &end);
  if (*s == '\0' || *end != '\0' || !(v >= lo && v <= hi)) {
    fprintf(stderr, "delay_relay: %s must be a number in [%g, %g], got \"%s\"\n", what, lo, hi, s);
    exit(2);
  }
  return v;
}

static const char *USAGE =
    "usage: delay_relay [-d BASE_MS] [-j JITTER_MS] [-l LOSS] [-q QUEUE] [-s SEED] IF_A IF_B\n";

int main(int argc, char **argv) {
  size_t queue = 1000;
  rng_state = (uint64_t)now_ns() ^ (uint64_t)getpid() << 32;
  int opt;
  while ((opt = getopt(argc, argv, "d:j:l:q:s:h")) != -1) {
    switch (opt) {
    case 'd': base_ms = number(optarg, 0, 60000, "-d (base delay, ms)"); break;
    case 'j': jitter_ms = number(optarg, 0, 60000, "-j (jitter, ms)"); break;
    case 'l': loss = number(optarg, 0, 1, "-l (loss probability)"); break;
    case 'q': queue = (size_t)number(optarg, 1, 1000000, "-q (queue length, frames)"); break;
    case 's': rng_state = (uint64_t)number(optarg, 0, 9e15, "-s (seed)"); break;
    case 'h': fputs(USAGE, stdout); return 0;
    default: fputs(USAGE, stderr); return 2;
    }
  }
  if (argc - optind != 2) {
    fputs(USAGE, stderr);
    return 2;
  }
  if (!in_named_netns()) {
    fprintf(stderr, "delay_relay: refusing to run outside a namespace from `ip netns add` "
                    "(/run/netns); start it with `ip netns exec NS`\n");
    return 2;
  }
  prctl(PR_SET_TIMERSLACK, 1000UL); // wake within ~1 µs of a frame's due time, not 50 µs

  int fa = open_port(argv[optind]), fb = open_port(argv[optind + 1]);
  dir_t dirs[2] = {
      {.name = "a_to_b", .in = fa, .out = fb, .cap = queue},
      {.name = "b_to_a", .in = fb, .out = fa, .cap = queue},
  };
  for (int i = 0; i < 2; i++) {
    dirs[i].ring = calloc(queue, sizeof(pkt_t));
    if (!dirs[i].ring) {
      fprintf(stderr, "delay_relay: out of memory for a queue of %zu\n", queue);
      return 1;
    }
  }
  unsigned char *buf = malloc(MAX_FRAME);
  if (!buf) return 1;

  // Signals are blocked except inside ppoll, so a flag is never missed.
  sigset_t block, wait_mask;
  sigemptyset(&block);
  sigaddset(&block, SIGTERM);
  sigaddset(&block, SIGINT);
  sigaddset(&block, SIGUSR1);
  sigprocmask(SIG_BLOCK, &block, &wait_mask);
  struct sigaction sa = {.sa_handler = on_signal};
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGUSR1, &sa, NULL);

  printf("ready\n");
  fflush(stdout);
  struct pollfd pfd[2] = {{.fd = fa, .events = POLLIN}, {.fd = fb, .events = POLLIN}};
  while (!stop_flag) {
    if (stats_flag) {
      stats_flag = 0;
      print_stats(dirs);
    }
    int64_t now = now_ns(), next = INT64_MAX;
    for (int i = 0; i < 2; i++)
      if (dirs[i].count && dirs[i].ring[dirs[i].head].due_ns < next)
        next = dirs[i].ring[dirs[i].head].due_ns;
    struct timespec ts, *timeout = NULL;
    if (next != INT64_MAX) {
      int64_t wait = next - now > SPIN_NS ? next - now - SPIN_NS : 0;
      ts = (struct timespec){.tv_sec = wait / 1000000000, .tv_nsec = wait % 1000000000};
      timeout = &ts;
    }
    int r = ppoll(pfd, 2, timeout, &wait_mask);
    if (r < 0 && errno != EINTR) {
      fprintf(stderr, "delay_relay: ppoll: %s\n", strerror(errno));
      return 1;
    }
    if (r > 0) {
      if (pfd[0].revents & POLLIN) receive(&dirs[0], buf);
      if (pfd[1].revents & POLLIN) receive(&dirs[1], buf);
    }
    now = now_ns();
    release(&dirs[0], now);
    release(&dirs[1], now);
  }
  print_stats(dirs);
  return 0;
}
