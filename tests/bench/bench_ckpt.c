/* bench_ckpt.c — checkpoint and restore of real target processes through the ECU runtime
 * (rtcr/ecu.h), with the benchmark target `memwriter` (targets/memwriter).
 *
 * 1. pause: rtcr_epoch_stats.freeze_usec (target quiesced .. resumed) for working sets of
 *    16 MiB, 64 MiB, 256 MiB (and 1 GiB with `1g`) x 4 KiB, 64 KiB, 1 MiB,
 *    16 MiB written per epoch. The target runs in "write only when told" mode: the bench fires
 *    an interrupt, the target writes one batch (that many distinct pages), logs "irq=N done"
 *    and acknowledges; the bench waits for that line and then checkpoints. So each epoch holds
 *    exactly one batch plus the few pages of the target's own bookkeeping (the table shows
 *    the pages actually copied). Goals: p99 <= 1 ms for 64 MiB / 1 MiB over 200+ epochs, and
 *    per row p99 <= 2 x (copied bytes / memcpy bandwidth) + 200 us with memcpy measured in
 *    this run.
 * 2. sustained: the 64 MiB target dirtying 1 MiB every 10 ms on its own timer and computing
 *    500 us of every 1 ms (work units = fixed arithmetic chunks, counted by the target and
 *    logged every 100 ms with its clock). 1 s slices of baseline, control load (the CPU work
 *    of copy + XXH3 + LZ4 of 1 MiB every 10 ms in this process, no checkpoint) and 100
 *    checkpoints/s are interleaved, 5 of each, so that background load drifting on a shared
 *    machine hits all three alike; a catch-up checkpoint before each checkpoint slice keeps the
 *    dirt of the other slices out of it. Slowdown = work rate vs baseline. Goal <= 5 %.
 * 3. encoding: bytes_raw over encode_cpu_usec (the encoding thread's CPU time; the wall
 *    time encode_usec is shown beside it) of the epochs of benchmark 1, paired every 5th
 *    epoch with one LZ4 pass over that epoch's own bytes (targets run with the
 *    agent's default max_chain 64, so compaction runs in the background and later epochs are
 *    written into the containers of dropped ones; the 64 MiB rows first run until the first
 *    compaction committed, the steady state of a running agent), the epoch encoder alone
 *    (rtcr_epoch_builder on the very bytes of an epoch) and raw LZ4_compress_default on the
 *    same bytes in frames of the same size. Goal: encoding >= 80 % of raw LZ4 speed.
 * 4. restore: a 64 MiB target with a chain of one full and 9 incremental epochs (1 MiB each)
 *    is killed and restored from the in-memory image; time from rtcr_target_restore until
 *    the target reports running again (RTCR_EV_TARGET_STARTED "restored"). Goal p50 <= 30 ms.
 *    The restored target must continue (its next interrupt count follows the old one).
 *
 * Output: a table per benchmark with goals and PASS/MISS, then `BENCH name=value unit` lines.
 * The exit status is 0 unless an operation fails (benchmarks report, they do not judge).
 *
 *   B=build build/bench/bench_ckpt [quick] [1g] [pause] [sustained] [encoding] [restore]
 *                                  [row=MEM_MIB:DIRTY_KIB:ROUNDS] [work_us=N] [timer_prio=N]
 * quick: fewer rounds; 1g: add the 1 GiB rows (~25 s more); naming sections runs only those
 * (encoding implies pause); row= runs one pause row; work_us= the duty of benchmark 2;
 * timer_prio= the ECU's timer_priority (default: the agent's, 10; 0: normal scheduling).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <lz4.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include <rtcr/ecu.h>
#include <rtcr/image.h>

#include "../../ecu-agent/agent_config.h"
#include "../lib/bench_util.h"

/* as the agent runs targets by default (config key max_chain): compaction in the background
 * every 64 epochs, whose dropped containers the following epochs are written into */
#define AGENT_DEFAULT_MAX_CHAIN 64

#define KIB      ((size_t)1 << 10)
#define MIB      ((size_t)1 << 20)
#define IRQ_LINE 9u
#define REPORTS  4096u /* progress lines kept */
#define START_MS 60000u

/* ---- small helpers ------------------------------------------------------------------------ */

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "bench_ckpt: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

/* The failure text of t, by value (for die's arguments). */
struct failure_text {
    char s[RTCR_FAILURE_MAX]; /* "" if none */
};
static struct failure_text failure_of(rtcr_target_t *t)
{
    struct failure_text f;
    rtcr_target_failure(t, f.s, sizeof(f.s));
    return f;
}

/* Nearest-rank percentile p (0..1) of n integer samples, via bench_util's statistics. Sorts v
 * (ascending), so v[n - 1] is the maximum afterwards. */
static uint64_t pct(uint64_t *v, size_t n, double p)
{
    if (!n)
        return 0;
    double *d = malloc(n * sizeof(*d));
    if (!d)
        die("out of memory");
    for (size_t i = 0; i < n; i++)
        d[i] = (double)v[i];
    bench_stats_t st;
    bench_stats(d, n, &st); /* sorts d */
    for (size_t i = 0; i < n; i++)
        v[i] = (uint64_t)d[i];
    double r = bench_percentile_sorted(d, n, p * 100.0);
    free(d);
    return (uint64_t)r;
}

static const char *size_name(size_t bytes, char *buf, size_t bufsz)
{
    unsigned v =
        (unsigned)((bytes >= MIB && bytes % MIB == 0 ? bytes / MIB : bytes / KIB) % 1000000u);
    snprintf(buf, bufsz, "%u%s", v, bytes >= MIB && bytes % MIB == 0 ? "MiB" : "KiB");
    return buf;
}

static const char *verdict(bool ok)
{
    return ok ? "PASS" : "MISS";
}

static size_t mem_available(void)
{
    FILE *f = fopen("/proc/meminfo", "re");
    char line[256];
    size_t kb = 0;
    while (f && fgets(line, sizeof(line), f))
        if (sscanf(line, "MemAvailable: %zu kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb * KIB;
}

/* The load average: other work on this 2-core machine distorts every number here. */
static void print_load(const char *what)
{
    char buf[128] = "";
    FILE *f = fopen("/proc/loadavg", "re");
    if (f && fgets(buf, sizeof(buf), f))
        buf[strcspn(buf, "\n")] = '\0';
    if (f)
        fclose(f);
    printf("%s (/proc/loadavg): %s\n", what, buf);
}

/* ---- raw limits of this machine, measured in this run ------------------------------------- */

struct limits {
    double memcpy_warm; /* bytes/s, 64 MiB between touched buffers */
    double memcpy_cold; /* bytes/s, into freshly mapped memory (page faults included) */
};

static struct limits measure_limits(void)
{
    struct limits l = {0};
    size_t n = 64 * MIB;
    uint8_t *src = malloc(n), *dst = malloc(n);
    if (!src || !dst)
        die("out of memory");
    memset(src, 0x5a, n);
    memset(dst, 0, n);
    double best = 1e30;
    for (int i = 0; i < 5; i++) {
        uint64_t t0 = bench_now_nsec();
        memcpy(dst, src, n);
        double dt = (double)(bench_now_nsec() - t0);
        if (dt < best)
            best = dt;
    }
    l.memcpy_warm = (double)n / best * 1e9;
    best = 1e30;
    for (int i = 0; i < 3; i++) {
        uint8_t *d = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (d == MAP_FAILED)
            die("mmap: %s", strerror(errno));
        uint64_t t0 = bench_now_nsec();
        memcpy(d, src, n);
        double dt = (double)(bench_now_nsec() - t0);
        munmap(d, n);
        if (dt < best)
            best = dt;
    }
    l.memcpy_cold = (double)n / best * 1e9;
    free(src);
    free(dst);
    return l;
}

/* ---- the ECU and its callbacks ------------------------------------------------------------ */

struct report {
    uint64_t t_us;    /* target's monotonic clock */
    uint64_t work;    /* work units so far */
    uint64_t periods; /* dirtying periods so far */
    uint64_t missed;  /* coalesced timer periods so far */
    uint64_t batches; /* dirtying batches written so far */
    uint64_t dirty;   /* usec spent writing them so far */
};

struct ckb {
    rtcr_ecu_t *ecu;            /* the runtime */
    const char *binary;         /* memwriter */
    char dir[32];               /* temp dir for params files */
    pthread_mutex_t lock;       /* protects the fields below (callbacks run on mirror threads) */
    pthread_cond_t cond;        /* signalled on every change */
    uint64_t irq_done;          /* newest "irq=N done" */
    unsigned started;           /* RTCR_EV_TARGET_STARTED events */
    unsigned exited;            /* RTCR_EV_TARGET_EXITED events */
    uint64_t started_ns;        /* when the newest STARTED event came */
    struct report rep[REPORTS]; /* progress lines of the current target */
    unsigned n_rep;             /* entries of rep */
    bool quick;                 /* fewer rounds */
    bool with_1g;               /* also the 1 GiB rows */
    unsigned work_us;           /* benchmark 2: computation per 1 ms tick of the target */
    unsigned timer_prio;        /* the ECU's timer_priority (the agent's default) */
    bool encode_idle;           /* the ECU's encode_idle (the agent's default: on) */
};

static void on_event(void *ctx, rtcr_target_t *t, enum rtcr_ecu_event ev, const char *detail)
{
    struct ckb *b = ctx;
    (void)t;
    uint64_t now = bench_now_nsec();
    pthread_mutex_lock(&b->lock);
    if (ev == RTCR_EV_TARGET_STARTED) {
        b->started++;
        b->started_ns = now;
    } else if (ev == RTCR_EV_TARGET_EXITED) {
        b->exited++;
    } else if (ev == RTCR_EV_TARGET_DENIED || ev == RTCR_EV_TARGET_KILLED_BY_AGENT) {
        fprintf(stderr, "bench_ckpt: event %d of '%s': %s\n", ev, rtcr_target_name(t),
                detail ? detail : "");
    }
    pthread_cond_broadcast(&b->cond);
    pthread_mutex_unlock(&b->lock);
}

static void on_log(void *ctx, rtcr_target_t *t, const char *line)
{
    struct ckb *b = ctx;
    unsigned long long n, periods, work, missed, irqs, tus, batches, dirty;
    (void)t;
    if (sscanf(line, "irq=%llu done", &n) == 1) {
        pthread_mutex_lock(&b->lock);
        b->irq_done = n;
        pthread_cond_broadcast(&b->cond);
        pthread_mutex_unlock(&b->lock);
    } else if (sscanf(line,
                      "periods=%llu work=%llu missed=%llu irqs=%llu t_us=%llu "
                      "batches=%llu dirty_us=%llu",
                      &periods, &work, &missed, &irqs, &tus, &batches, &dirty) == 7) {
        pthread_mutex_lock(&b->lock);
        if (b->n_rep < REPORTS)
            b->rep[b->n_rep++] = (struct report){tus, work, periods, missed, batches, dirty};
        pthread_mutex_unlock(&b->lock);
    } else if (strstr(line, "failed")) {
        fprintf(stderr, "bench_ckpt: target says: %s\n", line);
    }
}

/* wait (under b->lock) until pred holds or timeout; false on timeout */
#define WAIT_UNTIL(b, pred, timeout_ms)                                                            \
    ({                                                                                             \
        struct timespec dl_;                                                                       \
        clock_gettime(CLOCK_REALTIME, &dl_);                                                       \
        uint64_t ns_ = (uint64_t)dl_.tv_nsec + (uint64_t)(timeout_ms)*1000000u;                    \
        dl_.tv_sec += (time_t)(ns_ / 1000000000u);                                                 \
        dl_.tv_nsec = (long)(ns_ % 1000000000u);                                                   \
        int rc_ = 0;                                                                               \
        while (!(pred) && rc_ == 0)                                                                \
            rc_ = pthread_cond_timedwait(&(b)->cond, &(b)->lock, &dl_);                            \
        (bool)(pred);                                                                              \
    })

/* Start a memwriter named `name` with these params; waits until construct finished. */
static rtcr_target_t *mw_start(struct ckb *b, const char *name, size_t mem, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static rtcr_target_t *mw_start(struct ckb *b, const char *name, size_t mem, const char *fmt, ...)
{
    char path[128], text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    snprintf(path, sizeof(path), "%s/%s.params", b->dir, name);
    FILE *f = fopen(path, "we");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0)
        die("writing %s: %s", path, strerror(errno));
    rtcr_rom_spec_t rom = {.name = "params", .path = path};
    rtcr_target_spec_t spec = {.name = name,
                               .binary = b->binary,
                               .ram_quota = mem + 16 * MIB,
                               .cap_limit = 1024,
                               .roms = &rom,
                               .n_roms = 1};
    rtcr_target_t *t = NULL;
    int r = rtcr_ecu_add_target(b->ecu, &spec, &t);
    if (r < 0)
        die("adding target %s: %s", name, strerror(-r));
    rtcr_ckpt_params_t cp = {.dirty_mode = -1,
                             .granularity = 4096,
                             .quiesce_timeout_usec = 500000,
                             .state_dir = NULL,
                             .max_chain = AGENT_DEFAULT_MAX_CHAIN};
    if ((r = rtcr_target_set_ckpt_params(t, &cp)) < 0)
        die("checkpoint params: %s", strerror(-r));
    pthread_mutex_lock(&b->lock);
    unsigned before = b->started;
    b->irq_done = 0;
    b->n_rep = 0;
    pthread_mutex_unlock(&b->lock);
    if ((r = rtcr_target_start(t)) < 0)
        die("starting %s: %s", name, strerror(-r));
    pthread_mutex_lock(&b->lock);
    bool ok = WAIT_UNTIL(b, b->started > before, START_MS);
    pthread_mutex_unlock(&b->lock);
    if (!ok || rtcr_target_state(t) != RTCR_TARGET_RUNNING)
        die("%s did not start (state %s: %s)", name, rtcr_target_state_name(rtcr_target_state(t)),
            failure_of(t).s);
    return t;
}

static void mw_remove(struct ckb *b, rtcr_target_t **t)
{
    if (rtcr_target_state(*t) == RTCR_TARGET_RUNNING ||
        rtcr_target_state(*t) == RTCR_TARGET_STARTING)
        rtcr_target_stop(*t);
    int r = rtcr_ecu_remove_target(b->ecu, t);
    if (r < 0)
        die("removing a target: %s", strerror(-r));
}

static void checkpoint(rtcr_target_t *t, rtcr_epoch_stats_t *st)
{
    char err[512] = "";
    int r = rtcr_target_checkpoint(t, st, err, sizeof(err));
    if (r < 0)
        die("checkpoint of %s: %s (%s)", rtcr_target_name(t), strerror(-r), err);
}

/* fire the interrupt and wait until the target wrote its batch (irq count `n`) */
static void batch(struct ckb *b, uint64_t n)
{
    int r = rtcr_ecu_irq_fire(b->ecu, IRQ_LINE);
    if (r != 1)
        die("irq_fire: %d sessions notified", r);
    pthread_mutex_lock(&b->lock);
    bool ok = WAIT_UNTIL(b, b->irq_done >= n, 5000);
    pthread_mutex_unlock(&b->lock);
    if (!ok)
        die("the target did not report batch %" PRIu64, n);
}

/* ---- 3: encoding on the very bytes of an epoch -------------------------------------------- */

struct run {
    uint32_t badge;  /* dataspace */
    uint64_t offset; /* in it */
    size_t len;      /* bytes */
    size_t at;       /* in buf */
};

struct epoch_bytes {
    uint8_t *buf;     /* concatenated uncompressed page data */
    size_t len, cap;  /* used / allocated */
    struct run *runs; /* where each piece came from */
    size_t n, ncap;   /* used / allocated */
};

static int grab_pages(void *opaque, uint32_t badge, uint64_t offset, const void *data, size_t len)
{
    struct epoch_bytes *e = opaque;
    if (!data)
        return 0; /* zero run */
    if (e->len + len > e->cap) {
        size_t nc = e->cap ? e->cap * 2 : 4 * MIB;
        while (nc < e->len + len)
            nc *= 2;
        if (!(e->buf = realloc(e->buf, nc)))
            return -ENOMEM;
        e->cap = nc;
    }
    if (e->n > 0 && e->runs[e->n - 1].badge == badge &&
        e->runs[e->n - 1].offset + e->runs[e->n - 1].len == offset) {
        e->runs[e->n - 1].len += len; /* consecutive frames of one run */
    } else {
        if (e->n == e->ncap) {
            e->ncap = e->ncap ? e->ncap * 2 : 256;
            if (!(e->runs = realloc(e->runs, e->ncap * sizeof(*e->runs))))
                return -ENOMEM;
        }
        e->runs[e->n++] = (struct run){badge, offset, len, e->len};
    }
    memcpy(e->buf + e->len, data, len);
    e->len += len;
    return 0;
}

struct enc_result {
    size_t bytes;       /* uncompressed page bytes of the epoch */
    double lz4_bps;     /* raw LZ4_compress_default, bytes/s */
    double lz4_ratio;   /* raw / compressed */
    double lz4_dec_bps; /* LZ4_decompress_safe, bytes/s */
    double xxh_bps;     /* XXH3_64bits, bytes/s */
    double builder_bps; /* rtcr_epoch_builder: add_pages + finish, bytes/s */
};

static double best_of(int reps, double (*fn)(void *), void *ctx)
{
    double best = 1e30;
    for (int i = 0; i < reps; i++) {
        double dt = fn(ctx);
        if (dt < best)
            best = dt;
    }
    return best;
}

struct lz4_ctx {
    const struct epoch_bytes *e; /* input */
    char *out;                   /* compressed frames */
    size_t out_cap;              /* bytes per frame slot */
    size_t n_frames;             /* frames */
    size_t *clen;                /* compressed length per frame */
    char *dec;                   /* decompression target */
    size_t total_out;            /* compressed bytes */
};

static double run_lz4(void *p)
{
    struct lz4_ctx *c = p;
    size_t f = 0;
    c->total_out = 0;
    uint64_t t0 = bench_now_nsec();
    for (size_t off = 0; off < c->e->len; off += RTCR_IMAGE_FRAME_SIZE, f++) {
        size_t n =
            c->e->len - off < RTCR_IMAGE_FRAME_SIZE ? c->e->len - off : RTCR_IMAGE_FRAME_SIZE;
        int r = LZ4_compress_default((const char *)c->e->buf + off, c->out + f * c->out_cap, (int)n,
                                     (int)c->out_cap);
        if (r <= 0)
            die("LZ4_compress_default failed");
        c->clen[f] = (size_t)r;
        c->total_out += (size_t)r;
    }
    return (double)(bench_now_nsec() - t0);
}

static double run_lz4_dec(void *p)
{
    struct lz4_ctx *c = p;
    size_t f = 0;
    uint64_t t0 = bench_now_nsec();
    for (size_t off = 0; off < c->e->len; off += RTCR_IMAGE_FRAME_SIZE, f++) {
        size_t n =
            c->e->len - off < RTCR_IMAGE_FRAME_SIZE ? c->e->len - off : RTCR_IMAGE_FRAME_SIZE;
        int r = LZ4_decompress_safe(c->out + f * c->out_cap, c->dec + off, (int)c->clen[f], (int)n);
        if (r != (int)n)
            die("LZ4_decompress_safe failed");
    }
    return (double)(bench_now_nsec() - t0);
}

static double run_xxh(void *p)
{
    const struct epoch_bytes *e = p;
    uint64_t t0 = bench_now_nsec();
    volatile uint64_t h = 0;
    for (size_t off = 0; off < e->len; off += 4096)
        h ^= XXH3_64bits(e->buf + off, e->len - off < 4096 ? e->len - off : 4096);
    (void)h;
    return (double)(bench_now_nsec() - t0);
}

struct builder_ctx {
    const rtcr_epoch_t *ep;      /* the epoch (metadata, header) */
    const struct epoch_bytes *e; /* its page data */
};

static double run_builder(void *p)
{
    struct builder_ctx *c = p;
    const RtcrImg__EpochHeader *h = rtcr_epoch_header(c->ep);
    size_t mlen;
    const void *meta = rtcr_epoch_metadata_blob(c->ep, &mlen);
    rtcr_epoch_info_t info = {.target = rtcr_epoch_target(c->ep),
                              .epoch = 1,
                              .parent = 0,
                              .build_id = h->build_id.data,
                              .build_id_len = h->build_id.len,
                              .granularity = 4096};
    rtcr_epoch_builder_t *bld = NULL;
    void *buf = NULL;
    size_t len = 0;
    rtcr_image_err_t ierr = {{0}};
    int r = rtcr_epoch_builder_new(&info, &bld);
    if (r >= 0)
        r = rtcr_epoch_builder_set_metadata_blob(bld, meta, mlen);
    rtcr_epoch_run_t *rr = malloc((c->e->n ? c->e->n : 1) * sizeof(*rr));
    if (!rr)
        die("out of memory");
    uint64_t t0 = bench_now_nsec(); /* the part that grows with the data */
    /* as the checkpointer hands them over: the runs of one dataspace, back to back, at once */
    for (size_t i = 0; i < c->e->n && r >= 0;) {
        size_t j = i, n = 0;
        while (j < c->e->n && c->e->runs[j].badge == c->e->runs[i].badge) {
            rr[n++] = (rtcr_epoch_run_t){c->e->runs[j].offset, c->e->runs[j].len};
            j++;
        }
        r = rtcr_epoch_add_runs(bld, c->e->runs[i].badge, rr, n, c->e->buf + c->e->runs[i].at);
        i = j;
    }
    if (r >= 0)
        r = rtcr_epoch_finish(bld, &ierr, &buf, &len);
    double dt = (double)(bench_now_nsec() - t0);
    if (r < 0)
        die("epoch builder: %s %s", strerror(-r), ierr.msg);
    free(rr);
    free(buf);
    rtcr_epoch_builder_destroy(&bld);
    return dt;
}

/* The page bytes of ep into *e, and c set up to compress them in frames of the image's size
 * (with a decompression target when `dec`). Free with lz4_on_epoch_free(). */
static void lz4_on_epoch(const rtcr_epoch_t *ep, bool dec, struct epoch_bytes *e, struct lz4_ctx *c)
{
    rtcr_image_err_t ierr = {{0}};
    *e = (struct epoch_bytes){0};
    int r = rtcr_epoch_foreach_pages(ep, grab_pages, e, &ierr);
    if (r < 0)
        die("reading epoch pages: %s %s", strerror(-r), ierr.msg);
    size_t frames = (e->len + RTCR_IMAGE_FRAME_SIZE - 1) / RTCR_IMAGE_FRAME_SIZE;
    *c = (struct lz4_ctx){
        .e = e, .out_cap = (size_t)LZ4_compressBound(RTCR_IMAGE_FRAME_SIZE), .n_frames = frames};
    c->out = malloc(c->out_cap * (frames ? frames : 1));
    c->clen = calloc(frames ? frames : 1, sizeof(*c->clen));
    c->dec = dec ? malloc(e->len ? e->len : 1) : NULL;
    if (!c->out || !c->clen || (dec && !c->dec))
        die("out of memory");
}

static void lz4_on_epoch_free(struct epoch_bytes *e, struct lz4_ctx *c)
{
    free(c->out);
    free(c->clen);
    free(c->dec);
    free(e->buf);
    free(e->runs);
}

/* Raw speeds on the bytes of the newest epoch of t. */
static struct enc_result encoding_on_epoch(rtcr_target_t *t)
{
    struct enc_result res = {0};
    const rtcr_image_t *img = rtcr_target_image(t);
    const rtcr_epoch_t *ep = img ? rtcr_image_epoch(img, rtcr_image_last(img)) : NULL;
    if (!ep)
        die("no epoch to analyse");
    struct epoch_bytes e;
    struct lz4_ctx c;
    lz4_on_epoch(ep, true, &e, &c);
    int reps = e.len >= 8 * MIB ? 3 : 10;
    res.bytes = e.len;
    res.lz4_bps = (double)e.len / best_of(reps, run_lz4, &c) * 1e9;
    res.lz4_ratio = c.total_out ? (double)e.len / (double)c.total_out : 0;
    res.lz4_dec_bps = (double)e.len / best_of(reps, run_lz4_dec, &c) * 1e9;
    res.xxh_bps = (double)e.len / best_of(reps, run_xxh, &e) * 1e9;
    struct builder_ctx bc = {ep, &e};
    res.builder_bps = (double)e.len / best_of(reps, run_builder, &bc) * 1e9;
    lz4_on_epoch_free(&e, &c);
    return res;
}

/* One pair of benchmark 3, taken right after a checkpoint: the speed of that checkpoint's
 * encoding (bytes_raw over its thread CPU time) and of one raw LZ4 pass over the very bytes of
 * that epoch, in the same frames, measured now. Paired in time, so that the speed of a shared
 * machine drifting during the row (LZ4 alone moves by a third between runs minutes apart)
 * hits both sides alike. Returns the ratio in 1/10000 (0: the epoch had no page bytes). */
static uint64_t encoding_pair(rtcr_target_t *t, const rtcr_epoch_stats_t *st)
{
    const rtcr_image_t *img = rtcr_target_image(t);
    const rtcr_epoch_t *ep = img ? rtcr_image_epoch(img, st->epoch) : NULL;
    if (!ep || !st->encode_cpu_usec)
        return 0;
    struct epoch_bytes e;
    struct lz4_ctx c;
    lz4_on_epoch(ep, false, &e, &c);
    uint64_t ratio = 0;
    if (e.len) {
        double lz4_bps = (double)e.len / run_lz4(&c) * 1e9;
        double ckpt_bps = (double)st->bytes_raw / (double)st->encode_cpu_usec * 1e6;
        ratio = (uint64_t)(ckpt_bps / lz4_bps * 10000.0 + 0.5);
    }
    lz4_on_epoch_free(&e, &c);
    return ratio;
}

/* ---- 1: pause ----------------------------------------------------------------------------- */

struct pause_row {
    size_t mem, dirty;     /* working set, batch bytes */
    unsigned rounds;       /* epochs measured */
    uint64_t p50, p99;     /* freeze_usec */
    uint64_t max;          /* freeze_usec */
    uint64_t q50;          /* quiesce_usec p50 */
    uint64_t copied;       /* bytes_raw p50 (what the pause copied) */
    uint64_t enc_bytes;    /* sum of bytes_raw */
    uint64_t enc_usec;     /* sum of encode_usec (wall time) */
    uint64_t enc_cpu;      /* sum of encode_cpu_usec (the encoding thread's CPU time) */
    unsigned enc_idle;     /* epochs encoded at SCHED_IDLE */
    uint64_t stored;       /* sum of bytes_stored */
    double goal_us;        /* 2 x copied / memcpy + 200 */
    uint64_t full_freeze;  /* freeze of the first (full) epoch */
    uint64_t full_encode;  /* encode of the first (full) epoch */
    unsigned recycled;     /* epochs written into a recycled container */
    unsigned compactions;  /* background compactions committed during the rounds */
    bool have_enc;         /* enc filled */
    struct enc_result enc; /* raw speeds on this row's last epoch */
    unsigned pairs;        /* paired samples of benchmark 3 (encoding_pair) */
    uint64_t pair_p10, pair_p50, pair_p90; /* their ratios, 1/10000 */
};

#define ENC_PAIR_EVERY 5 /* benchmark 3 pairs every 5th epoch of an analysed row */

static struct pause_row pause_row(struct ckb *b, size_t mem, size_t dirty, unsigned rounds,
                                  const struct limits *lim, bool analyse)
{
    struct pause_row row = {.mem = mem, .dirty = dirty, .rounds = rounds};
    char name[64], m[16], d[16];
    snprintf(name, sizeof(name), "mw-%s-%s", size_name(mem, m, sizeof(m)),
             size_name(dirty, d, sizeof(d)));
    rtcr_target_t *t = mw_start(b, name, mem,
                                "mem_mib=%zu\ndirty_kib=%zu\nperiod_us=0\nirq_line=%u\n"
                                "report_ms=1000\n",
                                mem / MIB, dirty / KIB, IRQ_LINE);
    rtcr_epoch_stats_t st;
    checkpoint(t, &st); /* full */
    row.full_freeze = st.freeze_usec;
    row.full_encode = st.encode_usec;
    uint64_t n = 0;
    for (int w = 0; w < 2; w++) { /* warm-up: staging, tracker, caches */
        batch(b, ++n);
        checkpoint(t, &st);
    }
    /* the rows benchmark 3 reads run into the steady state of a long-running agent first: the
     * first background compaction has committed, so epochs go into recycled containers */
    for (unsigned w = 0; analyse && !st.compacted_upto && w < 4 * AGENT_DEFAULT_MAX_CHAIN; w++) {
        batch(b, ++n);
        checkpoint(t, &st);
    }
    uint64_t *fr = calloc(rounds, sizeof(*fr)), *qu = calloc(rounds, sizeof(*qu));
    uint64_t *cp = calloc(rounds, sizeof(*cp)), *pr = calloc(rounds, sizeof(*pr));
    if (!fr || !qu || !cp || !pr)
        die("out of memory");
    for (unsigned i = 0; i < rounds; i++) {
        batch(b, ++n);
        checkpoint(t, &st);
        fr[i] = st.freeze_usec;
        qu[i] = st.quiesce_usec;
        cp[i] = st.bytes_raw;
        row.enc_bytes += st.bytes_raw;
        row.enc_usec += st.encode_usec;
        row.enc_cpu += st.encode_cpu_usec;
        row.enc_idle += st.encoded_idle;
        row.stored += st.bytes_stored;
        row.recycled += st.recycled;
        row.compactions += st.compacted_upto != 0;
        if (st.freeze_usec > row.max)
            row.max = st.freeze_usec;
        uint64_t ratio;
        if (analyse && i % ENC_PAIR_EVERY == ENC_PAIR_EVERY - 1 && (ratio = encoding_pair(t, &st)))
            pr[row.pairs++] = ratio;
    }
    if (row.pairs) {
        row.pair_p10 = pct(pr, row.pairs, 0.10);
        row.pair_p50 = pct(pr, row.pairs, 0.50);
        row.pair_p90 = pct(pr, row.pairs, 0.90);
    }
    row.p50 = pct(fr, rounds, 0.50);
    row.p99 = pct(fr, rounds, 0.99);
    row.q50 = pct(qu, rounds, 0.50);
    row.copied = pct(cp, rounds, 0.50);
    row.goal_us = 2.0 * (double)row.copied / lim->memcpy_warm * 1e6 + 200.0;
    if (analyse) {
        rtcr_target_compact_wait(t); /* no compaction beside the raw measurements */
        row.enc = encoding_on_epoch(t);
        row.have_enc = true;
    }
    free(fr);
    free(qu);
    free(cp);
    free(pr);
    mw_remove(b, &t);
    return row;
}

/* ---- 2: sustained ------------------------------------------------------------------------- */

/* Work done in [t0, t1] (ns, monotonic) from the progress lines inside it: adds the units,
 * the target's elapsed usec, the coalesced periods, the dirtying batches and the usec spent
 * writing them to the accumulators. */
static void work_in(struct ckb *b, uint64_t t0, uint64_t t1, double *units, double *usec,
                    double *missed, double *batches, double *dirty)
{
    pthread_mutex_lock(&b->lock);
    const struct report *first = NULL, *last = NULL;
    for (unsigned i = 0; i < b->n_rep; i++) {
        uint64_t t = b->rep[i].t_us * 1000u;
        if (t < t0 || t > t1)
            continue;
        if (!first)
            first = &b->rep[i];
        last = &b->rep[i];
    }
    if (first && last && last->t_us > first->t_us) {
        *units += (double)(last->work - first->work);
        *usec += (double)(last->t_us - first->t_us);
        *missed += (double)(last->missed - first->missed);
        *batches += (double)(last->batches - first->batches);
        *dirty += (double)(last->dirty - first->dirty);
    }
    pthread_mutex_unlock(&b->lock);
}

static double cpu_sec(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
           ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
}

static void sleep_until(uint64_t t_ns)
{
    struct timespec ts = {(time_t)(t_ns / 1000000000u), (long)(t_ns % 1000000000u)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

struct grab1 {
    char buf[MIB]; /* the first MiB of page data of an epoch */
    size_t len;    /* bytes in buf */
};

static int grab_1mib(void *opaque, uint32_t badge, uint64_t offset, const void *data, size_t len)
{
    struct grab1 *g = opaque;
    (void)badge;
    (void)offset;
    if (!data)
        return 0;
    size_t n = len < MIB - g->len ? len : MIB - g->len;
    memcpy(g->buf + g->len, data, n);
    g->len += n;
    return g->len == MIB ? -ECANCELED : 0;
}

enum phase { PH_BASE, PH_CONTROL, PH_CKPT, PH_MAX };

struct sustained {
    unsigned reps;               /* slices per phase */
    double rate[PH_MAX];         /* work units/s per phase (sum of units / sum of time) */
    double slice_min, slice_max; /* baseline slices: lowest and highest rate (noise) */
    double missed[PH_MAX];       /* coalesced timer periods per second */
    double cpu[PH_MAX];          /* CPU of this process per phase, cores */
    double batch_us[PH_MAX];     /* usec the target took to write one dirtying batch */
    double batch_rate[PH_MAX];   /* dirtying batches per second */
    double frozen;               /* share of the checkpoint slices the target was frozen, % */
    double slowdown;             /* percent, checkpoints vs baseline */
    double control_slowdown;     /* percent, control load vs baseline */
    unsigned ckpts;              /* checkpoints taken */
    double ckpt_rate;            /* checkpoints/s achieved in the checkpoint slices */
    uint64_t p50, p99;           /* freeze_usec */
    uint64_t q50, q99;           /* quiesce_usec */
    uint64_t call50, call99;     /* whole rtcr_target_checkpoint call, us */
    uint64_t raw50;              /* bytes_raw p50 */
};

/* Benchmark 2. Phases are interleaved in slices of SLICE_NS (baseline, control, checkpoints,
 * repeated) so that drifting background load on the machine hits all three alike. */
#define SLICE_NS       1000000000u
#define WORK_PERIOD_US 1000u /* the sustained target's work timer: one work chunk per tick */
#define GAP_NS         200000000u

static struct sustained sustained(struct ckb *b)
{
    struct sustained s = {.reps = b->quick ? 3 : 5, .slice_min = 1e30};
    rtcr_target_t *t = mw_start(b, "mw-sustained", 64 * MIB,
                                "mem_mib=64\ndirty_kib=1024\nperiod_us=10000\nwork_us=%u\n"
                                "work_period_us=%u\nreport_ms=100\n",
                                b->work_us, WORK_PERIOD_US);
    rtcr_epoch_stats_t st;
    sleep_until(bench_now_nsec() + 500000000u);
    checkpoint(t, &st); /* the full epoch is not part of the steady state */

    /* control load: the CPU work of a checkpoint's copy + encode (memcpy, XXH3 per page, LZ4)
     * on 1 MiB of the target's own data, in this process, without checkpointing */
    static struct grab1 g;
    g.len = 0;
    const rtcr_image_t *img = rtcr_target_image(t);
    const rtcr_epoch_t *full = img ? rtcr_image_epoch(img, rtcr_image_last(img)) : NULL;
    if (!full || rtcr_epoch_foreach_pages(full, grab_1mib, &g, NULL) != -ECANCELED)
        die("no data for the control phase");
    char *lz = malloc((size_t)LZ4_compressBound((int)MIB)), *stage = malloc(MIB);
    size_t cap = (size_t)s.reps * 100 + 16;
    uint64_t *fr = calloc(cap, sizeof(*fr)), *qu = calloc(cap, sizeof(*qu));
    uint64_t *call = calloc(cap, sizeof(*call)), *raw = calloc(cap, sizeof(*raw));
    if (!lz || !stage || !fr || !qu || !call || !raw)
        die("out of memory");
    double units[PH_MAX] = {0}, usec[PH_MAX] = {0}, missed[PH_MAX] = {0}, cpu[PH_MAX] = {0};
    double batches[PH_MAX] = {0}, dirty[PH_MAX] = {0}, frozen_us = 0;
    double ckpt_wall = 0;
    volatile uint64_t sink = 0;
    for (unsigned rep = 0; rep < s.reps; rep++) {
        for (int ph = 0; ph < PH_MAX; ph++) {
            if (ph == PH_CKPT) {
                /* catch up outside the slice: the other slices dirtied up to the whole set;
                 * the second epoch takes what was written during the first, so the slice
                 * starts in the steady state (a pause here would let tens of MiB pile up) */
                checkpoint(t, &st);
                checkpoint(t, &st);
            }
            double c0 = cpu_sec();
            uint64_t t0 = bench_now_nsec(), next = t0, end = t0 + SLICE_NS;
            while (ph != PH_BASE && bench_now_nsec() < end) {
                sleep_until(next);
                if (ph == PH_CONTROL) {
                    memcpy(stage, g.buf, MIB);
                    for (size_t off = 0; off < MIB; off += 4096)
                        sink ^= XXH3_64bits(stage + off, 4096);
                    sink ^= (uint64_t)LZ4_compress_default(stage, lz, (int)MIB,
                                                           LZ4_compressBound((int)MIB));
                } else if (s.ckpts < cap) {
                    uint64_t c = bench_now_nsec();
                    checkpoint(t, &st);
                    call[s.ckpts] = (bench_now_nsec() - c) / 1000u;
                    fr[s.ckpts] = st.freeze_usec;
                    frozen_us += (double)st.freeze_usec;
                    qu[s.ckpts] = st.quiesce_usec;
                    raw[s.ckpts] = st.bytes_raw;
                    s.ckpts++;
                }
                next += 10000000u; /* 100/s; a late one is not made up for */
                if (next < bench_now_nsec())
                    next = bench_now_nsec();
            }
            sleep_until(end);
            uint64_t t1 = bench_now_nsec();
            cpu[ph] += cpu_sec() - c0;
            if (ph == PH_CKPT)
                ckpt_wall += (double)(t1 - t0) / 1e9;
            sleep_until(t1 + GAP_NS); /* the slice's last progress line arrives */
            double u = 0, us = 0;
            work_in(b, t0, t1, &u, &us, &missed[ph], &batches[ph], &dirty[ph]);
            units[ph] += u;
            usec[ph] += us;
            if (ph == PH_BASE && us > 0) {
                double r = u / us * 1e6;
                s.slice_min = r < s.slice_min ? r : s.slice_min;
                s.slice_max = r > s.slice_max ? r : s.slice_max;
            }
        }
    }
    for (int ph = 0; ph < PH_MAX; ph++) {
        s.rate[ph] = usec[ph] > 0 ? units[ph] / usec[ph] * 1e6 : 0;
        s.missed[ph] = usec[ph] > 0 ? missed[ph] / usec[ph] * 1e6 : 0;
        s.cpu[ph] = cpu[ph] / (s.reps * (double)SLICE_NS / 1e9);
        s.batch_us[ph] = batches[ph] > 0 ? dirty[ph] / batches[ph] : 0;
        s.batch_rate[ph] = usec[ph] > 0 ? batches[ph] / usec[ph] * 1e6 : 0;
    }
    s.frozen = ckpt_wall > 0 ? frozen_us / (ckpt_wall * 1e6) * 100.0 : 0;
    double base = s.rate[PH_BASE];
    s.slowdown = base > 0 ? (1.0 - s.rate[PH_CKPT] / base) * 100.0 : 0;
    s.control_slowdown = base > 0 ? (1.0 - s.rate[PH_CONTROL] / base) * 100.0 : 0;
    s.ckpt_rate = ckpt_wall > 0 ? s.ckpts / ckpt_wall : 0;
    s.p50 = pct(fr, s.ckpts, 0.50);
    s.p99 = pct(fr, s.ckpts, 0.99);
    s.q50 = pct(qu, s.ckpts, 0.50);
    s.q99 = pct(qu, s.ckpts, 0.99);
    s.call50 = pct(call, s.ckpts, 0.50);
    s.call99 = pct(call, s.ckpts, 0.99);
    s.raw50 = pct(raw, s.ckpts, 0.50);
    free(lz);
    free(stage);
    free(fr);
    free(qu);
    free(call);
    free(raw);
    mw_remove(b, &t);
    return s;
}

/* ---- 4: restore --------------------------------------------------------------------------- */

struct restore {
    unsigned runs;        /* restores */
    bool standby;         /* the target keeps a hot standby (ckpt params) */
    uint64_t p50, max;    /* until running, us */
    uint64_t call50;      /* rtcr_target_restore returned, us */
    uint64_t mat50;       /* rtcr_image_materialize of the same image alone, us */
    uint64_t down50;      /* SIGKILL until reaped and torn down (the kept pool zeroed), us */
    uint64_t apply50;     /* standby update of an incremental epoch (1 MiB), p50 us */
    uint64_t apply_full;  /* standby rebuild by the full epoch (64 MiB), p50 us */
    unsigned via_standby; /* restores that took the standby */
    unsigned via_decode;  /* restores that decoded the image */
    bool continues;       /* every restored incarnation continued its count */
    size_t image_bytes;   /* stored bytes of the chain (last run) */
    unsigned epochs;      /* epochs in the chain */
};

static size_t image_bytes(const rtcr_image_t *img)
{
    size_t sum = 0;
    for (uint64_t e = rtcr_image_first(img); e && e <= rtcr_image_last(img); e++) {
        size_t len = 0;
        const rtcr_epoch_t *ep = rtcr_image_epoch(img, e);
        if (ep)
            rtcr_epoch_bytes(ep, &len);
        sum += len;
    }
    return sum;
}

/* Restores of a 64 MiB target with (standby) or without a hot standby: the second measures
 * the decoding path, which is also the fallback whenever the standby cannot be used. */
static struct restore restore_bench(struct ckb *b, bool standby)
{
    struct restore res = {
        .runs = b->quick ? 3 : 7, .standby = standby, .continues = true, .epochs = 10};
    rtcr_target_t *t = mw_start(b, standby ? "mw-restore-sb" : "mw-restore", 64 * MIB,
                                "mem_mib=64\ndirty_kib=1024\nperiod_us=0\nirq_line=%u\n"
                                "report_ms=1000\n",
                                IRQ_LINE);
    rtcr_ckpt_params_t cp = {.dirty_mode = -1,
                             .granularity = 4096,
                             .quiesce_timeout_usec = 500000,
                             .state_dir = NULL,
                             .max_chain = 0,
                             .standby = standby};
    int r = rtcr_target_set_ckpt_params(t, &cp);
    if (r < 0)
        die("checkpoint params: %s", strerror(-r));
    uint64_t *until = calloc(res.runs, sizeof(*until)), *call = calloc(res.runs, sizeof(*call));
    uint64_t *mat = calloc(res.runs, sizeof(*mat)), *down = calloc(res.runs, sizeof(*down));
    uint64_t *apply = calloc((size_t)res.runs * res.epochs, sizeof(*apply));
    uint64_t *full = calloc(res.runs, sizeof(*full));
    if (!until || !call || !mat || !down || !apply || !full)
        die("out of memory");
    unsigned n_apply = 0;
    uint64_t n = 0;
    for (unsigned run = 0; run < res.runs; run++) {
        rtcr_epoch_stats_t st;
        rtcr_standby_info_t si;
        for (unsigned e = 0; e < res.epochs; e++) { /* full, then incremental */
            batch(b, ++n);
            checkpoint(t, &st);
            rtcr_target_standby_info(t, &si);
            if (standby && !si.ready)
                die("no standby after epoch %" PRIu64 ": %s", st.epoch, si.why);
            if (standby && e == 0)
                full[run] = si.apply_usec;
            else if (standby)
                apply[n_apply++] = si.apply_usec;
        }
        const rtcr_image_t *img = rtcr_target_image(t);
        res.image_bytes = image_bytes(img);
        /* the share of materialising the image alone (no process, no objects) */
        rtcr_memstate_t *ms = NULL;
        rtcr_image_err_t ierr = {{0}};
        uint64_t m0 = bench_now_nsec();
        r = rtcr_image_materialize(img, 0 + rtcr_image_last(img), &ierr, &ms);
        mat[run] = (bench_now_nsec() - m0) / 1000u;
        if (r < 0)
            die("materialize: %s", ierr.msg);
        rtcr_memstate_destroy(&ms);

        uint64_t k0 = bench_now_nsec();
        if ((r = rtcr_target_kill(t)) < 0)
            die("kill: %s", strerror(-r));
        for (int i = 0; i < 5000 && rtcr_target_state(t) != RTCR_TARGET_FAILED; i++) {
            rtcr_ecu_reap(b->ecu);
            if (rtcr_target_state(t) != RTCR_TARGET_FAILED)
                usleep(1000);
        }
        if (rtcr_target_state(t) != RTCR_TARGET_FAILED)
            die("killed target not reaped");
        down[run] = (bench_now_nsec() - k0) / 1000u;

        pthread_mutex_lock(&b->lock);
        unsigned before = b->started;
        pthread_mutex_unlock(&b->lock);
        char err[512] = "";
        uint64_t t0 = bench_now_nsec();
        r = rtcr_target_restore(t, 0, err, sizeof(err));
        uint64_t t1 = bench_now_nsec();
        if (r < 0)
            die("restore: %s (%s)", strerror(-r), err);
        pthread_mutex_lock(&b->lock);
        bool ok = WAIT_UNTIL(b, b->started > before, 10000);
        uint64_t ts = b->started_ns;
        pthread_mutex_unlock(&b->lock);
        if (!ok || rtcr_target_state(t) != RTCR_TARGET_RUNNING)
            die("restored target did not run (state %s: %s)",
                rtcr_target_state_name(rtcr_target_state(t)), failure_of(t).s);
        until[run] = (ts - t0) / 1000u;
        call[run] = (t1 - t0) / 1000u;
        rtcr_target_standby_info(t, &si);
        if (si.last_restore == RTCR_RESTORE_STANDBY)
            res.via_standby++;
        else
            res.via_decode++;
        /* it continues: the next interrupt is number n + 1 for the restored target too */
        if (rtcr_ecu_irq_fire(b->ecu, IRQ_LINE) != 1)
            res.continues = false;
        pthread_mutex_lock(&b->lock);
        ok = WAIT_UNTIL(b, b->irq_done >= n + 1, 5000);
        if (b->irq_done != n + 1)
            res.continues = false;
        pthread_mutex_unlock(&b->lock);
        if (!ok)
            die("restored target does not handle interrupts");
        n++;
    }
    res.p50 = pct(until, res.runs, 0.50);
    res.max = until[res.runs - 1];
    res.call50 = pct(call, res.runs, 0.50);
    res.mat50 = pct(mat, res.runs, 0.50);
    res.down50 = pct(down, res.runs, 0.50);
    res.apply50 = n_apply ? pct(apply, n_apply, 0.50) : 0;
    res.apply_full = standby ? pct(full, res.runs, 0.50) : 0;
    free(down);
    free(until);
    free(call);
    free(mat);
    free(apply);
    free(full);
    mw_remove(b, &t);
    return res;
}

/* Benchmark 1: the pause table. `only` (rounds > 0) restricts it to one row. Returns rows. */
static unsigned pause_all(struct ckb *b, const struct limits *lim, struct pause_row *rows,
                          const struct pause_row *only)
{
    static const size_t mems[] = {16 * MIB, 64 * MIB, 256 * MIB, 1024 * MIB};
    static const size_t dirties[] = {4 * KIB, 64 * KIB, 1 * MIB, 16 * MIB};
    bool with_1g = b->with_1g && mem_available() > ((size_t)8 << 30);
    if (!with_1g)
        printf("(1 GiB rows skipped: they take ~25 s on 2 cores; run with `1g` to include them)\n");
    if (only && only->rounds)
        with_1g = true;
    unsigned nrows = 0;
    printf("\n-- 1. pause (freeze_usec: target quiesced .. resumed) --\n");
    printf("method: interrupt-driven target; the bench fires IRQ %u, the target writes one batch "
           "of distinct pages,\nlogs \"irq=N done\", the bench waits for that line and "
           "checkpoints: exactly one batch per epoch\n",
           IRQ_LINE);
    printf("goal per row: p99 <= 2 x (copied bytes / memcpy %.2f GB/s) + 200 us; "
           "64MiB/1MiB: p99 <= 1 ms over 200+ epochs\n",
           lim->memcpy_warm / 1e9);
    printf("%-8s %-8s %6s %9s %9s %9s %9s %10s %9s %7s %s\n", "memory", "dirty", "epochs", "p50_us",
           "p99_us", "max_us", "quiesce", "copied_KiB", "goal_us", "p99/gl", "");
    for (size_t mi = 0; mi < sizeof(mems) / sizeof(mems[0]); mi++) {
        if (mems[mi] > 256 * MIB && !with_1g)
            continue;
        for (size_t di = 0; di < sizeof(dirties) / sizeof(dirties[0]); di++) {
            size_t mem = mems[mi], dirty = dirties[di];
            /* 100 epochs where they are cheap, so that p99 is not simply the maximum (the
             * nearest rank of 0.99 in 40 samples is the 40th) */
            bool key = mem == 64 * MIB && dirty == MIB;
            unsigned rounds = key ? 250 : dirty >= 16 * MIB ? 20 : 100;
            if (b->quick)
                rounds = key ? 200 : rounds / 2;
            if (mem > 256 * MIB)
                rounds = dirty >= 16 * MIB ? 10 : 30;
            if (only && only->rounds) {
                if (mem != only->mem || dirty != only->dirty)
                    continue;
                rounds = only->rounds;
            }
            bool analyse = mem == 64 * MIB && dirty >= MIB;
            struct pause_row *row = &rows[nrows++];
            *row = pause_row(b, mem, dirty, rounds, lim, analyse);
            char m[16], d[16];
            bool ok = (double)row->p99 <= row->goal_us;
            printf("%-8s %-8s %6u %9" PRIu64 " %9" PRIu64 " %9" PRIu64 " %9" PRIu64
                   " %10.0f %9.0f %7.2f %s\n",
                   size_name(mem, m, sizeof(m)), size_name(dirty, d, sizeof(d)), row->rounds,
                   row->p50, row->p99, row->max, row->q50, (double)row->copied / KIB, row->goal_us,
                   (double)row->p99 / row->goal_us, verdict(ok));
        }
    }
    printf("(quiesce = p50 of quiesce_usec, before the pause; copied = p50 of bytes_raw)\n");
    printf("first (full) epochs: ");
    for (unsigned i = 0; i < nrows; i += 4) {
        char m[16];
        printf("%s freeze %.1f ms encode %.1f ms; ", size_name(rows[i].mem, m, sizeof(m)),
               rows[i].full_freeze / 1e3, rows[i].full_encode / 1e3);
    }
    printf("\n");
    const struct pause_row *key = NULL;
    unsigned met = 0;
    for (unsigned i = 0; i < nrows; i++) {
        char m[16], d[16], k[64];
        const struct pause_row *row = &rows[i];
        snprintf(k, sizeof(k), "ckpt_pause_%s_%s", size_name(row->mem, m, sizeof(m)),
                 size_name(row->dirty, d, sizeof(d)));
        printf("BENCH %s_p50=%" PRIu64 " us\n", k, row->p50);
        printf("BENCH %s_p99=%" PRIu64 " us\n", k, row->p99);
        printf("BENCH %s_p99_goal_ratio=%.3f x\n", k, (double)row->p99 / row->goal_us);
        met += (double)row->p99 <= row->goal_us;
        if (row->mem == 64 * MIB && row->dirty == MIB)
            key = row;
    }
    printf("rows meeting the per-row goal: %u of %u\n", met, nrows);
    printf("BENCH ckpt_pause_goal_rows_met=%u of_%u\n", met, nrows);
    if (key) {
        printf("64MiB/1MiB over %u epochs: p50 %" PRIu64 " us, p99 %" PRIu64
               " us (goal <= 1000 us) %s\n",
               key->rounds, key->p50, key->p99, verdict(key->p99 <= 1000));
        printf("BENCH ckpt_pause_64MiB_1MiB_p99_le_1ms=%d bool\n", key->p99 <= 1000);
    }

    return nrows;
}

/* Benchmark 2: work rate with and without 100 checkpoints/s. */
static void sustained_report(struct ckb *b)
{
    printf("\n-- 2. sustained 100 checkpoints/s, 64 MiB target, 1 MiB dirtied every 10 ms --\n");
    printf("method: the target computes %u us of every 1 ms (wall-clock budget, fixed arithmetic "
           "chunks = work units)\nand reports its count every 100 ms; 1 s slices of baseline, "
           "control load and checkpointing,\ninterleaved, %u of each; control = the CPU work of "
           "copy + XXH3 + LZ4 of 1 MiB every 10 ms in the\nagent process without any "
           "checkpoint (what encoding alone costs the target on this machine)\n",
           b->work_us, b->quick ? 3u : 5u);
    struct sustained s = sustained(b);
    static const char *const names[PH_MAX] = {"baseline", "control load (no checkpoint)",
                                              "100 checkpoints/s"};
    printf("%-30s %14s %10s %12s %10s %9s\n", "phase", "work units/s", "vs base", "late ticks/s",
           "agent_cpu", "batch_us");
    for (int ph = 0; ph < PH_MAX; ph++)
        printf("%-30s %14.0f %9.1f%% %12.1f %10.2f %9.0f\n", names[ph], s.rate[ph],
               s.rate[PH_BASE] > 0 ? (s.rate[ph] / s.rate[PH_BASE] - 1.0) * 100 : 0, s.missed[ph],
               s.cpu[ph], s.batch_us[ph]);
    printf("baseline slices ranged %.0f .. %.0f units/s (noise of this machine)\n", s.slice_min,
           s.slice_max);
    printf("checkpoints: %u at %.1f/s; freeze p50 %" PRIu64 " us p99 %" PRIu64
           " us; quiesce p50 %" PRIu64 " us p99 %" PRIu64 " us;\n  whole call p50 %" PRIu64
           " us p99 %" PRIu64 " us; bytes_raw p50 %" PRIu64 " KiB\n",
           s.ckpts, s.ckpt_rate, s.p50, s.p99, s.q50, s.q99, s.call50, s.call99, s.raw50 / 1024);
    /* where the target's time went; batch_us = writing one batch of 1 MiB of pages, with the
     * write faults of dirty tracking while checkpointing; a late tick loses its work chunk */
    double faults =
        (s.batch_us[PH_CKPT] - s.batch_us[PH_BASE]) * s.batch_rate[PH_CKPT] / 1e6 * 100.0;
    double late = (s.missed[PH_CKPT] - s.missed[PH_BASE]) * WORK_PERIOD_US / 1e6 * 100.0;
    printf("breakdown (share of the checkpoint slices' wall time): target frozen %.1f %%; "
           "write faults of\n  dirty tracking %.1f %% (batch %.0f us against %.0f us); "
           "work ticks lost late %.1f %% of the ticks;\n  the rest is CPU taken from the "
           "target's work chunks\n",
           s.frozen, faults, s.batch_us[PH_CKPT], s.batch_us[PH_BASE], late);
    printf("slowdown %.1f %% (goal <= 5 %%) %s; of it the control load alone: %.1f %%; "
           "rate %.1f/s (goal 100/s) %s\n",
           s.slowdown, verdict(s.slowdown <= 5.0), s.control_slowdown, s.ckpt_rate,
           verdict(s.ckpt_rate >= 99.0));
    printf("BENCH ckpt_sustained_work_base=%.0f units/s\n", s.rate[PH_BASE]);
    printf("BENCH ckpt_sustained_work_ckpt=%.0f units/s\n", s.rate[PH_CKPT]);
    printf("BENCH ckpt_sustained_slowdown=%.2f %%\n", s.slowdown);
    printf("BENCH ckpt_sustained_control_slowdown=%.2f %%\n", s.control_slowdown);
    printf("BENCH ckpt_sustained_rate=%.1f ckpt/s\n", s.ckpt_rate);
    printf("BENCH ckpt_sustained_freeze_p99=%" PRIu64 " us\n", s.p99);
    printf("BENCH ckpt_sustained_quiesce_p99=%" PRIu64 " us\n", s.q99);
    printf("BENCH ckpt_sustained_call_p99=%" PRIu64 " us\n", s.call99);
    printf("BENCH ckpt_sustained_agent_cpu=%.2f cores\n", s.cpu[PH_CKPT]);
    printf("BENCH ckpt_sustained_frozen=%.2f %%\n", s.frozen);
    printf("BENCH ckpt_sustained_fault_share=%.2f %%\n", faults);
    printf("BENCH ckpt_sustained_late_tick_share=%.2f %%\n", late);
}

/* Benchmark 3: encoding speed against raw LZ4, from the rows of benchmark 1. The verdict is
 * the median of the pairs of encoding_pair(): each checkpoint's encoding on its thread's CPU
 * time against one LZ4 pass over its bytes right after it. CPU time, because at SCHED_IDLE
 * (encode_idle, the default) the wall time also counts every preemption by the target and the
 * agent's other threads, which is the point of running it there; the wall-time speed is shown
 * beside it. Pairs, because the speed of this shared machine drifts within a row. */
static void encoding_report(const struct pause_row *rows, unsigned nrows)
{
    printf("\n-- 3. encoding (protobuf + zero detection + XXH3 + LZ4 frames of %u KiB) --\n",
           RTCR_IMAGE_FRAME_SIZE / 1024);
    printf("method: ckpt = sum(bytes_raw)/sum(encode_cpu_usec) of the epochs of benchmark 1 (the "
           "encoding thread's CPU time),\nwall = the same over sum(encode_usec) (at SCHED_IDLE "
           "it includes every preemption); lz4 = LZ4_compress_default and\nenc = "
           "rtcr_epoch_builder (adding and finishing) on the bytes of the row's newest epoch, "
           "best of several;\npaired = every %uth epoch, its ckpt speed over one LZ4 pass on "
           "its own bytes right after it: median [p10..p90];\ntargets run with the agent's "
           "default max_chain %u (compaction in the background); the 64 MiB rows warm up "
           "until\nthe first compaction committed; recycled = epochs written into the "
           "container of an epoch the compaction dropped;\nidle = epochs encoded at "
           "SCHED_IDLE\n",
           ENC_PAIR_EVERY, AGENT_DEFAULT_MAX_CHAIN);
    printf("%-8s %-8s %9s %9s %9s %9s %8s %8s %17s %9s %8s %9s %7s %s\n", "memory", "dirty",
           "ckpt_MB/s", "wall_MB/s", "enc_MB/s", "lz4_MB/s", "ckpt/lz4", "enc/lz4", "paired",
           "lz4_ratio", "xxh_GB/s", "recycled", "idle", "");
    double key_ratio = -1, key_wall = -1;
    for (unsigned i = 0; i < nrows; i++) {
        const struct pause_row *row = &rows[i];
        if (row->dirty < MIB)
            continue;
        char m[16], d[16], k[64], rc[24], id[24], pc[40];
        double ckpt_bps = row->enc_cpu ? (double)row->enc_bytes / (double)row->enc_cpu * 1e6 : 0;
        double wall_bps = row->enc_usec ? (double)row->enc_bytes / (double)row->enc_usec * 1e6 : 0;
        size_name(row->mem, m, sizeof(m));
        size_name(row->dirty, d, sizeof(d));
        snprintf(k, sizeof(k), "ckpt_encode_%s_%s", m, d);
        snprintf(rc, sizeof(rc), "%u/%u", row->recycled, row->rounds);
        snprintf(id, sizeof(id), "%u/%u", row->enc_idle, row->rounds);
        if (row->have_enc && row->pairs) {
            double paired = (double)row->pair_p50 / 1e4;
            snprintf(pc, sizeof(pc), "%.2f [%.2f..%.2f]", paired, (double)row->pair_p10 / 1e4,
                     (double)row->pair_p90 / 1e4);
            printf("%-8s %-8s %9.0f %9.0f %9.0f %9.0f %8.2f %8.2f %17s %9.2f %8.1f %9s %7s %s\n", m,
                   d, ckpt_bps / 1e6, wall_bps / 1e6, row->enc.builder_bps / 1e6,
                   row->enc.lz4_bps / 1e6, ckpt_bps / row->enc.lz4_bps,
                   row->enc.builder_bps / row->enc.lz4_bps, pc, row->enc.lz4_ratio,
                   row->enc.xxh_bps / 1e9, rc, id, verdict(paired >= 0.8));
            printf("BENCH %s_lz4=%.0f MB/s\n", k, row->enc.lz4_bps / 1e6);
            printf("BENCH %s_encoder=%.0f MB/s\n", k, row->enc.builder_bps / 1e6);
            printf("BENCH %s_vs_lz4=%.3f x\n", k, paired);
            printf("BENCH %s_wall_vs_lz4=%.3f x\n", k, wall_bps / row->enc.lz4_bps);
            if (row->dirty == MIB) {
                key_ratio = paired;
                key_wall = wall_bps / row->enc.lz4_bps;
            }
        } else {
            printf("%-8s %-8s %9.0f %9.0f %9s %9s %8s %8s %17s %9s %8s %9s %7s\n", m, d,
                   ckpt_bps / 1e6, wall_bps / 1e6, "-", "-", "-", "-", "-", "-", "-", rc, id);
        }
        printf("BENCH %s=%.0f MB/s\n", k, ckpt_bps / 1e6);
        printf("BENCH %s_wall=%.0f MB/s\n", k, wall_bps / 1e6);
    }
    if (key_ratio >= 0)
        printf("checkpoint encoding at %.0f %% of raw LZ4 speed (64MiB/1MiB, median of the pairs, "
               "on its CPU time): LZ4 time /\nencode time %.2f (goal <= 1.25, i.e. >= 80 %%) %s; "
               "its wall time against the best LZ4 pass: %.0f %%\n",
               key_ratio * 100, key_ratio > 0 ? 1.0 / key_ratio : 0, verdict(key_ratio >= 0.8),
               key_wall * 100);
}

/* Benchmark 4: restore of a 64 MiB target, with the hot standby and without it (the decoding
 * path, which is also the fallback); rows give the LZ4 decompression speed. */
static void restore_report(struct ckb *b, const struct limits *lim, const struct pause_row *rows,
                           unsigned nrows)
{
    printf("\n-- 4. restore of a 64 MiB target from the in-memory image --\n");
    printf("method: chain of 1 full + 9 incremental epochs (1 MiB batches), SIGKILL, reap, time "
           "rtcr_target_restore\nuntil the target reports running (event STARTED \"restored\"); "
           "then one interrupt must give count n+1;\nonce with a hot standby (the restore takes "
           "it as its pool), once without (the chain is decoded: the fallback path)\n");
    struct restore sb = restore_bench(b, true), dec = restore_bench(b, false);
    const struct enc_result *ke = NULL;
    for (unsigned i = 0; i < nrows; i++)
        if (rows[i].have_enc && rows[i].dirty == MIB)
            ke = &rows[i].enc;
    double floor_ms = (64.0 * MIB) / lim->memcpy_warm * 1e3;
    if (ke)
        floor_ms += (64.0 * MIB) / ke->lz4_dec_bps * 1e3;
    printf("%-8s %4s %9s %9s %9s %11s %10s %10s %9s\n", "path", "runs", "p50_ms", "max_ms",
           "call_ms", "teardown_ms", "standby/dec", "apply_us", "full_us");
    const struct restore *v[2] = {&sb, &dec};
    for (int i = 0; i < 2; i++)
        printf("%-8s %4u %9.1f %9.1f %9.1f %11.1f %5u/%-5u %10" PRIu64 " %9" PRIu64 "\n",
               v[i]->standby ? "standby" : "decode", v[i]->runs, v[i]->p50 / 1e3, v[i]->max / 1e3,
               v[i]->call50 / 1e3, v[i]->down50 / 1e3, v[i]->via_standby, v[i]->via_decode,
               v[i]->apply50, v[i]->apply_full);
    printf("image %.1f MiB in %u epochs; materialize alone p50 %.1f ms; floor of decoding (%s) "
           "%.1f ms; continues: %s\n"
           "  apply_us: standby update per incremental epoch (memcpy of the staged 1 MiB, after "
           "the thaw), full_us: its rebuild by the full epoch;\n  teardown (not in the times "
           "above): kill until reaped and torn down, with the pool zeroed for reuse\n",
           (double)dec.image_bytes / MIB, dec.epochs, dec.mat50 / 1e3,
           ke ? "LZ4 decompress + memcpy of 64 MiB" : "memcpy of 64 MiB; LZ4 needs `pause`",
           floor_ms, sb.continues && dec.continues ? "yes" : "NO");
    printf("restore until running: p50 %.1f ms via %s (goal <= 30 ms) %s; without standby "
           "p50 %.1f ms %s\n",
           sb.p50 / 1e3, sb.via_standby == sb.runs ? "the standby" : "the FALLBACK",
           verdict(sb.p50 <= 30000), dec.p50 / 1e3, verdict(dec.p50 <= 30000));
    printf("BENCH ckpt_restore_64MiB_p50=%.1f ms\n", sb.p50 / 1e3);
    printf("BENCH ckpt_restore_64MiB_call_p50=%.1f ms\n", sb.call50 / 1e3);
    printf("BENCH ckpt_restore_64MiB_standby_runs=%u count\n", sb.via_standby);
    printf("BENCH ckpt_restore_64MiB_decode_p50=%.1f ms\n", dec.p50 / 1e3);
    printf("BENCH ckpt_restore_64MiB_decode_call_p50=%.1f ms\n", dec.call50 / 1e3);
    printf("BENCH ckpt_restore_64MiB_materialize_p50=%.1f ms\n", dec.mat50 / 1e3);
    printf("BENCH ckpt_restore_64MiB_floor=%.1f ms\n", floor_ms);
    printf("BENCH ckpt_restore_64MiB_teardown_p50=%.1f ms\n", dec.down50 / 1e3);
    printf("BENCH ckpt_standby_apply_1MiB_p50=%" PRIu64 " us\n", sb.apply50);
    printf("BENCH ckpt_standby_rebuild_64MiB_p50=%" PRIu64 " us\n", sb.apply_full);
    printf("BENCH ckpt_restore_continues=%d bool\n", sb.continues && dec.continues);
}

/* The params directory; atexit needs it without an argument. */
static const char *tmpdir_path;

static void remove_tmpdir(void)
{
    DIR *dir = tmpdir_path ? opendir(tmpdir_path) : NULL;
    for (struct dirent *de; dir && (de = readdir(dir));)
        if (de->d_name[0] != '.')
            unlinkat(dirfd(dir), de->d_name, 0);
    if (dir)
        closedir(dir);
    if (tmpdir_path)
        rmdir(tmpdir_path);
}

/* ---- main --------------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    static struct ckb ckb;
    struct ckb *b = &ckb;
    bool want[4] = {false, false, false, false}, any = false;
    b->work_us = 500;
    b->timer_prio = AGENT_TIMER_PRIORITY;
    b->encode_idle = true;
    struct pause_row only = {0};
    for (int i = 1; i < argc; i++) {
        static const char *const names[4] = {"pause", "sustained", "encoding", "restore"};
        unsigned long long mm, dk, rn;
        bool known = false;
        unsigned w;
        if (strcmp(argv[i], "quick") == 0) {
            b->quick = known = true;
        } else if (strcmp(argv[i], "1g") == 0) {
            b->with_1g = known = true;
        } else if (sscanf(argv[i], "work_us=%u", &w) == 1 && w > 0 && w < 1000) {
            b->work_us = w;
            known = true;
        } else if (sscanf(argv[i], "encode_idle=%u", &w) == 1 && w <= 1) {
            b->encode_idle = w == 1;
            known = true;
        } else if (sscanf(argv[i], "timer_prio=%u", &w) == 1 && w <= RTCR_TIMER_PRIORITY_MAX) {
            b->timer_prio = w;
            known = true;
        } else if (sscanf(argv[i], "row=%llu:%llu:%llu", &mm, &dk, &rn) == 3 && mm && dk && rn) {
            only = (struct pause_row){
                .mem = (size_t)mm * MIB, .dirty = (size_t)dk * KIB, .rounds = (unsigned)rn};
            want[0] = any = known = true;
        }
        for (unsigned k = 0; k < 4; k++)
            if (strcmp(argv[i], names[k]) == 0)
                want[k] = any = known = true;
        if (!known)
            die("usage: bench_ckpt [quick] [1g] [pause] [sustained] [encoding] [restore] "
                "[row=MEM_MIB:DIRTY_KIB:ROUNDS] [work_us=N] [timer_prio=N] [encode_idle=0|1]");
    }
    for (unsigned k = 0; k < 4 && !any; k++)
        want[k] = true;
    if (want[2])
        want[0] = true; /* encoding analyses the epochs of the pause rows */
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *bdir = getenv("B");
    static char binary[512];
    snprintf(binary, sizeof(binary), "%s/targets/memwriter", bdir && *bdir ? bdir : "build");
    b->binary = binary;
    if (access(binary, X_OK) != 0)
        die("%s: %s (make %s)", binary, strerror(errno), binary);
    snprintf(b->dir, sizeof(b->dir), "/tmp/bench_ckpt.XXXXXX");
    if (!mkdtemp(b->dir))
        die("mkdtemp: %s", strerror(errno));
    tmpdir_path = b->dir;
    atexit(remove_tmpdir); /* also when die() exits */
    pthread_mutex_init(&b->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_cond_init(&b->cond, &ca);
    rtcr_ecu_params_t ep = {.name = "bench",
                            .ram_total = (size_t)4 << 30,
                            .log_lines = 64,
                            .timer_priority = (int)b->timer_prio,
                            .encode_idle = b->encode_idle};
    int r = rtcr_ecu_new(&ep, &b->ecu);
    if (r < 0)
        die("rtcr_ecu_new: %s", strerror(-r));
    const char *why = NULL;
    int prio = rtcr_ecu_timer_priority(b->ecu, &why);
    rtcr_ecu_set_event_cb(b->ecu, on_event, b);
    rtcr_ecu_set_log_cb(b->ecu, on_log, b);
    uint64_t t_begin = bench_now_nsec();

    struct limits lim = measure_limits();
    printf("== bench_ckpt: checkpoint/restore of real targets (memwriter) ==\n");
    print_load("machine load at start");
    if (prio)
        printf("timer service: SCHED_FIFO priority %d (the agent's default)\n", prio);
    else
        printf("timer service: normal scheduling%s%s\n", why ? ", real-time refused: " : "",
               why ? why : "");
    printf("BENCH ckpt_timer_priority=%d prio\n", prio);
    printf("raw limits in this run: memcpy %.2f GB/s (warm), %.2f GB/s into fresh pages\n",
           lim.memcpy_warm / 1e9, lim.memcpy_cold / 1e9);
    printf("BENCH ckpt_memcpy_warm=%.2f GB/s\n", lim.memcpy_warm / 1e9);
    printf("BENCH ckpt_memcpy_cold=%.2f GB/s\n", lim.memcpy_cold / 1e9);

    static struct pause_row rows[16];
    unsigned nrows = 0;
    if (want[0])
        nrows = pause_all(b, &lim, rows, only.rounds ? &only : NULL);
    if (want[1])
        sustained_report(b);
    if (want[2])
        encoding_report(rows, nrows);
    if (want[3])
        restore_report(b, &lim, rows, nrows);

    print_load("machine load at end");
    printf("\nbench_ckpt: done in %.1f s\n", (double)(bench_now_nsec() - t_begin) / 1e9);
    rtcr_ecu_destroy(&b->ecu);
    pthread_cond_destroy(&b->cond);
    pthread_mutex_destroy(&b->lock);
    return 0;
}
