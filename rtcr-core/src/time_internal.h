/* time_internal.h — time helpers shared by the kernel and the ECU layer of rtcr-core. */
#ifndef RTCR_TIME_INTERNAL_H
#define RTCR_TIME_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

/* absolute CLOCK_MONOTONIC deadline `timeout_usec` from now (for pthread_cond_timedwait on a
 * condition with that clock); false (no deadline) for timeout 0. In rtcr_ipc.c. */
bool deadline_make(uint64_t timeout_usec, struct timespec *ret_deadline);

#endif
