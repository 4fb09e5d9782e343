/* rtcr_ecu.c — one ECU: its kernel, its targets, the timer service and the interrupt lines.
 *
 * The ECU is "core" in Genode's sense: the kernel plus the services every target reaches
 * through its parent. Targets are kept in name order; each has its own lock (see
 * ecu_internal.h for the lock order). The timer service is one thread that sleeps until the
 * earliest armed timer of any target and submits the timers' signals.
 */
#include <errno.h>
#include <linux/capability.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ecu_internal.h"

static const char *const state_names[RTCR_TARGET_STATE_MAX] = {
    [RTCR_TARGET_STOPPED] = "stopped",     [RTCR_TARGET_STARTING] = "starting",
    [RTCR_TARGET_RUNNING] = "running",     [RTCR_TARGET_FAILED] = "failed",
    [RTCR_TARGET_RESTORING] = "restoring",
};

const char *rtcr_target_state_name(enum rtcr_target_state s)
{
    return s < RTCR_TARGET_STATE_MAX ? state_names[s] : "unknown";
}

/* ---- timer thread ------------------------------------------------------------------------ */

void ecu_timer_kick(struct rtcr_ecu *ecu)
{
    pthread_mutex_lock(&ecu->timer_lock);
    pthread_cond_signal(&ecu->timer_cond);
    pthread_mutex_unlock(&ecu->timer_lock);
}

static void *timer_main(void *p)
{
    struct rtcr_ecu *ecu = p;
    pthread_mutex_lock(&ecu->timer_lock);
    while (!ecu->timer_stop) {
        pthread_mutex_unlock(&ecu->timer_lock);
        uint64_t next = svc_timers_run(ecu, now_usec());
        pthread_mutex_lock(&ecu->timer_lock);
        if (ecu->timer_stop)
            break;
        if (!next) {
            pthread_cond_wait(&ecu->timer_cond, &ecu->timer_lock);
        } else {
            struct timespec ts = {.tv_sec = (time_t)(next / 1000000),
                                  .tv_nsec = (long)(next % 1000000) * 1000};
            pthread_cond_timedwait(&ecu->timer_cond, &ecu->timer_lock, &ts);
        }
    }
    pthread_mutex_unlock(&ecu->timer_lock);
    return NULL;
}

/* Start the timer thread, at SCHED_FIFO `prio` if asked and allowed, else normally. */
static int timer_thread_start(struct rtcr_ecu *ecu, int prio)
{
    if (prio > 0) {
        pthread_attr_t at;
        struct sched_param sp = {.sched_priority = prio};
        int r = pthread_attr_init(&at);
        if (r == 0) {
            r = pthread_attr_setinheritsched(&at, PTHREAD_EXPLICIT_SCHED);
            if (r == 0)
                r = pthread_attr_setschedpolicy(&at, SCHED_FIFO);
            if (r == 0)
                r = pthread_attr_setschedparam(&at, &sp);
            if (r == 0)
                r = pthread_create(&ecu->timer_thread, &at, timer_main, ecu);
            pthread_attr_destroy(&at);
        }
        if (r == 0) {
            ecu->timer_priority = prio;
            return 0;
        }
        if (r != EPERM && r != EINVAL)
            return -r;
        ecu->timer_priority_err = r; /* refused: run it normally */
    }
    return -pthread_create(&ecu->timer_thread, NULL, timer_main, ecu);
}

/* May a thread of this process leave SCHED_IDLE for SCHED_OTHER at nice 0? Privileged
 * (CAP_SYS_NICE in the effective set) or allowed by RLIMIT_NICE (sched(7)). */
static bool may_leave_idle(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NICE, &rl) == 0 && (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= 20))
        return true;
    struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
    memset(data, 0, sizeof(data));
    if (syscall(SYS_capget, &hdr, data) != 0)
        return false;
    return (data[CAP_TO_INDEX(CAP_SYS_NICE)].effective & CAP_TO_MASK(CAP_SYS_NICE)) != 0;
}

/* ---- ECU --------------------------------------------------------------------------------- */

int rtcr_ecu_new(const rtcr_ecu_params_t *params, rtcr_ecu_t **ret_ecu)
{
    if (!params || !params->name || !*params->name || strlen(params->name) >= NAME_MAX_LEN ||
        params->timer_priority < 0 || params->timer_priority > RTCR_TIMER_PRIORITY_MAX)
        return -EINVAL;
    struct rtcr_ecu *ecu = calloc(1, sizeof(*ecu));
    if (!ecu)
        return -ENOMEM;
    snprintf(ecu->name, sizeof(ecu->name), "%s", params->name);
    ecu->ram_total = params->ram_total;
    ecu->log_lines = params->log_lines ? params->log_lines : 200;
    ecu->kernel = rtcr_kernel_new();
    if (!ecu->kernel) {
        free(ecu);
        return -ENOMEM;
    }
    pi_mutex_init(&ecu->lock); /* both, and each target's lock: see sync_internal.h */
    pi_mutex_init(&ecu->timer_lock);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&ecu->timer_cond, &ca);
    pthread_condattr_destroy(&ca);
    int r = timer_thread_start(ecu, params->timer_priority);
    if (r < 0) {
        rtcr_kernel_destroy(&ecu->kernel);
        free(ecu);
        return r;
    }
    ecu->timer_running = true;
    if (params->encode_idle) {
        ecu->encode_idle = may_leave_idle();
        ecu->encode_idle_refused = !ecu->encode_idle;
    }
    *ret_ecu = ecu;
    return 0;
}

static void target_free(struct rtcr_target *t)
{
    target_spare_drop(t); /* a pool kept for the next incarnation */
    ckpt_target_fini(t);
    for (unsigned i = 0; i < t->log.cap; i++)
        free(t->log.lines[i]);
    free(t->log.lines);
    for (size_t i = 0; i < t->n_roms; i++) {
        free((char *)t->roms[i].name);
        free((char *)t->roms[i].path);
    }
    free(t->roms);
    free(t->binary);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

/* Kill the process (if any), wait for it, and free its incarnation. */
static void target_kill_wait(struct rtcr_target *t)
{
    if (t->pid > 0) {
        kill(t->pid, SIGKILL);
        waitpid(t->pid, NULL, 0);
    }
    target_teardown(t);
}

void rtcr_ecu_destroy(rtcr_ecu_t **p)
{
    if (!p || !*p)
        return;
    struct rtcr_ecu *ecu = *p;
    *p = NULL;
    if (ecu->timer_running) {
        pthread_mutex_lock(&ecu->timer_lock);
        ecu->timer_stop = true;
        pthread_cond_signal(&ecu->timer_cond);
        pthread_mutex_unlock(&ecu->timer_lock);
        pthread_join(ecu->timer_thread, NULL);
    }
    while (ecu->targets) {
        struct rtcr_target *t = ecu->targets;
        ecu->targets = t->next;
        target_kill_wait(t);
        target_free(t);
    }
    rtcr_kernel_destroy(&ecu->kernel);
    pthread_cond_destroy(&ecu->timer_cond);
    pthread_mutex_destroy(&ecu->timer_lock);
    pthread_mutex_destroy(&ecu->lock);
    free(ecu);
}

void rtcr_ecu_set_event_cb(rtcr_ecu_t *ecu, rtcr_ecu_event_fn fn, void *ctx)
{
    ecu->event_fn = fn;
    ecu->event_ctx = ctx;
}

void rtcr_ecu_set_log_cb(rtcr_ecu_t *ecu, rtcr_ecu_log_fn fn, void *ctx)
{
    ecu->log_fn = fn;
    ecu->log_ctx = ctx;
}

const char *rtcr_ecu_name(const rtcr_ecu_t *ecu)
{
    return ecu->name;
}

bool rtcr_ecu_encode_idle(const rtcr_ecu_t *ecu, const char **ret_why)
{
    if (ret_why)
        *ret_why = ecu->encode_idle_refused ? "no CAP_SYS_NICE and RLIMIT_NICE < 20: a thread "
                                              "could not leave SCHED_IDLE again"
                                            : NULL;
    return ecu->encode_idle;
}

int rtcr_ecu_timer_priority(const rtcr_ecu_t *ecu, const char **ret_why)
{
    if (ret_why)
        *ret_why = ecu->timer_priority_err ? strerror(ecu->timer_priority_err) : NULL;
    return ecu->timer_priority;
}

rtcr_kernel_t *rtcr_ecu_kernel(rtcr_ecu_t *ecu)
{
    return ecu->kernel;
}

static bool is_executable_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

int rtcr_ecu_add_target(rtcr_ecu_t *ecu, const rtcr_target_spec_t *spec, rtcr_target_t **ret_target)
{
    if (!spec || !spec->name || !*spec->name || strlen(spec->name) >= NAME_MAX_LEN ||
        !spec->binary || spec->ram_quota == 0 || spec->cap_limit == 0 ||
        spec->cap_limit > RTCR_CAP_SLOTS || (spec->n_roms && !spec->roms))
        return -EINVAL;
    for (const char *c = spec->name; *c; c++)
        if (!(*c == '-' || *c == '_' || *c == '.' || (*c >= '0' && *c <= '9') ||
              (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z')))
            return -EINVAL;
    if (!is_executable_file(spec->binary))
        return -ENOENT;
    for (size_t i = 0; i < spec->n_roms; i++) {
        if (!spec->roms[i].name || !spec->roms[i].path || !*spec->roms[i].name)
            return -EINVAL;
        if (access(spec->roms[i].path, R_OK) < 0)
            return -ENOENT;
    }

    struct rtcr_target *t = calloc(1, sizeof(*t));
    if (!t)
        return -ENOMEM;
    t->ecu = ecu;
    pi_mutex_init(&t->lock);
    snprintf(t->name, sizeof(t->name), "%s", spec->name);
    t->binary = strdup(spec->binary);
    t->ram_quota = spec->ram_quota;
    t->cap_limit = spec->cap_limit;
    t->pool_fd = t->sock_fd = t->child_sock_fd = -1;
    t->log.cap = ecu->log_lines;
    t->log.lines = calloc(t->log.cap, sizeof(char *));
    t->roms = spec->n_roms ? calloc(spec->n_roms, sizeof(*t->roms)) : NULL;
    bool oom = !t->binary || !t->log.lines || (spec->n_roms && !t->roms);
    for (size_t i = 0; !oom && i < spec->n_roms; i++) {
        t->roms[i].name = strdup(spec->roms[i].name);
        t->roms[i].path = strdup(spec->roms[i].path);
        t->n_roms = i + 1;
        oom = !t->roms[i].name || !t->roms[i].path;
    }
    ckpt_target_init(t);
    if (oom) {
        target_free(t);
        return -ENOMEM;
    }

    pthread_mutex_lock(&ecu->lock);
    struct rtcr_target **pp = &ecu->targets;
    while (*pp && strcmp((*pp)->name, t->name) < 0)
        pp = &(*pp)->next;
    if (*pp && strcmp((*pp)->name, t->name) == 0) {
        pthread_mutex_unlock(&ecu->lock);
        target_free(t);
        return -EEXIST;
    }
    t->next = *pp;
    *pp = t;
    pthread_mutex_unlock(&ecu->lock);
    if (ret_target)
        *ret_target = t;
    return 0;
}

int rtcr_ecu_remove_target(rtcr_ecu_t *ecu, rtcr_target_t **p)
{
    if (!p || !*p)
        return -EINVAL;
    struct rtcr_target *t = *p;
    if (t->pid > 0)
        return -EBUSY;
    pthread_mutex_lock(&ecu->lock);
    for (struct rtcr_target **pp = &ecu->targets; *pp; pp = &(*pp)->next)
        if (*pp == t) {
            *pp = t->next;
            break;
        }
    pthread_mutex_unlock(&ecu->lock);
    target_free(t);
    *p = NULL;
    return 0;
}

rtcr_target_t *rtcr_ecu_find_target(rtcr_ecu_t *ecu, const char *name)
{
    pthread_mutex_lock(&ecu->lock);
    struct rtcr_target *t = ecu->targets;
    while (t && strcmp(t->name, name) != 0)
        t = t->next;
    pthread_mutex_unlock(&ecu->lock);
    return t;
}

int rtcr_ecu_foreach_target(rtcr_ecu_t *ecu, int (*fn)(void *ctx, rtcr_target_t *t), void *ctx)
{
    /* targets are only added/removed by the agent's own thread, which is the caller: the
     * list may be walked without holding ecu->lock across the callback */
    for (struct rtcr_target *t = ecu->targets; t; t = t->next) {
        int r = fn(ctx, t);
        if (r)
            return r;
    }
    return 0;
}

/* ---- target lifecycle -------------------------------------------------------------------- */

int rtcr_target_start(rtcr_target_t *t)
{
    if (t->pid > 0)
        return -EALREADY;
    return target_spawn(t);
}

int rtcr_target_stop(rtcr_target_t *t)
{
    if (t->pid <= 0) {
        if (t->state == RTCR_TARGET_FAILED) {
            t->state = RTCR_TARGET_STOPPED; /* acknowledge a failure */
            return 0;
        }
        return -EALREADY;
    }
    pthread_mutex_lock(&t->lock);
    t->stopping = true;
    pthread_mutex_unlock(&t->lock);
    kill(t->pid, SIGKILL);
    int status = 0;
    pid_t pid = t->pid;
    if (waitpid(pid, &status, 0) == pid) {
        target_teardown(t);
        pthread_mutex_lock(&t->lock);
        t->state = RTCR_TARGET_STOPPED;
        t->exit_status = -SIGKILL;
        snprintf(t->failure, sizeof(t->failure), "stopped");
        pthread_mutex_unlock(&t->lock);
        target_emit(t, RTCR_EV_TARGET_EXITED, "stopped on request");
    }
    return 0;
}

int rtcr_target_kill(rtcr_target_t *t)
{
    if (t->pid <= 0)
        return -ESRCH;
    return kill(t->pid, SIGKILL) < 0 ? -errno : 0;
}

int rtcr_ecu_reap(rtcr_ecu_t *ecu)
{
    int n = 0;
    for (struct rtcr_target *t = ecu->targets; t; t = t->next) {
        int status;
        if (t->pid <= 0 || waitpid(t->pid, &status, WNOHANG) != t->pid)
            continue;
        target_teardown(t);
        pthread_mutex_lock(&t->lock);
        if (WIFSIGNALED(status)) {
            t->exit_status = -WTERMSIG(status);
            snprintf(t->failure, sizeof(t->failure), "killed by signal %d (%s)", WTERMSIG(status),
                     strsignal(WTERMSIG(status)));
        } else {
            t->exit_status = WEXITSTATUS(status);
            snprintf(t->failure, sizeof(t->failure), "exited with status %d", WEXITSTATUS(status));
        }
        t->state = t->stopping ? RTCR_TARGET_STOPPED : RTCR_TARGET_FAILED;
        char detail[sizeof(t->failure)];
        snprintf(detail, sizeof(detail), "%s", t->failure);
        pthread_mutex_unlock(&t->lock);
        target_emit(t, RTCR_EV_TARGET_EXITED, detail);
        n++;
    }
    return n;
}

/* ---- getters ----------------------------------------------------------------------------- */

const char *rtcr_target_name(const rtcr_target_t *t)
{
    return t->name;
}

enum rtcr_target_state rtcr_target_state(const rtcr_target_t *t)
{
    return t->state;
}

pid_t rtcr_target_pid(const rtcr_target_t *t)
{
    return t->pid;
}

int rtcr_target_exit_status(const rtcr_target_t *t)
{
    return t->exit_status;
}

size_t rtcr_target_failure(rtcr_target_t *t, char *ret_buf, size_t size)
{
    pthread_mutex_lock(&t->lock);
    size_t n = strlen(t->failure);
    if (ret_buf && size)
        snprintf(ret_buf, size, "%s", t->failure);
    pthread_mutex_unlock(&t->lock);
    return n;
}

uint64_t rtcr_target_started_usec(const rtcr_target_t *t)
{
    return t->started_usec;
}

unsigned rtcr_target_restarts(const rtcr_target_t *t)
{
    return t->restarts;
}

rtcr_kobj_t *rtcr_target_task(rtcr_target_t *t)
{
    return t->pid > 0 ? t->task : NULL;
}

size_t rtcr_target_ram_quota(const rtcr_target_t *t)
{
    return t->ram_quota;
}

size_t rtcr_target_ram_used(const rtcr_target_t *t)
{
    return t->ram_used;
}

int rtcr_target_foreach_log(rtcr_target_t *t, int (*fn)(void *ctx, const char *line), void *ctx)
{
    pthread_mutex_lock(&t->lock);
    struct logring *l = &t->log;
    int r = 0;
    for (unsigned i = 0; i < l->count && !r; i++) {
        unsigned at = (l->head + l->cap - l->count + i) % l->cap;
        r = fn(ctx, l->lines[at]);
    }
    pthread_mutex_unlock(&t->lock);
    return r;
}

int rtcr_target_foreach_cap(rtcr_target_t *t, int (*fn)(void *ctx, const rtcr_cap_info_t *cap),
                            void *ctx)
{
    if (t->pid <= 0 || !t->task)
        return -ESRCH;
    return rtcr_task_foreach_cap(t->ecu->kernel, t->task, fn, ctx);
}

int rtcr_ecu_irq_fire(rtcr_ecu_t *ecu, unsigned line)
{
    if (line >= RTCR_IRQ_LINES)
        return -ERANGE;
    int n = 0;
    pthread_mutex_lock(&ecu->lock);
    for (struct rtcr_target *t = ecu->targets; t; t = t->next) {
        pthread_mutex_lock(&t->lock);
        if (!t->dead && t->pid > 0)
            n += svc_irq_fire(t, line);
        pthread_mutex_unlock(&t->lock);
    }
    pthread_mutex_unlock(&ecu->lock);
    return n;
}
