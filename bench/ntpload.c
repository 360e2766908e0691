// ntpload: the project's NTP load generator, for the load tests
// (tests/helpers/ntpload.ts) and the benchmarks in bench/.
//
// Sends NTPv4 client requests (48 bytes, mode 3) to ONE server address, the
// one HOST resolves to first, at a fixed rate, round-robin over several
// source sockets (one UDP port each, so ECMP and per-port hashing see many
// flows). Every request carries its own transmit timestamp: a random 64-bit
// value whose low SLOT_BITS bits index the table of requests in flight, so
// a reply is matched to its request by the origin timestamp it echoes,
// whatever the order, and a duplicate or foreign reply is told apart. The
// true send time t1 stays here; t4 is the kernel's receive stamp
// (SO_TIMESTAMPNS). Per step it reports:
//   sent/s, answered/s   requests sent, replies matched (KoD excluded)
//   loss                 fraction of sent requests with neither a reply nor a KoD
//   kod                  kiss-o'-death replies (stratum 0)
//   bad                  replies from the server that answer nothing in flight
//                        (duplicate, late, unknown origin) or fail the checks
//                        (length, version 4, mode 4, zero timestamps)
//   rtt                  t4 - t1, median and p99
//   offset               ((t2 - t1) + (t3 - t4)) / 2, median, p99 and max of |offset|
// With the server on the same host (loopback, or network namespaces that
// share one kernel clock) the true offset is zero, so |offset| is the
// server's own timestamping error under that load.
//
// After the sending time it waits up to DRAIN_S for the replies still due
// (less when every request is accounted for). A sender that falls behind
// its schedule catches up by at most CATCH_UP_S of requests; older ones
// are never sent (sent/s shows it).
//
// Bounded: RATE <= MAX_RATE, SECONDS <= MAX_SECONDS, RATE * SECONDS <=
// MAX_REQUESTS per step, at most MAX_SOCKETS sockets, and a ramp of at most
// RAMP_DOUBLINGS + RAMP_BISECTIONS steps. Never broadcasts (no SO_BROADCAST).
//
// With -k ID:TYPE:HEXKEY every request carries a MAC (RFC 5905 §7.3, the
// key ID then the digest of key ‖ packet, or AES-CMAC of the packet;
// SHA256 truncated to 20 bytes as ntpsec sends it), made with OpenSSL's
// libcrypto (never written here); a reply counts as answered only if it
// carries a MAC of the same length (so a crypto-NAK is "bad"). The reply's
// digest is not checked: the load tests measure the server.
//
// Build: cc -O2 -o ntpload ntpload.c -lm -lcrypto
// Use:   ntpload [-p PORT] [-r RATE] [-d SECONDS] [-s SOCKETS] [-k ID:TYPE:HEX] [-T] [--ramp]
//                 [--json] [--template FILE] HOST
//   -p PORT   server port (default 123)
//   -r RATE   requests per second (default 10000)
//   -d SECS   seconds of sending per step (default 3)
//   -s N      source sockets (default 64)
//   -T        t1 is each request's kernel transmit timestamp (SO_TIMESTAMPING,
//             SOF_TIMESTAMPING_TX_SOFTWARE, read from the error queue and
//             matched by SOF_TIMESTAMPING_OPT_ID, as chronyd does) instead of
//             one clock reading before each sendmmsg of up to SEND_BURST
//             requests. Without it a request's forward leg includes the
//             time the kernel spent on the requests before it in the burst
//             and on its own send path, so every server's offset reads
//             that much high; with it the offset is the server's own error.
//             Costs one more (batched) system call per burst of stamps.
//   --ramp    from RATE, double the rate while a step passes (loss <= 1 % and
//             >= 95 % of the rate sent), then bisect the last bracket
//             RAMP_BISECTIONS times; last, print the highest rate answered
//   --json    one JSON object per step (and {"max_rate_answered":N} after a
//             ramp) instead of a table
//   --template FILE  send these prepared requests, round-robin, instead of
//             48-byte ones (NTS requests with their cookie and authenticator,
//             made by bench/load.ts --nts): records of a 2-byte big-endian
//             length and the packet; the transmit timestamp of record i
//             must have i as its low SLOT_BITS bits (it is the request's id)
// Exit: 0 when something was answered, 1 when nothing was, 2 on a usage error.
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <linux/errqueue.h>
#include <linux/net_tstamp.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>

#define NTP_UNIX_OFFSET 2208988800ULL  // seconds from 1900 to 1970
#define SLOT_BITS 20
#define SLOTS (1u << SLOT_BITS)
#define SLOT_MASK (SLOTS - 1)
#define SEND_BURST 16   // requests per sendmmsg, all from one socket
#define RECV_BATCH 64   // replies per recvmmsg
#define DRAIN_S 1.0
#define CATCH_UP_S 0.1
#define MAX_RATE 5e6
#define MAX_SECONDS 3600.0
#define MAX_REQUESTS 20000000.0
#define MAX_SOCKETS 1024
#define RAMP_DOUBLINGS 20
#define RAMP_BISECTIONS 3
#define MAX_TEMPLATES 65536
#define MAX_TEMPLATE_LEN 2048
#define TX_RING 4096     // sends per socket whose kernel stamp may still be due (-T)
#define USAGE \
  "usage: ntpload [-p PORT] [-r RATE] [-d SECONDS] [-s SOCKETS] [-k ID:TYPE:HEXKEY] [-T] [--ramp] " \
  "[--json] [--template FILE] HOST\n  TYPE: MD5, SHA1, SHA256, AES128CMAC, AES256CMAC\n"

enum { FREE, PENDING, DONE };
typedef struct {
  uint64_t id;  // the transmit timestamp the request carried
  uint64_t t1;  // when it was sent, NTP format
  uint8_t state;
} request_t;

typedef struct {
  double rate, sent_per_s, answered_per_s, loss, kod, bad;
  double rtt_median, rtt_p99, offset_median, offset_p99_abs, offset_max_abs;  // seconds
} result_t;

typedef struct {
  double *v;
  size_t n, cap;
} samples_t;

static request_t requests[SLOTS];

// -k: the MAC every request carries (mac_len 0: none).
static uint32_t mac_key_id;
static unsigned char mac_key[32];
static size_t mac_key_len, mac_len;  // mac_len: key ID + digest
static const EVP_MD *mac_md;         // a hash type, or NULL for CMAC
static EVP_MD_CTX *md_ctx;
static EVP_MAC_CTX *cmac_ctx;

// Parses ID:TYPE:HEX and prepares libcrypto; 0 on success.
static int mac_setup(const char *spec) {
  char type[16];
  char hex[80];
  if (sscanf(spec, "%u:%15[^:]:%79s", &mac_key_id, type, hex) != 3 || mac_key_id == 0) return -1;
  size_t n = strlen(hex);
  if (n % 2 || n / 2 > sizeof mac_key) return -1;
  for (size_t i = 0; i < n / 2; i++) {
    unsigned v;
    if (sscanf(hex + 2 * i, "%2x", &v) != 1) return -1;
    mac_key[i] = (unsigned char)v;
  }
  mac_key_len = n / 2;
  const char *cipher = NULL;
  size_t digest;
  if (!strcmp(type, "MD5")) mac_md = EVP_md5(), digest = 16;
  else if (!strcmp(type, "SHA1")) mac_md = EVP_sha1(), digest = 20;
  else if (!strcmp(type, "SHA256")) mac_md = EVP_sha256(), digest = 20;  // truncated (ntpsec)
  else if (!strcmp(type, "AES128CMAC")) cipher = "AES-128-CBC", digest = 16;
  else if (!strcmp(type, "AES256CMAC")) cipher = "AES-256-CBC", digest = 16;
  else return -1;
  mac_len = 4 + digest;
  if (mac_md) {
    md_ctx = EVP_MD_CTX_new();
    return md_ctx ? 0 : -1;
  }
  EVP_MAC *mac = EVP_MAC_fetch(NULL, "CMAC", NULL);
  cmac_ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
  if (!cmac_ctx) return -1;
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("cipher", (char *)cipher, 0),
                         OSSL_PARAM_construct_end()};
  return EVP_MAC_init(cmac_ctx, mac_key, mac_key_len, params) == 1 ? 0 : -1;
}

// Appends the MAC of pkt[0..48) at pkt + 48.
static void mac_write(unsigned char *pkt) {
  unsigned char out[EVP_MAX_MD_SIZE];
  pkt[48] = (unsigned char)(mac_key_id >> 24);
  pkt[49] = (unsigned char)(mac_key_id >> 16);
  pkt[50] = (unsigned char)(mac_key_id >> 8);
  pkt[51] = (unsigned char)mac_key_id;
  if (mac_md) {
    unsigned int n = 0;
    EVP_DigestInit_ex(md_ctx, mac_md, NULL);
    EVP_DigestUpdate(md_ctx, mac_key, mac_key_len);
    EVP_DigestUpdate(md_ctx, pkt, 48);
    EVP_DigestFinal_ex(md_ctx, out, &n);
  } else {
    size_t n = 0;
    EVP_MAC_init(cmac_ctx, NULL, 0, NULL);  // same key and cipher, fresh state
    EVP_MAC_update(cmac_ctx, pkt, 48);
    EVP_MAC_final(cmac_ctx, out, &n, sizeof out);
  }
  memcpy(pkt + 52, out, mac_len - 4);
}
static int socks[MAX_SOCKETS], nsocks, epfd;
// -T: per socket, the datagrams sent so far (the kernel's OPT_ID counter)
// and the request id each recent one carried.
static int kernel_tx;
static uint32_t tx_count[MAX_SOCKETS];
static uint64_t (*tx_ids)[TX_RING];
static struct sockaddr_storage server;
static socklen_t server_len;
static uint64_t rng_state;
// Prepared requests (--template): bytes, and per record its offset, length and id (xmt).
static unsigned char *tmpl;
static size_t tmpl_off[MAX_TEMPLATES];
static uint16_t tmpl_len[MAX_TEMPLATES];
static uint64_t tmpl_id[MAX_TEMPLATES];
static uint32_t ntmpl;
static uint64_t get64(const unsigned char *p);

// Reads --template FILE; 0 when it is usable, else a message on stderr and 1.
static int load_templates(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) { fprintf(stderr, "ntpload: %s: %s\n", path, strerror(errno)); return 1; }
  size_t cap = 1 << 20, used = 0;
  tmpl = malloc(cap);
  unsigned char hdr[2];
  while (tmpl && fread(hdr, 1, 2, f) == 2) {
    size_t len = (size_t)hdr[0] << 8 | hdr[1];
    if (ntmpl == MAX_TEMPLATES || len < 48 || len > MAX_TEMPLATE_LEN) break;
    if (used + len > cap) tmpl = realloc(tmpl, cap *= 2);
    if (!tmpl || fread(tmpl + used, 1, len, f) != len) break;
    uint64_t id = get64(tmpl + used + 40);
    if ((id & SLOT_MASK) != ntmpl || id == 0) break;
    tmpl_off[ntmpl] = used;
    tmpl_len[ntmpl] = (uint16_t)len;
    tmpl_id[ntmpl++] = id;
    used += len;
  }
  int bad = !feof(f) || !tmpl || ntmpl == 0;
  fclose(f);
  if (bad) fprintf(stderr, "ntpload: %s: bad record %u\n", path, ntmpl);
  return bad;
}

static double mono(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static uint64_t ntp_time(struct timespec t) {
  return ((uint64_t)t.tv_sec + NTP_UNIX_OFFSET) << 32 |
         (((uint64_t)t.tv_nsec << 32) / 1000000000u);
}

static uint64_t ntp_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  return ntp_time(t);
}

// a - b in seconds; modular, so it holds across an NTP era boundary.
static double ntp_diff(uint64_t a, uint64_t b) {
  return (double)(int64_t)(a - b) / 4294967296.0;
}

static uint64_t get64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = v << 8 | p[i];
  return v;
}

static void put64(unsigned char *p, uint64_t v) {
  for (int i = 7; i >= 0; i--, v >>= 8) p[i] = (unsigned char)v;
}

// xorshift64*: cheap, and seeded from the kernel, so ids differ between runs.
static uint64_t random64(void) {
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 0x2545F4914F6CDD1DULL;
}

static void push(samples_t *s, double x) {
  if (s->n == s->cap) {
    s->cap = s->cap ? s->cap * 2 : 4096;
    s->v = realloc(s->v, s->cap * sizeof *s->v);
    if (!s->v) { perror("ntpload: realloc"); exit(1); }
  }
  s->v[s->n++] = x;
}

static int by_value(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

// On sorted values: the median, and the nearest-rank quantile q.
static double median(const samples_t *s) {
  if (!s->n) return 0;
  return s->n % 2 ? s->v[s->n / 2] : (s->v[s->n / 2 - 1] + s->v[s->n / 2]) / 2;
}

static double quantile(const samples_t *s, double q) {
  if (!s->n) return 0;
  size_t rank = (size_t)ceil(q * (double)s->n);
  return s->v[rank ? rank - 1 : 0];
}

static int from_server(const struct sockaddr_storage *a) {
  if (a->ss_family != server.ss_family) return 0;
  if (a->ss_family == AF_INET) {
    const struct sockaddr_in *x = (const void *)a, *y = (const void *)&server;
    return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
  }
  const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)&server;
  return x->sin6_port == y->sin6_port && !memcmp(&x->sin6_addr, &y->sin6_addr, 16);
}

typedef struct {
  uint64_t sent, answered, kod, bad, pending, send_errors;
  int last_errno;
  samples_t rtt, offset;
} step_t;

// One datagram from a source socket: counted, matched, measured.
static void on_reply(step_t *st, const unsigned char *p, size_t len,
                     const struct sockaddr_storage *from, uint64_t t4) {
  if (!from_server(from)) return;  // not our server: not ours to count
  if (len < 48 || (mac_len && len != 48 + mac_len)) { st->bad++; return; }
  uint64_t org = get64(p + 24);
  request_t *q = &requests[org & SLOT_MASK];
  if (q->state != PENDING || q->id != org) { st->bad++; return; }
  int version = p[0] >> 3 & 7, mode = p[0] & 7;
  if (version != 4 || mode != 4) { st->bad++; return; }
  if (p[1] == 0) {  // stratum 0: kiss-o'-death, an answer that carries no time
    q->state = DONE;
    st->pending--;
    st->kod++;
    return;
  }
  uint64_t t2 = get64(p + 32), t3 = get64(p + 40);
  if (!t2 || !t3) { st->bad++; return; }
  q->state = DONE;
  st->pending--;
  st->answered++;
  push(&st->rtt, ntp_diff(t4, q->t1));
  push(&st->offset, (ntp_diff(t2, q->t1) + ntp_diff(t3, t4)) / 2);
}

// -T: reads socket s's kernel transmit stamps and makes each the t1 of the
// request it belongs to, if that request still waits for its reply.
static void read_tx_stamps(int s) {
  static unsigned char ctl[RECV_BATCH][128];
  struct mmsghdr m[RECV_BATCH];
  for (;;) {
    for (int i = 0; i < RECV_BATCH; i++) {
      m[i] = (struct mmsghdr){.msg_hdr = {.msg_control = ctl[i], .msg_controllen = sizeof ctl[i]}};
    }
    int n = recvmmsg(socks[s], m, RECV_BATCH, MSG_ERRQUEUE | MSG_DONTWAIT, NULL);
    if (n <= 0) return;
    for (int i = 0; i < n; i++) {
      uint64_t t = 0;
      uint32_t key = 0;
      int have_key = 0;
      for (struct cmsghdr *c = CMSG_FIRSTHDR(&m[i].msg_hdr); c; c = CMSG_NXTHDR(&m[i].msg_hdr, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPING) {
          struct scm_timestamping ts;
          memcpy(&ts, CMSG_DATA(c), sizeof ts);
          if (ts.ts[0].tv_sec || ts.ts[0].tv_nsec) t = ntp_time(ts.ts[0]);
        } else if ((c->cmsg_level == SOL_IP && c->cmsg_type == IP_RECVERR) ||
                   (c->cmsg_level == SOL_IPV6 && c->cmsg_type == IPV6_RECVERR)) {
          struct sock_extended_err e;
          memcpy(&e, CMSG_DATA(c), sizeof e);
          if (e.ee_origin == SO_EE_ORIGIN_TIMESTAMPING) {
            key = e.ee_data;
            have_key = 1;
          }
        }
      }
      // Only a stamp whose send is still in the ring (at most TX_RING sends ago).
      if (!t || !have_key || tx_count[s] - key > TX_RING || tx_count[s] == key) continue;
      uint64_t id = tx_ids[s][key % TX_RING];
      request_t *q = &requests[id & SLOT_MASK];
      if (q->state == PENDING && q->id == id) q->t1 = t;
    }
    if (n < RECV_BATCH) return;
  }
}

// Reads every datagram queued on socket s; st NULL discards them.
static void receive(step_t *st, int s) {
  static unsigned char buf[RECV_BATCH][128], ctl[RECV_BATCH][64];
  // Transmit stamps first: on loopback a reply can be queued before we
  // read its request's stamp (chronyd reads the error queue first too).
  if (kernel_tx) read_tx_stamps(s);
  static struct sockaddr_storage names[RECV_BATCH];
  struct mmsghdr m[RECV_BATCH];
  struct iovec iov[RECV_BATCH];
  for (;;) {
    for (int i = 0; i < RECV_BATCH; i++) {
      iov[i] = (struct iovec){buf[i], sizeof buf[i]};
      m[i] = (struct mmsghdr){.msg_hdr = {.msg_name = &names[i], .msg_namelen = sizeof names[i],
                                          .msg_iov = &iov[i], .msg_iovlen = 1,
                                          .msg_control = ctl[i], .msg_controllen = sizeof ctl[i]}};
    }
    int n = recvmmsg(socks[s], m, RECV_BATCH, MSG_DONTWAIT, NULL);
    if (n <= 0) return;  // EAGAIN, or an ICMP error: nothing to read now
    if (!st) continue;
    uint64_t fallback = 0;
    for (int i = 0; i < n; i++) {
      uint64_t t4 = 0;
      for (struct cmsghdr *c = CMSG_FIRSTHDR(&m[i].msg_hdr); c; c = CMSG_NXTHDR(&m[i].msg_hdr, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
          struct timespec ts;
          memcpy(&ts, CMSG_DATA(c), sizeof ts);
          t4 = ntp_time(ts);
        }
      }
      if (!t4) t4 = fallback ? fallback : (fallback = ntp_now());
      on_reply(st, buf[i], m[i].msg_len, &names[i], t4);
    }
    if (n < RECV_BATCH) return;
  }
}

// Sends requests seq .. seq+n-1 from socket s in one sendmmsg. Returns how
// many left; 0 when the socket is full (try again later).
static int send_burst(step_t *st, int s, uint64_t seq, int n) {
  static unsigned char pkt[SEND_BURST][48 + 36];
  struct mmsghdr m[SEND_BURST];
  struct iovec iov[SEND_BURST];
  uint64_t ids[SEND_BURST];
  for (int i = 0; i < n; i++) {
    if (ntmpl) {  // a prepared request: its xmt is its id
      uint32_t k = (uint32_t)((seq + (uint64_t)i) % ntmpl);
      ids[i] = tmpl_id[k];
      iov[i] = (struct iovec){tmpl + tmpl_off[k], tmpl_len[k]};
      m[i] = (struct mmsghdr){.msg_hdr = {.msg_name = &server, .msg_namelen = server_len,
                                          .msg_iov = &iov[i], .msg_iovlen = 1}};
      continue;
    }
    uint32_t slot = (uint32_t)((seq + (uint64_t)i) & SLOT_MASK);
    do ids[i] = (random64() << SLOT_BITS) | slot; while (ids[i] == 0);
    memset(pkt[i], 0, 48);
    pkt[i][0] = 0x23;  // LI 0, version 4, mode 3 (client)
    put64(pkt[i] + 40, ids[i]);
    if (mac_len) mac_write(pkt[i]);
    iov[i] = (struct iovec){pkt[i], 48 + mac_len};
    m[i] = (struct mmsghdr){.msg_hdr = {.msg_name = &server, .msg_namelen = server_len,
                                        .msg_iov = &iov[i], .msg_iovlen = 1}};
  }
  uint64_t t1 = ntp_now();
  int r = sendmmsg(socks[s], m, (unsigned)n, 0);
  if (r < 0) {
    if (errno == EAGAIN || errno == ENOBUFS || errno == EINTR) return 0;
    // Unreachable and the like: the first request counts as sent and lost.
    st->send_errors++;
    st->last_errno = errno;
    r = 1;
    t1 = 0;
  }
  for (int i = 0; i < r; i++) {
    if (kernel_tx && t1) tx_ids[s][tx_count[s]++ % TX_RING] = ids[i];
    request_t *q = &requests[ids[i] & SLOT_MASK];
    if (q->state == PENDING) st->pending--;  // unanswered after SLOTS newer requests
    *q = (request_t){.id = ids[i], .t1 = t1, .state = t1 ? PENDING : DONE};
    if (t1) st->pending++;
  }
  st->sent += (uint64_t)r;
  return r;
}

static result_t run_step(double rate, double secs) {
  for (int s = 0; s < nsocks; s++) receive(NULL, s);  // late replies of an earlier step
  memset(requests, 0, sizeof requests);
  step_t st = {0};
  uint64_t total = (uint64_t)llround(rate * secs), seq = 0;
  if (!total) total = 1;
  uint64_t lag = (uint64_t)(CATCH_UP_S * rate) + SEND_BURST;
  int next_sock = 0;
  double start = mono(), drain_end = 0;
  struct epoll_event ev[64];
  for (;;) {
    double now = mono();
    if (seq < total) {
      uint64_t due = (uint64_t)((now - start) * rate) + 1;
      if (due > total) due = total;
      if (due > seq + lag) seq = due - lag;  // too far behind: those are never sent
      while (seq < due) {
        uint64_t left = due - seq;
        int sent = send_burst(&st, next_sock, seq, left < SEND_BURST ? (int)left : SEND_BURST);
        if (!sent) break;
        seq += (uint64_t)sent;
        next_sock = (next_sock + 1) % nsocks;
      }
      if (seq == total) drain_end = mono() + DRAIN_S;
    } else if (!st.pending || now >= drain_end) {
      break;
    }
    // Sleep until the next request is due (or the drain ends), or a reply comes.
    double wake = seq < total ? start + (double)seq / rate : drain_end;
    double wait = wake - mono();
    if (wait < 0) wait = 0;
    struct timespec ts = {(time_t)wait, (long)((wait - floor(wait)) * 1e9)};
    struct pollfd pfd = {.fd = epfd, .events = POLLIN};
    if (ppoll(&pfd, 1, &ts, NULL) > 0) {
      int n = epoll_wait(epfd, ev, 64, 0);
      for (int i = 0; i < n; i++) receive(&st, (int)ev[i].data.u32);
    }
  }
  if (st.send_errors) {
    fprintf(stderr, "ntpload: %llu sends failed (%s)\n", (unsigned long long)st.send_errors,
            strerror(st.last_errno));
  }
  result_t r = {.rate = rate, .kod = (double)st.kod, .bad = (double)st.bad};
  r.sent_per_s = (double)st.sent / secs;
  r.answered_per_s = (double)st.answered / secs;
  r.loss = st.sent ? (double)(st.sent - st.answered - st.kod) / (double)st.sent : 1;
  qsort(st.rtt.v, st.rtt.n, sizeof(double), by_value);
  r.rtt_median = median(&st.rtt);
  r.rtt_p99 = quantile(&st.rtt, 0.99);
  qsort(st.offset.v, st.offset.n, sizeof(double), by_value);
  r.offset_median = median(&st.offset);
  for (size_t i = 0; i < st.offset.n; i++) st.offset.v[i] = fabs(st.offset.v[i]);
  qsort(st.offset.v, st.offset.n, sizeof(double), by_value);
  r.offset_p99_abs = quantile(&st.offset, 0.99);
  r.offset_max_abs = st.offset.n ? st.offset.v[st.offset.n - 1] : 0;
  free(st.rtt.v);
  free(st.offset.v);
  return r;
}

static void print_step(const result_t *r, int json) {
  if (json) {
    printf("{\"rate\":%.0f,\"sent_per_s\":%.0f,\"answered_per_s\":%.0f,\"loss\":%.5f,"
           "\"kod\":%.0f,\"bad\":%.0f,\"rtt_median_us\":%.1f,\"rtt_p99_us\":%.1f,"
           "\"offset_median_us\":%.1f,\"offset_p99_abs_us\":%.1f,\"offset_max_abs_us\":%.1f}\n",
           r->rate, r->sent_per_s, r->answered_per_s, r->loss, r->kod, r->bad,
           r->rtt_median * 1e6, r->rtt_p99 * 1e6, r->offset_median * 1e6,
           r->offset_p99_abs * 1e6, r->offset_max_abs * 1e6);
  } else {
    printf("%10.0f %10.0f %10.0f %7.3f%% %6.0f %6.0f %9.1f %9.1f %9.1f %9.1f %9.1f\n",
           r->rate, r->sent_per_s, r->answered_per_s, r->loss * 100, r->kod, r->bad,
           r->rtt_median * 1e6, r->rtt_p99 * 1e6, r->offset_median * 1e6,
           r->offset_p99_abs * 1e6, r->offset_max_abs * 1e6);
  }
  fflush(stdout);
}

static int passes(const result_t *r) {
  return r->loss <= 0.01 && r->sent_per_s >= 0.95 * r->rate;
}

static int open_sockets(int family) {
  struct rlimit lim;
  if (!getrlimit(RLIMIT_NOFILE, &lim) && lim.rlim_cur < (rlim_t)nsocks + 16) {
    lim.rlim_cur = lim.rlim_max < (rlim_t)nsocks + 16 ? lim.rlim_max : (rlim_t)nsocks + 16;
    setrlimit(RLIMIT_NOFILE, &lim);
  }
  epfd = epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0) { perror("ntpload: epoll_create1"); return -1; }
  for (int i = 0; i < nsocks; i++) {
    int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1, big = 4 << 20;
    if (fd < 0) { perror("ntpload: socket"); return -1; }
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one);
    if (kernel_tx) {
      int flags = SOF_TIMESTAMPING_TX_SOFTWARE | SOF_TIMESTAMPING_SOFTWARE |
                  SOF_TIMESTAMPING_OPT_TSONLY | SOF_TIMESTAMPING_OPT_ID;
      if (setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPING, &flags, sizeof flags)) {
        perror("ntpload: -T: SO_TIMESTAMPING");
        return -1;
      }
    }
    struct sockaddr_storage any = {.ss_family = (sa_family_t)family};  // port 0: the kernel picks
    socklen_t len = family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
    if (bind(fd, (struct sockaddr *)&any, len)) { perror("ntpload: bind"); return -1; }
    struct epoll_event e = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &e)) { perror("ntpload: epoll_ctl"); return -1; }
    socks[i] = fd;
  }
  return 0;
}

int main(int argc, char **argv) {
  const char *host = NULL, *port = "123";
  double rate = 10000, secs = 3;
  int ramp = 0, json = 0;
  nsocks = 64;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "-p") && i + 1 < argc) port = argv[++i];
    else if (!strcmp(a, "-r") && i + 1 < argc) rate = atof(argv[++i]);
    else if (!strcmp(a, "-d") && i + 1 < argc) secs = atof(argv[++i]);
    else if (!strcmp(a, "-s") && i + 1 < argc) nsocks = atoi(argv[++i]);
    else if (!strcmp(a, "-k") && i + 1 < argc) {
      if (mac_setup(argv[++i])) {
        fputs("ntpload: -k takes ID:TYPE:HEXKEY (TYPE MD5, SHA1, SHA256, AES128CMAC, "
              "AES256CMAC)\n", stderr);
        return 2;
      }
    } else if (!strcmp(a, "-T")) kernel_tx = 1;
    else if (!strcmp(a, "--ramp")) ramp = 1;
    else if (!strcmp(a, "--json")) json = 1;
    else if (!strcmp(a, "--template") && i + 1 < argc) {
      if (load_templates(argv[++i])) return 2;
    }
    else if (!strcmp(a, "-h") || !strcmp(a, "--help")) { fputs(USAGE, stdout); return 0; }
    else if (a[0] != '-' && !host) host = a;
    else { fputs(USAGE, stderr); return 2; }
  }
  if (!host || !(rate > 0 && rate <= MAX_RATE) || !(secs > 0 && secs <= MAX_SECONDS) ||
      rate * secs > MAX_REQUESTS || nsocks < 1 || nsocks > MAX_SOCKETS) {
    fputs(USAGE, stderr);
    fprintf(stderr, "  0 < RATE <= %.0f, 0 < SECONDS <= %.0f, RATE * SECONDS <= %.0f, "
                    "1 <= SOCKETS <= %d\n", MAX_RATE, MAX_SECONDS, MAX_REQUESTS, MAX_SOCKETS);
    return 2;
  }
  struct addrinfo hints = {.ai_socktype = SOCK_DGRAM, .ai_protocol = IPPROTO_UDP}, *ai;
  int e = getaddrinfo(host, port, &hints, &ai);
  if (e) { fprintf(stderr, "ntpload: %s: %s\n", host, gai_strerror(e)); return 2; }
  if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) {
    fprintf(stderr, "ntpload: %s: not an IP address\n", host);
    return 2;
  }
  memcpy(&server, ai->ai_addr, ai->ai_addrlen);
  server_len = ai->ai_addrlen;
  int family = ai->ai_family;
  freeaddrinfo(ai);
  if (getrandom(&rng_state, sizeof rng_state, 0) != sizeof rng_state || !rng_state) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    rng_state = ((uint64_t)t.tv_nsec << 32 ^ (uint64_t)t.tv_sec ^ (uint64_t)getpid()) | 1;
  }
  if (kernel_tx && !(tx_ids = calloc((size_t)nsocks, sizeof *tx_ids))) {
    perror("ntpload: -T");
    return 1;
  }
  if (open_sockets(family)) return 1;

  if (!json) {
    printf("%10s %10s %10s %8s %6s %6s %9s %9s %9s %9s %9s\n", "rate", "sent/s", "answered/s",
           "loss", "kod", "bad", "rtt50_us", "rtt99_us", "off50_us", "|off|99", "|off|max");
  }
  if (!ramp) {
    result_t r = run_step(rate, secs);
    print_step(&r, json);
    return r.answered_per_s > 0 ? 0 : 1;
  }
  // Ramp: double while a step passes, then bisect between the last pass
  // and the first failure.
  double best = 0, lo = 0, hi = 0;
  for (int i = 0; i < RAMP_DOUBLINGS && rate <= MAX_RATE && rate * secs <= MAX_REQUESTS; i++) {
    result_t r = run_step(rate, secs);
    print_step(&r, json);
    if (!passes(&r)) { hi = rate; break; }
    lo = rate;
    if (r.answered_per_s > best) best = r.answered_per_s;
    rate *= 2;
  }
  for (int i = 0; i < RAMP_BISECTIONS && lo > 0 && hi > 0; i++) {
    double mid = round((lo + hi) / 2);
    result_t r = run_step(mid, secs);
    print_step(&r, json);
    if (passes(&r)) {
      lo = mid;
      if (r.answered_per_s > best) best = r.answered_per_s;
    } else {
      hi = mid;
    }
  }
  if (json) printf("{\"max_rate_answered\":%.0f}\n", best);
  else printf("max rate answered at >=99%%: %.0f/s\n", best);
  return best > 0 ? 0 : 1;
}
