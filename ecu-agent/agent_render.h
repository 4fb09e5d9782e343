/* agent_render.h — the two faces of every control reply: a JSON body for programs and an
 * aligned text table for operators, rendered from plain rows that the daemon collects from the
 * runtime. Rendering knows nothing of the runtime, so it is tested without one.
 *
 * JSON shapes (docs/operator-guide.md):
 *   targets: [{"name", "state", "pid" (int|null), "restarts", "ram_quota", "ram_used",
 *              "failure" (string|null), "last_epoch" (object|null: "epoch", "full",
 *              "freeze_usec", "pages_scanned", "pages_written", "bytes_raw", "bytes_stored",
 *              "encode_usec", "encode_cpu_usec", "encoded_idle", "idle_capped"),
 *              "compaction" (object|null: "max_chain", "chain_epochs", "running",
 *              "running_from", "running_upto", "running_usec" (int|null while none runs),
 *              "running_on_kept", "last" (none|committed|unwritten|failed|discarded),
 *              "last_from", "last_upto", "last_usec", "last_ago_usec" (int|null while none
 *              ended), "last_on_kept", "started", "committed", "failed", "discarded",
 *              "error" (string|null), "error_ago_usec" (int|null)),
 *              "standby" (object|null: "enabled", "ready", "epoch" (int|null), "bytes",
 *              "dataspaces", "apply_usec", "applied_bytes", "rebuilds", "taken",
 *              "why" (string|null), "last_restore" (none|standby|decode))}]
 *   caps:    [{"slot", "type" (task|thread|gate|irq), "badge" (int|null), "rights" ("rws"...),
 *              "stale", "object"}]
 *   log:     ["line", ...]
 *   status:  {"name", "pid", "uptime_ms", "targets", "running", "failed", "ram_total",
 *             "ram_quota", "ram_used", "sensors", "control", "timer_priority",
 *             "timer_refused" (string|null), "encode_idle", "encode_idle_refused"
 *             (string|null)}
 *   checkpoint: {"target", "epoch", "full", "quiesce_usec", "freeze_usec", "pages_scanned",
 *             "pages_written", "bytes_raw", "bytes_stored", "encode_usec", "encode_cpu_usec",
 *             "encoded_idle", "idle_capped", "write_usec"}
 *   images:  [{"epoch", "kind" (full|incremental), "parent" (int|null), "compacted_from"
 *             (int|null), "bytes", "pages_written", "pages_zero", "freeze_usec",
 *             "encode_usec", "created_usec", "created" (UTC, ISO 8601), "verified",
 *             "error" (string|null)}]
 *   check:   {"ecu", "kernel", "dirty_tracking": {"mode", "reason" (string|null)},
 *             "futex_waitv", "state_dir": {"path", "writable", "error" (string|null)},
 *             "targets": [{"name", "checkpoint_ms", "on_crash", "dirty_tracking",
 *             "effective"}]}
 * Text output replaces control characters coming from targets with '?' so that a target
 * cannot drive the operator's terminal.
 */
#ifndef AGENT_RENDER_H
#define AGENT_RENDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Statistics of one checkpoint epoch, as the runtime reports them (rtcr_epoch_stats_t). */
typedef struct agent_epoch_stats {
    uint64_t epoch;           /* epoch number */
    bool full;                /* a full epoch (no parent) */
    uint64_t quiesce_usec;    /* from the request until every entrypoint waited */
    uint64_t freeze_usec;     /* how long the target was paused */
    uint64_t pages_scanned;   /* pages the dirty tracker looked at */
    uint64_t pages_written;   /* pages copied into the epoch */
    uint64_t bytes_raw;       /* page bytes before compression */
    uint64_t bytes_stored;    /* epoch bytes after compression and framing */
    uint64_t encode_usec;     /* compress + hash + frame, while the target runs (wall time) */
    uint64_t encode_cpu_usec; /* CPU time the encoding thread spent on it */
    bool encoded_idle;        /* the encoding began at SCHED_IDLE */
    bool idle_capped;         /* and went back to normal scheduling at the cap */
    uint64_t write_usec;      /* writing the epoch file */
} agent_epoch_stats_t;

/* How a target's last background compaction ended (rtcr_compaction_outcome). */
enum agent_compaction_outcome {
    AGENT_COMPACTION_NONE = 0,  /* "none": none ended yet */
    AGENT_COMPACTION_COMMITTED, /* "committed" */
    AGENT_COMPACTION_UNWRITTEN, /* "unwritten": committed in memory, its file not written */
    AGENT_COMPACTION_FAILED,    /* "failed": the chain is unchanged */
    AGENT_COMPACTION_DISCARDED, /* "discarded": the chain was replaced first */
    AGENT_COMPACTION_OUTCOME_MAX
};
const char *agent_compaction_outcome_name(enum agent_compaction_outcome o); /* "?" if bad */

/* A target's compaction state (rtcr_compaction_info_t), times made relative to now. Strings
 * borrowed. */
typedef struct agent_compaction {
    unsigned max_chain;    /* compaction beyond this many epochs (0: off) */
    uint64_t chain_epochs; /* epochs in the chain now */

    bool running;          /* a compaction runs in the background */
    uint64_t running_from; /* its first epoch */
    uint64_t running_upto; /* its last epoch */
    uint64_t running_usec; /* how long it has been running */
    bool running_on_kept;  /* it builds on the memory the previous one kept */

    enum agent_compaction_outcome last; /* how the last one that ended ended */
    uint64_t last_from;                 /* its first epoch */
    uint64_t last_upto;                 /* its last epoch */
    uint64_t last_usec;                 /* how long it ran */
    uint64_t last_ago_usec;             /* how long ago it ended */
    bool last_on_kept;                  /* it built on kept memory */

    unsigned started;        /* compactions started */
    unsigned committed;      /* committed */
    unsigned failed;         /* failed (unwritten included) */
    unsigned discarded;      /* discarded */
    const char *error;       /* the last failure's message, NULL if none ever failed */
    uint64_t error_ago_usec; /* how long ago it failed */
} agent_compaction_t;

/* A target's hot standby (rtcr_standby_info_t). Strings borrowed. */
typedef struct agent_standby {
    bool enabled;             /* configured */
    bool ready;               /* holds the newest epoch */
    uint64_t epoch;           /* that epoch (when ready) */
    uint64_t bytes;           /* memory it holds */
    uint64_t dataspaces;      /* dataspaces in its layout */
    uint64_t apply_usec;      /* the last update took */
    uint64_t applied_bytes;   /* bytes the last update copied */
    unsigned rebuilds;        /* full epochs that rebuilt it */
    unsigned taken;           /* restores that took it */
    const char *why;          /* why it is not ready ("a checkpoint failed", "disabled"), NULL
                                 or "" when ready */
    const char *last_restore; /* how the last restore got its memory: none, standby, decode */
} agent_standby_t;

/* One target as `ecuctl targets` shows it. Strings borrowed. */
typedef struct agent_target_row {
    const char *name;    /* target name */
    const char *state;   /* "running", "stopped", "failed", "starting", "restoring" */
    pid_t pid;           /* process id, 0 when not running */
    unsigned restarts;   /* restarts counted by the runtime */
    size_t ram_quota;    /* bytes */
    size_t ram_used;     /* bytes */
    const char *failure; /* failure text when failed, else NULL */
    const agent_epoch_stats_t *last_epoch; /* newest epoch taken, NULL if none (borrowed) */
    const agent_compaction_t *compaction;  /* compaction state, NULL if unknown (borrowed) */
    const agent_standby_t *standby;        /* standby state, NULL if unknown (borrowed) */
} agent_target_row_t;

/* Capability object types as the protocol names them. */
enum agent_cap_type {
    AGENT_CAP_TASK = 0, /* "task" */
    AGENT_CAP_THREAD,   /* "thread" */
    AGENT_CAP_GATE,     /* "gate" */
    AGENT_CAP_IRQ,      /* "irq" */
    AGENT_CAP_TYPE_MAX
};

/* One occupied capability slot. Strings borrowed. */
typedef struct agent_cap_row {
    unsigned slot;            /* slot number */
    enum agent_cap_type type; /* object type */
    bool has_badge;           /* badge is meaningful (gates) */
    uint32_t badge;           /* badge (label) of a gate */
    unsigned rights;          /* RTCR_CAP_* bits: R 4, W 1, S 2, D 8 */
    bool stale;               /* the object was deleted */
    const char *object;       /* object description, e.g. "LOG session 'brake'" */
} agent_cap_row_t;

/* ECU status. Strings borrowed. */
typedef struct agent_status {
    const char *name;      /* ECU name */
    pid_t pid;             /* agent pid */
    uint64_t uptime_usec;  /* since the agent started */
    unsigned targets;      /* configured targets */
    unsigned running;      /* targets running (or starting) */
    unsigned failed;       /* targets failed */
    size_t ram_total;      /* ecu/ram */
    size_t ram_quota;      /* sum of target quotas */
    size_t ram_used;       /* sum of target RAM in use */
    unsigned sensors;      /* simulated sensors firing */
    const char *control;   /* control socket path */
    int timer_priority;    /* SCHED_FIFO priority of the timer service, 0: normal scheduling */
    const char *timer_why; /* why the configured priority was refused, NULL if it was not */
    bool encode_idle;      /* epochs are encoded at SCHED_IDLE */
    const char *encode_idle_why; /* why encode_idle was asked for and is off, else NULL */
} agent_status_t;

/* One epoch of a target's image for `ecuctl images`. Strings borrowed. */
typedef struct agent_image_row {
    uint64_t epoch;          /* epoch number */
    bool full;               /* a full epoch */
    uint64_t parent;         /* parent epoch, 0 for a full one */
    uint64_t compacted_from; /* first epoch merged into it by compaction, 0 if none */
    uint64_t bytes;          /* size of the epoch (its file) in bytes */
    uint64_t pages_written;  /* 4 KiB pages stored with payload */
    uint64_t pages_zero;     /* 4 KiB pages stored as zero runs */
    uint64_t freeze_usec;    /* pause of the target for this epoch */
    uint64_t encode_usec;    /* compress, hash and frame */
    uint64_t created_usec;   /* creation time, CLOCK_REALTIME microseconds */
    bool verified;           /* the epoch's bytes parsed again with every hash checked */
    const char *error;       /* why verification failed, NULL if verified */
} agent_image_row_t;

/* What one target is configured to do about checkpoints, for `ecuctl check`. */
typedef struct agent_check_target {
    const char *name;       /* target name */
    unsigned checkpoint_ms; /* periodic interval, 0 = off */
    const char *on_crash;   /* "none", "restart", "restore" */
    const char *configured; /* dirty_tracking as configured ("auto", "uffd-wp", ...) */
    const char *effective;  /* the mode that will be used ("uffd-wp", "hash", "full") */
} agent_check_target_t;

/* What the ECU supports, for `ecuctl check`. Strings borrowed. */
typedef struct agent_check {
    const char *ecu;                     /* ECU name */
    const char *kernel;                  /* "Linux 6.18.0 x86_64" */
    const char *dirty_mode;              /* best dirty-tracking mode ("uffd-wp", "hash") */
    const char *dirty_reason;            /* why uffd-wp is unavailable, NULL or "" if it is */
    bool futex_waitv;                    /* futex_waitv(2) is available */
    const char *state_dir;               /* ecu/state_dir */
    bool state_dir_writable;             /* a file could be created there */
    const char *state_dir_error;         /* why not, NULL if writable */
    const agent_check_target_t *targets; /* per target */
    size_t n_targets;                    /* entries of targets */
} agent_check_t;

/* Each renderer returns 0 and two malloc'ed strings (caller frees) or -ENOMEM and nothing. */
int agent_render_targets(const agent_target_row_t *rows, size_t n, char **ret_json,
                         char **ret_text);
int agent_render_caps(const agent_cap_row_t *rows, size_t n, char **ret_json, char **ret_text);
int agent_render_log(const char *const *lines, size_t n, char **ret_json, char **ret_text);
int agent_render_status(const agent_status_t *st, char **ret_json, char **ret_text);
/* The result of `checkpoint NAME`. */
int agent_render_checkpoint(const char *target, const agent_epoch_stats_t *s, char **ret_json,
                            char **ret_text);
/* The epochs of `target`'s image, oldest first; `note` (may be NULL) is appended to the text
 * (e.g. what loading the image from the state dir dropped), then a footer with the standby
 * `sb` and the compaction `c` (either may be NULL: no line). Times in the text are local. */
int agent_render_images(const char *target, const agent_image_row_t *rows, size_t n,
                        const char *note, const agent_compaction_t *c, const agent_standby_t *sb,
                        char **ret_json, char **ret_text);
int agent_render_check(const agent_check_t *c, char **ret_json, char **ret_text);

/* A duration for humans: "180us" below a millisecond, else "3.2ms", "1.25s". buf >= 16. */
const char *agent_usec_string(uint64_t usec, char *buf, size_t len);

/* Rights as letters in the order r, w, s, d ("rws"; "" for none). buf needs 5 bytes. */
const char *agent_rights_string(unsigned rights, char buf[5]);
/* Type name: "task", "thread", "gate", "irq"; "?" if out of range. */
const char *agent_cap_type_name(enum agent_cap_type t);
/* A size for humans: "16M" when exact, "1.5M" otherwise, "512" below 1K. buf >= 16 bytes. */
const char *agent_size_string(size_t bytes, char *buf, size_t len);

#endif
