// client_probe: measures what NTP servers serve, as an SNTP client with
// kernel timestamps, for bench/client.ts.
//
// Sends NTPv4 client requests to each TARGET (HOST:PORT, IPv4) at RATE per
// second for SECONDS, one socket per target, the targets' sends spread
// evenly over each interval. t1 is the kernel's software transmit
// timestamp (SO_TIMESTAMPING, the user-space clock read before the send
// when none comes back), t4 the kernel's receive timestamp
// (SO_TIMESTAMPNS); arithmetic is in integer nanoseconds, so results keep
// nanosecond precision. When the servers share this host's kernel clock,
// the true offset is zero and `offset` is each server's error.
//
// Output, one line per answered request (tab-separated):
//   S <target index> <t1, Unix s> <offset s> <delay s> <leap> <stratum>
// and per target at the end:
//   E <target index> <sent> <answered>
// A request unanswered when the next one to that target is sent is lost.
//
// Build: cc -O2 -o client_probe client_probe.c
// Use:   client_probe [-r RATE] [-d SECONDS] HOST:PORT...
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/errqueue.h>
#include <linux/net_tstamp.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_TARGETS 16
#define NTP_UNIX_NS (2208988800LL * 1000000000LL) // NTP era 0 to Unix epoch, ns

typedef struct {
  int fd;
  uint64_t cookie;   // xmt of the outstanding request; the reply's org must match
  int64_t t1_ns;     // Unix ns; user-space read, replaced by the kernel's when it comes
  uint32_t tx_id;    // SOF_TIMESTAMPING_OPT_ID counter of the outstanding request
  int outstanding;
  unsigned long sent, answered;
} target_t;

static int64_t clock_ns(clockid_t c) {
  struct timespec t;
  clock_gettime(c, &t);
  return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static uint64_t rd64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = v << 8 | p[i];
  return v;
}

// NTP timestamp (era 0) to Unix nanoseconds.
static int64_t ntp_to_unix_ns(uint64_t t) {
  int64_t sec = (int64_t)(t >> 32), frac_ns = (int64_t)(((t & 0xffffffffULL) * 1000000000ULL) >> 32);
  return sec * 1000000000 + frac_ns - NTP_UNIX_NS;
}

static uint64_t rng = 0x853c49e6748fea9bULL;
static uint64_t random64(void) { // splitmix64
  uint64_t z = (rng += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

static int open_target(const char *spec) {
  char host[64];
  const char *colon = strrchr(spec, ':');
  int port = colon ? atoi(colon + 1) : 0;
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  if (!colon || colon - spec >= (long)sizeof host || port < 1 || port > 65535) {
    fprintf(stderr, "client_probe: target \"%s\" is not IPV4:PORT\n", spec);
    exit(2);
  }
  memcpy(host, spec, (size_t)(colon - spec));
  host[colon - spec] = '\0';
  if (inet_pton(AF_INET, host, &a.sin_addr) != 1) {
    fprintf(stderr, "client_probe: target \"%s\" is not IPV4:PORT\n", spec);
    exit(2);
  }
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0), one = 1;
  int flags = SOF_TIMESTAMPING_TX_SOFTWARE | SOF_TIMESTAMPING_SOFTWARE |
              SOF_TIMESTAMPING_OPT_TSONLY | SOF_TIMESTAMPING_OPT_ID;
  if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
    fprintf(stderr, "client_probe: %s: %s\n", spec, strerror(errno));
    exit(1);
  }
  setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one);
  setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPING, &flags, sizeof flags);
  return fd;
}

// Takes the kernel transmit timestamps off the error queue.
static void read_tx_stamps(target_t *t) {
  for (int i = 0; i < 8; i++) {
    char ctrl[256], data[64];
    struct iovec iov = {data, sizeof data};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctrl, .msg_controllen = sizeof ctrl};
    if (recvmsg(t->fd, &m, MSG_ERRQUEUE | MSG_DONTWAIT) < 0) return;
    int64_t ts = 0;
    int id_ok = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPING) {
        struct scm_timestamping s;
        memcpy(&s, CMSG_DATA(c), sizeof s);
        ts = (int64_t)s.ts[0].tv_sec * 1000000000 + s.ts[0].tv_nsec;
      } else if ((c->cmsg_level == SOL_IP && c->cmsg_type == IP_RECVERR)) {
        struct sock_extended_err e;
        memcpy(&e, CMSG_DATA(c), sizeof e);
        id_ok = e.ee_origin == SO_EE_ORIGIN_TIMESTAMPING && e.ee_data == t->tx_id;
      }
    }
    if (ts && id_ok && t->outstanding) t->t1_ns = ts;
  }
}

// Reads replies on target i and prints a sample for the one that matches.
static void read_replies(target_t *t, int index) {
  for (int i = 0; i < 8; i++) {
    unsigned char p[128];
    char ctrl[256];
    struct iovec iov = {p, sizeof p};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctrl, .msg_controllen = sizeof ctrl};
    ssize_t n = recvmsg(t->fd, &m, MSG_DONTWAIT);
    if (n < 0) return;
    int64_t t4 = clock_ns(CLOCK_REALTIME);
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
        struct timespec ts;
        memcpy(&ts, CMSG_DATA(c), sizeof ts);
        t4 = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
      }
    if (n < 48 || (p[0] & 7) != 4 || !t->outstanding || rd64(p + 24) != t->cookie) continue;
    read_tx_stamps(t); // the transmit timestamp, if it is still queued
    t->outstanding = 0;
    t->answered++;
    int64_t t2 = ntp_to_unix_ns(rd64(p + 32)), t3 = ntp_to_unix_ns(rd64(p + 40));
    int64_t offset2 = (t2 - t->t1_ns) + (t3 - t4), delay = (t4 - t->t1_ns) - (t3 - t2);
    printf("S\t%d\t%.6f\t%.9f\t%.9f\t%d\t%d\n", index, (double)t->t1_ns * 1e-9,
           (double)offset2 * 0.5e-9, (double)delay * 1e-9, p[0] >> 6, p[1]);
  }
}

static void send_request(target_t *t) {
  unsigned char p[48] = {0};
  p[0] = 4 << 3 | 3; // LI 0, VN 4, mode 3 (client)
  t->cookie = random64();
  for (int i = 0; i < 8; i++) p[40 + i] = (unsigned char)(t->cookie >> (56 - 8 * i));
  t->t1_ns = clock_ns(CLOCK_REALTIME);
  t->tx_id = (uint32_t)t->sent; // OPT_ID counts datagrams sent on the socket from 0
  t->outstanding = 1;
  t->sent++;
  send(t->fd, p, sizeof p, 0);
}

static const char *USAGE = "usage: client_probe [-r RATE] [-d SECONDS] IPV4:PORT...\n";

int main(int argc, char **argv) {
  double rate = 20, seconds = 10;
  int opt;
  while ((opt = getopt(argc, argv, "r:d:h")) != -1) {
    char *end;
    double v = strtod(optarg ? optarg : "", &end);
    int ok = optarg && *optarg && !*end;
    if (opt == 'r' && ok && v > 0 && v <= 1000) rate = v;
    else if (opt == 'd' && ok && v > 0 && v <= 86400) seconds = v;
    else if (opt == 'h') return fputs(USAGE, stdout), 0;
    else {
      fprintf(stderr, "client_probe: -r must be in (0, 1000] and -d in (0, 86400]\n%s", USAGE);
      return 2;
    }
  }
  int n = argc - optind;
  if (n < 1 || n > MAX_TARGETS) {
    fprintf(stderr, "client_probe: give 1 to %d targets\n%s", MAX_TARGETS, USAGE);
    return 2;
  }
  rng ^= (uint64_t)clock_ns(CLOCK_MONOTONIC) ^ (uint64_t)getpid() << 40;
  target_t t[MAX_TARGETS] = {0};
  struct pollfd pfd[MAX_TARGETS];
  for (int i = 0; i < n; i++) {
    t[i].fd = open_target(argv[optind + i]);
    pfd[i] = (struct pollfd){.fd = t[i].fd, .events = POLLIN};
  }
  int64_t start = clock_ns(CLOCK_MONOTONIC), end = start + (int64_t)(seconds * 1e9);
  int64_t interval = (int64_t)(1e9 / rate), drain_end = end + 1000000000;
  int64_t next[MAX_TARGETS];
  for (int i = 0; i < n; i++) next[i] = start + interval * i / n;
  for (;;) {
    int64_t now = clock_ns(CLOCK_MONOTONIC), wake = drain_end;
    if (now >= drain_end) break;
    for (int i = 0; i < n; i++) {
      if (now < end && next[i] <= now) {
        send_request(&t[i]);
        next[i] += interval;
        if (next[i] < now) next[i] = now + interval; // no backlog after a stall
      }
      if (now < end && next[i] < wake) wake = next[i];
    }
    int wait_ms = (int)((wake - now + 999999) / 1000000);
    if (poll(pfd, (nfds_t)n, wait_ms) > 0)
      for (int i = 0; i < n; i++) {
        if (pfd[i].revents & POLLERR) read_tx_stamps(&t[i]);
        if (pfd[i].revents & POLLIN) read_replies(&t[i], i);
      }
    fflush(stdout);
  }
  for (int i = 0; i < n; i++) printf("E\t%d\t%lu\t%lu\n", i, t[i].sent, t[i].answered);
  return 0;
}
