/* spinner — a target whose handler does not return for a long time: every 2 s its timer
 * handler computes for 1.5 s without waiting. A checkpoint during that time cannot quiesce the
 * target and must give up with a clear error, leaving it running. Logs "spinning"
 * when it starts a spin and "idle n=<k>" when it ends one. */
#include <stdint.h>

#include <rtcr/component.h>

#define PERIOD_USEC 2000000
#define SPIN_USEC   1500000

struct spinner {
    rtcr_env_t *env;        /* environment */
    rtcr_cap_t timer;       /* Timer session */
    uint64_t spins;         /* spins done */
    volatile uint64_t sink; /* keeps the loop from being optimised away */
};

static void on_tick(void *ctx, unsigned count)
{
    struct spinner *s = ctx;
    (void)count;
    uint64_t start, now;
    rtcr_log(s->env, "spinning");
    rtcr_timer_now(s->env, s->timer, &start);
    do {
        for (unsigned i = 0; i < 100000; i++)
            s->sink += i;
        rtcr_timer_now(s->env, s->timer, &now);
    } while (now - start < SPIN_USEC);
    s->spins++;
    rtcr_log(s->env, "idle n=%llu", (unsigned long long)s->spins);
}

void rtcr_component_construct(rtcr_env_t *env)
{
    struct spinner *s = rtcr_heap_alloc(env, sizeof(*s));
    rtcr_cap_t sigh;
    if (!s)
        rtcr_env_exit(env, 1);
    s->env = env;
    if (rtcr_signal_handler(rtcr_env_ep(env), on_tick, s, &sigh) < 0 ||
        rtcr_timer_open(env, &s->timer) < 0 || rtcr_timer_sigh(env, s->timer, sigh) < 0 ||
        rtcr_timer_periodic(env, s->timer, PERIOD_USEC) < 0)
        rtcr_env_exit(env, 1);
    rtcr_log(env, "started");
}
