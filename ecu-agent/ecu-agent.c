/* ecu-agent — the daemon that runs one ECU: it reads the config, hosts the RTCR runtime
 * (rtcr/ecu.h) with the configured targets, fires the simulated sensors, answers the local
 * control socket (agent_ctl.h) and talks to systemd (sd_notify: READY, STATUS, WATCHDOG,
 * STOPPING).
 *
 * One thread runs a CZMQ zloop; everything the agent does happens there. Signals arrive
 * through a signalfd (they are blocked before any thread exists, so no thread gets them
 * asynchronously): SIGTERM/SIGINT shut down in order, SIGCHLD reaps targets, SIGHUP is logged.
 * The runtime calls its event and LOG callbacks from its own threads; the callbacks only copy
 * a fixed-size record into a non-blocking pipe (a write of less than PIPE_BUF is atomic), and
 * the loop logs and acts on the records. A full pipe drops records and counts the drops,
 * never blocks a runtime thread.
 *
 * Checkpoints: a target with checkpoint_ms > 0 gets a zloop timer while it runs (armed when
 * the runtime reports it started, ended when it exits) that takes one epoch per tick; a failing
 * checkpoint is logged once per distinct cause (agent_latch_t), not at every tick. When a target
 * crashes, its on_crash policy applies: none, restart (fresh), or restore (from its newest
 * epoch, in place; if that fails the error is logged and the target stays failed). More than
 * RECOVER_BURST automatic recoveries within RECOVER_WINDOW_USEC suspend the policy for that
 * target, so a target that crashes right after every restore does not spin. Epochs are written
 * to ecu/state_dir/TARGET/, and loaded from there at start, so that a target can be restored
 * after the agent itself restarted.
 *
 * Exit status: 0 after an orderly shutdown (or a successful --check), 1 on a config or
 * start-up error, 2 on a usage error.
 */
#include <czmq.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include <rtcr/dirty.h>
#include <rtcr/ecu.h>
#include <rtcr/image.h>

#include "agent_ckpt.h"
#include "agent_config.h"
#include "agent_ctl.h"
#include "agent_json.h"
#include "agent_log.h"
#include "agent_render.h"

#define RECORD_TEXT_MAX     400       /* detail or LOG line bytes kept per record */
#define PIPE_BYTES          (1 << 20) /* requested capacity of the record pipes */
#define RECOVER_BURST       5         /* automatic recoveries allowed within RECOVER_WINDOW_USEC */
#define RECOVER_WINDOW_USEC (10u * 1000000u)
#define ERR_MAX             512 /* bytes of a runtime error message */

/* What a runtime thread hands to the loop. */
enum record_kind {
    RECORD_EVENT = 0, /* an rtcr_ecu_event */
    RECORD_LOG,       /* a LOG line of a target */
    RECORD_KIND_MAX
};

/* One record in a pipe; smaller than PIPE_BUF, so written atomically. */
typedef struct record {
    uint32_t kind;                   /* enum record_kind */
    int32_t event;                   /* enum rtcr_ecu_event for RECORD_EVENT */
    char target[AGENT_NAME_MAX + 1]; /* target name */
    char text[RECORD_TEXT_MAX + 1];  /* detail or LOG line, NUL-terminated */
} record_t;
_Static_assert(sizeof(record_t) <= PIPE_BUF, "record must be written atomically");

/* A running sensor. */
typedef struct sensor {
    struct agent *agent;             /* back pointer for the timer callback */
    const agent_sensor_conf_t *conf; /* its config (borrowed from agent->cfg) */
    uint64_t fired;                  /* times fired */
} sensor_t;

/* The agent's checkpoint state of one target. */
typedef struct tstate {
    const agent_target_conf_t *conf;    /* its config (borrowed from agent->cfg) */
    rtcr_target_t *t;                   /* the runtime's target (borrowed from agent->ecu) */
    int timer;                          /* zloop timer of periodic checkpoints, -1 if none */
    agent_latch_t latch;                /* periodic checkpoint failures */
    uint64_t recoveries[RECOVER_BURST]; /* monotonic times of automatic recoveries (ring) */
    unsigned n_recoveries;              /* automatic recoveries so far */
    char image_note[ERR_MAX];           /* what loading the image at start dropped, or why
                                           nothing could be loaded; "" if nothing */
} tstate_t;

/* The daemon's context: everything hangs off this. */
typedef struct agent {
    agent_config_t *cfg;                 /* validated config (owned) */
    rtcr_ecu_t *ecu;                     /* the runtime (owned) */
    zloop_t *loop;                       /* the event loop (owned) */
    zsock_t *ctl;                        /* control ROUTER (owned) */
    int sig_fd;                          /* signalfd for TERM/INT/CHLD/HUP */
    int ev_pipe[2];                      /* runtime events: [0] read by loop, [1] written */
    int log_pipe[2];                     /* target LOG lines: same */
    atomic_uint dropped;                 /* records dropped because a pipe was full */
    unsigned dropped_reported;           /* drops already logged */
    sensor_t sensors[AGENT_SENSORS_MAX]; /* one per configured sensor */
    tstate_t tstates[AGENT_TARGETS_MAX]; /* one per configured target, in config order */
    uint64_t start_usec;                 /* monotonic start time */
    bool watchdog;                       /* systemd watchdog enabled */
} agent_t;

static uint64_t now_usec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ---- runtime callbacks (runtime threads) ------------------------------------------------ */

static void record_write(agent_t *a, int fd, enum record_kind kind, int event, const char *target,
                         const char *text)
{
    record_t rec = {.kind = kind, .event = event};
    snprintf(rec.target, sizeof(rec.target), "%s", target ? target : "?");
    snprintf(rec.text, sizeof(rec.text), "%s", text ? text : "");
    ssize_t n;
    do {
        n = write(fd, &rec, sizeof(rec));
    } while (n < 0 && errno == EINTR);
    if (n != (ssize_t)sizeof(rec))
        atomic_fetch_add(&a->dropped, 1);
}

static void on_event(void *ctx, rtcr_target_t *t, enum rtcr_ecu_event ev, const char *detail)
{
    agent_t *a = ctx;
    record_write(a, a->ev_pipe[1], RECORD_EVENT, ev, t ? rtcr_target_name(t) : NULL, detail);
}

static void on_log(void *ctx, rtcr_target_t *t, const char *line)
{
    agent_t *a = ctx;
    record_write(a, a->log_pipe[1], RECORD_LOG, 0, t ? rtcr_target_name(t) : NULL, line);
}

/* ---- systemd status -------------------------------------------------------------------- */

typedef struct counts {
    unsigned total, running, failed; /* targets by state */
    size_t quota, used;              /* RAM sums */
} counts_t;

static int count_one(void *ctx, rtcr_target_t *t)
{
    counts_t *c = ctx;
    enum rtcr_target_state s = rtcr_target_state(t);
    c->total++;
    if (s == RTCR_TARGET_RUNNING || s == RTCR_TARGET_STARTING)
        c->running++;
    if (s == RTCR_TARGET_FAILED)
        c->failed++;
    c->quota += rtcr_target_ram_quota(t);
    c->used += rtcr_target_ram_used(t);
    return 0;
}

static counts_t count_targets(agent_t *a)
{
    counts_t c = {0};
    rtcr_ecu_foreach_target(a->ecu, count_one, &c);
    return c;
}

static void notify_status(agent_t *a)
{
    counts_t c = count_targets(a);
    sd_notifyf(0, "STATUS=%s: %u/%u targets running, %u failed", a->cfg->name, c.running, c.total,
               c.failed);
}

/* ---- checkpoint policy -------------------------------------------------------------------- */

static tstate_t *tstate_find(agent_t *a, const char *name)
{
    for (size_t i = 0; i < a->cfg->n_targets; i++)
        if (a->tstates[i].t && strcmp(a->tstates[i].conf->name, name) == 0)
            return &a->tstates[i];
    return NULL;
}

static agent_epoch_stats_t stats_of(const rtcr_epoch_stats_t *s)
{
    return (agent_epoch_stats_t){
        .epoch = s->epoch,
        .full = s->full,
        .quiesce_usec = s->quiesce_usec,
        .freeze_usec = s->freeze_usec,
        .pages_scanned = s->pages_scanned,
        .pages_written = s->pages_written,
        .bytes_raw = s->bytes_raw,
        .bytes_stored = s->bytes_stored,
        .encode_usec = s->encode_usec,
        .encode_cpu_usec = s->encode_cpu_usec,
        .encoded_idle = s->encoded_idle,
        .idle_capped = s->idle_capped,
        .write_usec = s->write_usec,
    };
}

/* The runtime's compaction state as the renderer takes it, times relative to `now` (monotonic);
 * the strings point into *ci. */
static agent_compaction_t compaction_of(const rtcr_compaction_info_t *ci, uint64_t now)
{
    return (agent_compaction_t){
        .max_chain = ci->max_chain,
        .chain_epochs = ci->chain_epochs,
        .running = ci->running,
        .running_from = ci->running_from,
        .running_upto = ci->running_upto,
        .running_usec =
            ci->running && now > ci->running_since_usec ? now - ci->running_since_usec : 0,
        .running_on_kept = ci->running_on_kept,
        .last = (enum agent_compaction_outcome)ci->last, /* same numbering */
        .last_from = ci->last_from,
        .last_upto = ci->last_upto,
        .last_usec = ci->last_usec,
        .last_ago_usec = ci->last_end_usec && now > ci->last_end_usec ? now - ci->last_end_usec : 0,
        .last_on_kept = ci->last_on_kept,
        .started = ci->started,
        .committed = ci->committed,
        .failed = ci->failed,
        .discarded = ci->discarded,
        .error = ci->error[0] ? ci->error : NULL,
        .error_ago_usec = ci->error_usec && now > ci->error_usec ? now - ci->error_usec : 0,
    };
}

/* The runtime's standby state as the renderer takes it; the strings point into *si. */
static agent_standby_t standby_of(const rtcr_standby_info_t *si)
{
    return (agent_standby_t){
        .enabled = si->enabled,
        .ready = si->ready,
        .epoch = si->epoch,
        .bytes = si->bytes,
        .dataspaces = si->dataspaces,
        .apply_usec = si->apply_usec,
        .applied_bytes = si->applied_bytes,
        .rebuilds = si->rebuilds,
        .taken = si->taken,
        .why = si->why,
        .last_restore = rtcr_restore_path_name(si->last_restore),
    };
}

/* A successful checkpoint: the image in memory is a new one, so a note about the image loaded
 * at start no longer applies; a run of periodic failures has ended. */
static void ckpt_succeeded(tstate_t *ts)
{
    unsigned n = agent_latch_ok(&ts->latch);
    if (n)
        log_notice("checkpoints of '%s' succeed again (after %u failed)", ts->conf->name, n);
    ts->image_note[0] = '\0';
}

static int on_ckpt_timer(zloop_t *loop, int timer_id, void *arg)
{
    (void)loop;
    (void)timer_id;
    tstate_t *ts = arg;
    rtcr_epoch_stats_t st;
    char err[ERR_MAX] = "";
    if (rtcr_target_state(ts->t) != RTCR_TARGET_RUNNING)
        return 0;
    int r = rtcr_target_checkpoint(ts->t, &st, err, sizeof(err));
    if (r >= 0) {
        if (st.epoch == 1 || ts->latch.failures)
            log_info("periodic checkpoint of '%s': epoch %llu (%s), pause %llu us", ts->conf->name,
                     (unsigned long long)st.epoch, st.full ? "full" : "incremental",
                     (unsigned long long)st.freeze_usec);
        ckpt_succeeded(ts);
        return 0;
    }
    /* a target that died under the checkpoint is reported by its exit, not here */
    if (r == -ESRCH || rtcr_target_state(ts->t) != RTCR_TARGET_RUNNING)
        return 0;
    if (!err[0])
        snprintf(err, sizeof(err), "%s", strerror(-r));
    if (agent_latch_fail(&ts->latch, err))
        log_warning("periodic checkpoint of '%s' failed: %s (repeats of this cause are not "
                    "logged)",
                    ts->conf->name, err);
    return 0; /* never end the loop */
}

static void ckpt_timer_arm(agent_t *a, tstate_t *ts)
{
    if (!ts->conf->checkpoint_ms || ts->timer >= 0)
        return;
    ts->timer = zloop_timer(a->loop, ts->conf->checkpoint_ms, 0, on_ckpt_timer, ts);
    if (ts->timer < 0)
        log_error("target '%s': cannot arm the checkpoint timer (out of memory)", ts->conf->name);
    else
        log_debug("target '%s': checkpoint every %u ms", ts->conf->name, ts->conf->checkpoint_ms);
}

static void ckpt_timer_end(agent_t *a, tstate_t *ts)
{
    if (ts->timer < 0)
        return;
    zloop_timer_end(a->loop, ts->timer);
    ts->timer = -1;
}

/* Restore ts's target from `epoch` (0: the newest) and log the outcome. On success returns 0
 * with the epoch used and the time taken; on failure -errno and err names the epoch and the
 * cause. `how` says who asked ("control", "on_crash"). */
static int restore_target(tstate_t *ts, uint64_t epoch, const char *how, char *err, size_t errsz,
                          uint64_t *ret_epoch, uint64_t *ret_usec)
{
    const char *name = ts->conf->name;
    enum rtcr_target_state s = rtcr_target_state(ts->t);
    const struct rtcr_image *img = rtcr_target_image(ts->t);
    int r;

    if (s == RTCR_TARGET_RUNNING || s == RTCR_TARGET_STARTING || s == RTCR_TARGET_RESTORING) {
        snprintf(err, errsz, "target '%s' is %s: stop or kill it first", name,
                 rtcr_target_state_name(s));
        return -EBUSY;
    }
    if (!img || rtcr_image_count(img) == 0) {
        if (ts->image_note[0])
            snprintf(err, errsz, "target '%s' has no usable checkpoint image (state dir: %s)", name,
                     ts->image_note);
        else
            snprintf(err, errsz,
                     "target '%s' has no checkpoint image (take one with `ecuctl checkpoint` or "
                     "set checkpoint_ms)",
                     name);
        r = -ENOENT;
    } else {
        uint64_t want = epoch ? epoch : rtcr_image_last(img);
        uint64_t t0 = now_usec();
        r = rtcr_target_restore(ts->t, want, err, errsz);
        if (r >= 0) {
            uint64_t usec = now_usec() - t0;
            log_notice("target '%s' restored from epoch %llu in %.1f ms (%s)", name,
                       (unsigned long long)want, (double)usec / 1000.0, how);
            *ret_epoch = want;
            *ret_usec = usec;
            return 0;
        }
        if (!err[0])
            snprintf(err, errsz, "restore of '%s' from epoch %llu: %s", name,
                     (unsigned long long)want, strerror(-r));
    }
    log_error("%s (%s)", err, how);
    return r;
}

/* Apply the target's on_crash policy after it failed. */
static void on_crash(tstate_t *ts)
{
    const char *name = ts->conf->name;
    enum agent_on_crash p = ts->conf->on_crash;
    if (p == AGENT_ON_CRASH_NONE)
        return;
    uint64_t now = now_usec();
    if (ts->n_recoveries >= RECOVER_BURST &&
        now - ts->recoveries[ts->n_recoveries % RECOVER_BURST] < RECOVER_WINDOW_USEC) {
        log_error("target '%s' failed %d times within %u s: on_crash=%s suspended, it stays "
                  "failed (ecuctl start or restore it)",
                  name, RECOVER_BURST + 1, RECOVER_WINDOW_USEC / 1000000u, agent_on_crash_name(p));
        return;
    }
    ts->recoveries[ts->n_recoveries++ % RECOVER_BURST] = now;
    if (p == AGENT_ON_CRASH_RESTART) {
        int r = rtcr_target_start(ts->t);
        if (r < 0)
            log_error_errno(r, "on_crash=restart: starting target '%s' failed: %m", name);
        else
            log_notice("on_crash=restart: target '%s' restarted fresh (pid %d)", name,
                       (int)rtcr_target_pid(ts->t));
        return;
    }
    char err[2 * ERR_MAX] = "";
    uint64_t epoch, usec;
    if (restore_target(ts, 0, "on_crash=restore", err, sizeof(err), &epoch, &usec) < 0)
        log_error("on_crash=restore: target '%s' stays failed", name);
}

/* Hand the checkpoint config to the runtime and load what the state dir holds of each target. */
static int setup_checkpoints(agent_t *a)
{
    int r = agent_state_dir_make(a->cfg->state_dir);
    if (r < 0)
        return log_error_errno(r, "%s: ecu/state_dir: cannot create %s: %m", a->cfg->path,
                               a->cfg->state_dir);
    bool want_probe = false;
    for (size_t i = 0; i < a->cfg->n_targets; i++) {
        const agent_target_conf_t *tc = &a->cfg->targets[i];
        tstate_t *ts = &a->tstates[i];
        char dir[4096], err[ERR_MAX] = "";
        *ts = (tstate_t){.conf = tc, .timer = -1};
        ts->t = rtcr_ecu_find_target(a->ecu, tc->name);
        if (!ts->t)
            continue;
        rtcr_ckpt_params_t p = {
            .dirty_mode = tc->dirty_mode,
            .granularity = tc->granularity,
            .quiesce_timeout_usec = (uint64_t)tc->quiesce_ms * 1000u,
            .state_dir = a->cfg->state_dir,
            .max_chain = tc->max_chain,
            .standby = tc->standby,
        };
        if ((r = rtcr_target_set_ckpt_params(ts->t, &p)) < 0)
            return log_error_errno(r, "%s: targets/%s: checkpoint parameters refused: %m",
                                   a->cfg->path, tc->name);
        snprintf(dir, sizeof(dir), "%s/%s", a->cfg->state_dir, tc->name);
        if ((r = agent_state_dir_make(dir)) < 0)
            return log_error_errno(r, "%s: ecu/state_dir: cannot create %s: %m", a->cfg->path, dir);
        r = rtcr_target_load_image(ts->t, err, sizeof(err));
        const struct rtcr_image *img = rtcr_target_image(ts->t);
        if (r == -ENOENT) {
            log_debug("target '%s': no checkpoint image in %s", tc->name, dir);
        } else if (r < 0) {
            snprintf(ts->image_note, sizeof(ts->image_note), "%s", err);
            log_warning("target '%s': no usable checkpoint image in %s: %s", tc->name, dir, err);
        } else if (!img || rtcr_image_count(img) == 0) {
            snprintf(ts->image_note, sizeof(ts->image_note), "%s", err);
            log_warning("target '%s': no usable checkpoint image in %s: %s", tc->name, dir, err);
        } else {
            log_info("target '%s': checkpoint image loaded from %s (epochs %llu..%llu)", tc->name,
                     dir, (unsigned long long)rtcr_image_first(img),
                     (unsigned long long)rtcr_image_last(img));
            if (r == 1) {
                snprintf(ts->image_note, sizeof(ts->image_note), "%s", err);
                log_warning("target '%s': only a prefix of the image is usable: %s", tc->name, err);
            }
        }
        want_probe |= tc->dirty_mode == RTCR_DIRTY_UFFD_WP;
    }
    if (want_probe) {
        char why[RTCR_DIRTY_REASON_SIZE] = "";
        if (rtcr_dirty_probe(why, sizeof(why)) != RTCR_DIRTY_UFFD_WP)
            for (size_t i = 0; i < a->cfg->n_targets; i++)
                if (a->cfg->targets[i].dirty_mode == RTCR_DIRTY_UFFD_WP)
                    log_warning("%s: targets/%s/dirty_tracking: uffd-wp is not available here "
                                "(%s); its checkpoints will fail",
                                a->cfg->path, a->cfg->targets[i].name, why);
    }
    return 0;
}

/* ---- loop handlers -------------------------------------------------------------------------*/

static void report_drops(agent_t *a)
{
    unsigned d = atomic_load(&a->dropped);
    if (d != a->dropped_reported) {
        log_warning("%u runtime event/LOG records dropped (agent loop too slow)",
                    d - a->dropped_reported);
        a->dropped_reported = d;
    }
}

static void handle_event(agent_t *a, const record_t *rec)
{
    rtcr_target_t *t = rtcr_ecu_find_target(a->ecu, rec->target);
    tstate_t *ts = tstate_find(a, rec->target);
    switch (rec->event) {
    case RTCR_EV_TARGET_STARTED:
        if (strcmp(rec->text, "restored") == 0)
            log_info("target '%s' running again after its restore (pid %d)", rec->target,
                     t ? (int)rtcr_target_pid(t) : 0);
        else
            log_info("target '%s' started (pid %d)", rec->target, t ? (int)rtcr_target_pid(t) : 0);
        if (ts)
            ckpt_timer_arm(a, ts);
        break;
    case RTCR_EV_TARGET_EXITED:
        if (ts)
            ckpt_timer_end(a, ts);
        if (t && rtcr_target_state(t) == RTCR_TARGET_FAILED) {
            char why[RTCR_FAILURE_MAX] = "";
            if (!rec->text[0])
                rtcr_target_failure(t, why, sizeof(why));
            const char *text = rec->text[0] ? rec->text : why;
            log_error("target '%s' failed: %s", rec->target, text[0] ? text : "unknown reason");
            if (ts)
                on_crash(ts);
        } else {
            log_info("target '%s' stopped", rec->target);
        }
        break;
    case RTCR_EV_TARGET_KILLED_BY_AGENT:
        log_warning("target '%s' killed by the runtime: %s", rec->target, rec->text);
        break;
    default:
        log_debug("target '%s': event %d (%s)", rec->target, rec->event, rec->text);
    }
    notify_status(a);
}

/* Drain one record pipe; kind decides what a record means. */
static int on_pipe(zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    (void)loop;
    agent_t *a = arg;
    record_t rec;
    for (unsigned i = 0; i < 256; i++) { /* bounded: let other sources run */
        ssize_t n = read(item->fd, &rec, sizeof(rec));
        if (n < 0 && errno == EINTR)
            continue;
        if (n != (ssize_t)sizeof(rec))
            break;
        rec.target[sizeof(rec.target) - 1] = '\0';
        rec.text[sizeof(rec.text) - 1] = '\0';
        if (rec.kind == RECORD_LOG)
            log_info("%s: %s", rec.target, rec.text);
        else
            handle_event(a, &rec);
    }
    report_drops(a);
    return 0;
}

static int on_signal(zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    (void)loop;
    agent_t *a = arg;
    struct signalfd_siginfo si;
    for (;;) {
        ssize_t n = read(item->fd, &si, sizeof(si));
        if (n < 0 && errno == EINTR)
            continue;
        if (n != (ssize_t)sizeof(si))
            return 0;
        switch (si.ssi_signo) {
        case SIGTERM:
        case SIGINT:
            log_notice("received %s, shutting down", strsignal((int)si.ssi_signo));
            return -1; /* ends zloop_start */
        case SIGCHLD: {
            int r = rtcr_ecu_reap(a->ecu);
            if (r < 0)
                log_warning_errno(r, "reaping targets failed: %m");
            break;
        }
        case SIGHUP:
            log_notice("SIGHUP: reloading the config is not supported; restart the agent");
            break;
        default:
            break;
        }
    }
}

static int on_sensor(zloop_t *loop, int timer_id, void *arg)
{
    (void)loop;
    (void)timer_id;
    sensor_t *s = arg;
    int r = rtcr_ecu_irq_fire(s->agent->ecu, s->conf->line);
    if (r < 0)
        log_warning_errno(r, "sensor '%s': firing irq %u failed: %m", s->conf->name, s->conf->line);
    s->fired++;
    return 0;
}

static int on_watchdog(zloop_t *loop, int timer_id, void *arg)
{
    (void)loop;
    (void)timer_id;
    (void)arg;
    sd_notify(0, "WATCHDOG=1");
    return 0;
}

/* ---- control commands ------------------------------------------------------------------ */

/* A reply under construction: either rendered bodies or an error. */
typedef struct reply {
    int err;    /* 0 or -errno */
    char *json; /* JSON body (owned) */
    char *text; /* text body (owned) */
} reply_t;

__attribute__((format(printf, 3, 4))) static void reply_error(reply_t *rp, int err, const char *fmt,
                                                              ...)
{
    va_list ap;
    rp->err = err;
    free(rp->text);
    va_start(ap, fmt);
    if (vasprintf(&rp->text, fmt, ap) < 0)
        rp->text = NULL;
    va_end(ap);
}

/* What cmd_targets collects of one target. The row's pointers into the other members are set
 * once the array no longer moves. */
typedef struct target_entry {
    agent_target_row_t row;            /* the row rendered */
    char *failure;                     /* copy of the failure text, or NULL */
    agent_epoch_stats_t stats;         /* last epoch statistics */
    bool has_stats;                    /* stats is valid */
    rtcr_compaction_info_t compaction; /* compaction state */
    rtcr_standby_info_t standby;       /* standby state (its strings point into it) */
    agent_compaction_t comp_row;       /* compaction, rendered */
    agent_standby_t sb_row;            /* standby, rendered */
} target_entry_t;

typedef struct row_list {
    target_entry_t *v; /* entries collected */
    size_t n, cap;     /* used and allocated */
    bool oom;          /* an allocation failed */
} row_list_t;

static int collect_target(void *ctx, rtcr_target_t *t)
{
    row_list_t *l = ctx;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        target_entry_t *v = realloc(l->v, cap * sizeof(*v));
        if (!v) {
            l->oom = true;
            return 1;
        }
        l->v = v;
        l->cap = cap;
    }
    target_entry_t *e = &l->v[l->n];
    enum rtcr_target_state s = rtcr_target_state(t);
    char failure[RTCR_FAILURE_MAX];
    bool failed = s == RTCR_TARGET_FAILED && rtcr_target_failure(t, failure, sizeof(failure)) > 0;
    e->failure = failed ? strdup(failure) : NULL;
    rtcr_epoch_stats_t es;
    e->has_stats = rtcr_target_last_stats(t, &es) == 0;
    if (e->has_stats)
        e->stats = stats_of(&es);
    rtcr_target_compaction_info(t, &e->compaction);
    rtcr_target_standby_info(t, &e->standby);
    e->row = (agent_target_row_t){
        .name = rtcr_target_name(t),
        .state = rtcr_target_state_name(s),
        .pid = rtcr_target_pid(t),
        .restarts = rtcr_target_restarts(t),
        .ram_quota = rtcr_target_ram_quota(t),
        .ram_used = rtcr_target_ram_used(t),
        .failure = e->failure,
    };
    if (s == RTCR_TARGET_FAILED && !e->row.failure)
        e->row.failure = "failed";
    l->n++;
    return 0;
}

static void cmd_targets(agent_t *a, reply_t *rp)
{
    row_list_t l = {0};
    rtcr_ecu_foreach_target(a->ecu, collect_target, &l);
    agent_target_row_t *rows = l.oom ? NULL : calloc(l.n ? l.n : 1, sizeof(*rows));
    uint64_t now = now_usec();
    for (size_t i = 0; rows && i < l.n; i++) { /* the entries no longer move */
        target_entry_t *e = &l.v[i];
        e->comp_row = compaction_of(&e->compaction, now);
        e->sb_row = standby_of(&e->standby);
        rows[i] = e->row;
        rows[i].last_epoch = e->has_stats ? &e->stats : NULL;
        rows[i].compaction = &e->comp_row;
        rows[i].standby = &e->sb_row;
    }
    rp->err = !rows ? -ENOMEM : agent_render_targets(rows, l.n, &rp->json, &rp->text);
    for (size_t i = 0; i < l.n; i++)
        free(l.v[i].failure);
    free(l.v);
    free(rows);
}

typedef struct cap_list {
    agent_cap_row_t *rows; /* rows collected; object strings owned */
    size_t n, cap;         /* used and allocated */
    bool oom;              /* an allocation failed */
} cap_list_t;

static int collect_cap(void *ctx, const rtcr_cap_info_t *c)
{
    cap_list_t *l = ctx;
    enum agent_cap_type type;
    switch (c->type) {
    case RTCR_KOBJ_TASK:
        type = AGENT_CAP_TASK;
        break;
    case RTCR_KOBJ_THREAD:
        type = AGENT_CAP_THREAD;
        break;
    case RTCR_KOBJ_GATE:
        type = AGENT_CAP_GATE;
        break;
    case RTCR_KOBJ_IRQ:
        type = AGENT_CAP_IRQ;
        break;
    default:
        return 0; /* empty slots are not listed */
    }
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        agent_cap_row_t *r = realloc(l->rows, cap * sizeof(*r));
        if (!r) {
            l->oom = true;
            return 1;
        }
        l->rows = r;
        l->cap = cap;
    }
    char *obj = strdup(c->name ? c->name : "");
    if (!obj) {
        l->oom = true;
        return 1;
    }
    l->rows[l->n++] = (agent_cap_row_t){
        .slot = c->slot,
        .type = type,
        .has_badge = type == AGENT_CAP_GATE && c->badge != RTCR_BADGE_INVALID,
        .badge = c->badge,
        .rights = c->rights,
        .stale = c->stale,
        .object = obj,
    };
    return 0;
}

typedef struct line_list {
    char **lines;  /* owned copies */
    size_t n, cap; /* used and allocated */
    bool oom;      /* an allocation failed */
} line_list_t;

static int collect_line(void *ctx, const char *line)
{
    line_list_t *l = ctx;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        char **r = realloc(l->lines, cap * sizeof(*r));
        if (!r) {
            l->oom = true;
            return 1;
        }
        l->lines = r;
        l->cap = cap;
    }
    if (!(l->lines[l->n] = strdup(line))) {
        l->oom = true;
        return 1;
    }
    l->n++;
    return 0;
}

/* JSON + text for a lifecycle command's result. */
static void target_result(rtcr_target_t *t, const char *what, reply_t *rp)
{
    char pid[16] = "null";
    const char *name = rtcr_target_name(t);
    const char *state = rtcr_target_state_name(rtcr_target_state(t));
    if (rtcr_target_pid(t) > 0)
        snprintf(pid, sizeof(pid), "%d", (int)rtcr_target_pid(t));
    /* names and state words are validated identifiers: no escaping needed */
    if (asprintf(&rp->json, "{\"target\":\"%s\",\"action\":\"%s\",\"state\":\"%s\",\"pid\":%s}",
                 name, what, state, pid) < 0)
        rp->json = NULL;
    int r =
        strcmp(what, "killed") == 0
            ? asprintf(&rp->text, "killed '%s' (SIGKILL to pid %s): it will be reported failed\n",
                       name, pid)
            : asprintf(&rp->text, "%s '%s' (state %s, pid %s)\n", what, name, state,
                       rtcr_target_pid(t) > 0 ? pid : "-");
    if (r < 0)
        rp->text = NULL;
    if (!rp->json || !rp->text)
        rp->err = -ENOMEM;
}

static void cmd_checkpoint(tstate_t *ts, reply_t *rp)
{
    rtcr_epoch_stats_t st;
    char err[ERR_MAX] = "";
    const char *name = ts->conf->name;
    log_notice("control: checkpoint '%s'", name);
    int r = rtcr_target_checkpoint(ts->t, &st, err, sizeof(err));
    if (r < 0) {
        if (r == -ESRCH)
            reply_error(rp, r, "target '%s' is not running (state %s)", name,
                        rtcr_target_state_name(rtcr_target_state(ts->t)));
        else
            reply_error(rp, r, "checkpoint of '%s' failed: %s", name, err[0] ? err : strerror(-r));
        log_warning("control: checkpoint of '%s' failed: %s", name, err[0] ? err : strerror(-r));
        return;
    }
    ckpt_succeeded(ts);
    log_info("checkpoint of '%s': epoch %llu (%s), pause %llu us, %llu pages, %llu bytes stored",
             name, (unsigned long long)st.epoch, st.full ? "full" : "incremental",
             (unsigned long long)st.freeze_usec, (unsigned long long)st.pages_written,
             (unsigned long long)st.bytes_stored);
    agent_epoch_stats_t s = stats_of(&st);
    rp->err = agent_render_checkpoint(name, &s, &rp->json, &rp->text);
}

static void cmd_restore(tstate_t *ts, uint64_t epoch, reply_t *rp)
{
    char err[2 * ERR_MAX] = "";
    uint64_t used = 0, usec = 0;
    const char *name = ts->conf->name;
    if (epoch)
        log_notice("control: restore '%s' from epoch %llu", name, (unsigned long long)epoch);
    else
        log_notice("control: restore '%s' from its newest epoch", name);
    int r = restore_target(ts, epoch, "control", err, sizeof(err), &used, &usec);
    if (r < 0) {
        reply_error(rp, r, "%s", err);
        return;
    }
    char pid[16] = "null", note[ERR_MAX + 64] = "";
    pid_t p = rtcr_target_pid(ts->t);
    if (p > 0)
        snprintf(pid, sizeof(pid), "%d", (int)p);
    if (ts->image_note[0])
        snprintf(note, sizeof(note),
                 "note: the image loaded from the state dir was cut short: %s\n", ts->image_note);
    char *q = ts->image_note[0] ? agent_json_quote(ts->image_note, strlen(ts->image_note)) : NULL;
    if (asprintf(&rp->json,
                 "{\"target\":\"%s\",\"action\":\"restored\",\"epoch\":%llu,\"usec\":%llu,"
                 "\"state\":\"%s\",\"pid\":%s,\"note\":%s}",
                 name, (unsigned long long)used, (unsigned long long)usec,
                 rtcr_target_state_name(rtcr_target_state(ts->t)), pid, q ? q : "null") < 0)
        rp->json = NULL;
    free(q);
    if (asprintf(&rp->text, "restored '%s' from epoch %llu in %.1f ms (state %s, pid %s)\n%s", name,
                 (unsigned long long)used, (double)usec / 1000.0,
                 rtcr_target_state_name(rtcr_target_state(ts->t)), p > 0 ? pid : "-", note) < 0)
        rp->text = NULL;
    if (!rp->json || !rp->text)
        rp->err = -ENOMEM;
}

static void cmd_images(tstate_t *ts, reply_t *rp)
{
    const struct rtcr_image *img = rtcr_target_image(ts->t);
    agent_image_row_t *rows = NULL;
    size_t n = 0;
    char note[ERR_MAX + 64] = "";
    int r = agent_image_rows(img, &rows, &n);
    if (r < 0) {
        rp->err = r;
        return;
    }
    rtcr_image_err_t ierr = {{0}};
    if (n > 0 && rtcr_image_check(img, &ierr) < 0)
        snprintf(note, sizeof(note), "chain check failed: %s", ierr.msg);
    else if (ts->image_note[0])
        snprintf(note, sizeof(note), "loaded from the state dir at start: %s", ts->image_note);
    rtcr_compaction_info_t ci;
    rtcr_standby_info_t si;
    rtcr_target_compaction_info(ts->t, &ci);
    rtcr_target_standby_info(ts->t, &si);
    agent_compaction_t c = compaction_of(&ci, now_usec());
    agent_standby_t sb = standby_of(&si);
    rp->err = agent_render_images(ts->conf->name, rows, n, note, &c, &sb, &rp->json, &rp->text);
    agent_image_rows_free(&rows, n);
}

static void cmd_check(agent_t *a, reply_t *rp)
{
    char reason[RTCR_DIRTY_REASON_SIZE] = "", kernel[256], why[256] = "";
    agent_check_target_t tg[AGENT_TARGETS_MAX];
    rtcr_dirty_mode_t best = rtcr_dirty_probe(reason, sizeof(reason));
    const char *best_name = rtcr_dirty_mode_name(best);
    int w = agent_state_dir_writable(a->cfg->state_dir, why, sizeof(why));
    for (size_t i = 0; i < a->cfg->n_targets; i++) {
        const agent_target_conf_t *tc = &a->cfg->targets[i];
        const char *conf = tc->dirty_mode == AGENT_DIRTY_AUTO
                               ? "auto"
                               : rtcr_dirty_mode_name((rtcr_dirty_mode_t)tc->dirty_mode);
        const char *eff = tc->dirty_mode == AGENT_DIRTY_AUTO ? best_name : conf;
        if (tc->dirty_mode == RTCR_DIRTY_UFFD_WP && best != RTCR_DIRTY_UFFD_WP)
            eff = "uffd-wp (unavailable)";
        tg[i] = (agent_check_target_t){
            .name = tc->name,
            .checkpoint_ms = tc->checkpoint_ms,
            .on_crash = agent_on_crash_name(tc->on_crash),
            .configured = conf,
            .effective = eff,
        };
    }
    agent_check_t c = {
        .ecu = a->cfg->name,
        .kernel = agent_kernel_string(kernel, sizeof(kernel)),
        .dirty_mode = best_name,
        .dirty_reason = reason,
        .futex_waitv = agent_have_futex_waitv(),
        .state_dir = a->cfg->state_dir,
        .state_dir_writable = w == 0,
        .state_dir_error = w == 0 ? NULL : why,
        .targets = tg,
        .n_targets = a->cfg->n_targets,
    };
    rp->err = agent_render_check(&c, &rp->json, &rp->text);
}

static void execute(agent_t *a, const agent_ctl_req_t *req, reply_t *rp)
{
    rtcr_target_t *t = NULL;
    tstate_t *ts = NULL;
    const char *name = req->args[0];
    int r;

    if (agent_cmd_table()[req->cmd].names_target) {
        t = rtcr_ecu_find_target(a->ecu, name);
        ts = tstate_find(a, name);
        if (!t || !ts) {
            reply_error(rp, -ENOENT, "no target '%s' on %s", name, a->cfg->name);
            return;
        }
    }

    switch (req->cmd) {
    case AGENT_CMD_TARGETS:
        cmd_targets(a, rp);
        break;
    case AGENT_CMD_START:
        log_notice("control: start '%s'", name);
        r = rtcr_target_start(t);
        if (r == -EALREADY)
            reply_error(rp, r, "target '%s' is already running", name);
        else if (r < 0)
            reply_error(rp, r, "starting target '%s' failed: %s", name, strerror(-r));
        else
            target_result(t, "started", rp);
        if (r < 0 && r != -EALREADY)
            log_error_errno(r, "starting target '%s' failed: %m", name);
        notify_status(a);
        break;
    case AGENT_CMD_STOP:
        log_notice("control: stop '%s'", name);
        r = rtcr_target_stop(t);
        if (r == -EALREADY)
            reply_error(rp, r, "target '%s' is not running", name);
        else if (r < 0)
            reply_error(rp, r, "stopping target '%s' failed: %s", name, strerror(-r));
        else
            target_result(t, "stopped", rp);
        notify_status(a);
        break;
    case AGENT_CMD_KILL:
        log_notice("control: kill '%s' (SIGKILL, simulated crash)", name);
        r = rtcr_target_kill(t);
        if (r == -ESRCH)
            reply_error(rp, r, "target '%s' is not running", name);
        else if (r < 0)
            reply_error(rp, r, "killing target '%s' failed: %s", name, strerror(-r));
        else
            target_result(t, "killed", rp);
        break;
    case AGENT_CMD_CAPS: {
        cap_list_t l = {0};
        r = rtcr_target_foreach_cap(t, collect_cap, &l);
        if (r == -ESRCH)
            reply_error(rp, r, "target '%s' is not running", name);
        else if (l.oom)
            rp->err = -ENOMEM;
        else if (r < 0)
            reply_error(rp, r, "reading the cap space of '%s' failed: %s", name, strerror(-r));
        else
            rp->err = agent_render_caps(l.rows, l.n, &rp->json, &rp->text);
        for (size_t i = 0; i < l.n; i++)
            free((char *)l.rows[i].object);
        free(l.rows);
        break;
    }
    case AGENT_CMD_LOG: {
        line_list_t l = {0};
        r = rtcr_target_foreach_log(t, collect_line, &l);
        if (l.oom)
            rp->err = -ENOMEM;
        else if (r < 0)
            reply_error(rp, r, "reading the log of '%s' failed: %s", name, strerror(-r));
        else
            rp->err = agent_render_log((const char *const *)l.lines, l.n, &rp->json, &rp->text);
        for (size_t i = 0; i < l.n; i++)
            free(l.lines[i]);
        free(l.lines);
        break;
    }
    case AGENT_CMD_IRQ:
        r = rtcr_ecu_irq_fire(a->ecu, req->irq_line);
        if (r < 0) {
            reply_error(rp, r, "firing irq %u failed: %s", req->irq_line, strerror(-r));
            break;
        }
        if (asprintf(&rp->json, "{\"line\":%u,\"notified\":%d}", req->irq_line, r) < 0)
            rp->json = NULL;
        if (asprintf(&rp->text, "fired irq %u: %d session(s) notified\n", req->irq_line, r) < 0)
            rp->text = NULL;
        if (!rp->json || !rp->text)
            rp->err = -ENOMEM;
        break;
    case AGENT_CMD_STATUS: {
        counts_t c = count_targets(a);
        agent_status_t st = {
            .name = a->cfg->name,
            .pid = getpid(),
            .uptime_usec = now_usec() - a->start_usec,
            .targets = c.total,
            .running = c.running,
            .failed = c.failed,
            .ram_total = a->cfg->ram,
            .ram_quota = c.quota,
            .ram_used = c.used,
            .sensors = (unsigned)a->cfg->n_sensors,
            .control = a->cfg->control,
        };
        st.timer_priority = rtcr_ecu_timer_priority(a->ecu, &st.timer_why);
        st.encode_idle = rtcr_ecu_encode_idle(a->ecu, &st.encode_idle_why);
        rp->err = agent_render_status(&st, &rp->json, &rp->text);
        break;
    }
    case AGENT_CMD_CHECKPOINT:
        cmd_checkpoint(ts, rp);
        break;
    case AGENT_CMD_RESTORE:
        cmd_restore(ts, req->epoch, rp);
        notify_status(a);
        break;
    case AGENT_CMD_IMAGES:
        cmd_images(ts, rp);
        break;
    case AGENT_CMD_CHECK:
        cmd_check(a, rp);
        break;
    case AGENT_CMD_MAX: /* no default: -Wswitch names a command added without a handler */
        reply_error(rp, -EOPNOTSUPP, "unknown command");
        break;
    }
}

static int on_control(zloop_t *loop, zsock_t *sock, void *arg)
{
    (void)loop;
    agent_t *a = arg;
    for (unsigned i = 0; i < 64; i++) { /* bounded per wake-up */
        zmsg_t *env = NULL, *body = NULL, *msg = NULL;
        agent_ctl_req_t req;
        char why[160];
        int r = agent_ctl_recv(sock, &env, &body);
        if (r == -EAGAIN)
            return 0;
        if (r < 0) {
            log_debug_errno(r, "control: dropped a request without envelope: %m");
            continue;
        }
        r = agent_ctl_req_parse(body, &req, why, sizeof(why));
        zmsg_destroy(&body);
        if (r < 0) {
            log_debug("control: refused request: %s", why);
            msg = agent_ctl_error_reply(r, why);
        } else {
            reply_t rp = {0};
            execute(a, &req, &rp);
            if (rp.err < 0 && !rp.text)
                reply_error(&rp, rp.err, "%s failed: %s", agent_cmd_table()[req.cmd].name,
                            strerror(-rp.err));
            msg = rp.err < 0 ? agent_ctl_error_reply(rp.err, rp.text ? rp.text : "error")
                             : agent_ctl_reply_new(0, rp.json, rp.text);
            free(rp.json);
            free(rp.text);
        }
        if (!msg) {
            zmsg_destroy(&env);
            log_error("control: out of memory building a reply");
            continue;
        }
        r = agent_ctl_send(sock, &env, &msg);
        if (r < 0)
            log_debug_errno(r, "control: sending a reply failed: %m");
    }
    return 0;
}

/* ---- start-up and shutdown --------------------------------------------------------------- */

static int make_pipe(int fds[2])
{
    if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) < 0)
        return -errno;
    (void)fcntl(fds[1], F_SETPIPE_SZ, PIPE_BYTES); /* best effort; the default also works */
    return 0;
}

static int add_targets(agent_t *a)
{
    for (size_t i = 0; i < a->cfg->n_targets; i++) {
        const agent_target_conf_t *tc = &a->cfg->targets[i];
        rtcr_rom_spec_t roms[AGENT_ROMS_MAX];
        for (size_t k = 0; k < tc->n_roms; k++)
            roms[k] = (rtcr_rom_spec_t){.name = tc->roms[k].name, .path = tc->roms[k].path};
        rtcr_target_spec_t spec = {
            .name = tc->name,
            .binary = tc->binary,
            .ram_quota = tc->ram,
            .cap_limit = tc->caps,
            .roms = roms,
            .n_roms = tc->n_roms,
            .services = (const char *const *)tc->services,
            .n_services = tc->n_services,
        };
        rtcr_target_t *t;
        int r = rtcr_ecu_add_target(a->ecu, &spec, &t);
        if (r < 0)
            return log_error_errno(r, "%s: targets/%s: cannot add target (binary %s): %m",
                                   a->cfg->path, tc->name, tc->binary);
    }
    return 0;
}

static void autostart(agent_t *a)
{
    for (size_t i = 0; i < a->cfg->n_targets; i++) {
        const agent_target_conf_t *tc = &a->cfg->targets[i];
        if (!tc->autostart)
            continue;
        rtcr_target_t *t = rtcr_ecu_find_target(a->ecu, tc->name);
        int r = t ? rtcr_target_start(t) : -ENOENT;
        if (r < 0)
            log_error_errno(r, "starting target '%s' failed: %m", tc->name);
        else
            log_info("target '%s' starting (pid %d)", tc->name, (int)rtcr_target_pid(t));
    }
}

static int setup_loop(agent_t *a)
{
    zmq_pollitem_t sig = {.fd = a->sig_fd, .events = ZMQ_POLLIN};
    zmq_pollitem_t ev = {.fd = a->ev_pipe[0], .events = ZMQ_POLLIN};
    zmq_pollitem_t lg = {.fd = a->log_pipe[0], .events = ZMQ_POLLIN};
    uint64_t wd_usec = 0;

    a->loop = zloop_new();
    if (!a->loop)
        return -ENOMEM;
    zloop_set_nonstop(a->loop, true);
    if (zloop_poller(a->loop, &sig, on_signal, a) < 0 ||
        zloop_poller(a->loop, &ev, on_pipe, a) < 0 || zloop_poller(a->loop, &lg, on_pipe, a) < 0 ||
        zloop_reader(a->loop, a->ctl, on_control, a) < 0)
        return -ENOMEM;
    for (size_t i = 0; i < a->cfg->n_sensors; i++) {
        sensor_t *s = &a->sensors[i];
        *s = (sensor_t){.agent = a, .conf = &a->cfg->sensors[i]};
        if (zloop_timer(a->loop, s->conf->period_ms, 0, on_sensor, s) < 0)
            return -ENOMEM;
        log_info("sensor '%s' fires irq %u every %u ms", s->conf->name, s->conf->line,
                 s->conf->period_ms);
    }
    int r = sd_watchdog_enabled(0, &wd_usec);
    if (r > 0 && wd_usec > 0) {
        size_t ms = (size_t)(wd_usec / 2000);
        if (zloop_timer(a->loop, ms ? ms : 1, 0, on_watchdog, a) < 0)
            return -ENOMEM;
        a->watchdog = true;
        log_info("systemd watchdog: pinging every %zu ms", ms ? ms : 1);
    }
    return 0;
}

static void agent_shutdown(agent_t *a)
{
    sd_notify(0, "STOPPING=1\nSTATUS=stopping targets");
    if (a->ecu) {
        for (size_t i = 0; i < a->cfg->n_targets; i++) {
            rtcr_target_t *t = rtcr_ecu_find_target(a->ecu, a->cfg->targets[i].name);
            if (!t)
                continue;
            enum rtcr_target_state s = rtcr_target_state(t);
            if (s == RTCR_TARGET_RUNNING || s == RTCR_TARGET_STARTING ||
                s == RTCR_TARGET_RESTORING) {
                int r = rtcr_target_stop(t);
                if (r < 0 && r != -EALREADY)
                    log_warning_errno(r, "stopping target '%s' failed: %m", rtcr_target_name(t));
                else
                    log_info("target '%s' stopped", rtcr_target_name(t));
            }
        }
    }
    rtcr_ecu_destroy(&a->ecu);
    zloop_destroy(&a->loop);
    agent_ctl_close(&a->ctl, a->cfg ? a->cfg->control : NULL);
    for (int i = 0; i < 2; i++) {
        if (a->ev_pipe[i] >= 0)
            close(a->ev_pipe[i]);
        if (a->log_pipe[i] >= 0)
            close(a->log_pipe[i]);
    }
    if (a->sig_fd >= 0)
        close(a->sig_fd);
    agent_config_destroy(&a->cfg);
}

static void usage(FILE *out)
{
    fprintf(out, "usage: ecu-agent -c FILE [--check] [-v] [--log-level LEVEL]\n"
                 "Run one RTCR ECU: its targets, sensors and local control socket.\n"
                 "\n"
                 "  -c, --config FILE    ZPL config file (see docs/config-reference.md)\n"
                 "      --check          validate the config and exit (0 if valid)\n"
                 "  -v, --verbose        log at debug level\n"
                 "      --log-level L    error, warning, notice, info (default) or debug\n"
                 "  -h, --help           this text\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"check", no_argument, NULL, 'C'},
        {"verbose", no_argument, NULL, 'v'},      {"log-level", required_argument, NULL, 'L'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
    };
    const char *config = NULL;
    bool check = false;
    int c, r;

    log_open();
    while ((c = getopt_long(argc, argv, "c:vh", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config = optarg;
            break;
        case 'C':
            check = true;
            break;
        case 'v':
            log_set_max_level(LOG_DEBUG);
            break;
        case 'L':
            r = log_level_from_string(optarg);
            if (r < 0) {
                fprintf(stderr, "ecu-agent: unknown log level '%s'\n", optarg);
                return 2;
            }
            log_set_max_level(r);
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (!config || optind != argc) {
        usage(stderr);
        return 2;
    }

    /* Signals: blocked before any thread exists, so every thread inherits the mask and only
     * the signalfd sees them. CZMQ must not install its own SIGINT/SIGTERM handlers. */
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGCHLD);
    sigaddset(&mask, SIGHUP);
    /* SIGPIPE is blocked, not ignored: a write to a closed pipe returns EPIPE, and the
     * runtime's clean signal mask in target processes restores it (an ignored disposition
     * would survive exec) */
    sigset_t blocked = mask;
    sigaddset(&blocked, SIGPIPE);
    sigprocmask(SIG_BLOCK, &blocked, NULL);
    zsys_handler_set(NULL);

    agent_t a = {.sig_fd = -1, .ev_pipe = {-1, -1}, .log_pipe = {-1, -1}};
    a.start_usec = now_usec();

    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    exe[n > 0 ? n : 0] = '\0';
    char *tdir = agent_default_target_dir(n > 0 ? exe : NULL);
    char *err = NULL;
    r = agent_config_load(config, tdir, &a.cfg, &err);
    free(tdir);
    if (r < 0) {
        log_error("%s", err ? err : "out of memory loading the config");
        free(err);
        return 1;
    }
    if (check) {
        printf("%s: OK (ecu '%s', %zu targets, %zu sensors, control %s)\n", config, a.cfg->name,
               a.cfg->n_targets, a.cfg->n_sensors, a.cfg->control);
        agent_config_destroy(&a.cfg);
        return 0;
    }
    log_notice("ecu '%s' starting (config %s, %zu targets, %zu sensors)", a.cfg->name, config,
               a.cfg->n_targets, a.cfg->n_sensors);
    sd_notifyf(0, "STATUS=%s: starting", a.cfg->name);

    a.sig_fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    if (a.sig_fd < 0) {
        r = log_error_errno(-errno, "signalfd: %m");
        goto fail;
    }
    if ((r = make_pipe(a.ev_pipe)) < 0 || (r = make_pipe(a.log_pipe)) < 0) {
        log_error_errno(r, "pipe: %m");
        goto fail;
    }
    /* the control socket first: a second agent for the same ECU must stop before it runs
     * anything */
    r = agent_ctl_bind(a.cfg->control, &a.ctl);
    if (r == -EADDRINUSE) {
        log_error("control socket %s: another ecu-agent is running there", a.cfg->control);
        goto fail;
    }
    if (r < 0) {
        log_error_errno(r, "control socket %s: %m", a.cfg->control);
        goto fail;
    }
    rtcr_ecu_params_t params = {.name = a.cfg->name,
                                .ram_total = a.cfg->ram,
                                .log_lines = a.cfg->log_lines,
                                .timer_priority = (int)a.cfg->timer_priority,
                                .encode_idle = a.cfg->encode_idle};
    r = rtcr_ecu_new(&params, &a.ecu);
    if (r < 0) {
        log_error_errno(r, "creating the ECU runtime failed: %m");
        goto fail;
    }
    const char *why = NULL;
    int prio = rtcr_ecu_timer_priority(a.ecu, &why);
    if (why)
        log_warning("timer service: SCHED_FIFO priority %u refused (%s); it runs with normal "
                    "scheduling, so target timers can fire late while the CPUs are busy",
                    a.cfg->timer_priority, why);
    else if (prio)
        log_info("timer service: SCHED_FIFO priority %d", prio);
    if (!rtcr_ecu_encode_idle(a.ecu, &why) && why)
        log_warning("encode_idle: epochs are encoded at normal priority: %s", why);
    rtcr_ecu_set_event_cb(a.ecu, on_event, &a);
    rtcr_ecu_set_log_cb(a.ecu, on_log, &a);
    if ((r = add_targets(&a)) < 0 || (r = setup_checkpoints(&a)) < 0)
        goto fail;
    if ((r = setup_loop(&a)) < 0) {
        log_error_errno(r, "setting up the event loop failed: %m");
        goto fail;
    }
    autostart(&a);
    counts_t cn = count_targets(&a);
    sd_notifyf(0, "READY=1\nSTATUS=%s: %u/%u targets running", a.cfg->name, cn.running, cn.total);
    log_notice("ecu '%s' ready: %u/%u targets running, control socket %s", a.cfg->name, cn.running,
               cn.total, a.cfg->control);

    zloop_start(a.loop);

    log_notice("ecu '%s' stopping", a.cfg->name);
    agent_shutdown(&a);
    log_notice("stopped");
    return 0;
fail:
    agent_shutdown(&a);
    return 1;
}
