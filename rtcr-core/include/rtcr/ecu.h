/* rtcr/ecu.h — one ECU's runtime: the emulated kernel, core's services, and the target
 * protection domains (each a Linux process) that run on it.
 *
 * This is what the agent drives. It knows nothing of networks, peers or config files: the agent
 * reads its config and calls these functions. An rtcr_ecu_t owns internal threads (one mirror
 * thread per target thread, serving that thread's IPC; one timer thread); callbacks set here
 * are invoked from those threads unless stated otherwise, so they must be thread-safe and short.
 *
 * Target lifecycle: added (STOPPED) -> start -> RUNNING; the process exiting or being killed
 * makes it FAILED (with exit status or signal) unless it was stopped on purpose (STOPPED).
 * rtcr_ecu_reap() must be called when SIGCHLD arrives (the agent does this from its event loop).
 */
#ifndef RTCR_ECU_H
#define RTCR_ECU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <rtcr/kernel.h>

typedef struct rtcr_ecu rtcr_ecu_t;
typedef struct rtcr_target rtcr_target_t;

enum rtcr_target_state {
    RTCR_TARGET_STOPPED = 0, /* not running: never started or stopped on purpose */
    RTCR_TARGET_STARTING,    /* process spawned, construct not yet finished */
    RTCR_TARGET_RUNNING,     /* running normally */
    RTCR_TARGET_FAILED,      /* exited or killed without being asked to */
    RTCR_TARGET_RESTORING,   /* being restored from an image */
    RTCR_TARGET_STATE_MAX
};
const char *rtcr_target_state_name(enum rtcr_target_state s); /* "running", ... */

/* Parameters of an ECU. Strings are copied. */
typedef struct rtcr_ecu_params {
    const char *name;   /* ECU name, e.g. "ecu1" */
    size_t ram_total;   /* RAM the ECU can hand out to all targets together (bytes) */
    unsigned log_lines; /* LOG lines kept per target for `ecuctl log` (ring buffer) */
    /* Real-time priority of the timer service thread, which fires every target's Timer
     * sessions: 1..99 runs it SCHED_FIFO at that priority, so that timer signals stay punctual
     * while the ECU's own work (checkpoint encoding, compaction) keeps the CPUs busy; 0 runs it
     * with normal scheduling. If the system refuses SCHED_FIFO (no CAP_SYS_NICE and no
     * RLIMIT_RTPRIO), the thread runs normally: see rtcr_ecu_timer_priority(). */
    int timer_priority;
    /* Encode each epoch (the work after the target is thawed) with the calling thread switched
     * to SCHED_IDLE, so that a target thread waking up preempts it at once instead of waiting
     * for its time slice; after RTCR_ENCODE_IDLE_MAX_MSEC of one epoch the thread goes back to
     * its own policy, so a busy ECU cannot starve the checkpoint. Needs the right to switch
     * back (CAP_SYS_NICE or RLIMIT_NICE >= 20); without it epochs are encoded normally: see
     * rtcr_ecu_encode_idle(). */
    bool encode_idle;
} rtcr_ecu_params_t;

#define RTCR_ENCODE_IDLE_MAX_MSEC 5

#define RTCR_TIMER_PRIORITY_MAX 99

/* A ROM module offered to a target: a name and a file whose content becomes the dataspace. */
typedef struct rtcr_rom_spec {
    const char *name; /* module name the component asks for */
    const char *path; /* file with the content */
} rtcr_rom_spec_t;

/* How to run one target. Strings and arrays are copied. */
typedef struct rtcr_target_spec {
    const char *name;            /* unique on the ECU */
    const char *binary;          /* path of the executable (its ROM module "binary") */
    size_t ram_quota;            /* RAM quota of the target (bytes) */
    unsigned cap_limit;          /* max capabilities the component may hold (<= 4096) */
    const rtcr_rom_spec_t *roms; /* extra ROM modules */
    size_t n_roms;               /* number of roms */
    const char *const *services; /* services this target provides to others (names) */
    size_t n_services;           /* number of services */
} rtcr_target_spec_t;

/* Events reported to the agent. */
enum rtcr_ecu_event {
    RTCR_EV_TARGET_STARTED = 0,     /* construct done, target running */
    RTCR_EV_TARGET_EXITED,          /* process ended (state says FAILED or STOPPED) */
    RTCR_EV_TARGET_KILLED_BY_AGENT, /* the runtime killed a misbehaving target (reason given) */
    RTCR_EV_TARGET_DENIED,          /* a request of the target was refused (quota, cap limit, bad
                                       message); detail says which and why */
    RTCR_EV_MAX
};
typedef void (*rtcr_ecu_event_fn)(void *ctx, rtcr_target_t *t, enum rtcr_ecu_event ev,
                                  const char *detail);
/* A LOG line written by a target (without newline). */
typedef void (*rtcr_ecu_log_fn)(void *ctx, rtcr_target_t *t, const char *line);

/* Create an ECU runtime. Caller owns. -ENOMEM, -EINVAL (bad params). */
int rtcr_ecu_new(const rtcr_ecu_params_t *params, rtcr_ecu_t **ret_ecu);
/* Kill every target (SIGKILL, reaped), stop all threads, free everything. NULL-safe. */
void rtcr_ecu_destroy(rtcr_ecu_t **p);

void rtcr_ecu_set_event_cb(rtcr_ecu_t *ecu, rtcr_ecu_event_fn fn, void *ctx);
void rtcr_ecu_set_log_cb(rtcr_ecu_t *ecu, rtcr_ecu_log_fn fn, void *ctx);
const char *rtcr_ecu_name(const rtcr_ecu_t *ecu);
/* The SCHED_FIFO priority the timer service thread runs at (0: normal scheduling). When a
 * priority was asked for and refused, *ret_why (if given) says why, else it is set to NULL. */
int rtcr_ecu_timer_priority(const rtcr_ecu_t *ecu, const char **ret_why);
/* Whether epochs are encoded at SCHED_IDLE; when it was asked for and cannot be done,
 * *ret_why (if given) says why, else it is set to NULL. */
bool rtcr_ecu_encode_idle(const rtcr_ecu_t *ecu, const char **ret_why);
rtcr_kernel_t *rtcr_ecu_kernel(rtcr_ecu_t *ecu);

/* Register a target (state STOPPED). -EEXIST (name taken), -EINVAL (bad spec: empty name,
 * cap_limit out of range, quota 0), -ENOENT (binary or a ROM file missing). */
int rtcr_ecu_add_target(rtcr_ecu_t *ecu, const rtcr_target_spec_t *spec,
                        rtcr_target_t **ret_target);
/* Remove a stopped/failed target. -EBUSY if running. */
int rtcr_ecu_remove_target(rtcr_ecu_t *ecu, rtcr_target_t **p);
rtcr_target_t *rtcr_ecu_find_target(rtcr_ecu_t *ecu, const char *name); /* borrowed or NULL */
/* Call fn for each target in name order; non-zero return stops and is returned. */
int rtcr_ecu_foreach_target(rtcr_ecu_t *ecu, int (*fn)(void *ctx, rtcr_target_t *t), void *ctx);

/* Start the target's process (fresh: construct runs). -EALREADY if running. */
int rtcr_target_start(rtcr_target_t *t);
/* Stop on purpose: SIGKILL and reap; state STOPPED. -EALREADY if not running. */
int rtcr_target_stop(rtcr_target_t *t);
/* Simulate a crash: SIGKILL; state becomes FAILED when reaped. -ESRCH if not running. */
int rtcr_target_kill(rtcr_target_t *t);

/* Reap exited target processes (waitpid WNOHANG on the runtime's children only) and update
 * their state; emits RTCR_EV_TARGET_EXITED. Call from the agent's loop on SIGCHLD. */
int rtcr_ecu_reap(rtcr_ecu_t *ecu);

const char *rtcr_target_name(const rtcr_target_t *t);
enum rtcr_target_state rtcr_target_state(const rtcr_target_t *t);
pid_t rtcr_target_pid(const rtcr_target_t *t); /* 0 if not running */
/* How the last process ended: exit code (>= 0) or -signal; 0 if it never ended. */
int rtcr_target_exit_status(const rtcr_target_t *t);
/* Copy the text for FAILED ("exited with status 3", "killed by signal 9 (Killed)", "stopped",
 * or the reason the runtime killed it) into ret_buf (size bytes, NUL-terminated, truncated to
 * fit). Taken under the target's lock, so any thread may call it while the state changes.
 * Returns the length of the text, 0 if there is none (ret_buf is then ""); size 0 or ret_buf
 * NULL only returns the length. */
size_t rtcr_target_failure(rtcr_target_t *t, char *ret_buf, size_t size);
#define RTCR_FAILURE_MAX 160 /* bytes a failure text takes at most, with its NUL */
uint64_t rtcr_target_started_usec(const rtcr_target_t *t); /* monotonic, 0 if never */
unsigned rtcr_target_restarts(const rtcr_target_t *t);
rtcr_kobj_t *rtcr_target_task(rtcr_target_t *t); /* borrowed; NULL when not running */

/* RAM accounting of the target: quota and bytes in use. */
size_t rtcr_target_ram_quota(const rtcr_target_t *t);
size_t rtcr_target_ram_used(const rtcr_target_t *t);

/* Recent LOG lines, oldest first; fn gets a borrowed line. */
int rtcr_target_foreach_log(rtcr_target_t *t, int (*fn)(void *ctx, const char *line), void *ctx);
/* The target's cap space (see rtcr_task_foreach_cap). -ESRCH if not running. */
int rtcr_target_foreach_cap(rtcr_target_t *t, int (*fn)(void *ctx, const rtcr_cap_info_t *cap),
                            void *ctx);

/* Fire a simulated interrupt line: every IRQ session on it signals its handler (or latches
 * until acked). -ERANGE if line >= RTCR_IRQ_LINES. Returns the number of sessions notified. */
#define RTCR_IRQ_LINES 256
int rtcr_ecu_irq_fire(rtcr_ecu_t *ecu, unsigned line);

/* ---- checkpoint and restore (rtcr_ckpt.c, rtcr_restore.c) --------------------------------- */

struct rtcr_image;

/* How a target is checkpointed. Strings are copied. */
typedef struct rtcr_ckpt_params {
    int dirty_mode;                /* rtcr_dirty_mode_t, or -1: the best the kernel supports */
    size_t granularity;            /* tracking unit in bytes (page multiple, power of two) */
    uint64_t quiesce_timeout_usec; /* how long entrypoints may take to reach a wait */
    const char *state_dir;         /* epochs are also written to STATE_DIR/NAME/ (NULL: memory
                                      only) */
    unsigned max_chain;            /* compact the chain into one full epoch beyond this many
                                      epochs (0: never) */
    bool standby;                  /* keep a hot standby: one more copy of the target's memory,
                                      updated after every epoch, that a restore of the newest
                                      epoch takes instead of decoding the image (off by default;
                                      docs/checkpoint-restore.md) */
} rtcr_ckpt_params_t;

/* Statistics of one epoch (in the style of CRIU's dump statistics). */
typedef struct rtcr_epoch_stats {
    uint64_t epoch;           /* epoch number */
    bool full;                /* a full epoch (no parent) */
    uint64_t quiesce_usec;    /* from the request until every entrypoint waited */
    uint64_t freeze_usec;     /* how long the target was paused (quiesced to resumed) */
    uint64_t pages_scanned;   /* pages the dirty tracker looked at */
    uint64_t pages_written;   /* pages copied into the epoch */
    uint64_t bytes_raw;       /* page bytes before compression */
    uint64_t bytes_stored;    /* epoch bytes after compression and framing */
    uint64_t encode_usec;     /* compress + hash + frame, while the target runs (wall time) */
    uint64_t encode_cpu_usec; /* CPU time the encoding thread spent on it: encode_usec less
                                 the time it was preempted (at SCHED_IDLE, by every thread) */
    uint64_t write_usec;      /* writing the epoch file (0 without a state dir) */
    bool recycled;            /* written into the container of an epoch compaction dropped */
    bool compact_started;     /* chain longer than max_chain: compaction started (background) */
    uint64_t compacted_upto;  /* a compaction committed: epochs up to this one are now one full
                                 epoch (0: none this time) */
    uint64_t compact_usec;    /* how long that compaction ran on its thread */
    bool compact_on_kept;     /* that compaction decoded only the epochs since the previous one,
                                 onto the memory it kept */
    uint64_t compact_wait;    /* usec waited for a running compaction (chain at 2 x max_chain) */
    bool encoded_idle;        /* the encoding began at SCHED_IDLE (rtcr_ecu_params.encode_idle) */
    bool idle_capped;         /* and went back to the thread's own policy after
                                 RTCR_ENCODE_IDLE_MAX_MSEC */
} rtcr_epoch_stats_t;

/* Set the checkpoint parameters (before the first checkpoint of an incarnation). -EINVAL. */
int rtcr_target_set_ckpt_params(rtcr_target_t *t, const rtcr_ckpt_params_t *params);

/* Take one epoch now: quiesce (every entrypoint finishes its handler and waits), collect the
 * pages written since the previous epoch and the stored state, resume, then encode the epoch
 * and append it to the target's image (and its file). The first epoch of an incarnation is
 * full. Errors: -ESRCH not running, -EAGAIN construct not finished, -ETIMEDOUT the target did
 * not quiesce (it keeps running, nothing is stored), -errno of tracking/encoding. `err` (may
 * be NULL) gets a message naming the cause. */
int rtcr_target_checkpoint(rtcr_target_t *t, rtcr_epoch_stats_t *ret_stats, char *err,
                           size_t errsz);
/* Wait for the compaction running in the background, if any (see max_chain), and commit it.
 * Returns the epoch the full epoch replaced, 0 if none was committed. */
uint64_t rtcr_target_compact_wait(rtcr_target_t *t);
/* How the last background compaction of a target ended. */
enum rtcr_compaction_outcome {
    RTCR_COMPACTION_NONE = 0,  /* none has ended yet */
    RTCR_COMPACTION_COMMITTED, /* the full epoch replaced the epochs it merges (and, with a
                                  state dir, its file was written and the older files pruned) */
    RTCR_COMPACTION_UNWRITTEN, /* committed in memory, but its file could not be written: the
                                  state dir keeps the epoch files it merges, so the chain there
                                  is unchanged and still complete (counted as failed) */
    RTCR_COMPACTION_FAILED,    /* building or committing the full epoch failed: the chain is
                                  unchanged in memory and on disk */
    RTCR_COMPACTION_DISCARDED, /* dropped because the chain it read was replaced first (a new
                                  full epoch, an image loaded or adopted): not a failure */
    RTCR_COMPACTION_OUTCOME_MAX
};
/* "none", "committed", "unwritten", "failed", "discarded"; "?" if out of range. */
const char *rtcr_compaction_outcome_name(enum rtcr_compaction_outcome o);

#define RTCR_COMPACTION_ERR_MAX 384 /* bytes of rtcr_compaction_info_t.error */

/* State of a target's background compaction (see max_chain), for operators. Counters cover
 * the target's lifetime: started = committed + failed + discarded (+ 1 while one runs). */
typedef struct rtcr_compaction_info {
    unsigned max_chain;  /* the checkpoint parameter (0: compaction is off) */
    size_t chain_epochs; /* epochs in the target's chain now (0: no image) */

    bool running;                /* a compaction runs in the background now */
    uint64_t running_from;       /* first epoch it merges (0 if none runs) */
    uint64_t running_upto;       /* last epoch it merges, the number of its full epoch */
    uint64_t running_since_usec; /* when it started (monotonic, 0 if none runs) */
    bool running_on_kept;        /* it decodes only the epochs since the previous compaction,
                                    onto the memory that one kept */

    enum rtcr_compaction_outcome last; /* how the last compaction that ended ended */
    uint64_t last_from;                /* its first epoch (0 if none ended) */
    uint64_t last_upto;                /* its last epoch */
    uint64_t last_usec;                /* how long it ran on its thread (0 if it never ran) */
    bool last_on_kept;                 /* it built on kept memory */
    uint64_t last_end_usec;            /* when it ended (monotonic, 0 if none ended) */

    unsigned started;   /* compactions started (attempts, also those that could not start) */
    unsigned committed; /* ended RTCR_COMPACTION_COMMITTED */
    unsigned failed;    /* ended FAILED or UNWRITTEN, or could not start */
    unsigned discarded; /* ended DISCARDED */

    uint64_t error_usec; /* when the last failure happened (monotonic, 0: never) */
    /* the last failure, naming the epochs and the cause, e.g. "compaction of epochs 1..9: full
     * epoch 9 not written (...): write: ...: File too large"; kept after later successes; ""
     * if none ever failed */
    char error[RTCR_COMPACTION_ERR_MAX];
} rtcr_compaction_info_t;

/* The compaction state of the target. Thread-safe: copies under the target's lock, so it may
 * be called from any thread while another one checkpoints the target and a compaction runs.
 * Never fails (0). */
int rtcr_target_compaction_info(rtcr_target_t *t, rtcr_compaction_info_t *ret_info);

/* Statistics of the newest epoch taken; -ENOENT if none. */
int rtcr_target_last_stats(rtcr_target_t *t, rtcr_epoch_stats_t *ret_stats);
/* The target's image (chain of epochs), borrowed until the next checkpoint/restore; NULL if
 * it has none. */
const struct rtcr_image *rtcr_target_image(rtcr_target_t *t);
/* Load the target's image from its state dir (replacing the one in memory). 0: complete,
 * 1: a good prefix (err says what was dropped), <0: nothing usable. */
int rtcr_target_load_image(rtcr_target_t *t, char *err, size_t errsz);
/* Adopt an image received from elsewhere (takes *img on success). -EINVAL wrong target. */
int rtcr_target_adopt_image(rtcr_target_t *t, struct rtcr_image **img);

/* Restore the target from its image at `epoch` (0: the newest) in a fresh process: sessions,
 * RPC objects (with new badges), dataspaces with their content at the same addresses,
 * threads and entrypoints, signal sources and contexts, timers, IRQ sessions and every
 * capability at its old slot; the cap map and object pool in the component are rewritten to
 * the new badges; construct is not run. The target must not be running. On any failure
 * nothing of the restore keeps running and the image is left unchanged. Errors: -EBUSY
 * running, -ENOENT no image/epoch, -EBADMSG corrupt image, -EXDEV binary differs (build id),
 * -EDQUOT quota, -errno. `err` names the epoch and the cause. */
int rtcr_target_restore(rtcr_target_t *t, uint64_t epoch, char *err, size_t errsz);

/* ---- hot standby (rtcr_standby.c) ---------------------------------------------------------- */

/* How a restore got the target's memory. */
enum rtcr_restore_path {
    RTCR_RESTORE_NONE = 0, /* no restore yet */
    RTCR_RESTORE_STANDBY,  /* took the hot standby as its pool: nothing decoded */
    RTCR_RESTORE_DECODE,   /* materialised the image's chain into the pool (LZ4 + hashes) */
    RTCR_RESTORE_PATH_MAX
};
const char *rtcr_restore_path_name(enum rtcr_restore_path p); /* "standby", "decode", "none" */

/* State of a target's hot standby. */
typedef struct rtcr_standby_info {
    bool enabled;           /* the checkpoint parameters ask for a standby */
    bool ready;             /* it holds the memory of `epoch`, the newest epoch of the image */
    uint64_t epoch;         /* epoch held, 0 if not ready */
    size_t bytes;           /* memory it holds (its memfd, the size of the target's pool) */
    size_t dataspaces;      /* dataspaces in its layout (when ready) */
    uint64_t apply_usec;    /* how long the last update took (after the thaw) */
    uint64_t applied_bytes; /* bytes copied (or zeroed) by the last update */
    unsigned rebuilds;      /* full epochs that rebuilt it */
    unsigned taken;         /* restores that took it */
    char why[96];           /* if not ready: why ("checkpoint failed", "taken by a restore",
                               "image adopted", ...); "" if ready */
    enum rtcr_restore_path last_restore; /* how the last successful restore got its memory */
} rtcr_standby_info_t;

/* The standby state of the target. Never fails (0). */
int rtcr_target_standby_info(rtcr_target_t *t, rtcr_standby_info_t *ret_info);

/* Call fn for every dataspace of a ready standby in its layout order, with its badge (as in
 * the image), size and content (borrowed for the call). For tests and diagnostics; must not
 * run concurrently with a checkpoint or restore of the target. -ENOENT not ready; fn's
 * non-zero return stops and is returned. */
int rtcr_target_standby_foreach(rtcr_target_t *t,
                                int (*fn)(void *ctx, uint32_t badge, uint64_t size,
                                          const uint8_t *data),
                                void *ctx);

/* The GNU build id of an ELF file (NT_GNU_BUILD_ID); returns its length or -errno
 * (-ENOENT no such note). */
int rtcr_elf_build_id(const char *path, uint8_t *buf, size_t bufsz);

#endif
