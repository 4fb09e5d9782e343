/* memwriter — benchmark target: a configurable working set that it keeps writing to, plus a
 * counted amount of computation, so that checkpoint cost and its effect on the target can be
 * measured (tests/bench/bench_ckpt.c).
 *
 * Parameters come from the ROM module "params" (targets see no environment variables), one
 * `key=value` per line; unknown keys are ignored, a missing module means all defaults:
 *   mem_mib=64          working set, allocated as RAM dataspaces of at most 16 MiB each
 *   dirty_kib=1024      bytes dirtied per period (or per interrupt), in whole 4 KiB pages
 *   period_us=10000     period of the dirtying timer; 0: no timer (use irq_line)
 *   irq_line=N          if given: also dirty dirty_kib on every interrupt on line N, then log
 *                       "irq=<n> done" and acknowledge (the bench's "write only when
 *                       told" mode: exactly one batch between two checkpoints)
 *   work_us=0           computation per work tick (wall-clock budget, in chunks of fixed
 *                       arithmetic; each chunk is one work unit); 0: no computation
 *   work_period_us=1000 period of the work timer; work_us must leave slack (< period) or the
 *                       entrypoint would never wait and could not be quiesced
 *   report_ms=1000      period of the progress LOG line
 *
 * At start every page of the working set is filled with a heap-like pattern (one random word
 * in eight, small integers and pointer-like values otherwise; LZ4 compresses it about 1.8:1),
 * so the encoder sees realistic data rather than zero pages. A batch writes one word into
 * each of dirty_kib/4 DISTINCT pages at pseudo-random positions: page (s + j*k) mod N with k
 * coprime to N, fresh s and k per batch. Every report_ms (default: every second) it logs
 *   "periods=<n> work=<w> missed=<m> irqs=<i> t_us=<monotonic usec> batches=<b>
 *    dirty_us=<usec spent writing the batches, page faults of dirty tracking included>"
 * (missed = dirtying or work timer periods that coalesced because a handler ran late). The RPC
 * object (root->counters, op OP_COUNTERS) returns periods, work, missed, irqs.
 *
 * Everything lives in one heap object; the working set in RAM dataspaces. It has no code
 * about checkpoints.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <rtcr/component.h>
#include <rtcr/rpc.h>

#define PAGE        4096u
#define CHUNK_MAX   (16u << 20) /* bytes per RAM dataspace of the working set */
#define CHUNKS_MAX  256u        /* dataspaces at most (4 GiB) */
#define WORK_ITERS  2000u       /* arithmetic steps per work unit (about 2 us) */
#define OP_COUNTERS (RTCR_RPC_USER + 1)
#define PARAMS_MAX  1024u

struct mw {
    rtcr_env_t *env;            /* environment */
    uint64_t mem;               /* working-set bytes */
    uint64_t npages;            /* pages in the working set */
    uint64_t dirty_pages;       /* pages per batch */
    uint64_t period_usec;       /* dirtying period, 0: none */
    uint64_t work_usec;         /* computation per work tick */
    uint64_t work_period_usec;  /* work timer period */
    uint64_t report_usec;       /* progress LOG period */
    int irq_line;               /* interrupt line, -1: none */
    uint64_t chunk_pages;       /* pages per dataspace (all but the last are full) */
    unsigned n_chunks;          /* dataspaces */
    uint8_t *chunk[CHUNKS_MAX]; /* their addresses */
    uint64_t rng;               /* xorshift state */
    uint64_t acc;               /* result of the computation (kept so it is not elided) */
    uint64_t periods;           /* dirtying timer periods handled */
    uint64_t missed;            /* timer periods that coalesced (count - 1 summed) */
    uint64_t irqs;              /* interrupts handled */
    uint64_t work;              /* work units done */
    uint64_t batches;           /* dirtying batches written */
    uint64_t dirty_usec;        /* time spent writing them (with the write faults of tracking) */
    rtcr_cap_t t_period;        /* Timer session: dirtying */
    rtcr_cap_t t_work;          /* Timer session: computation */
    rtcr_cap_t t_report;        /* Timer session: progress report */
    rtcr_cap_t irq;             /* IRQ session (if irq_line >= 0) */
    rtcr_cap_t counters;        /* capability to the counters RPC object */
};

static uint64_t now_usec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static uint64_t gcd(uint64_t a, uint64_t b)
{
    while (b) {
        uint64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

static uint8_t *page_addr(struct mw *m, uint64_t page)
{
    return m->chunk[page / m->chunk_pages] + (page % m->chunk_pages) * PAGE;
}

/* Heap-like content: a random word in eight, small integers and pointer-like values. */
static void fill_page(uint64_t *w, uint64_t page)
{
    uint64_t s = page * 0x9e3779b97f4a7c15ull + 1;
    for (unsigned i = 0; i < PAGE / 8; i++) {
        rng_next(&s);
        w[i] = (i & 7) == 0 ? s : (i & 1) ? (s & 0xffff) : 0x0000004000000000ull + i * 16;
    }
}

/* One batch: a word into each of dirty_pages distinct pseudo-random pages. */
static void dirty_batch(struct mw *m)
{
    uint64_t n = m->npages, d = m->dirty_pages < n ? m->dirty_pages : n;
    uint64_t s = rng_next(&m->rng) % n, k = (rng_next(&m->rng) % n) | 1;
    while (gcd(k, n) != 1)
        k = (k + 2) % n ? (k + 2) % n : 1;
    uint64_t t0 = now_usec();
    m->batches++;
    for (uint64_t j = 0; j < d; j++) {
        uint64_t page = (s + j * k) % n;
        uint64_t *w = (uint64_t *)page_addr(m, page);
        w[(m->batches + j) % (PAGE / 8)] = m->batches ^ (j << 20);
    }
    m->dirty_usec += now_usec() - t0;
}

static void on_period(void *ctx, unsigned count)
{
    struct mw *m = ctx;
    m->periods++;
    if (count > 1)
        m->missed += count - 1;
    dirty_batch(m);
}

static void on_irq(void *ctx, unsigned count)
{
    struct mw *m = ctx;
    (void)count; /* one interrupt per delivery: the next comes only after the ack */
    dirty_batch(m);
    m->irqs++;
    rtcr_log(m->env, "irq=%llu done", (unsigned long long)m->irqs);
    rtcr_irq_ack(m->env, m->irq);
}

static void on_work(void *ctx, unsigned count)
{
    struct mw *m = ctx;
    if (count > 1) /* a late tick does one tick's work: lost time stays lost */
        m->missed += count - 1;
    uint64_t start = now_usec(), acc = m->acc, units = 0;
    do {
        for (unsigned i = 0; i < WORK_ITERS; i++)
            acc = acc * 6364136223846793005ull + 1442695040888963407ull + (acc >> 29);
        units++;
    } while (now_usec() - start < m->work_usec);
    m->acc = acc;
    m->work += units;
}

static void on_report(void *ctx, unsigned count)
{
    struct mw *m = ctx;
    (void)count;
    rtcr_log(m->env,
             "periods=%llu work=%llu missed=%llu irqs=%llu t_us=%llu batches=%llu "
             "dirty_us=%llu",
             (unsigned long long)m->periods, (unsigned long long)m->work,
             (unsigned long long)m->missed, (unsigned long long)m->irqs,
             (unsigned long long)now_usec(), (unsigned long long)m->batches,
             (unsigned long long)m->dirty_usec);
}

static int on_counters(void *ctx, uint64_t op, const uint64_t *args, unsigned nargs, uint64_t *ret,
                       unsigned *ret_n)
{
    struct mw *m = ctx;
    (void)args;
    (void)nargs;
    if (op != OP_COUNTERS)
        return -38; /* ENOSYS */
    ret[0] = __atomic_load_n(&m->periods, __ATOMIC_RELAXED);
    ret[1] = __atomic_load_n(&m->work, __ATOMIC_RELAXED);
    ret[2] = __atomic_load_n(&m->missed, __ATOMIC_RELAXED);
    ret[3] = __atomic_load_n(&m->irqs, __ATOMIC_RELAXED);
    *ret_n = 4;
    return 0;
}

/* Value of `key=` in the params text, or `def`. */
static long long param(const char *text, const char *key, long long def)
{
    size_t klen = strlen(key);
    for (const char *p = text; *p;) {
        if (strncmp(p, key, klen) == 0 && p[klen] == '=')
            return strtoll(p + klen + 1, NULL, 10);
        const char *nl = strchr(p, '\n');
        if (!nl)
            break;
        p = nl + 1;
    }
    return def;
}

static void fail(rtcr_env_t *env, const char *what)
{
    rtcr_log(env, "%s failed", what);
    rtcr_env_exit(env, 1);
}

static void read_params(rtcr_env_t *env, struct mw *m)
{
    char text[PARAMS_MAX + 1] = "";
    const void *data;
    size_t size;
    if (rtcr_rom_attach(env, "params", &data, &size) == 0) {
        size_t n = size < PARAMS_MAX ? size : PARAMS_MAX;
        memcpy(text, data, n);
        text[n] = '\0';
    }
    long long mem_mib = param(text, "mem_mib", 64), dirty_kib = param(text, "dirty_kib", 1024);
    long long period = param(text, "period_us", 10000), line = param(text, "irq_line", -1);
    long long work = param(text, "work_us", 0), wperiod = param(text, "work_period_us", 1000);
    long long report = param(text, "report_ms", 1000);
    if (mem_mib <= 0 || (uint64_t)mem_mib > (uint64_t)CHUNKS_MAX * (CHUNK_MAX >> 20) ||
        dirty_kib < 0 || period < 0 || line < -1 || line > 255 || work < 0 || wperiod <= 0 ||
        (work > 0 && work >= wperiod) || report <= 0)
        fail(env, "params check");
    m->mem = (uint64_t)mem_mib << 20;
    m->npages = m->mem / PAGE;
    m->dirty_pages = ((uint64_t)dirty_kib * 1024 + PAGE - 1) / PAGE;
    m->period_usec = (uint64_t)period;
    m->irq_line = (int)line;
    m->work_usec = (uint64_t)work;
    m->work_period_usec = (uint64_t)wperiod;
    m->report_usec = (uint64_t)report * 1000u;
}

static void alloc_working_set(rtcr_env_t *env, struct mw *m)
{
    uint64_t chunk = m->mem < CHUNK_MAX ? m->mem : CHUNK_MAX;
    m->chunk_pages = chunk / PAGE;
    for (uint64_t done = 0; done < m->mem; done += chunk) {
        uint64_t size = m->mem - done < chunk ? m->mem - done : chunk;
        rtcr_cap_t ds;
        void *addr;
        if (rtcr_ram_alloc_attach(env, size, &ds, &addr) < 0)
            fail(env, "working-set allocation");
        m->chunk[m->n_chunks++] = addr;
    }
    for (uint64_t p = 0; p < m->npages; p++)
        fill_page((uint64_t *)page_addr(m, p), p);
}

static rtcr_cap_t periodic(rtcr_env_t *env, struct mw *m, rtcr_signal_fn fn, uint64_t usec,
                           rtcr_cap_t *ret_timer)
{
    rtcr_cap_t sigh;
    if (rtcr_signal_handler(rtcr_env_ep(env), fn, m, &sigh) < 0 ||
        rtcr_timer_open(env, ret_timer) < 0 || rtcr_timer_sigh(env, *ret_timer, sigh) < 0 ||
        rtcr_timer_periodic(env, *ret_timer, usec) < 0)
        fail(env, "timer setup");
    return sigh;
}

void rtcr_component_construct(rtcr_env_t *env)
{
    struct mw *m = rtcr_heap_alloc(env, sizeof(*m));
    if (!m)
        rtcr_env_exit(env, 1);
    m->env = env;
    m->rng = 0x853c49e6748fea9bull;
    rtcr_env_set_root(env, m);
    read_params(env, m);
    alloc_working_set(env, m);

    if (rtcr_rpc_obj_create(rtcr_env_ep(env), on_counters, m, &m->counters) < 0)
        fail(env, "counters object");
    if (m->irq_line >= 0) {
        rtcr_cap_t sigh;
        if (rtcr_signal_handler(rtcr_env_ep(env), on_irq, m, &sigh) < 0 ||
            rtcr_irq_open(env, (unsigned)m->irq_line, &m->irq) < 0 ||
            rtcr_irq_sigh(env, m->irq, sigh) < 0 || rtcr_irq_ack(env, m->irq) < 0)
            fail(env, "IRQ setup");
    }
    if (m->period_usec)
        periodic(env, m, on_period, m->period_usec, &m->t_period);
    if (m->work_usec)
        periodic(env, m, on_work, m->work_period_usec, &m->t_work);
    periodic(env, m, on_report, m->report_usec, &m->t_report);
    rtcr_log(env,
             "started, mem=%llu MiB in %u dataspaces, dirty=%llu pages per "
             "%s, work=%llu/%llu us",
             (unsigned long long)(m->mem >> 20), m->n_chunks, (unsigned long long)m->dirty_pages,
             m->irq_line >= 0 ? "interrupt" : "period", (unsigned long long)m->work_usec,
             (unsigned long long)m->work_period_usec);
}
