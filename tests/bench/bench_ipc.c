/* bench_ipc.c — the target <-> agent IPC channel against the raw floor.
 *
 * Goal (from the issue): a round trip target call -> agent kernel dispatch -> handler -> reply
 * within 3x of a raw futex ping-pong between two processes (a Unix-socket round trip is about
 * 30x slower).
 *
 * Measured, each between two real processes (a forked child plays the target and times its own
 * calls; the parent is the agent, one mirror in its main thread):
 *   futex          the floor: ping-pong with FUTEX_WAIT/WAKE only (bench_util, as bench_limits)
 *   utcb transport the UTCB channel alone: the mirror answers without the kernel
 *   utcb + kernel  the real path: for each request the mirror calls rtcr_ipc_call() on the
 *                  emulated kernel, through a gate in the client task's slot 0x200 to a server
 *                  thread with a trivial handler (rtcr_thread_set_handler), and replies
 *   ... no spin    the same with spinning disabled on both sides: every hand-over sleeps and
 *                  wakes (what a loaded machine, with more runnable threads than cores, sees)
 * The goal ratio is median(utcb + kernel) / median(futex), both measured in this run.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <rtcr/kernel.h>
#include <rtcr/utcb.h>

#include "../lib/bench_util.h"

#define WARMUP 2000
#define ROUNDS 50000
#define GOAL   3.0
#define SLOT   RTCR_USER_BASE_CAP

enum mode {
    MODE_TRANSPORT, /* mirror answers directly */
    MODE_KERNEL,    /* mirror dispatches through rtcr_ipc_call */
};

/* The kernel side of the benchmark: a client task whose thread calls a server thread. */
struct env {
    rtcr_kernel_t *k;     /* the emulated kernel */
    rtcr_kobj_t *ctask;   /* client task */
    rtcr_kobj_t *cthread; /* client thread: the caller the mirror acts for */
    rtcr_kobj_t *stask;   /* server task */
    rtcr_kobj_t *sthread; /* server thread with the handler */
    rtcr_kobj_t *gate;    /* RPC gate to the server thread, installed at SLOT in ctask */
    uint64_t handled;     /* handler invocations */
};

/* the trivial server: echo the words, first register + 1 */
static int echo(void *ctx, rtcr_kobj_t *thread, uint64_t label, const rtcr_msg_t *req,
                rtcr_msg_t *reply)
{
    struct env *e = ctx;
    (void)thread;
    (void)label;
    e->handled++;
    reply->tag = req->tag;
    reply->tag.items = 0;
    memcpy(reply->mr, req->mr, req->tag.words * sizeof(uint64_t));
    reply->mr[0] = req->mr[0] + 1;
    return 0;
}

static int env_setup(struct env *e)
{
    unsigned idx;
    int r;

    memset(e, 0, sizeof(*e));
    e->k = rtcr_kernel_new();
    if (!e->k)
        return -ENOMEM;
    if ((r = rtcr_task_create(e->k, "client", &e->ctask)) < 0 ||
        (r = rtcr_thread_create(e->k, e->ctask, "client-main", &e->cthread)) < 0 ||
        (r = rtcr_task_bind_thread(e->k, e->ctask, e->cthread, &idx)) < 0 ||
        (r = rtcr_task_create(e->k, "server", &e->stask)) < 0 ||
        (r = rtcr_thread_create(e->k, e->stask, "server-ep", &e->sthread)) < 0 ||
        (r = rtcr_task_bind_thread(e->k, e->stask, e->sthread, &idx)) < 0 ||
        (r = rtcr_thread_set_handler(e->k, e->sthread, echo, e)) < 0 ||
        (r = rtcr_gate_create_rpc(e->k, e->sthread, &e->gate)) < 0 ||
        (r = rtcr_task_install(e->k, e->ctask, SLOT, e->gate, RTCR_CAP_RWS)) < 0)
        return r;
    return 0;
}

static void env_teardown(struct env *e)
{
    rtcr_kobj_unref(&e->gate);
    rtcr_kobj_unref(&e->sthread);
    rtcr_kobj_unref(&e->stask);
    rtcr_kobj_unref(&e->cthread);
    rtcr_kobj_unref(&e->ctask);
    rtcr_kernel_destroy(&e->k);
}

/* the target: WARMUP + ROUNDS calls, each timed; exit status 0 if every answer was right */
static int client(rtcr_utcb_t *u, double *us)
{
    for (uint32_t i = 0; i < WARMUP + ROUNDS; i++) {
        uint64_t t0 = bench_now_nsec();
        int r;
        u->op = RTCR_UTCB_OP_CALL;
        u->dest = SLOT;
        u->timeout_usec = 0;
        u->rcv_count = 0;
        u->msg.tag = (rtcr_msgtag_t){.label = 1, .words = 2, .items = 0, .flags = 0};
        u->msg.mr[0] = i;
        u->msg.mr[1] = 42;
        r = rtcr_utcb_invoke(u);
        if (i >= WARMUP)
            us[i - WARMUP] = (double)(bench_now_nsec() - t0) / 1000.0;
        if (r < 0 || u->msg.mr[0] != (uint64_t)i + 1 || u->msg.mr[1] != 42)
            return 1;
    }
    return 0;
}

/* one channel measurement; samples land in the shared `us` */
static int run_utcb(struct env *e, enum mode mode, uint32_t spin, double *us)
{
    rtcr_utcb_area_t *a = NULL;
    rtcr_utcb_mirror_t *m = NULL;
    uint32_t abort_word = 0;
    rtcr_utcb_req_t req;
    rtcr_utcb_t *u;
    int r, st;
    pid_t pid;

    r = rtcr_utcb_area_new("bench-ipc", 1, &a);
    if (r < 0)
        return r;
    u = rtcr_utcb_area_utcb(a, 0);
    rtcr_utcb_set_target_spin(u, spin);
    r = rtcr_utcb_mirror_new(u, &abort_word, 0, &m);
    if (r < 0) {
        rtcr_utcb_area_destroy(&a);
        return r;
    }
    rtcr_utcb_mirror_set_spin(m, spin);

    pid = fork();
    if (pid < 0) {
        r = -errno;
        goto out;
    }
    if (pid == 0)
        _exit(client(u, us));

    for (uint32_t i = 0; i < WARMUP + ROUNDS; i++) {
        int res;
        r = rtcr_utcb_serve_next(m, 5000000, &req);
        if (r < 0)
            break;
        if (mode == MODE_KERNEL) {
            res = rtcr_ipc_call(e->k, e->cthread, req.dest, &req.msg, req.timeout_usec);
        } else {
            req.msg.mr[0]++;
            res = 0;
        }
        rtcr_utcb_complete(m, res, &req.msg, 0);
    }
    if (r < 0)
        kill(pid, SIGKILL);
    if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        r = r < 0 ? r : -EPROTO;
out:
    rtcr_utcb_mirror_destroy(&m);
    rtcr_utcb_area_destroy(&a);
    return r;
}

static bool measure(bench_t *b, struct env *e, enum mode mode, uint32_t spin, double *us,
                    const char *prefix, const char *note, bench_stats_t *ret)
{
    char name[64];
    int r = run_utcb(e, mode, spin, us);

    if (r < 0) {
        fprintf(stderr, "%s: failed: %s\n", prefix, strerror(-r));
        return false;
    }
    bench_stats(us, ROUNDS, ret);
    snprintf(name, sizeof(name), "%s_median_us", prefix);
    bench_report(b, name, ret->median, "us", note);
    snprintf(name, sizeof(name), "%s_p99_us", prefix);
    bench_report(b, name, ret->p99, "us", NULL);
    return true;
}

int main(void)
{
    bench_t b;
    struct env e;
    bench_stats_t futex, transport, kernel, nospin;
    bool ok_t, ok_k, ok_n;
    double *us;
    int r;

    us = mmap(NULL, ROUNDS * sizeof(double), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1,
              0);
    if (us == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    r = env_setup(&e);
    if (r < 0) {
        fprintf(stderr, "kernel setup failed: %s\n", strerror(-r));
        return 1;
    }

    bench_init(&b, "IPC: target <-> agent channel");
    bench_section(&b, "floor");
    if (bench_futex_pingpong(WARMUP, ROUNDS, us) < 0) {
        fprintf(stderr, "futex ping-pong failed\n");
        return 1;
    }
    bench_stats(us, ROUNDS, &futex);
    bench_report(&b, "ipc_futex_rtt_median_us", futex.median, "us",
                 "2 processes, wait/wake, no spin");
    bench_report(&b, "ipc_futex_rtt_p99_us", futex.p99, "us", NULL);

    bench_section(&b, "UTCB channel, 2 processes, 2 words each way");
    ok_t = measure(&b, &e, MODE_TRANSPORT, RTCR_UTCB_SPIN_NSEC, us, "ipc_utcb_transport_rtt",
                   "mirror answers directly", &transport);
    e.handled = 0;
    ok_k = measure(&b, &e, MODE_KERNEL, RTCR_UTCB_SPIN_NSEC, us, "ipc_utcb_kernel_rtt",
                   "rtcr_ipc_call -> gate -> handler", &kernel);
    if (ok_k && e.handled != WARMUP + ROUNDS) {
        fprintf(stderr, "handler ran %llu times, expected %u\n", (unsigned long long)e.handled,
                WARMUP + ROUNDS);
        ok_k = false;
    }
    ok_n = measure(&b, &e, MODE_KERNEL, 0, us, "ipc_utcb_kernel_nospin_rtt",
                   "same, spinning off on both sides", &nospin);

    bench_section(&b, "ratios (median / median futex)");
    if (ok_t)
        bench_report(&b, "ipc_utcb_transport_vs_futex", transport.median / futex.median, "x", NULL);
    if (ok_k) {
        bench_goal(&b, "ipc_utcb_kernel_vs_futex", kernel.median / futex.median, GOAL,
                   "the issue's goal");
        bench_report(&b, "ipc_utcb_kernel_p99_vs_futex_p99", kernel.p99 / futex.p99, "x", NULL);
    }
    if (ok_n)
        bench_report(&b, "ipc_utcb_kernel_nospin_vs_futex", nospin.median / futex.median, "x",
                     "informational");
    bench_finish(&b);

    env_teardown(&e);
    munmap(us, ROUNDS * sizeof(double));
    return ok_t && ok_k && ok_n ? 0 : 1;
}
