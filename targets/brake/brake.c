/* brake — example target: a brake controller's periodic work, in the shape of a Genode
 * component.
 *
 * - a periodic timer (10 ms) advances `tick` in the heap;
 * - an IRQ session on the wheel-speed sensor line (5 unless its ROM "calibration" says
 *   otherwise)
 *   counts interrupts in `irq` and acknowledges each one;
 * - a second entrypoint ("status") serves a local RPC object that reports both counters; the
 *   main entrypoint calls it every second and logs the answer;
 * - a LOG line "tick=<n> irq=<m>" every 5 ticks (50 ms).
 * It contains no code about checkpoints: all its state is in one heap object.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <rtcr/component.h>
#include <rtcr/rpc.h>

#define TICK_USEC       10000
#define LOG_EVERY_TICKS 5
#define STATUS_EVERY    100
#define OP_STATUS       (RTCR_RPC_USER + 1)

struct brake {
    rtcr_env_t *env;     /* environment */
    uint64_t tick;       /* timer periods seen */
    uint64_t irq;        /* wheel-speed interrupts seen */
    rtcr_cap_t timer;    /* Timer session */
    rtcr_cap_t irq_sess; /* IRQ session */
    rtcr_cap_t status;   /* capability to the status RPC object (served by ep "status") */
};

static void on_tick(void *ctx, unsigned count)
{
    struct brake *b = ctx;
    for (unsigned i = 0; i < count; i++) {
        b->tick++;
        if (b->tick % LOG_EVERY_TICKS == 0)
            rtcr_log(b->env, "tick=%llu irq=%llu", (unsigned long long)b->tick,
                     (unsigned long long)b->irq);
        if (b->tick % STATUS_EVERY == 0) {
            uint64_t res[2];
            unsigned n = 0;
            int r = rtcr_rpc_call(b->env, b->status, OP_STATUS, NULL, 0, res, 2, &n);
            if (r >= 0 && n == 2)
                rtcr_log(b->env, "status: ticks %llu, wheel-speed interrupts %llu",
                         (unsigned long long)res[0], (unsigned long long)res[1]);
            else
                rtcr_log(b->env, "status: call failed (%d)", r);
        }
    }
}

static void on_irq(void *ctx, unsigned count)
{
    struct brake *b = ctx;
    (void)count; /* one interrupt per delivery: the next comes only after the ack */
    b->irq++;
    rtcr_irq_ack(b->env, b->irq_sess);
}

static int on_status(void *ctx, uint64_t op, const uint64_t *args, unsigned nargs, uint64_t *ret,
                     unsigned *ret_n)
{
    struct brake *b = ctx;
    (void)args;
    (void)nargs;
    if (op != OP_STATUS)
        return -38; /* ENOSYS */
    ret[0] = __atomic_load_n(&b->tick, __ATOMIC_RELAXED);
    ret[1] = __atomic_load_n(&b->irq, __ATOMIC_RELAXED);
    *ret_n = 2;
    return 0;
}

/* Value of `key=` in the calibration text, or `def`. */
static unsigned long calib_value(const char *text, const char *key, unsigned long def)
{
    size_t klen = strlen(key);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (strncmp(p, key, klen) == 0 && p[klen] == '=')
            return strtoul(p + klen + 1, NULL, 10);
    return def;
}

/* The optional ROM module "calibration": the IRQ line of the wheel-speed sensor (irq_line,
 * default 5) and the wheel geometry, logged once. */
static unsigned read_calibration(rtcr_env_t *env)
{
    const void *data;
    size_t size;
    if (rtcr_rom_attach(env, "calibration", &data, &size) < 0)
        return 5;
    char buf[1024];
    size_t n = size < sizeof(buf) - 1 ? size : sizeof(buf) - 1;
    memcpy(buf, data, n);
    buf[n] = '\0';
    rtcr_log(env, "calibration: wheel %lu mm, ABS slip threshold %lu %%",
             calib_value(buf, "wheel_circumference_mm", 0),
             calib_value(buf, "abs_slip_threshold_pct", 0));
    return (unsigned)calib_value(buf, "irq_line", 5);
}

void rtcr_component_construct(rtcr_env_t *env)
{
    struct brake *b = rtcr_heap_alloc(env, sizeof(*b));
    if (!b)
        rtcr_env_exit(env, 1);
    b->env = env;
    rtcr_env_set_root(env, b);

    rtcr_ep_t *status_ep;
    rtcr_cap_t sig_tick, sig_irq;
    unsigned line = read_calibration(env);
    if (rtcr_ep_create(env, "status", &status_ep) < 0 ||
        rtcr_rpc_obj_create(status_ep, on_status, b, &b->status) < 0 ||
        rtcr_signal_handler(rtcr_env_ep(env), on_tick, b, &sig_tick) < 0 ||
        rtcr_signal_handler(rtcr_env_ep(env), on_irq, b, &sig_irq) < 0 ||
        rtcr_timer_open(env, &b->timer) < 0 || rtcr_timer_sigh(env, b->timer, sig_tick) < 0 ||
        rtcr_irq_open(env, line, &b->irq_sess) < 0 ||
        rtcr_irq_sigh(env, b->irq_sess, sig_irq) < 0 || rtcr_irq_ack(env, b->irq_sess) < 0 ||
        rtcr_timer_periodic(env, b->timer, TICK_USEC) < 0) {
        rtcr_log(env, "setup failed");
        rtcr_env_exit(env, 1);
    }
    rtcr_log(env, "started, wheel-speed sensor on IRQ line %u", line);
}
