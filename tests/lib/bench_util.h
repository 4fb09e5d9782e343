/* bench_util.h — timing, statistics and reporting shared by the benchmarks (tests/bench).
 *
 * Every benchmark prints a human-readable table while it runs and, at the end, one
 * machine-readable line per metric:
 *     BENCH <name>=<value> <unit>
 * scripts/bench.sh collects those lines from every build/bench/bench_* program and prints a
 * summary; metrics with unit "x" are ratios, and a "goal" line may accompany one:
 *     BENCH <name>=<value> x   (and a table line ... <= goal PASS|MISS)
 * Names are [a-z0-9_], unique across all benchmarks (prefix them with the program's topic).
 */
#ifndef RTCR_TEST_BENCH_UTIL_H
#define RTCR_TEST_BENCH_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BENCH_MAX_METRICS 64

/* Order statistics of a sample set (all in the samples' unit). */
typedef struct bench_stats {
    size_t n;      /* samples */
    double min;    /* smallest */
    double median; /* 50th percentile */
    double p90;    /* 90th percentile */
    double p99;    /* 99th percentile */
    double max;    /* largest */
    double mean;   /* arithmetic mean */
} bench_stats_t;

/* One recorded metric. */
typedef struct bench_metric {
    char name[64]; /* metric name */
    double value;  /* value */
    char unit[16]; /* unit: us, ns, GB/s, MB/s, msg/s, x, ... */
} bench_metric_t;

/* A benchmark run: the metrics recorded so far, printed as BENCH lines by bench_finish(). */
typedef struct bench {
    const char *title;                        /* program title (borrowed string literal) */
    size_t n;                                 /* metrics recorded */
    bench_metric_t metric[BENCH_MAX_METRICS]; /* recorded metrics */
    unsigned misses;                          /* goals missed (bench_goal) */
} bench_t;

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t bench_now_nsec(void);

/* Sort `samples` in place and compute their statistics; -EINVAL for n == 0. */
int bench_stats(double *samples, size_t n, bench_stats_t *ret_stats);
/* The p-th percentile (0..100) of sorted samples (nearest rank). */
double bench_percentile_sorted(const double *sorted, size_t n, double p);

/* Start a run: prints the title and the table header. */
void bench_init(bench_t *b, const char *title);
/* Print a section heading in the table. */
void bench_section(bench_t *b, const char *heading);
/* Record a metric and print its table line (`note` may be NULL). */
void bench_report(bench_t *b, const char *name, double value, const char *unit, const char *note);
/* Record a ratio `value` (unit "x") that should be <= `goal`: prints PASS or MISS. */
void bench_goal(bench_t *b, const char *name, double value, double goal, const char *note);
/* Print the BENCH lines. Returns 0 (a missed goal is reported, not an error exit). */
int bench_finish(bench_t *b);

/* Raw futex ping-pong round trip between two processes (the honest floor for the IPC channel):
 * a forked child and the caller share an anonymous page; each round the caller stores i into
 * the ping word and FUTEX_WAKEs it, the child (sleeping in FUTEX_WAIT) answers with i in the
 * pong word and FUTEX_WAKE, the caller sleeps in FUTEX_WAIT until it sees it. No spinning on
 * either side: every hand-over is a real sleep and wake. Stores `rounds` round-trip times in
 * microseconds into ret_usec (after `warmup` untimed rounds). Returns 0 or -errno. */
int bench_futex_pingpong(size_t warmup, size_t rounds, double *ret_usec);

#endif
