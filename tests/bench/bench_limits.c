/* bench_limits.c — the machine's own limits, measured in the same run as RTCR's benchmarks.
 *
 * Everything RTCR does is bounded by a few raw speeds of the machine: copying memory (staging
 * dirty pages), LZ4 (checkpoint payloads), XXH3 (page hashes), waking another process (the
 * target <-> agent IPC channel) and ZeroMQ over TCP (replication). The absolute numbers vary
 * between machines and runs; RTCR's own benchmarks are judged as ratios to these floors.
 *
 * Methods:
 *   memcpy       64 MiB -> 64 MiB, pre-faulted, median of 7 copies
 *   LZ4          LZ4_compress_default / LZ4_decompress_safe per 64 KiB block over 32 MiB of
 *                "process memory": text (log lines), binary records (counters, pointers,
 *                small ints, padding), code-like skewed bytes, zero pages and 10 % random
 *   XXH3         XXH3_64bits over 64 MiB, median of 7
 *   futex        ping-pong between two processes, FUTEX_WAIT/WAKE only (bench_util)
 *   seqpacket    SOCK_SEQPACKET socketpair, 64-byte request and answer, two processes
 *   ZeroMQ       PUSH/PULL over tcp://127.0.0.1 between two threads, 64 B and 64 KiB
 *                messages; REQ/REP round trip, 64 B, two threads
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <lz4.h>
#include <xxhash.h>
#include <zmq.h>

#include "../lib/bench_util.h"

#define MIB           (1024u * 1024u)
#define COPY_BYTES    (64u * MIB)
#define LZ4_BYTES     (32u * MIB)
#define LZ4_BLOCK     (64u * 1024u)
#define REPS          7
#define FUTEX_ROUNDS  50000
#define SEQP_ROUNDS   5000
#define ZMQ_SMALL_N   1000000
#define ZMQ_LARGE_N   20000
#define ZMQ_RR_ROUNDS 3000
#define ZMQ_WARMUP    1000

static uint64_t rnd_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static double median_of(double *v, size_t n)
{
    bench_stats_t st;
    bench_stats(v, n, &st);
    return st.median;
}

/* ---- memory, LZ4, XXH3 ----------------------------------------------------------------------- */

static void bench_memcpy(bench_t *b)
{
    char *src = malloc(COPY_BYTES), *dst = malloc(COPY_BYTES);
    double gbps[REPS];

    if (!src || !dst) {
        free(src);
        free(dst);
        fprintf(stderr, "memcpy: out of memory\n");
        return;
    }
    memset(src, 0x5a, COPY_BYTES);
    memset(dst, 0, COPY_BYTES);
    for (int i = 0; i < REPS; i++) {
        uint64_t t0 = bench_now_nsec();
        memcpy(dst, src, COPY_BYTES);
        gbps[i] = (double)COPY_BYTES / (double)(bench_now_nsec() - t0);
        src[i] = dst[COPY_BYTES - 1 - i]; /* keep the copy observable */
    }
    bench_report(b, "limits_memcpy_gbps", median_of(gbps, REPS), "GB/s", "64 MiB, median of 7");
    free(src);
    free(dst);
}

/* 4 KiB pages of the kinds found in a component's memory */
static void fill_realistic(unsigned char *buf, size_t len)
{
    static const char *words[] = {
        "brake",   "pressure",   "wheel", "speed", "sensor", "timeout", "signal", "cap",
        "session", "checkpoint", "epoch", "ack",   "the",    "of",      "and",    "value",
        "ERROR",   "INFO",       "ecu",   "irq",   "tick=",  "label",   "0x1f40", "ok"};
    uint64_t s = 0x243f6a8885a308d3ull;

    for (size_t page = 0; page * 4096 < len; page++) {
        unsigned char *p = buf + page * 4096;
        size_t n = len - page * 4096 < 4096 ? len - page * 4096 : 4096;
        unsigned kind = (unsigned)(rnd_next(&s) % 10);
        if (kind < 3) { /* text: log lines */
            size_t o = 0;
            while (o < n) {
                const char *w = words[rnd_next(&s) % (sizeof(words) / sizeof(words[0]))];
                size_t l = strlen(w);
                for (size_t k = 0; k < l && o < n; k++)
                    p[o++] = (unsigned char)w[k];
                if (o < n)
                    p[o++] = rnd_next(&s) % 8 ? ' ' : '\n';
            }
        } else if (kind < 6) { /* binary records: id, pointer, small ints, padding */
            uint64_t id = rnd_next(&s) % 1000;
            for (size_t o = 0; o + 32 <= n; o += 32) {
                uint64_t rec[4] = {id++, 0x00007f3a12000000ull + (rnd_next(&s) % 4096) * 64,
                                   rnd_next(&s) % 256, 0};
                memcpy(p + o, rec, 32);
            }
        } else if (kind < 8) { /* code-like: skewed byte distribution */
            for (size_t o = 0; o < n; o++) {
                uint64_t x = rnd_next(&s);
                p[o] = (unsigned char)(x % 4 ? x % 32 : x >> 8);
            }
        } else if (kind < 9) { /* zero page */
            memset(p, 0, n);
        } else { /* random (already compressed, keys, ...) */
            for (size_t o = 0; o < n; o++)
                p[o] = (unsigned char)rnd_next(&s);
        }
    }
}

static void bench_lz4_xxh3(bench_t *b)
{
    size_t cap = (size_t)LZ4_compressBound(LZ4_BLOCK);
    size_t nblk = LZ4_BYTES / LZ4_BLOCK;
    unsigned char *src = malloc(LZ4_BYTES), *out = malloc(LZ4_BYTES);
    char *comp = malloc(nblk * cap);
    int *clen = calloc(nblk, sizeof(int));
    double c_mbps[3], d_mbps[3], h_gbps[REPS];
    size_t total = 0;
    char note[64];
    volatile uint64_t sink = 0;

    if (!src || !out || !comp || !clen) {
        fprintf(stderr, "lz4: out of memory\n");
        goto out;
    }
    fill_realistic(src, LZ4_BYTES);
    memset(out, 0, LZ4_BYTES);
    for (int r = 0; r < 3; r++) {
        uint64_t t0 = bench_now_nsec();
        total = 0;
        for (size_t i = 0; i < nblk; i++) {
            clen[i] = LZ4_compress_default((const char *)src + i * LZ4_BLOCK, comp + i * cap,
                                           LZ4_BLOCK, (int)cap);
            total += (size_t)clen[i];
        }
        c_mbps[r] = (double)LZ4_BYTES / ((double)(bench_now_nsec() - t0) / 1e3);
        t0 = bench_now_nsec();
        for (size_t i = 0; i < nblk; i++)
            LZ4_decompress_safe(comp + i * cap, (char *)out + i * LZ4_BLOCK, clen[i], LZ4_BLOCK);
        d_mbps[r] = (double)LZ4_BYTES / ((double)(bench_now_nsec() - t0) / 1e3);
    }
    if (memcmp(src, out, LZ4_BYTES) != 0)
        fprintf(stderr, "lz4: round trip mismatch\n");
    snprintf(note, sizeof(note), "64 KiB blocks of mixed pages, ratio %.2f",
             (double)LZ4_BYTES / (double)total);
    bench_report(b, "limits_lz4_compress_mbps", median_of(c_mbps, 3), "MB/s", note);
    bench_report(b, "limits_lz4_decompress_mbps", median_of(d_mbps, 3), "MB/s", NULL);
    bench_report(b, "limits_lz4_ratio", (double)LZ4_BYTES / (double)total, "x:1", NULL);

    for (int r = 0; r < REPS; r++) {
        uint64_t t0 = bench_now_nsec();
        sink += XXH3_64bits(src, LZ4_BYTES);
        sink += XXH3_64bits(out, LZ4_BYTES);
        h_gbps[r] = 2.0 * LZ4_BYTES / (double)(bench_now_nsec() - t0);
    }
    (void)sink;
    bench_report(b, "limits_xxh3_gbps", median_of(h_gbps, REPS), "GB/s", "64 MiB, median of 7");
out:
    free(src);
    free(out);
    free(comp);
    free(clen);
}

/* ---- process to process ---------------------------------------------------------------------- */

static void report_rtt(bench_t *b, const char *prefix, double *us, size_t n, const char *note)
{
    bench_stats_t st;
    char name[64];

    bench_stats(us, n, &st);
    snprintf(name, sizeof(name), "%s_median_us", prefix);
    bench_report(b, name, st.median, "us", note);
    snprintf(name, sizeof(name), "%s_p99_us", prefix);
    bench_report(b, name, st.p99, "us", NULL);
}

static double bench_futex(bench_t *b)
{
    double *us = calloc(FUTEX_ROUNDS, sizeof(double));
    bench_stats_t st = {0};

    if (!us || bench_futex_pingpong(2000, FUTEX_ROUNDS, us) < 0) {
        fprintf(stderr, "futex ping-pong failed\n");
        free(us);
        return 0;
    }
    report_rtt(b, "limits_futex_rtt", us, FUTEX_ROUNDS, "2 processes, wait/wake, no spin");
    bench_stats(us, FUTEX_ROUNDS, &st);
    free(us);
    return st.median;
}

static void bench_seqpacket(bench_t *b, double futex_median)
{
    double *us = calloc(SEQP_ROUNDS, sizeof(double));
    char msg[64] = {0};
    int sv[2], st;
    pid_t pid;
    bench_stats_t s;

    if (!us || socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
        free(us);
        fprintf(stderr, "socketpair failed\n");
        return;
    }
    pid = fork();
    if (pid == 0) {
        close(sv[0]);
        while (read(sv[1], msg, sizeof(msg)) == (ssize_t)sizeof(msg))
            if (write(sv[1], msg, sizeof(msg)) != (ssize_t)sizeof(msg))
                break;
        _exit(0);
    }
    close(sv[1]);
    for (int i = -200; i < SEQP_ROUNDS && pid > 0; i++) {
        uint64_t t0 = bench_now_nsec();
        msg[0] = (char)i;
        if (write(sv[0], msg, sizeof(msg)) != (ssize_t)sizeof(msg) ||
            read(sv[0], msg, sizeof(msg)) != (ssize_t)sizeof(msg))
            break;
        if (i >= 0)
            us[i] = (double)(bench_now_nsec() - t0) / 1000.0;
    }
    close(sv[0]);
    if (pid > 0)
        waitpid(pid, &st, 0);
    report_rtt(b, "limits_seqpacket_rtt", us, SEQP_ROUNDS, "socketpair, 64 B, 2 processes");
    bench_stats(us, SEQP_ROUNDS, &s);
    if (futex_median > 0)
        bench_report(b, "limits_seqpacket_vs_futex", s.median / futex_median, "x",
                     "median seqpacket / median futex");
    free(us);
}

/* ---- ZeroMQ ---------------------------------------------------------------------------------- */

struct zrecv {
    void *ctx;          /* zmq context */
    char endpoint[256]; /* where to connect */
    size_t n;           /* messages to receive */
    size_t size;        /* message size */
    uint64_t t_start;   /* when the first timed one arrived (after the warm-up) */
    uint64_t t_end;     /* when the last one arrived */
    size_t got;         /* received with the right size */
};

static void *zmq_puller(void *arg)
{
    struct zrecv *z = arg;
    void *s = zmq_socket(z->ctx, ZMQ_PULL);
    zmq_msg_t m;
    int hwm = 10000;

    zmq_setsockopt(s, ZMQ_RCVHWM, &hwm, sizeof(hwm));
    zmq_connect(s, z->endpoint);
    zmq_msg_init(&m);
    for (size_t i = 0; i < ZMQ_WARMUP + z->n; i++) {
        if (zmq_msg_recv(&m, s, 0) < 0)
            break;
        if (i == ZMQ_WARMUP)
            z->t_start = bench_now_nsec();
        if (i >= ZMQ_WARMUP && zmq_msg_size(&m) == z->size)
            z->got++;
    }
    z->t_end = bench_now_nsec();
    zmq_msg_close(&m);
    zmq_close(s);
    return NULL;
}

static void bench_zmq_push(bench_t *b, void *ctx, size_t size, size_t n, const char *name)
{
    struct zrecv z = {.ctx = ctx, .n = n, .size = size};
    void *s = zmq_socket(ctx, ZMQ_PUSH);
    size_t len = sizeof(z.endpoint);
    char *buf = calloc(1, size);
    char mname[64], note[64];
    int hwm = 10000, linger = 0;
    pthread_t t;
    double secs;

    zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof(hwm));
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof(linger));
    if (!buf || zmq_bind(s, "tcp://127.0.0.1:*") < 0 ||
        zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, z.endpoint, &len) < 0 ||
        pthread_create(&t, NULL, zmq_puller, &z) != 0) {
        fprintf(stderr, "zmq push/pull setup failed: %s\n", zmq_strerror(zmq_errno()));
        free(buf);
        zmq_close(s);
        return;
    }
    /* the receiver starts its clock after a warm-up, when the connection is up and busy */
    for (size_t i = 0; i < ZMQ_WARMUP + n; i++)
        if (zmq_send(s, buf, size, 0) < 0)
            break;
    pthread_join(t, NULL);
    secs = (double)(z.t_end - z.t_start) / 1e9;
    if (z.got != n)
        fprintf(stderr, "zmq %s: %zu of %zu messages\n", name, z.got, n);
    snprintf(mname, sizeof(mname), "limits_zmq_%s_msgs", name);
    snprintf(note, sizeof(note), "PUSH/PULL tcp loopback, %zu B, 2 threads", size);
    bench_report(b, mname, (double)n / secs, "msg/s", note);
    snprintf(mname, sizeof(mname), "limits_zmq_%s_gbps", name);
    bench_report(b, mname, (double)n * (double)size / secs / 1e9, "GB/s", NULL);
    free(buf);
    zmq_close(s);
}

struct zrep {
    void *ctx;          /* zmq context */
    char endpoint[256]; /* where to connect */
    int rounds;         /* requests to answer */
};

static void *zmq_replier(void *arg)
{
    struct zrep *z = arg;
    void *s = zmq_socket(z->ctx, ZMQ_REP);
    char buf[64];

    zmq_connect(s, z->endpoint);
    for (int i = 0; i < z->rounds; i++) {
        int n = zmq_recv(s, buf, sizeof(buf), 0);
        if (n < 0 || zmq_send(s, buf, (size_t)n, 0) < 0)
            break;
    }
    zmq_close(s);
    return NULL;
}

static void bench_zmq_reqrep(bench_t *b, void *ctx)
{
    struct zrep z = {.ctx = ctx, .rounds = ZMQ_RR_ROUNDS + 100};
    void *s = zmq_socket(ctx, ZMQ_REQ);
    size_t len = sizeof(z.endpoint);
    double *us = calloc(ZMQ_RR_ROUNDS, sizeof(double));
    char buf[64] = {0};
    int linger = 0;
    pthread_t t;

    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof(linger));
    if (!us || zmq_bind(s, "tcp://127.0.0.1:*") < 0 ||
        zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, z.endpoint, &len) < 0 ||
        pthread_create(&t, NULL, zmq_replier, &z) != 0) {
        fprintf(stderr, "zmq req/rep setup failed\n");
        free(us);
        zmq_close(s);
        return;
    }
    for (int i = -100; i < ZMQ_RR_ROUNDS; i++) {
        uint64_t t0 = bench_now_nsec();
        if (zmq_send(s, buf, sizeof(buf), 0) < 0 || zmq_recv(s, buf, sizeof(buf), 0) < 0)
            break;
        if (i >= 0)
            us[i] = (double)(bench_now_nsec() - t0) / 1000.0;
    }
    pthread_join(t, NULL);
    report_rtt(b, "limits_zmq_reqrep_rtt", us, ZMQ_RR_ROUNDS, "REQ/REP tcp loopback, 64 B");
    free(us);
    zmq_close(s);
}

int main(void)
{
    bench_t b;
    double futex_median;
    void *ctx;

    bench_init(&b, "machine limits");
    bench_section(&b, "memory");
    bench_memcpy(&b);
    bench_lz4_xxh3(&b);
    bench_section(&b, "process to process");
    futex_median = bench_futex(&b);
    bench_seqpacket(&b, futex_median);
    bench_section(&b, "ZeroMQ");
    ctx = zmq_ctx_new();
    if (ctx) {
        bench_zmq_push(&b, ctx, 64, ZMQ_SMALL_N, "64b");
        bench_zmq_push(&b, ctx, 64 * 1024, ZMQ_LARGE_N, "64k");
        bench_zmq_reqrep(&b, ctx);
        zmq_ctx_term(ctx);
    }
    return bench_finish(&b);
}
