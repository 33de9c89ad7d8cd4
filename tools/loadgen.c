/* loadgen: a small HTTP/2 load generator that presents a client certificate.
 *
 * h2load cannot send a client certificate, so the transport benchmark uses
 * this instead: nghttp2 client sessions over libevent OpenSSL bufferevents,
 * N connections per thread, M concurrent streams per connection, a request
 * count or a duration, an optional request body from a file, and latency
 * percentiles from a 10 µs histogram. The certificate is optional, so the
 * same tool can be compared with h2load against a server without client
 * authentication (docs/benchmarks.md).
 *
 * Modes for tests: --idle holds connections open without requests (memory per
 * idle connection); --attack rapid-reset|ping-flood|settings-flood sends abusive frame
 * sequences and reports whether the server closed the connection. */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HIST_BUCKETS 200000 /* 10 µs each: 2 s; slower lands in the last bucket */

struct opts {
  const char *host, *port, *cert, *key, *cacert, *path, *data_file, *attack, *method;
  int conns, streams, threads, idle_secs;
  long requests;
  double duration;
  bool idle;
  bool tls12;
};

static struct opts o = {.host = "127.0.0.1",
                        .port = "8443",
                        .path = "/healthz",
                        .conns = 10,
                        .streams = 10,
                        .threads = 1,
                        .requests = 0,
                        .duration = 0,
                        .method = "GET"};
static uint8_t *body;
static size_t body_len;
static SSL_CTX *ssl_ctx;
static struct addrinfo *addr;

static _Atomic long issued, done_ok, done_err, status_2xx, status_other, conn_closed_by_peer, conns_ready;
static _Atomic uint64_t hist[HIST_BUCKETS];
static _Atomic int stop_flag;

struct thr;
struct lconn {
  struct thr *t;
  struct bufferevent *bev;
  nghttp2_session *s;
  int active;
  bool ready, dead, peer_closed;
  long attack_left;
};
struct stream_ctx {
  struct timespec start;
  int status;
  size_t body_off;
  uint8_t *own; /* this request's body when the template has a sequence mark */
};

/* A body holding SEQ_MARK gets a unique number there on every request, so
 * that a load of messages is a load of different messages. */
#define SEQ_MARK "SEQ0000000"
static size_t seq_off[8];
static int nseq;
static _Atomic uint64_t seq_next;
struct thr {
  pthread_t th;
  struct event_base *base;
  struct lconn *c;
  int nconns;
  int alive;
  struct event *tick;
};

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static bool may_issue(void) {
  if (atomic_load(&stop_flag))
    return false;
  if (o.requests > 0)
    return atomic_fetch_add(&issued, 1) < o.requests;
  atomic_fetch_add(&issued, 1);
  return true;
}

static void flush(struct lconn *c);

static ssize_t data_read(nghttp2_session *s, int32_t sid, uint8_t *buf, size_t len, uint32_t *flags,
                         nghttp2_data_source *src, void *ud) {
  (void)s;
  (void)sid;
  (void)ud;
  struct stream_ctx *sc = src->ptr;
  size_t n = body_len - sc->body_off < len ? body_len - sc->body_off : len;
  memcpy(buf, (sc->own ? sc->own : body) + sc->body_off, n);
  sc->body_off += n;
  if (sc->body_off == body_len)
    *flags |= NGHTTP2_DATA_FLAG_EOF;
  return (ssize_t)n;
}

static void submit_one(struct lconn *c) {
  struct stream_ctx *sc = calloc(1, sizeof(*sc));
  if (!sc)
    return;
  clock_gettime(CLOCK_MONOTONIC, &sc->start);
  if (body && nseq && (sc->own = malloc(body_len))) {
    char num[16];
    snprintf(num, sizeof(num), "%010llu", (unsigned long long)(atomic_fetch_add(&seq_next, 1) % 10000000000ull));
    memcpy(sc->own, body, body_len);
    for (int i = 0; i < nseq; i++)
      memcpy(sc->own + seq_off[i], num, 10);
  }
  char clen[24];
  snprintf(clen, sizeof(clen), "%zu", body_len);
  nghttp2_nv nv[6];
  size_t n = 0;
#define NV(k, v) nv[n++] = (nghttp2_nv){(uint8_t *)(k), (uint8_t *)(v), strlen(k), strlen(v), NGHTTP2_NV_FLAG_NONE}
  NV(":method", body ? (strcmp(o.method, "GET") ? o.method : "POST") : o.method);
  NV(":scheme", "https");
  NV(":authority", o.host);
  NV(":path", o.path);
  if (body) {
    NV("content-type", "application/octet-stream");
    NV("content-length", clen);
  }
#undef NV
  nghttp2_data_provider prd = {.source.ptr = sc, .read_callback = data_read};
  int32_t id = nghttp2_submit_request(c->s, NULL, nv, n, body ? &prd : NULL, sc);
  if (id < 0) {
    free(sc->own);
    free(sc);
    atomic_fetch_add(&done_err, 1);
    return;
  }
  c->active++;
}

static void fill(struct lconn *c) {
  while (c->ready && !c->dead && c->active < o.streams && may_issue())
    submit_one(c);
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t namelen,
                     const uint8_t *value, size_t valuelen, uint8_t flags, void *ud) {
  (void)flags;
  (void)ud;
  if (f->hd.type == NGHTTP2_HEADERS && namelen == 7 && memcmp(name, ":status", 7) == 0) {
    struct stream_ctx *sc = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (sc && valuelen == 3)
      sc->status = (value[0] - '0') * 100 + (value[1] - '0') * 10 + (value[2] - '0');
  }
  return 0;
}

static int on_data(nghttp2_session *s, uint8_t flags, int32_t sid, const uint8_t *d, size_t len, void *ud) {
  (void)s, (void)flags, (void)sid, (void)d, (void)len, (void)ud;
  return 0;
}

static int on_close(nghttp2_session *s, int32_t sid, uint32_t code, void *ud) {
  struct lconn *c = ud;
  struct stream_ctx *sc = nghttp2_session_get_stream_user_data(s, sid);
  if (!sc)
    return 0;
  struct timespec end;
  clock_gettime(CLOCK_MONOTONIC, &end);
  double us = (double)(end.tv_sec - sc->start.tv_sec) * 1e6 + (double)(end.tv_nsec - sc->start.tv_nsec) / 1e3;
  long b = (long)(us / 10);
  if (b >= HIST_BUCKETS)
    b = HIST_BUCKETS - 1;
  atomic_fetch_add_explicit(&hist[b], 1, memory_order_relaxed);
  if (code == NGHTTP2_NO_ERROR && sc->status) {
    atomic_fetch_add(&done_ok, 1);
    atomic_fetch_add(sc->status >= 200 && sc->status < 300 ? &status_2xx : &status_other, 1);
  } else {
    atomic_fetch_add(&done_err, 1);
  }
  free(sc->own);
  free(sc);
  c->active--;
  return 0;
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud) {
  (void)s;
  struct lconn *c = ud;
  if (f->hd.type == NGHTTP2_SETTINGS && !(f->hd.flags & NGHTTP2_FLAG_ACK) && !c->ready) {
    c->ready = true;
    atomic_fetch_add(&conns_ready, 1);
  }
  if (f->hd.type == NGHTTP2_GOAWAY && !c->peer_closed) {
    c->peer_closed = true;
    atomic_fetch_add(&conn_closed_by_peer, 1);
  }
  return 0;
}

static void conn_dead(struct lconn *c) {
  if (c->dead)
    return;
  c->dead = true;
  c->t->alive--;
  if (c->t->alive == 0)
    event_base_loopexit(c->t->base, NULL);
}

static void attack_step(struct lconn *c) {
  /* one abusive unit per call; flush() in between so frames go out in order */
  if (strcmp(o.attack, "rapid-reset") == 0) {
    nghttp2_nv nv[] = {{(uint8_t *)":method", (uint8_t *)"GET", 7, 3, 0},
                       {(uint8_t *)":scheme", (uint8_t *)"https", 7, 5, 0},
                       {(uint8_t *)":authority", (uint8_t *)"localhost", 10, 9, 0},
                       {(uint8_t *)":path", (uint8_t *)"/healthz", 5, 8, 0}};
    int32_t id = nghttp2_submit_request(c->s, NULL, nv, 4, NULL, NULL);
    const uint8_t *p;
    ssize_t n;
    while ((n = nghttp2_session_mem_send(c->s, &p)) > 0)
      bufferevent_write(c->bev, p, (size_t)n);
    if (id > 0)
      nghttp2_submit_rst_stream(c->s, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
  } else if (strcmp(o.attack, "settings-flood") == 0) {
    nghttp2_settings_entry iv = {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 100};
    nghttp2_submit_settings(c->s, NGHTTP2_FLAG_NONE, &iv, 1);
  } else {
    uint8_t opaque[8] = {0};
    nghttp2_submit_ping(c->s, NGHTTP2_FLAG_NONE, opaque);
  }
}

static void flush(struct lconn *c) {
  if (c->dead)
    return;
  if (o.attack && c->ready) {
    while (c->attack_left > 0 && evbuffer_get_length(bufferevent_get_output(c->bev)) < 65536) {
      attack_step(c);
      c->attack_left--;
      const uint8_t *p;
      ssize_t n;
      while ((n = nghttp2_session_mem_send(c->s, &p)) > 0)
        bufferevent_write(c->bev, p, (size_t)n);
    }
  } else if (!o.idle) {
    fill(c);
  }
  const uint8_t *p;
  ssize_t n;
  while ((n = nghttp2_session_mem_send(c->s, &p)) > 0)
    bufferevent_write(c->bev, p, (size_t)n);
  if (n < 0)
    conn_dead(c);
}

static void read_cb(struct bufferevent *bev, void *arg) {
  struct lconn *c = arg;
  struct evbuffer *in = bufferevent_get_input(bev);
  size_t len = evbuffer_get_length(in);
  unsigned char *d = evbuffer_pullup(in, (ssize_t)len);
  ssize_t rv = nghttp2_session_mem_recv(c->s, d, len);
  evbuffer_drain(in, len);
  if (rv < 0) {
    conn_dead(c);
    return;
  }
  flush(c);
  if (!o.idle && !o.attack && c->active == 0 &&
      (atomic_load(&stop_flag) || (o.requests > 0 && atomic_load(&issued) >= o.requests)))
    conn_dead(c);
}

static void write_cb(struct bufferevent *bev, void *arg) {
  (void)bev;
  flush(arg);
}

static void event_cb(struct bufferevent *bev, short ev, void *arg) {
  (void)bev;
  struct lconn *c = arg;
  if (ev & BEV_EVENT_CONNECTED) {
    flush(c);
    return;
  }
  if (ev & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
    if ((o.attack || o.idle) && !c->peer_closed) {
      c->peer_closed = true;
      atomic_fetch_add(&conn_closed_by_peer, 1);
    }
    unsigned long e;
    while ((e = bufferevent_get_openssl_error(bev)) != 0) {
      char buf[256];
      ERR_error_string_n(e, buf, sizeof(buf));
      if (!o.attack && !o.idle)
        fprintf(stderr, "loadgen: connection error: %s\n", buf);
    }
    conn_dead(c);
  }
}

static int conn_open(struct thr *t, struct lconn *c) {
  c->t = t;
  SSL *ssl = SSL_new(ssl_ctx);
  SSL_set_tlsext_host_name(ssl, "localhost");
  c->bev = bufferevent_openssl_socket_new(t->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
  bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
  bufferevent_setcb(c->bev, read_cb, write_cb, event_cb, c);
  if (bufferevent_socket_connect(c->bev, addr->ai_addr, (int)addr->ai_addrlen) < 0)
    return -1;
  int fd = (int)bufferevent_getfd(c->bev), one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  nghttp2_session_callbacks *cb;
  nghttp2_session_callbacks_new(&cb);
  nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data);
  nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_close);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
  nghttp2_session_client_new(&c->s, cb, c);
  nghttp2_session_callbacks_del(cb);
  nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 100},
                                 {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20}};
  nghttp2_submit_settings(c->s, NGHTTP2_FLAG_NONE, iv, 2);
  c->attack_left = o.attack ? 100000 : 0;
  bufferevent_enable(c->bev, EV_READ | EV_WRITE);
  t->alive++;
  return 0;
}

static void tick_cb(evutil_socket_t fd, short what, void *arg) {
  (void)fd, (void)what;
  struct thr *t = arg;
  if (atomic_load(&stop_flag)) {
    for (int i = 0; i < t->nconns; i++) {
      struct lconn *c = &t->c[i];
      if (!c->dead && (o.idle || o.attack || c->active == 0))
        conn_dead(c);
    }
    if (t->alive == 0)
      event_base_loopexit(t->base, NULL);
  }
}

static void *thr_main(void *arg) {
  struct thr *t = arg;
  event_base_dispatch(t->base);
  return NULL;
}

static void usage(void) {
  fprintf(stderr, "usage: loadgen [--host H] [--port P] [--cert F --key F] [--cacert F] [-c CONNS] [-m STREAMS]\n"
                  "               [-t THREADS] (-n REQUESTS | -D SECONDS) [--path P] [--method M] [--data FILE]\n"
                  "               [--idle SECONDS] [--attack rapid-reset|ping-flood|settings-flood] [--tls12]\n");
  exit(2);
}

int main(int argc, char **argv) {
  static const struct option lo[] = {{"host", 1, 0, 'H'},   {"port", 1, 0, 'P'},   {"cert", 1, 0, 'C'},
                                     {"key", 1, 0, 'K'},    {"cacert", 1, 0, 'A'}, {"path", 1, 0, 'p'},
                                     {"data", 1, 0, 'd'},   {"idle", 1, 0, 'I'},   {"attack", 1, 0, 'X'},
                                     {"method", 1, 0, 'M'}, {"tls12", 0, 0, '2'},  {0, 0, 0, 0}};
  int ch;
  while ((ch = getopt_long(argc, argv, "c:m:n:D:t:", lo, NULL)) != -1) {
    switch (ch) {
    case 'H':
      o.host = optarg;
      break;
    case 'P':
      o.port = optarg;
      break;
    case 'C':
      o.cert = optarg;
      break;
    case 'K':
      o.key = optarg;
      break;
    case 'A':
      o.cacert = optarg;
      break;
    case 'p':
      o.path = optarg;
      break;
    case 'd':
      o.data_file = optarg;
      break;
    case 'M':
      o.method = optarg;
      break;
    case 'I':
      o.idle = true;
      o.idle_secs = atoi(optarg);
      break;
    case 'X':
      o.attack = optarg;
      break;
    case '2':
      o.tls12 = true;
      break;
    case 'c':
      o.conns = atoi(optarg);
      break;
    case 'm':
      o.streams = atoi(optarg);
      break;
    case 'n':
      o.requests = atol(optarg);
      break;
    case 'D':
      o.duration = atof(optarg);
      break;
    case 't':
      o.threads = atoi(optarg);
      break;
    default:
      usage();
    }
  }
  if (o.conns < 1 || o.streams < 1 || o.threads < 1 || (!o.idle && !o.attack && o.requests <= 0 && o.duration <= 0))
    usage();
  if (o.threads > o.conns)
    o.threads = o.conns;
  signal(SIGPIPE, SIG_IGN);
  if (o.data_file) {
    FILE *f = fopen(o.data_file, "rb");
    if (!f) {
      perror(o.data_file);
      return 2;
    }
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    body = malloc(sz > 0 ? (size_t)sz : 1);
    body_len = fread(body, 1, (size_t)(sz > 0 ? sz : 0), f);
    for (uint8_t *m = body; nseq < 8 && (m = memmem(m, body_len - (size_t)(m - body), SEQ_MARK, strlen(SEQ_MARK)));
         m += strlen(SEQ_MARK))
      seq_off[nseq++] = (size_t)(m - body);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    seq_next = (uint64_t)now.tv_sec % 100000 * 100000; /* distinct between runs */
    fclose(f);
  }
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
  if (getaddrinfo(o.host, o.port, &hints, &addr)) {
    fprintf(stderr, "loadgen: cannot resolve %s\n", o.host);
    return 2;
  }
  ssl_ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_min_proto_version(ssl_ctx, TLS1_2_VERSION);
  if (o.tls12)
    SSL_CTX_set_max_proto_version(ssl_ctx, TLS1_2_VERSION);
  SSL_CTX_set_alpn_protos(ssl_ctx, (const unsigned char *)"\x02h2", 3);
  if (o.cacert) {
    SSL_CTX_load_verify_locations(ssl_ctx, o.cacert, NULL);
    SSL_CTX_set_verify(ssl_ctx, SSL_VERIFY_PEER, NULL);
  }
  if (o.cert && (SSL_CTX_use_certificate_chain_file(ssl_ctx, o.cert) != 1 ||
                 SSL_CTX_use_PrivateKey_file(ssl_ctx, o.key ? o.key : o.cert, SSL_FILETYPE_PEM) != 1)) {
    fprintf(stderr, "loadgen: cannot load client certificate %s\n", o.cert);
    return 2;
  }
  struct thr *ts = calloc((size_t)o.threads, sizeof(*ts));
  for (int i = 0; i < o.threads; i++) {
    struct thr *t = &ts[i];
    t->base = event_base_new();
    t->nconns = o.conns / o.threads + (i < o.conns % o.threads);
    t->c = calloc((size_t)t->nconns, sizeof(*t->c));
    for (int j = 0; j < t->nconns; j++)
      if (conn_open(t, &t->c[j])) {
        fprintf(stderr, "loadgen: connect failed: %s\n", strerror(errno));
        return 1;
      }
    struct timeval tv = {0, 50000};
    t->tick = event_new(t->base, -1, EV_PERSIST, tick_cb, t);
    event_add(t->tick, &tv);
  }
  double t0 = now_s();
  for (int i = 0; i < o.threads; i++)
    pthread_create(&ts[i].th, NULL, thr_main, &ts[i]);
  double limit = o.idle ? o.idle_secs : (o.attack ? 10.0 : o.duration);
  if (o.idle) {
    /* wait until every connection is ready, report, then hold */
    while (atomic_load(&conns_ready) + atomic_load(&conn_closed_by_peer) < o.conns && now_s() - t0 < 30)
      usleep(10000);
    printf("IDLE ready=%ld\n", (long)atomic_load(&conns_ready));
    fflush(stdout);
  }
  while (limit > 0 && now_s() - t0 < limit) {
    usleep(10000);
    if (o.attack && atomic_load(&conn_closed_by_peer) >= o.conns)
      break;
  }
  if (limit > 0)
    atomic_store(&stop_flag, 1);
  for (int i = 0; i < o.threads; i++)
    pthread_join(ts[i].th, NULL);
  double el = now_s() - t0;
  if (o.attack) {
    printf("ATTACK %s closed_by_server=%ld of %d elapsed_s=%.2f\n", o.attack, (long)atomic_load(&conn_closed_by_peer),
           o.conns, el);
    return atomic_load(&conn_closed_by_peer) >= o.conns ? 0 : 1;
  }
  if (o.idle)
    return 0;
  long ok = atomic_load(&done_ok), err = atomic_load(&done_err);
  uint64_t total = 0, cum = 0;
  for (int i = 0; i < HIST_BUCKETS; i++)
    total += hist[i];
  double p50 = 0, p99 = 0;
  bool h50 = false;
  for (int i = 0; i < HIST_BUCKETS && total; i++) {
    cum += hist[i];
    if (!h50 && cum * 100 >= total * 50) {
      p50 = (i + 1) * 0.01;
      h50 = true;
    }
    if (cum * 100 >= total * 99) {
      p99 = (i + 1) * 0.01;
      break;
    }
  }
  printf("requests: ok=%ld errors=%ld 2xx=%ld other_status=%ld elapsed_s=%.3f\n", ok, err, (long)status_2xx,
         (long)status_other, el);
  printf("RESULT rps=%.0f p50_ms=%.2f p99_ms=%.2f\n", (double)ok / el, p50, p99);
  return err ? 1 : 0;
}
