/* sync_internal.h — the mutexes that the ECU's SCHED_FIFO timer thread takes.
 *
 * The timer thread (rtcr_ecu.c, `timer_priority`) runs at real-time priority and takes the
 * ECU's lock, its own timer lock, each target's lock and the kernel lock. The same locks are
 * held by threads of normal priority: the checkpointing thread holds a target's lock through
 * the freeze, the agent's control thread walks the targets. With plain mutexes a normal
 * thread holding one of them can be preempted by any other normal thread while the timer
 * thread waits (priority inversion), so timers of every target would fire late by however
 * long that takes. These locks therefore use priority inheritance: the holder runs at the
 * waiter's priority until it releases the lock. Without a real-time waiter nothing changes. */
#ifndef RTCR_SYNC_INTERNAL_H
#define RTCR_SYNC_INTERNAL_H

#include <pthread.h>

/* Initialise *m as a priority-inheriting mutex (falls back to a plain one if the system has no
 * PTHREAD_PRIO_INHERIT). 0 or -errno of pthread_mutex_init. */
static inline int pi_mutex_init(pthread_mutex_t *m)
{
    pthread_mutexattr_t a;
    if (pthread_mutexattr_init(&a) != 0)
        return -pthread_mutex_init(m, NULL);
    (void)pthread_mutexattr_setprotocol(&a, PTHREAD_PRIO_INHERIT);
    int r = pthread_mutex_init(m, &a);
    pthread_mutexattr_destroy(&a);
    return -r;
}

#endif
