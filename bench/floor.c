// floor: about the least work one thread can do to answer NTP on this host,
// so `deno task bench --floor` can show where the machine, not a server,
// sets the limit.
//
// One IPv4 socket on 127.0.0.1:PORT, SO_TIMESTAMPNS receive times, up to 64
// requests per recvmmsg, the whole batch answered by one sendmmsg stamped
// with one clock read (so its xmt is not exact under load: this is a
// throughput reference, not a server), DF set as edge-time does. It checks
// only length and mode, and serves stratum 8, refid LOCL. No rate limit,
// no access list, no statistics, no client table.
//
// Build: cc -O2 -o floor floor.c     Use: floor PORT   (runs until killed)
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define BATCH 64
#define NTP_EPOCH_OFFSET 2208988800ULL

static void put_ntp(unsigned char *p, struct timespec t) {
  uint64_t v = ((uint64_t)t.tv_sec + NTP_EPOCH_OFFSET) << 32 |
               (((uint64_t)t.tv_nsec << 32) / 1000000000ULL);
  for (int i = 7; i >= 0; i--) { p[i] = v & 0xff; v >>= 8; }
}

int main(int argc, char **argv) {
  if (argc != 2) { fprintf(stderr, "usage: floor PORT\n"); return 2; }
  int fd = socket(AF_INET, SOCK_DGRAM, 0), one = 1, rcvbuf = 4 << 20, df = IP_PMTUDISC_PROBE;
  setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one);
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf))
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  setsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, &df, sizeof df);
  struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[1])) };
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, (struct sockaddr *)&addr, sizeof addr)) { perror("floor: bind"); return 1; }

  static unsigned char rx[BATCH][128], tx[BATCH][48], ctl[BATCH][64];
  static struct sockaddr_in names[BATCH];
  struct mmsghdr rmsg[BATCH], tmsg[BATCH];
  struct iovec riov[BATCH], tiov[BATCH];
  for (;;) {
    for (int i = 0; i < BATCH; i++) {
      riov[i] = (struct iovec){ rx[i], sizeof rx[i] };
      memset(&rmsg[i], 0, sizeof rmsg[i]);
      rmsg[i].msg_hdr = (struct msghdr){ .msg_name = &names[i], .msg_namelen = sizeof names[i],
                                         .msg_iov = &riov[i], .msg_iovlen = 1,
                                         .msg_control = ctl[i], .msg_controllen = sizeof ctl[i] };
    }
    int n = recvmmsg(fd, rmsg, BATCH, MSG_WAITFORONE, NULL);
    if (n <= 0) continue;
    int m = 0;
    for (int i = 0; i < n; i++) {
      if (rmsg[i].msg_len < 48 || (rx[i][0] & 7) != 3) continue;
      struct timespec rec = {0};
      for (struct cmsghdr *c = CMSG_FIRSTHDR(&rmsg[i].msg_hdr); c; c = CMSG_NXTHDR(&rmsg[i].msg_hdr, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) memcpy(&rec, CMSG_DATA(c), sizeof rec);
      unsigned char *p = tx[m];
      memset(p, 0, 48);
      p[0] = (rx[i][0] & 0x38) | 4; // LI 0, request's version, mode 4
      p[1] = 8;                      // stratum
      p[2] = rx[i][2];               // poll
      p[3] = 0xec;                   // precision 2^-20
      memcpy(p + 12, "LOCL", 4);
      memcpy(p + 24, rx[i] + 40, 8); // org = request's xmt
      put_ntp(p + 32, rec);
      tiov[m] = (struct iovec){ p, 48 };
      memset(&tmsg[m], 0, sizeof tmsg[m]);
      tmsg[m].msg_hdr = (struct msghdr){ .msg_name = &names[i], .msg_namelen = rmsg[i].msg_hdr.msg_namelen,
                                         .msg_iov = &tiov[m], .msg_iovlen = 1 };
      m++;
    }
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    for (int j = 0; j < m; j++) { put_ntp(tx[j] + 16, now); put_ntp(tx[j] + 40, now); }
    for (int at = 0; at < m;) {
      int k = sendmmsg(fd, tmsg + at, m - at, 0);
      if (k <= 0) break;
      at += k;
    }
  }
}
