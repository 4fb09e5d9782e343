/* bench_util.c — timing, statistics, reporting and the raw futex floor for the benchmarks.
 * See bench_util.h for the output format. */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"

uint64_t bench_now_nsec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_percentile_sorted(const double *sorted, size_t n, double p)
{
    size_t rank;

    if (n == 0)
        return 0.0;
    if (p <= 0)
        return sorted[0];
    if (p >= 100)
        return sorted[n - 1];
    rank = (size_t)(p / 100.0 * (double)n + 0.999999); /* nearest rank, 1-based */
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return sorted[rank - 1];
}

int bench_stats(double *samples, size_t n, bench_stats_t *ret_stats)
{
    double sum = 0;

    if (!samples || n == 0)
        return -EINVAL;
    qsort(samples, n, sizeof(double), cmp_double);
    for (size_t i = 0; i < n; i++)
        sum += samples[i];
    ret_stats->n = n;
    ret_stats->min = samples[0];
    ret_stats->max = samples[n - 1];
    ret_stats->median = bench_percentile_sorted(samples, n, 50);
    ret_stats->p90 = bench_percentile_sorted(samples, n, 90);
    ret_stats->p99 = bench_percentile_sorted(samples, n, 99);
    ret_stats->mean = sum / (double)n;
    return 0;
}

void bench_init(bench_t *b, const char *title)
{
    memset(b, 0, sizeof(*b));
    b->title = title;
    printf("== %s ==\n", title);
    printf("  %-44s %14s  %-7s %s\n", "metric", "value", "unit", "note");
    fflush(stdout);
}

void bench_section(bench_t *b, const char *heading)
{
    (void)b;
    printf("  -- %s\n", heading);
    fflush(stdout);
}

static void record(bench_t *b, const char *name, double value, const char *unit)
{
    bench_metric_t *m;

    if (b->n >= BENCH_MAX_METRICS)
        return;
    m = &b->metric[b->n++];
    snprintf(m->name, sizeof(m->name), "%s", name);
    snprintf(m->unit, sizeof(m->unit), "%s", unit);
    m->value = value;
}

void bench_report(bench_t *b, const char *name, double value, const char *unit, const char *note)
{
    record(b, name, value, unit);
    printf("  %-44s %14.3f  %-7s %s\n", name, value, unit, note ? note : "");
    fflush(stdout);
}

void bench_goal(bench_t *b, const char *name, double value, double goal, const char *note)
{
    char text[160];
    bool pass = value <= goal;

    if (!pass)
        b->misses++;
    snprintf(text, sizeof(text), "goal <= %.1fx: %s%s%s", goal, pass ? "PASS" : "MISS",
             note ? "; " : "", note ? note : "");
    bench_report(b, name, value, "x", text);
}

int bench_finish(bench_t *b)
{
    printf("-- %s: machine-readable --\n", b->title);
    for (size_t i = 0; i < b->n; i++)
        printf("BENCH %s=%.4f %s\n", b->metric[i].name, b->metric[i].value, b->metric[i].unit);
    fflush(stdout);
    return 0;
}

/* ---- raw futex ping-pong --------------------------------------------------------------------- */

struct pingpong {
    uint32_t ping; /* caller -> child: round number */
    uint32_t pad[15];
    uint32_t pong; /* child -> caller: round number */
};

static void fwait(uint32_t *w, uint32_t v)
{
    syscall(SYS_futex, w, FUTEX_WAIT, v, NULL, NULL, 0);
}

static void fwake(uint32_t *w)
{
    syscall(SYS_futex, w, FUTEX_WAKE, 1, NULL, NULL, 0);
}

/* wait (sleeping only) until *w == v */
static void wait_for(uint32_t *w, uint32_t v)
{
    uint32_t cur;
    while ((cur = __atomic_load_n(w, __ATOMIC_ACQUIRE)) != v)
        fwait(w, cur);
}

int bench_futex_pingpong(size_t warmup, size_t rounds, double *ret_usec)
{
    struct pingpong *pp;
    size_t total = warmup + rounds;
    pid_t pid;
    int st, r = 0;

    pp = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (pp == MAP_FAILED)
        return -errno;
    pid = fork();
    if (pid < 0) {
        r = -errno;
        munmap(pp, 4096);
        return r;
    }
    if (pid == 0) {
        for (uint32_t i = 1; i <= total; i++) {
            wait_for(&pp->ping, i);
            __atomic_store_n(&pp->pong, i, __ATOMIC_RELEASE);
            fwake(&pp->pong);
        }
        _exit(0);
    }
    for (uint32_t i = 1; i <= total; i++) {
        uint64_t t0 = bench_now_nsec();
        __atomic_store_n(&pp->ping, i, __ATOMIC_RELEASE);
        fwake(&pp->ping);
        wait_for(&pp->pong, i);
        if (i > warmup)
            ret_usec[i - 1 - warmup] = (double)(bench_now_nsec() - t0) / 1000.0;
    }
    if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        r = -ECHILD;
    munmap(pp, 4096);
    return r;
}
