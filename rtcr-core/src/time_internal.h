/* time_internal.h — time helpers shared by the modules of rtcr-core. */
#ifndef RTCR_TIME_INTERNAL_H
#define RTCR_TIME_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

/* absolute CLOCK_MONOTONIC deadline `timeout_usec` from now (for pthread_cond_timedwait on a
 * condition with that clock); false (no deadline) for timeout 0. In rtcr_ipc.c. */
bool deadline_make(uint64_t timeout_usec, struct timespec *ret_deadline);

/* clock `id` in microseconds (0 if it cannot be read) */
static inline uint64_t clock_usec(clockid_t id)
{
    struct timespec ts;
    if (clock_gettime(id, &ts) != 0)
        return 0;
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

#endif
