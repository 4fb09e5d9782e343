/* target_util.c — helpers for tests that run real targets (see target_util.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "target_util.h"

const char *tu_target_path(const char *name)
{
    static char path[512];
    const char *b = getenv("B");
    snprintf(path, sizeof(path), "%s/targets/%s", b && *b ? b : "build", name);
    return path;
}

void tu_sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

struct last {
    long tick, irq; /* values of the newest tick line */
    bool found;     /* a tick line was seen */
};

static int grab(void *ctx, const char *line)
{
    struct last *l = ctx;
    long tick, irq;
    if (sscanf(line, "tick=%ld irq=%ld", &tick, &irq) == 2) {
        l->tick = tick;
        l->irq = irq;
        l->found = true;
    }
    return 0;
}

bool tu_last_tick(rtcr_target_t *t, long *ret_tick, long *ret_irq)
{
    struct last l = {0, 0, false};
    rtcr_target_foreach_log(t, grab, &l);
    if (l.found) {
        *ret_tick = l.tick;
        *ret_irq = l.irq;
    }
    return l.found;
}

long tu_wait_tick(rtcr_target_t *t, long min_tick, long min_irq, unsigned timeout_ms)
{
    for (unsigned waited = 0; waited <= timeout_ms; waited += 5) {
        long tick, irq;
        if (tu_last_tick(t, &tick, &irq) && tick >= min_tick && irq >= min_irq)
            return tick;
        tu_sleep_ms(5);
    }
    return -1;
}

bool tu_wait_state(rtcr_ecu_t *ecu, rtcr_target_t *t, enum rtcr_target_state state,
                   unsigned timeout_ms)
{
    for (unsigned waited = 0; waited <= timeout_ms; waited += 2) {
        rtcr_ecu_reap(ecu);
        if (rtcr_target_state(t) == state)
            return true;
        tu_sleep_ms(2);
    }
    return false;
}

static int collect(void *ctx, const rtcr_cap_info_t *c)
{
    struct tu_caps *cs = ctx;
    if (cs->n >= 4096)
        return -1;
    cs->slot[cs->n] = c->slot;
    cs->type[cs->n] = c->type;
    cs->badge[cs->n] = c->badge;
    cs->n++;
    return 0;
}

int tu_caps_get(rtcr_target_t *t, struct tu_caps *ret)
{
    memset(ret, 0, sizeof(*ret));
    return rtcr_target_foreach_cap(t, collect, ret);
}

enum rtcr_kobj_type tu_caps_type_at(const struct tu_caps *cs, unsigned slot)
{
    for (unsigned i = 0; i < cs->n; i++)
        if (cs->slot[i] == slot)
            return cs->type[i];
    return RTCR_KOBJ_NONE;
}
