/* kernel_internal.h — private structures of the emulated capability kernel.
 *
 * Everything here is guarded by the one kernel mutex (rtcr_kernel.lock) unless a field says
 * otherwise. Objects are reference counted; a count that reaches zero queues the object on the
 * kernel's reap list, which is drained (teardown, then free) only when the kernel lock is about
 * to be released (kunlock). Deferring the free keeps every teardown path free of use-after-free
 * surprises: an object can lose its last reference in the middle of its own teardown (a task's
 * capability to itself in slot 1) and still be valid until the operation ends.
 *
 * Reference rules (counted = holds a reference):
 *   capability -> object             counted
 *   thread -> task                   counted, dropped at teardown
 *   thread -> its gate/pager/irq     counted, dropped at teardown (objects are deleted)
 *   gate -> bound thread             counted, dropped at teardown
 *   irq -> attached thread           counted, dropped at detach/teardown
 *   irq master -> slave              counted; slave -> master is a borrowed back pointer
 *   task -> thread list, thread area borrowed, unlinked at thread teardown
 *   thread -> attached irq list      borrowed, unlinked at detach
 * Teardown (delete) releases every outgoing reference; memory lives until the count is zero.
 */
#ifndef RTCR_KERNEL_INTERNAL_H
#define RTCR_KERNEL_INTERNAL_H

#include <pthread.h>

#include <rtcr/kernel.h>

#include "sync_internal.h"
#include "time_internal.h"

/* badge ids are badge / RTCR_BADGE_STEP; the bitmap is allocated in chunks on first use */
#define BADGE_IDS         (RTCR_BADGE_RANGE / RTCR_BADGE_STEP)
#define BADGE_CHUNK_BITS  (1u << 16)
#define BADGE_CHUNKS      (BADGE_IDS / BADGE_CHUNK_BITS)
#define BADGE_CHUNK_WORDS (BADGE_CHUNK_BITS / 64)

/* the largest number of map items a message can hold: words + 2 * items <= RTCR_MSG_WORDS */
#define MAX_ITEMS (RTCR_MSG_WORDS / 2)

struct badge_alloc {
    uint64_t *chunk[BADGE_CHUNKS];  /* bitmaps of used ids, NULL = all free */
    uint32_t used_in[BADGE_CHUNKS]; /* used ids per chunk */
    uint32_t limit;                 /* ids are 1 .. limit-1 */
    uint32_t cursor;                /* next id to try; ids behind it are not reused before wrap */
    size_t count;                   /* ids in use */
};

/* A capability: one slot's reference to an object, a node of the mapping tree. */
struct rtcr_cap {
    rtcr_kobj_t *obj;        /* the object (counted) */
    unsigned rights;         /* RTCR_CAP_* */
    rtcr_kobj_t *task;       /* task whose space holds it (borrowed), NULL while moving */
    unsigned slot;           /* slot in that task */
    struct rtcr_cap *parent; /* capability it was derived from, NULL for a root */
    struct rtcr_cap *child;  /* first derived capability */
    struct rtcr_cap *next;   /* next sibling (same parent) */
    struct rtcr_cap *prev;   /* previous sibling */
};

enum call_state {
    CALL_QUEUED = 0, /* in the server's send queue */
    CALL_RECEIVED,   /* delivered, the server owes a reply */
    CALL_DONE        /* finished; result and reply are set */
};

/* One blocking IPC call in flight; lives on the caller's stack. */
struct call {
    rtcr_kobj_t *caller;   /* calling thread (reference held by the calling function) */
    rtcr_kobj_t *server;   /* server thread (reference held by the calling function) */
    rtcr_kobj_t *gate;     /* gate invoked (reference held by the calling function) */
    unsigned slot;         /* slot of the gate capability in the caller's task */
    uint64_t label;        /* label delivered to the server */
    enum call_state state; /* progress */
    int result;            /* when done: 0 or -errno */
    rtcr_msg_t msg;        /* the request, replaced by the reply */
    struct call *next;     /* send-queue link */
};

enum wait_kind {
    WAIT_NONE = 0, /* not blocked */
    WAIT_OPEN,     /* in rtcr_ipc_reply_and_wait */
    WAIT_IRQ,      /* in rtcr_irq_receive for wait_irq */
    WAIT_CALL      /* in a blocking rtcr_ipc_call */
};

struct task_body {
    struct rtcr_cap **slots;            /* RTCR_CAP_SLOTS entries, NULL = empty */
    unsigned used;                      /* occupied slots */
    rtcr_kobj_t *area[RTCR_THREAD_MAX]; /* bound thread per index (borrowed) */
    rtcr_kobj_t *threads;               /* threads created in the task (borrowed list) */
};

struct thread_body {
    rtcr_kobj_t *task;                            /* task the thread runs in (counted) */
    rtcr_kobj_t *tnext;                           /* next thread of the same task */
    rtcr_kobj_t *tprev;                           /* previous thread of the same task */
    int index;                                    /* thread-area index, -1 if unbound */
    rtcr_kobj_t *area_obj[RTCR_THREAD_AREA_SLOT]; /* gate, pager, irq (counted) */
    unsigned rcv_base;                            /* receive window: first slot */
    unsigned rcv_count;                           /* receive window: number of slots */
    rtcr_ipc_handler_fn handler; /* synchronous server handler, NULL = blocking model */
    void *handler_ctx;           /* handler argument */
    pthread_cond_t cond;         /* wakes whoever blocks on behalf of this thread */
    enum wait_kind wait;         /* what the thread is blocked in */
    rtcr_kobj_t *wait_irq;       /* WAIT_IRQ: the IRQ waited for */
    bool cancel_pending;         /* a cancel arrived: the current or next wait ends -EINTR */
    rtcr_kobj_t *woken_irq;      /* an IRQ delivered to the waiting thread (counted) */
    uint64_t woken_label;        /* its attach label */
    struct call *queue_head;     /* calls waiting for this thread (server side) */
    struct call *queue_tail;     /* last queued call */
    struct call *serving;        /* call received, reply pending */
    struct call *calling;        /* the thread's own blocking call in flight */
    rtcr_kobj_t *irqs;           /* IRQs attached to this thread (borrowed list) */
};

struct gate_body {
    rtcr_kobj_t *thread; /* bound thread (counted), NULL = unbound */
    rtcr_badge_t badge;  /* label */
    bool owns_badge;     /* badge allocated by rtcr_gate_create_rpc, freed at teardown */
};

struct irq_body {
    rtcr_kobj_t *thread; /* attached thread (counted) */
    rtcr_kobj_t *anext;  /* next IRQ attached to the same thread */
    rtcr_kobj_t *aprev;  /* previous IRQ attached to the same thread */
    uint64_t label;      /* attach label */
    bool pending;        /* latched trigger */
    bool masked;         /* delivered, not yet unmasked */
    bool delivering;     /* a handler delivery loop runs for this IRQ */
    uint64_t triggers;   /* triggers seen (statistics) */
    rtcr_kobj_t *master; /* chained to this master (borrowed) */
    rtcr_kobj_t *slaves; /* first slave (counted) */
    rtcr_kobj_t *snext;  /* next slave of the same master */
};

struct rtcr_kobj {
    rtcr_kernel_t *k;         /* owning kernel */
    enum rtcr_kobj_type type; /* object type, immutable */
    uint64_t id;              /* per-kernel unique id, immutable */
    unsigned long refs;       /* references (see the rules above) */
    bool deleted;             /* torn down; capabilities to it are stale */
    bool reaping;             /* on the reap list */
    char *name;               /* for dumps, owned, may be NULL */
    void *user;               /* owner's pointer */
    rtcr_kobj_t *next;        /* kernel's list of all objects */
    rtcr_kobj_t *prev;        /* kernel's list of all objects */
    rtcr_kobj_t *reap_next;   /* reap list link */
    union {
        struct task_body task;     /* RTCR_KOBJ_TASK */
        struct thread_body thread; /* RTCR_KOBJ_THREAD */
        struct gate_body gate;     /* RTCR_KOBJ_GATE */
        struct irq_body irq;       /* RTCR_KOBJ_IRQ */
    } u;                           /* per-type state */
};

struct rtcr_kernel {
    pthread_mutex_t lock;      /* the kernel lock */
    rtcr_kobj_t *objects;      /* every object not yet freed */
    rtcr_kobj_t *reap;         /* objects whose count reached zero */
    uint64_t next_id;          /* next object id */
    struct badge_alloc badges; /* badge allocator */
};

/* ---- rtcr_kernel.c ---- */
rtcr_kobj_t *obj_alloc(rtcr_kernel_t *k, enum rtcr_kobj_type type); /* unlinked, refs 1 */
void obj_link(rtcr_kobj_t *o);          /* make it live: id, kernel list */
void obj_free_unlinked(rtcr_kobj_t *o); /* undo obj_alloc */
void klock(rtcr_kernel_t *k);
void kreap(rtcr_kernel_t *k);   /* free what lost its last reference; lock held */
void kunlock(rtcr_kernel_t *k); /* reaps, then unlocks */
/* wait on a thread's condition variable until `deadline` (NULL = forever): 0 or ETIMEDOUT */
int kwait(rtcr_kobj_t *thread, const struct timespec *deadline);
void obj_get(rtcr_kobj_t *o);
void obj_put(rtcr_kobj_t *o); /* may queue for reaping; never frees directly */
void obj_teardown(rtcr_kobj_t *o);
/* 0, or -EINVAL (NULL, foreign), -EPROTOTYPE (type), -EIDRM (deleted) */
int obj_check(rtcr_kernel_t *k, const rtcr_kobj_t *o, enum rtcr_kobj_type type);

/* ---- rtcr_badge.c ---- */
void badge_init(struct badge_alloc *b);
void badge_fini(struct badge_alloc *b);
int badge_alloc_locked(struct badge_alloc *b, rtcr_badge_t *ret_badge);
int badge_free_locked(struct badge_alloc *b, rtcr_badge_t badge);

/* ---- rtcr_cspace.c ---- */
struct rtcr_cap *cap_at(rtcr_kobj_t *task, unsigned slot);
/* put a detached capability into an empty slot */
void cap_place(struct rtcr_cap *c, rtcr_kobj_t *task, unsigned slot);
/* resolve: -ERANGE, -ENOENT, -EIDRM */
int cap_resolve(rtcr_kobj_t *task, unsigned slot, struct rtcr_cap **ret_cap);
void cap_revoke(struct rtcr_cap *c);  /* remove c and everything derived from it */
void cap_release(struct rtcr_cap *c); /* remove c only; derived caps move up to its parent */
void task_clear(rtcr_kobj_t *task);   /* revoke every slot */
void thread_unbind(rtcr_kobj_t *thread);

/* A prepared capability transfer (validated, memory reserved; commit cannot fail). */
struct xfer {
    unsigned n;                       /* items */
    unsigned words;                   /* message words before the items */
    struct rtcr_cap *src[MAX_ITEMS];  /* source capabilities */
    unsigned rights[MAX_ITEMS];       /* rights to deliver */
    bool grant[MAX_ITEMS];            /* move instead of copy */
    struct rtcr_cap *node[MAX_ITEMS]; /* preallocated nodes for copies */
};
/* Validate the items of msg (sent from src_task's slots) against a window of rcv_count slots:
 * -EMSGSIZE, -EBADMSG, -ERANGE, -ENOENT, -EIDRM, -EPERM, -ENOMEM. */
int xfer_prepare(rtcr_kobj_t *src_task, const rtcr_msg_t *msg, unsigned rcv_count, struct xfer *x);
/* Map the items into dst_task's window at rcv_base and rewrite out's fpage words. */
void xfer_commit(struct xfer *x, rtcr_kobj_t *dst_task, unsigned rcv_base, rtcr_msg_t *out);
void xfer_abort(struct xfer *x);
/* -EMSGSIZE when words + 2 * items exceed the message registers */
int msg_check_size(const rtcr_msg_t *msg);
/* copy the used part of a message, zero the rest */
void msg_copy(rtcr_msg_t *dst, const rtcr_msg_t *src);

/* ---- rtcr_ipc.c ---- */
void thread_fail_calls(rtcr_kobj_t *thread, int err); /* queued + serving calls -> err */
void thread_abort_own_call(rtcr_kobj_t *thread, int err);
void gate_fail_calls(rtcr_kobj_t *gate, int err);
void thread_wake(rtcr_kobj_t *thread);

/* ---- rtcr_irq.c ---- */
void irq_attach_locked(rtcr_kobj_t *irq, rtcr_kobj_t *thread, uint64_t label);
void irq_detach_locked(rtcr_kobj_t *irq);
void irq_unchain_all(rtcr_kobj_t *irq);
/* Deliver latched triggers to the attached thread if possible. May drop and retake the kernel
 * lock (handler threads), so callers must not hold unprotected pointers across it. */
void irq_kick(rtcr_kobj_t *irq);
/* A deliverable IRQ attached to a thread in open wait, or NULL */
rtcr_kobj_t *thread_pending_irq(rtcr_kobj_t *thread);
void irq_consume(rtcr_kobj_t *irq); /* pending -> delivered, masked */

#endif
