// scrape: fetches one URL path over HTTP/1.1 keep-alive at a fixed rate,
// spread over a few connections, and counts the 200 answers. It stands in
// for a monitoring system that, in service, scrapes from another machine:
// written in C so that on a small test machine the scraper's own CPU takes
// as little as possible from what is being measured.
//
// Build: cc -O2 -o scrape scrape.c
// Use:   scrape PORT RATE SECONDS [CONNECTIONS [PATH]]   (127.0.0.1; 4, /status)
// Requests go out every TICK (5 ms), as many as are due by then, round-robin
// over the connections, as the scraper this one replaced (a Deno
// setInterval) did; answers are read as they come.
// Stops early on SIGTERM or SIGINT. Then waits up to 1 s for the answers
// still due and prints one JSON line:
//   {"sent":N,"ok":N,"other":N,"reconnects":N,"seconds":S}   (S: how long it sent)
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 64
#define BUF (1 << 20)
#define TICK 0.005

typedef struct { int fd; size_t len; long inflight; char *buf; } conn_t;

static volatile sig_atomic_t stopping;
static void on_signal(int sig) { (void)sig; stopping = 1; }

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

// Consumes every complete response in c->buf; counts 200s and others.
static void parse(conn_t *c, long *ok, long *other) {
  size_t at = 0;
  for (;;) {
    char *start = c->buf + at;
    size_t left = c->len - at;
    char *end = memmem(start, left, "\r\n\r\n", 4);
    if (!end) break;
    size_t head = (size_t)(end - start) + 4, body = 0;
    char *cl = memmem(start, head, "Content-Length:", 15);
    if (!cl) cl = memmem(start, head, "content-length:", 15);
    if (cl) body = strtoul(cl + 15, NULL, 10);
    if (left < head + body) break;
    if (left >= 12 && !memcmp(start, "HTTP/1.1 200", 12)) (*ok)++; else (*other)++;
    c->inflight--;
    at += head + body;
  }
  memmove(c->buf, c->buf + at, c->len - at);
  c->len -= at;
}

static int open_conn(int port) {
  struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a)) { perror("scrape: connect"); exit(1); }
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

int main(int argc, char **argv) {
  if (argc < 4) { fprintf(stderr, "usage: scrape PORT RATE SECONDS [CONNECTIONS [PATH]]\n"); return 2; }
  int port = atoi(argv[1]), nconn = argc > 4 ? atoi(argv[4]) : 4;
  double rate = atof(argv[2]), secs = atof(argv[3]);
  const char *path = argc > 5 ? argv[5] : "/status";
  if (port <= 0 || rate <= 0 || secs <= 0 || nconn < 1 || nconn > MAX_CONNS) {
    fprintf(stderr, "scrape: bad arguments\n");
    return 2;
  }
  char req[512];
  int reqlen = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: bench\r\n\r\n", path);
  conn_t conns[MAX_CONNS];
  struct pollfd pfd[MAX_CONNS];
  for (int i = 0; i < nconn; i++) {
    int fd = open_conn(port);
    conns[i] = (conn_t){ fd, 0, 0, malloc(BUF) };
    pfd[i] = (struct pollfd){ .fd = fd, .events = POLLIN };
  }
  signal(SIGTERM, on_signal);
  signal(SIGINT, on_signal);
  signal(SIGPIPE, SIG_IGN); // a write to a connection the server closed fails instead
  long sent = 0, ok = 0, other = 0, reconnects = 0;
  double start = now(), end = start + secs, drain = end + 1.0;
  int next_conn = 0;
  double next_send = start;
  for (;;) {
    double t = now();
    if (stopping && t < end) end = t, drain = t + 1.0;
    if (t >= drain) break;
    if (t < end && t >= next_send) {
      next_send += TICK;
      if (next_send < t) next_send = t + TICK; // late: do not send a backlog in bursts
      long due = (long)((t - start) * rate) + 1;
      for (; sent < due; sent++) {
        conn_t *c = &conns[next_conn];
        next_conn = (next_conn + 1) % nconn;
        if (write(c->fd, req, reqlen) != reqlen) continue; // closing: read() reconnects
        c->inflight++;
      }
    } else if (t >= end) {
      long inflight = 0;
      for (int i = 0; i < nconn; i++) inflight += conns[i].inflight;
      if (inflight == 0) break;
    }
    // Sleep until the next tick or an answer.
    double wait = t < end ? next_send - now() : 0.01;
    if (wait < 0) wait = 0;
    struct timespec ts = { (time_t)wait, (long)((wait - (time_t)wait) * 1e9) };
    if (ppoll(pfd, nconn, &ts, NULL) <= 0) continue;
    for (int i = 0; i < nconn; i++) {
      if (!(pfd[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      conn_t *c = &conns[i];
      ssize_t n = read(c->fd, c->buf + c->len, BUF - c->len);
      if (n <= 0) {
        // The server ends keep-alive connections after so many requests, as
        // servers do: open a new one; what was still pipelined is lost.
        close(c->fd);
        c->fd = pfd[i].fd = open_conn(port);
        c->len = 0;
        c->inflight = 0;
        reconnects++;
        continue;
      }
      c->len += n;
      parse(c, &ok, &other);
      if (c->len == BUF) { fprintf(stderr, "scrape: answer larger than %d bytes\n", BUF); return 1; }
    }
  }
  printf("{\"sent\":%ld,\"ok\":%ld,\"other\":%ld,\"reconnects\":%ld,\"seconds\":%.3f}\n", sent, ok,
         other, reconnects, end - start);
  return 0;
}
