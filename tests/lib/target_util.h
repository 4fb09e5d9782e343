/* target_util.h — helpers for tests that run real targets through the ECU runtime. */
#ifndef RTCR_TEST_TARGET_UTIL_H
#define RTCR_TEST_TARGET_UTIL_H

#include <stdbool.h>
#include <stdint.h>

#include <rtcr/ecu.h>

/* Path of a built target program: $B/targets/NAME (B defaults to "build"). Static buffer. */
const char *tu_target_path(const char *name);
void tu_sleep_ms(unsigned ms);

/* The newest "tick=<n> irq=<m>" LOG line of a brake target; false if none. */
bool tu_last_tick(rtcr_target_t *t, long *ret_tick, long *ret_irq);
/* Wait until brake logged tick >= min_tick and irq >= min_irq; returns the tick or -1. */
long tu_wait_tick(rtcr_target_t *t, long min_tick, long min_irq, unsigned timeout_ms);
/* Wait until the target is in `state` (reaping meanwhile); false on timeout. */
bool tu_wait_state(rtcr_ecu_t *ecu, rtcr_target_t *t, enum rtcr_target_state state,
                   unsigned timeout_ms);

/* A snapshot of a cap space. */
struct tu_caps {
    unsigned n;                     /* entries */
    unsigned slot[4096];            /* slot numbers, ascending */
    enum rtcr_kobj_type type[4096]; /* types */
    rtcr_badge_t badge[4096];       /* badges (gates) */
};
int tu_caps_get(rtcr_target_t *t, struct tu_caps *ret);
enum rtcr_kobj_type tu_caps_type_at(const struct tu_caps *cs, unsigned slot);

#endif
