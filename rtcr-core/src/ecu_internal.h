/* ecu_internal.h — struct bodies shared by the ECU runtime's files (rtcr_ecu.c, rtcr_target.c,
 * rtcr_svc.c, rtcr_ckpt.c, rtcr_restore.c). Not a public header.
 *
 * Every object the agent hands to a target is an RPC object: an IPC gate with a badge, bound to
 * the target's core thread, whose kernel-object user pointer is a `struct obj`. The record behind
 * it is the "online state" of the interception layer: everything needed to recreate the object
 * (creation and upgrade args, bootstrapped or not, per-type state). Records refer to each other
 * by badge or by owning list, never by pointer into the target.
 *
 * Locking: ecu->lock protects the target list; t->lock protects all of a
 * target's records. Order: ecu->lock, then t->lock, then the kernel's own lock. The core-thread
 * handler runs with t->lock held for its whole duration.
 */
#ifndef RTCR_ECU_INTERNAL_H
#define RTCR_ECU_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <rtcr/ecu.h>
#include <rtcr/kernel.h>
#include <rtcr/rpc.h>
#include <rtcr/utcb.h>

#include "sync_internal.h"

#define NAME_MAX_LEN 64

enum obj_kind {
    OBJ_SESSION = 0, /* a session object (struct session) */
    OBJ_DATASPACE,   /* a RAM or ROM dataspace (struct dataspace) */
    OBJ_SIGCTX,      /* a signal context (struct sigctx) */
    OBJ_PARENT,      /* the parent interface of a target */
    OBJ_RPC,         /* a component-local RPC object served by one of its entrypoints */
    OBJ_KIND_MAX
};

/* Common head of every record behind a gate. */
struct obj {
    enum obj_kind kind;    /* what the record is */
    struct rtcr_target *t; /* the target it belongs to */
    rtcr_kobj_t *gate;     /* the IPC gate (owned reference) */
    rtcr_badge_t badge;    /* the gate's badge */
    bool bootstrapped;     /* created before construct finished */
    uint64_t created_seq;  /* creation order within the target (restore matches by it) */
};

struct dataspace {
    struct obj o;           /* head: kind OBJ_DATASPACE */
    struct dataspace *next; /* in the owning RAM/ROM session's list */
    size_t size;            /* bytes, page multiple */
    size_t pool_off;        /* offset in the target's RAM pool memfd */
    bool readonly;          /* ROM content */
    unsigned attach_count;  /* live attachments (free refuses while attached) */
};

struct attachment {
    struct attachment *next; /* in the RM session's list, ascending address */
    rtcr_badge_t ds_badge;   /* the attached dataspace */
    uint64_t addr;           /* address in the target */
    size_t size;             /* bytes */
    size_t offset;           /* offset into the dataspace */
    unsigned flags;          /* RTCR_RM_* */
};

struct sigsrc {
    struct sigsrc *next;  /* in the PD session's list */
    uint64_t id;          /* source id given to the component (a badge-like number) */
    rtcr_kobj_t *irq;     /* kernel IRQ the component attaches to its entrypoint thread */
    unsigned ep_index;    /* the entrypoint thread it was made for */
    struct sigctx *queue; /* contexts with pending signals, FIFO */
};

struct sigctx {
    struct obj o;         /* head: kind OBJ_SIGCTX */
    struct sigctx *next;  /* in the PD session's list */
    struct sigctx *qnext; /* in the source's pending queue */
    uint64_t source_id;   /* owning signal source */
    uint64_t imprint;     /* the component's value identifying the handler */
    unsigned pending;     /* submits not yet fetched */
    bool queued;          /* on the source's queue */
};

struct rpcobj {
    struct obj o;        /* head: kind OBJ_RPC */
    struct rpcobj *next; /* in the PD session's list */
    unsigned ep_index;   /* entrypoint thread serving it */
};

struct session {
    struct obj o;                            /* head: kind OBJ_SESSION */
    struct session *next;                    /* in the target's session list */
    enum rtcr_service type;                  /* which service */
    char args[RTCR_SESSION_ARGS_MAX + 1];    /* creation args */
    char upgrade[RTCR_SESSION_ARGS_MAX + 1]; /* accumulated upgrade args */
    size_t quota;                            /* RAM quota donated to the session */
    union {
        struct {
            struct sigsrc *sources;  /* signal sources */
            struct sigctx *contexts; /* signal contexts */
            struct rpcobj *rpcs;     /* local RPC objects */
            uint64_t next_source_id; /* allocator for source ids */
            uint64_t root_addr;      /* cap_space_info: component root (cap map, pool) */
            uint64_t root_size;      /* its size */
        } pd;
        struct {
            struct dataspace *dss; /* allocated dataspaces */
            size_t used;           /* bytes allocated */
        } ram;
        struct {
            struct attachment *atts; /* attachments, ascending */
        } rm;
        struct {
            char module[NAME_MAX_LEN]; /* module name */
            struct dataspace *ds;      /* its content */
            size_t length;             /* content bytes (the dataspace is page-rounded) */
        } rom;
        struct {
            char label[NAME_MAX_LEN]; /* label of the LOG session */
        } log;
        struct {
            rtcr_badge_t sigh;      /* signal context badge, 0 if none */
            uint64_t period_usec;   /* periodic interval, 0 for one-shot */
            uint64_t deadline_usec; /* next expiry (monotonic), 0 = not armed */
            uint64_t epoch_usec;    /* session creation time (for TIMER_NOW) */
        } timer;
        struct {
            unsigned line;     /* interrupt line */
            rtcr_badge_t sigh; /* signal context badge, 0 if none */
            bool unmasked;     /* acked: the next interrupt is delivered */
            bool pending;      /* an interrupt arrived while masked */
            uint64_t count;    /* interrupts seen */
        } irq;
    } u;
};

struct tthread {
    rtcr_kobj_t *kthread;  /* kernel thread (owned reference), NULL if slot unused */
    pthread_t mirror;      /* agent thread serving this thread's UTCB */
    rtcr_utcb_mirror_t *m; /* the serving end of the thread's UTCB (owned) */
    bool mirror_running;   /* mirror started and not yet joined */
    char name[32];         /* thread name */
};

struct logring {
    char **lines;   /* ring of owned strings */
    unsigned cap;   /* capacity */
    unsigned head;  /* next write position */
    unsigned count; /* lines held */
};

struct rtcr_target {
    struct rtcr_ecu *ecu;     /* owning ECU */
    struct rtcr_target *next; /* in the ECU's list (name order) */
    pthread_mutex_t lock;     /* protects everything below */
    /* spec */
    char name[NAME_MAX_LEN]; /* target name */
    char *binary;            /* executable path */
    size_t ram_quota;        /* RAM quota */
    unsigned cap_limit;      /* capability limit */
    rtcr_rom_spec_t *roms;   /* ROM modules (owned strings) */
    size_t n_roms;           /* number of roms */
    /* lifecycle */
    enum rtcr_target_state state;   /* see rtcr_target_state_name() */
    pid_t pid;                      /* process, 0 if none */
    int exit_status;                /* last exit: code or -signal */
    char failure[RTCR_FAILURE_MAX]; /* failure text */
    bool stopping;                  /* a stop was requested: exit is not a failure */
    uint64_t started_usec;          /* monotonic start time */
    unsigned restarts;              /* starts after the first */
    unsigned starts;                /* total starts */
    struct logring log;             /* recent LOG lines */
    /* process resources (valid while pid != 0) */
    rtcr_utcb_area_t *utcb;                  /* the UTCB area shared with the process (owned) */
    uint32_t abort_word;                     /* non-zero: every mirror of the target stops */
    int pool_fd;                             /* RAM pool memfd */
    uint8_t *pool;                           /* agent's mapping of the pool */
    size_t pool_size;                        /* pool bytes */
    struct extent *pool_used;                /* allocated extents, ascending offset */
    int sock_fd;                             /* agent end of the parent socket */
    int child_sock_fd;                       /* the target's end until the process is started */
    rtcr_kobj_t *task;                       /* the target's kernel task (owned) */
    rtcr_kobj_t *core_task;                  /* core's task for this target (owned) */
    rtcr_kobj_t *core_thread;                /* core thread serving the target's sessions (owned) */
    struct obj *parent;                      /* the parent object (slot 8) */
    struct tthread threads[RTCR_THREAD_MAX]; /* target threads by thread-area index */
    struct session *sessions;                /* all sessions, newest first */
    uint64_t obj_seq;                        /* creation counter for struct obj */
    struct obj **objtab; /* badge -> record, open addressing (power-of-two size) */
    size_t objtab_cap;   /* slots in objtab */
    size_t objtab_n;     /* records in objtab */
    size_t ram_used;     /* RAM charged: dataspaces + session quotas */
    bool constructed;    /* construct finished */
    bool dead;           /* process gone: mirrors must stop */
    /* checkpointing (rtcr_ckpt.c) */
    pthread_mutex_t freeze_lock;       /* orders "is the target freezing?" against deliveries */
    pthread_cond_t freeze_cond;        /* parked mirrors wait here for the thaw */
    bool freezing;                     /* deliver no IRQ/signal to the target's threads */
    rtcr_ckpt_params_t ckpt;           /* parameters (state_dir owned) */
    struct rtcr_dirty *dirty;          /* dirty tracker of this incarnation, NULL until needed */
    struct tracked *tracked;           /* ranges registered with the tracker */
    size_t n_tracked;                  /* entries of tracked */
    uint32_t *known_ds;                /* dataspaces stored by the previous epoch (incarnation) */
    size_t n_known_ds;                 /* entries of known_ds */
    struct rtcr_image *image;          /* the chain of epochs (owned), NULL if none */
    bool incarnation_has_epoch;        /* an epoch was taken in this incarnation */
    struct compactor *compactor;       /* compaction running in the background, or NULL */
    struct rtcr_memstate *compact_mem; /* memory of the last compacted epoch, or NULL */
    const void *compact_mem_of;        /* that epoch (the chain's first while it is valid) */
    rtcr_compaction_info_t compaction; /* for rtcr_target_compaction_info (chain_epochs and
                                          max_chain filled in there) */
    rtcr_epoch_stats_t last_stats;     /* of the newest epoch */
    bool have_stats;                   /* last_stats valid */
    uint8_t build_id[64];              /* build id of the binary */
    int build_id_len;                  /* its length, <= 0 if unknown */
    void *staging;                     /* checkpoint staging buffer, kept across epochs of an
                                          incarnation so a pause does not fault in new memory */
    /* kept pool (rtcr_target.c): the RAM pool of a finished incarnation, zeroed and still
     * mapped, kept while the target has an image so that a restore finds its memory
     * allocated and mapped instead of faulting in every page again */
    uint8_t *spare;    /* agent's mapping of the kept pool, NULL if none */
    int spare_fd;      /* its memfd (valid while spare != NULL) */
    size_t spare_size; /* its bytes */
    bool pool_keep;    /* teardown keeps the pool: freed extents are not punched */
    /* hot standby (rtcr_standby.c): a copy of the memory of the newest epoch, laid out as a
     * pool, that a restore of that epoch takes as its pool instead of decoding the image */
    struct standby *standby;             /* NULL until the first epoch with the standby enabled */
    bool pool_claim;                     /* target_pool_alloc claims the reserved extent at ... */
    size_t pool_claim_off;               /* ... this offset (a restore from the standby) */
    enum rtcr_restore_path last_restore; /* how the last successful restore got its memory */
};

struct tracked {
    uint64_t addr; /* target address of a tracked attachment */
    size_t len;    /* its length */
};

struct extent {
    struct extent *next; /* ascending offset */
    size_t off;          /* pool offset */
    size_t size;         /* bytes */
    bool reserved;       /* holds standby content for a dataspace not yet recreated */
};

struct rtcr_ecu {
    char name[NAME_MAX_LEN];     /* ECU name */
    rtcr_kernel_t *kernel;       /* the emulated kernel (owned) */
    pthread_mutex_t lock;        /* protects targets and irq lines */
    struct rtcr_target *targets; /* name order */
    size_t ram_total;            /* RAM for all targets */
    unsigned log_lines;          /* LOG ring size per target */
    rtcr_ecu_event_fn event_fn;  /* event callback */
    void *event_ctx;             /* its context */
    rtcr_ecu_log_fn log_fn;      /* LOG callback */
    void *log_ctx;               /* its context */
    /* timer service */
    pthread_t timer_thread;     /* runs expired timers */
    pthread_mutex_t timer_lock; /* protects timer_stop, timer_kick */
    pthread_cond_t timer_cond;  /* wakes the timer thread */
    bool timer_stop;            /* ask the timer thread to end */
    bool timer_running;         /* thread started */
    int timer_priority;         /* SCHED_FIFO priority in effect, 0: normal scheduling */
    int timer_priority_err;     /* errno of a refused priority, 0: none asked or granted */
    bool encode_idle;           /* encode epochs at SCHED_IDLE (asked and possible) */
    bool encode_idle_refused;   /* asked, but the thread could not switch back */
};

/* ---- rtcr_target.c --------------------------------------------------------------------- */
/* A new incarnation in two steps: prepare the resources and kernel objects (task, parent,
 * core thread, main thread), then start the process. spawn = both. On failure the caller
 * tears down. */
int target_prepare(struct rtcr_target *t);
int target_launch(struct rtcr_target *t);
int target_spawn(struct rtcr_target *t);
void target_teardown(struct rtcr_target *t); /* free process resources; t->lock not held */
int target_pool_alloc(struct rtcr_target *t, size_t size, size_t *ret_off);
void target_pool_free(struct rtcr_target *t, size_t off, size_t size);
/* Free the kept pool of a finished incarnation, if any (NULL-safe on none). Must be called
 * when a target is freed; teardown and the next incarnation call it as needed. */
void target_spare_drop(struct rtcr_target *t);
/* The pool size of the target (quota, ROM files, slack; page multiple). */
size_t target_pool_bytes(struct rtcr_target *t);
/* A sealed memfd of `size` bytes (named after `what` and the target) and the agent's shared
 * mapping of it. Caller owns both. -errno. */
int target_pool_create(struct rtcr_target *t, const char *what, size_t size, int *ret_fd,
                       uint8_t **ret_map);
/* Reserve [off, off + size) of the pool for a dataspace that a restore recreates from the
 * standby (claimed through pool_claim). -EEXIST overlap, -ENOSPC outside, -ENOMEM. */
int target_pool_reserve(struct rtcr_target *t, size_t off, size_t size);
/* Does the pool still hold a reserved extent that no dataspace claimed? */
bool target_pool_has_reserved(struct rtcr_target *t);
int target_thread_add(struct rtcr_target *t, const char *name, unsigned *ret_index);
int target_mirror_start(struct rtcr_target *t, unsigned index); /* serve UTCB `index` */
void target_log_line(struct rtcr_target *t, const char *line);
void target_emit(struct rtcr_target *t, enum rtcr_ecu_event ev, const char *detail);

/* ---- rtcr_ckpt.c ----------------------------------------------------------------------- */
void ckpt_target_init(struct rtcr_target *t);     /* defaults, at target creation */
void ckpt_target_fini(struct rtcr_target *t);     /* free everything, at removal */
void ckpt_incarnation_end(struct rtcr_target *t); /* process gone: drop the tracker */
/* Mirror side: called with an IRQ delivery in hand; returns once the target may get it. */
void ckpt_park_if_freezing(struct rtcr_target *t);

/* ---- rtcr_standby.c -------------------------------------------------------------------- */
/* After epoch `epoch` (full or not) was added to t->image from the staging buffer: begin,
 * one put per staged run (in staging order), end. Called by the checkpointing thread after
 * the thaw, t->lock NOT held. A standby that cannot follow exactly is invalidated. begin
 * returns < 0 when the runs need not be given (disabled or invalidated). */
int standby_begin(struct rtcr_target *t, uint64_t epoch, bool full);
void standby_put(struct rtcr_target *t, uint32_t badge, uint64_t offset, const void *data,
                 size_t len);
void standby_end(struct rtcr_target *t);
/* The content no longer follows the image (failed checkpoint, image loaded or adopted).
 * `why` is a static string kept for rtcr_target_standby_info. t->lock NOT held. */
void standby_invalidate(struct rtcr_target *t, const char *why);
/* Free the standby, at target removal. */
void standby_fini(struct rtcr_target *t);
/* One dataspace of the standby's layout. */
struct standby_ext {
    uint32_t badge; /* dataspace badge in the image */
    size_t off;     /* offset in the standby (= in the pool taken from it) */
    size_t size;    /* bytes */
    size_t cursor;  /* while applying a dataspace new in this epoch: bytes defined */
    bool fresh;     /* new in the epoch being applied (starts zero-filled) */
};
/* Restore: if the standby holds exactly epoch `epoch` of t->image and fits the pool, move
 * its memfd into the kept-pool slot (t->spare, which make_pool adopts; the old spare becomes
 * the standby's memory for the next rebuild) and return its layout (caller frees), the
 * number of entries and the inode of the memfd (to check that the new pool is that memfd).
 * t->lock NOT held. 0 on success; -ENOENT not usable (*ret_why says why, static string). */
int standby_take(struct rtcr_target *t, uint64_t epoch, struct standby_ext **ret_layout,
                 size_t *ret_n, uint64_t *ret_ino, const char **ret_why);

/* ---- rtcr_svc.c ------------------------------------------------------------------------ */
/* The handler of a target's core thread: dispatches every RPC to a core object. */
int svc_dispatch(void *ctx, rtcr_kobj_t *thread, uint64_t label, const rtcr_msg_t *req,
                 rtcr_msg_t *reply);
/* Records (used by the restorer too): create/destroy the gate of a record with a new badge;
 * a RAM/ROM dataspace in the pool; RAM quota accounting. t->lock held. */
int svc_obj_init(struct rtcr_target *t, struct obj *o, enum obj_kind kind, const char *name);
/* The same with the gate bound to `server` (an entrypoint thread) instead of the core thread. */
int svc_obj_init_on(struct rtcr_target *t, struct obj *o, enum obj_kind kind, const char *name,
                    rtcr_kobj_t *server);
void svc_obj_fini(struct rtcr_target *t, struct obj *o);
int svc_objtab_put(struct rtcr_target *t, struct obj *o);
int svc_ds_new(struct rtcr_target *t, size_t size, bool readonly, const char *what,
               struct dataspace **ret);
int svc_rom_load(struct rtcr_target *t, const char *path, const char *module,
                 struct dataspace **ret, size_t *ret_len);
int svc_charge(struct rtcr_target *t, size_t bytes, const char *what);
void svc_uncharge(struct rtcr_target *t, size_t bytes);
/* The file of ROM module `module` of the target (the binary for "binary"), NULL if none. */
const char *svc_rom_path(struct rtcr_target *t, const char *module);
/* Make the parent object at slot 8. */
int svc_make_parent(struct rtcr_target *t);
/* Free every record of a target (kernel objects included). t->lock held. */
void svc_free_all(struct rtcr_target *t);
/* Submit a signal to the context with `badge`. t->lock held. */
int svc_signal_submit(struct rtcr_target *t, rtcr_badge_t badge, unsigned count);
/* Timer service: the earliest deadline over all targets' timer sessions, 0 if none; and
 * running everything due. Called by the timer thread with no locks held. */
uint64_t svc_timers_run(struct rtcr_ecu *ecu, uint64_t now_usec);
/* A timer due at *deadline: 0 if not yet due at `now`; else the number of timeouts that have
 * passed (1, or more when the timer thread ran late), and *deadline moves on: to 0 for a
 * one-shot (period 0), else to the first period boundary after `now`, keeping the phase of
 * the periodic timer. A late timer fires once with that count (the handler sees the periods
 * it missed, as signals coalesce); it never fires a burst. At most SVC_TIMER_COUNT_MAX. */
unsigned svc_timer_due(uint64_t *deadline, uint64_t period_usec, uint64_t now_usec);
#define SVC_TIMER_COUNT_MAX 1000000u
/* IRQ line fired: notify the target's IRQ sessions on `line`; returns how many. t->lock held */
int svc_irq_fire(struct rtcr_target *t, unsigned line);
/* Kick the timer thread after (re)arming a timer. */
void ecu_timer_kick(struct rtcr_ecu *ecu);

uint64_t now_usec(void);
/* CPU time of the calling thread (CLOCK_THREAD_CPUTIME_ID) in microseconds. */
uint64_t thread_cpu_usec(void);

#endif
