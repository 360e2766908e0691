/*
 * ntske_load: NTS-KE (RFC 8915 §4) handshake load generator for bench:nts.
 *
 * T threads, each a loop of whole key exchanges against HOST:PORT for
 * D seconds: TCP connect, TLS 1.3 handshake with ALPN "ntske/1" (server
 * certificate verified against -c CAFILE when given), the request (Next
 * Protocol NTPv4, AEAD AES-SIV-CMAC-256, End of Message), the response
 * read to End of Message, the C2S key exported, close. A key exchange
 * counts when the response has at least one New Cookie record and no
 * Error record.
 *
 *   cc -O2 -o ntske_load ntske_load.c -lssl -lcrypto -lpthread
 *   ntske_load -p PORT [-t THREADS] [-d SECONDS] [-c CAFILE] [--json] HOST
 *
 * Prints one line: key exchanges per second, completed, failed; --json
 * prints {"ke_per_s":…,"ok":…,"failed":…,"seconds":…}.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const char *host = "127.0.0.1";
static int port = 4460;
static double seconds = 5;
static SSL_CTX *ctx;
static atomic_long ok_count, fail_count, fail_reported;
static volatile int running = 1;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* One key exchange; 1 on success. */
static int exchange(void) {
  static const unsigned char request[] = {
      0x80, 0x01, 0x00, 0x02, 0x00, 0x00, /* Next Protocol: NTPv4 */
      0x80, 0x04, 0x00, 0x02, 0x00, 0x0f, /* AEAD: AES-SIV-CMAC-256 */
      0x80, 0x00, 0x00, 0x00,             /* End of Message */
  };
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
  unsigned char buf[16384], key[32];
  size_t have = 0;
  int fd, good = 0, cookies = 0, error = 0, done = 0;
  SSL *ssl;

  if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) return 0;
  fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct timeval tv = {.tv_sec = 5};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
    close(fd);
    return 0;
  }
  ssl = SSL_new(ctx);
  SSL_set_fd(ssl, fd);
  SSL_set1_host(ssl, host);
  if (SSL_connect(ssl) == 1 && SSL_write(ssl, request, sizeof request) == sizeof request) {
    /* Read records until End of Message. */
    while (!done) {
      int n = SSL_read(ssl, buf + have, sizeof buf - have);
      if (n <= 0) break;
      have += n;
      size_t at = 0;
      cookies = error = 0;
      while (at + 4 <= have) {
        int type = ((buf[at] << 8) | buf[at + 1]) & 0x7fff;
        size_t len = (buf[at + 2] << 8) | buf[at + 3];
        if (at + 4 + len > have) break;
        if (type == 5) cookies++;
        if (type == 2) error = 1;
        at += 4 + len;
        if (type == 0) {
          done = 1;
          break;
        }
      }
      if (have == sizeof buf) break;
    }
    const unsigned char context[] = {0, 0, 0, 15, 0};
    good = done && cookies > 0 && !error &&
           SSL_export_keying_material(ssl, key, sizeof key, "EXPORTER-network-time-security",
                                      30, context, sizeof context, 1) == 1;
  }
  if (!good && atomic_fetch_add(&fail_reported, 1) == 0) {
    /* The first failure says why, once. */
    char why[256] = "no error queued";
    unsigned long e = ERR_peek_error();
    if (e) ERR_error_string_n(e, why, sizeof why);
    fprintf(stderr, "ntske_load: first failure: %s (done %d, cookies %d, error %d, verify %ld)\n",
            why, done, cookies, error, SSL_get_verify_result(ssl));
  }
  SSL_shutdown(ssl);
  SSL_free(ssl);
  close(fd);
  ERR_clear_error();
  return good;
}

static void *worker(void *arg) {
  (void)arg;
  while (running) {
    if (exchange())
      atomic_fetch_add(&ok_count, 1);
    else
      atomic_fetch_add(&fail_count, 1);
  }
  return NULL;
}

int main(int argc, char **argv) {
  int threads = 4, json = 0;
  const char *ca = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "-p") && i + 1 < argc) port = atoi(argv[++i]);
    else if (!strcmp(argv[i], "-t") && i + 1 < argc) threads = atoi(argv[++i]);
    else if (!strcmp(argv[i], "-d") && i + 1 < argc) seconds = atof(argv[++i]);
    else if (!strcmp(argv[i], "-c") && i + 1 < argc) ca = argv[++i];
    else if (!strcmp(argv[i], "--json")) json = 1;
    else if (argv[i][0] != '-') host = argv[i];
    else {
      fprintf(stderr, "usage: ntske_load -p PORT [-t THREADS] [-d SECONDS] [-c CAFILE] [--json] HOST\n");
      return 2;
    }
  }
  if (threads < 1 || threads > 256 || seconds <= 0) {
    fprintf(stderr, "ntske_load: threads 1..256, seconds > 0\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN); /* a server that closes early is a failed exchange, not our end */
  ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
  SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
  static const unsigned char alpn[] = {7, 'n', 't', 's', 'k', 'e', '/', '1'};
  SSL_CTX_set_alpn_protos(ctx, alpn, sizeof alpn);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF); /* every exchange a full handshake */
  if (ca) {
    if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) {
      fprintf(stderr, "ntske_load: cannot load %s\n", ca);
      return 2;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
  }
  pthread_t tid[256];
  double t0 = now();
  for (int i = 0; i < threads; i++) pthread_create(&tid[i], NULL, worker, NULL);
  while (now() - t0 < seconds) usleep(10000);
  running = 0;
  long ok_at_end = atomic_load(&ok_count), failed_at_end = atomic_load(&fail_count);
  double elapsed = now() - t0;
  for (int i = 0; i < threads; i++) pthread_join(tid[i], NULL);
  if (json)
    printf("{\"ke_per_s\":%.1f,\"ok\":%ld,\"failed\":%ld,\"seconds\":%.3f}\n",
           ok_at_end / elapsed, ok_at_end, failed_at_end, elapsed);
  else
    printf("%.1f key exchanges/s (%ld ok, %ld failed in %.2f s)\n", ok_at_end / elapsed,
           ok_at_end, failed_at_end, elapsed);
  return 0;
}
