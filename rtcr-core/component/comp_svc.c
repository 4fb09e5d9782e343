/* comp_svc.c — the component side of the LOG, Timer, IRQ and ROM sessions.
 *
 * Thin wrappers that marshal one RPC each (rtcr/rpc.h). Session capabilities are ordinary
 * entries in the cap map; the sessions' state lives in the agent, which recreates it on
 * restore, so a restored component keeps using the same slots.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

#include "comp_internal.h"

static int call0(rtcr_cap_t cap, uint64_t op)
{
    rtcr_msg_t m;
    rtcr_msg_init(&m, op);
    return comp_call(cap, &m, false, NULL);
}

static int call1(rtcr_cap_t cap, uint64_t op, uint64_t a)
{
    rtcr_msg_t m;
    rtcr_msg_init(&m, op);
    rtcr_msg_put(&m, a);
    return comp_call(cap, &m, false, NULL);
}

int rtcr_log(rtcr_env_t *env, const char *fmt, ...)
{
    char line[RTCR_RPC_STR_MAX + 1];
    va_list ap;
    int r;
    if (!env->log) {
        char args[RTCR_SESSION_ARGS_MAX + 1];
        snprintf(args, sizeof(args), "ram_quota=4K, label=\"%.64s\"", env->name);
        rtcr_cap_t log;
        if ((r = rtcr_session_open(env, RTCR_SVC_LOG, args, &log)) < 0)
            return r;
        /* two entrypoints may race here: the loser closes its extra session */
        rtcr_cap_t expected = 0;
        if (!__atomic_compare_exchange_n(&env->log, &expected, log, false, __ATOMIC_ACQ_REL,
                                         __ATOMIC_ACQUIRE))
            call1(RTCR_PARENT_CAP, RTCR_RPC_PARENT_CLOSE, log);
    }
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    rtcr_msg_t m;
    rtcr_msg_init(&m, RTCR_RPC_LOG_WRITE);
    if ((r = rtcr_msg_put_str(&m, line)) < 0)
        return r;
    return comp_call(env->log, &m, false, NULL);
}

int rtcr_timer_open(rtcr_env_t *env, rtcr_cap_t *ret_timer)
{
    return rtcr_session_open(env, RTCR_SVC_TIMER, "ram_quota=4K", ret_timer);
}

int rtcr_timer_sigh(rtcr_env_t *env, rtcr_cap_t timer, rtcr_cap_t sigh)
{
    (void)env;
    return call1(timer, RTCR_RPC_TIMER_SIGH, sigh);
}

int rtcr_timer_periodic(rtcr_env_t *env, rtcr_cap_t timer, uint64_t usec)
{
    (void)env;
    return call1(timer, RTCR_RPC_TIMER_TRIGGER_PERIODIC, usec);
}

int rtcr_timer_oneshot(rtcr_env_t *env, rtcr_cap_t timer, uint64_t usec)
{
    (void)env;
    return call1(timer, RTCR_RPC_TIMER_TRIGGER_ONCE, usec);
}

int rtcr_timer_now(rtcr_env_t *env, rtcr_cap_t timer, uint64_t *ret_usec)
{
    (void)env;
    rtcr_msg_t m;
    rtcr_msg_init(&m, RTCR_RPC_TIMER_NOW);
    int r = comp_call(timer, &m, false, NULL);
    if (r < 0)
        return r;
    return rtcr_msg_get(&m, 1, ret_usec);
}

int rtcr_irq_open(rtcr_env_t *env, unsigned line, rtcr_cap_t *ret_irq)
{
    char args[64];
    snprintf(args, sizeof(args), "ram_quota=4K, line=%u", line);
    return rtcr_session_open(env, RTCR_SVC_IRQ, args, ret_irq);
}

int rtcr_irq_sigh(rtcr_env_t *env, rtcr_cap_t irq, rtcr_cap_t sigh)
{
    (void)env;
    return call1(irq, RTCR_RPC_IRQ_SIGH, sigh);
}

int rtcr_irq_ack(rtcr_env_t *env, rtcr_cap_t irq)
{
    (void)env;
    return call0(irq, RTCR_RPC_IRQ_ACK);
}

int rtcr_rom_attach(rtcr_env_t *env, const char *name, const void **ret_data, size_t *ret_size)
{
    char args[RTCR_SESSION_ARGS_MAX + 1];
    rtcr_cap_t rom, ds;
    int r;
    if (snprintf(args, sizeof(args), "ram_quota=4K, label=\"%s\"", name) >= (int)sizeof(args))
        return -ENAMETOOLONG;
    if ((r = rtcr_session_open(env, RTCR_SVC_ROM, args, &rom)) < 0)
        return r;
    rtcr_msg_t m;
    rtcr_msg_init(&m, RTCR_RPC_ROM_DATASPACE);
    if ((r = comp_call(rom, &m, true, &ds)) < 0)
        return r;
    uint64_t size, length, addr;
    if (rtcr_msg_get(&m, 2, &size) < 0 || rtcr_msg_get(&m, 3, &length) < 0 || length > size)
        return -EBADMSG;
    if ((r = comp_attach(env, ds, size, 0, 0, &addr)) < 0)
        return r;
    *ret_data = (const void *)(uintptr_t)addr;
    *ret_size = (size_t)length;
    return 0;
}
