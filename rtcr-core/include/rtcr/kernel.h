/* rtcr/kernel.h — the emulated capability kernel (Fiasco.OC as Genode's base-foc uses it).
 *
 * One rtcr_kernel_t per ECU holds every kernel object of that ECU: tasks (protection domains),
 * threads, IPC gates and IRQs. A task owns a capability space of RTCR_CAP_SLOTS slots; a slot
 * holds a capability: a reference to one kernel object plus rights. Components name objects
 * only by slot number (a "kcap"); the kernel resolves slots on every operation, so a component
 * can use only what is in its own space and cannot forge a capability.
 *
 * Slot layout, as in Genode 16.08's base-foc (native_capability.h, platform_pd.h):
 *   1            the task itself (L4_BASE_TASK_CAP)
 *   2..7         empty (L4Re's factory, thread, pager, log, icu, scheduler)
 *   8            the parent (PARENT_CAP)
 *   9 + 3*i + 0  thread i's IPC gate (slot 9 is the main thread's gate, MAIN_THREAD_CAP)
 *   9 + 3*i + 1  thread i's pager
 *   9 + 3*i + 2  thread i's IRQ (used by the lock implementation to block and wake)
 *   0x200..      the component's own first-fit allocation (USER_BASE_CAP), up to slot 4095
 *
 * Badges: per-ECU object identities, 4-aligned so the two low bits can carry the S and W
 * rights of the capability used (Genode's cap_id_alloc, CAP_ID_OFFSET = 1 << 2). A badge is
 * imprinted into an IPC gate as its label when the gate is created; IPC through the gate
 * delivers label = badge | (rights & (S|W)) to the bound thread, and only the kernel writes it.
 *
 * Mapping (l4_task_map with an object flexpage) copies a capability into another slot, possibly
 * in another task, with rights masked; the copy is derived from its source. Unmapping revokes
 * a capability and, recursively, everything derived from it (the mapping database). Deleting an
 * object (L4_FP_DELETE_OBJ) makes every capability to it stale: the slot stays occupied but
 * rtcr_task_cap_valid() reports it invalid and every use fails with -EIDRM.
 *
 * Every operation validates all its arguments first and only then changes state, so a failed
 * operation changes nothing. Errors (negative errno, distinct per cause):
 *   -ERANGE       slot number outside 0..RTCR_CAP_SLOTS-1, or a thread index >= RTCR_THREAD_MAX
 *   -ENOENT       the slot is empty
 *   -EIDRM        the capability is stale: its object has been deleted
 *   -EPROTOTYPE   the capability names an object of the wrong type for the operation
 *   -EPERM        the capability lacks the rights the operation needs
 *   -EEXIST       the destination slot is occupied
 *   -ENOSPC       no free slot in the component range (first-fit allocation failed)
 *   -EACCES       the slot lies in a range the operation may not touch (e.g. a component
 *                 allocating below RTCR_USER_BASE_CAP)
 *   -EMSGSIZE     a message with more than RTCR_MSG_WORDS words + 2 * items
 *   -EBADMSG      a malformed map item in a message
 *   -ENOTCONN     an IPC gate or IRQ without a bound/attached thread
 *   -EBUSY        an IRQ already attached (detach first), or a thread already waiting
 *   -EALREADY     a thread already bound into its task's thread area
 *   -EMLINK       all RTCR_THREAD_MAX thread-area indices of a task are taken
 *   -EDEADLK      a blocking thread calling a gate bound to itself
 *   -EINTR        a wait cancelled by rtcr_thread_cancel_wait()
 *   -ETIMEDOUT    an IPC timeout expired
 *   -EPIPE        the partner of an IPC was destroyed while the IPC was in flight
 *   -EOVERFLOW    the badge space is exhausted
 *   -EINVAL       any other bad argument (NULL object, bad flags)
 *
 * Thread safety: every function may be called from any thread; the kernel serialises with one
 * lock. Server handlers (rtcr_thread_set_handler) run without the kernel lock held, so they
 * may call back into the kernel.
 */
#ifndef RTCR_KERNEL_H
#define RTCR_KERNEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- numbers (kept equal to Genode 16.08 base-foc / Fiasco.OC) -------------------------- */

#define RTCR_CAP_SHIFT        12    /* selector = slot << 12 (L4_CAP_SHIFT) */
#define RTCR_CAP_SLOTS        4096  /* Cap_index_allocator_tpl<Cap_index, 4096> */
#define RTCR_TASK_CAP         1     /* L4_BASE_TASK_CAP */
#define RTCR_PARENT_CAP       8     /* PARENT_CAP */
#define RTCR_THREAD_AREA_BASE 9     /* THREAD_AREA_BASE = MAIN_THREAD_CAP */
#define RTCR_THREAD_AREA_SLOT 3     /* THREAD_AREA_SLOT: gate, pager, irq */
#define RTCR_THREAD_GATE_OFF  0     /* THREAD_GATE_CAP */
#define RTCR_THREAD_PAGER_OFF 1     /* THREAD_PAGER_CAP */
#define RTCR_THREAD_IRQ_OFF   2     /* THREAD_IRQ_CAP */
#define RTCR_THREAD_MAX       128   /* Platform_pd THREAD_MAX */
#define RTCR_USER_BASE_CAP    0x200 /* USER_BASE_CAP, first slot the component allocates */

/* slot of thread i's gate / pager / irq */
#define RTCR_THREAD_SLOT(i, off) (RTCR_THREAD_AREA_BASE + (i)*RTCR_THREAD_AREA_SLOT + (off))

/* capability rights (L4_CAP_FPAGE_*) */
#define RTCR_CAP_W   (1u << 0) /* write: may modify the object (e.g. bind a gate) */
#define RTCR_CAP_S   (1u << 1) /* send: may transfer further (map) */
#define RTCR_CAP_R   (1u << 2) /* read: may invoke */
#define RTCR_CAP_D   (1u << 3) /* delete: may delete the object */
#define RTCR_CAP_RWS (RTCR_CAP_R | RTCR_CAP_W | RTCR_CAP_S)
#define RTCR_CAP_ALL (RTCR_CAP_R | RTCR_CAP_W | RTCR_CAP_S | RTCR_CAP_D)

/* badges: 4-aligned ids; the 2 low bits of a delivered label carry S and W */
#define RTCR_BADGE_STEP        (1u << 2)  /* CAP_ID_OFFSET */
#define RTCR_BADGE_RANGE       (1u << 28) /* CAP_ID_RANGE (Genode HEAD) */
#define RTCR_BADGE_INVALID     0u         /* Cap_index UNUSED */
#define RTCR_LABEL_RIGHTS_MASK 3u

/* message registers and items (l4_utcb: 63 MRs; map item = 2 words) */
#define RTCR_MSG_WORDS     63
#define RTCR_ITEM_MAP      8u /* L4_ITEM_MAP */
#define RTCR_MAP_GRANT     2u /* L4_MAP_ITEM_GRANT: move instead of copy */
#define RTCR_RCV_SLOTS_MAX 58 /* L4_UTCB_GENERIC_BUFFERS_SIZE */

/* message tag flags and kernel protocol labels (l4sys types.h) */
#define RTCR_MSGTAG_ERROR 0x8000u
#define RTCR_PROTO_IRQ    (-1)

typedef uint32_t rtcr_badge_t;

enum rtcr_kobj_type {
    RTCR_KOBJ_NONE = 0, /* empty slot */
    RTCR_KOBJ_TASK,
    RTCR_KOBJ_THREAD,
    RTCR_KOBJ_GATE,
    RTCR_KOBJ_IRQ,
    RTCR_KOBJ_TYPE_MAX
};

typedef struct rtcr_kernel rtcr_kernel_t;
typedef struct rtcr_kobj rtcr_kobj_t; /* any kernel object; type from rtcr_kobj_type_of() */

/* A message tag, as l4_msgtag_t: label, number of untyped words, number of items, flags. */
typedef struct rtcr_msgtag {
    int32_t label;  /* protocol label (user value, or RTCR_PROTO_* from the kernel) */
    uint8_t words;  /* untyped words in mr[0..words-1] */
    uint8_t items;  /* typed items after the words, 2 words each */
    uint16_t flags; /* RTCR_MSGTAG_* */
} rtcr_msgtag_t;

/* A message: tag plus the 63 message registers. Items follow the words: item k occupies
 * mr[words + 2k] = RTCR_ITEM_MAP | (grant ? RTCR_MAP_GRANT : 0) and
 * mr[words + 2k + 1] = rtcr_obj_fpage(slot, rights). On delivery the kernel rewrites each
 * delivered item's fpage word to name the receive slot it was mapped into. */
typedef struct rtcr_msg {
    rtcr_msgtag_t tag;           /* the message tag */
    uint64_t mr[RTCR_MSG_WORDS]; /* message registers */
} rtcr_msg_t;

/* an object flexpage naming one capability slot with rights (l4_obj_fpage(sel, 0, rights)) */
static inline uint64_t rtcr_obj_fpage(unsigned slot, unsigned rights)
{
    return ((uint64_t)slot << RTCR_CAP_SHIFT) | (3u << 4) | (rights & 0xfu);
}
static inline unsigned rtcr_fpage_slot(uint64_t fpage)
{
    return (unsigned)(fpage >> RTCR_CAP_SHIFT);
}
static inline unsigned rtcr_fpage_rights(uint64_t fpage)
{
    return (unsigned)(fpage & 0xfu);
}

/* A server handler: runs in the calling thread's context, without the kernel lock, when an IPC
 * arrives at a thread set up with rtcr_thread_set_handler(). `label` is the delivered label
 * (badge | S/W bits, or the IRQ attach label); `req` holds the request with any transferred
 * capabilities already mapped into the thread's receive window; the handler fills `reply`
 * (items in it name slots of the *server's* task, mapped to the caller's receive window).
 * Return >= 0 to send the reply, < 0 to fail the call with that error. */
typedef int (*rtcr_ipc_handler_fn)(void *ctx, rtcr_kobj_t *thread, uint64_t label,
                                   const rtcr_msg_t *req, rtcr_msg_t *reply);

/* ---- kernel ------------------------------------------------------------------------------ */

/* A new kernel for one ECU. Caller owns; NULL only for out-of-memory. */
rtcr_kernel_t *rtcr_kernel_new(void);
/* Destroy every object and the kernel; NULL-safe, idempotent, NULLs *p. Every object is freed,
 * referenced or not: no object pointer may be used afterwards, and no thread may be blocked
 * in the kernel. */
void rtcr_kernel_destroy(rtcr_kernel_t **p);

/* ---- badges ------------------------------------------------------------------------------ */

/* Allocate a badge: 4-aligned, non-zero, below RTCR_BADGE_RANGE, not in use. Freed badges are
 * not handed out again until the allocator has cycled through the rest of the range, so a
 * stale reference to a freed badge is not silently re-bound. -EOVERFLOW when exhausted. */
int rtcr_badge_alloc(rtcr_kernel_t *k, rtcr_badge_t *ret_badge);
/* Reserve a specific badge (e.g. to keep one across a local restore): -EINVAL if misaligned or
 * out of range, -EEXIST if in use. */
int rtcr_badge_reserve(rtcr_kernel_t *k, rtcr_badge_t badge);
/* Release a badge: -EINVAL if misaligned or out of range, -ENOENT if not in use. */
int rtcr_badge_free(rtcr_kernel_t *k, rtcr_badge_t badge);
bool rtcr_badge_is_used(rtcr_kernel_t *k, rtcr_badge_t badge);
size_t rtcr_badge_count(rtcr_kernel_t *k);
/* Restrict badges to [RTCR_BADGE_STEP, end) (tests, small ECUs). Only while no badge is in use
 * (-EBUSY); `end` must be 4-aligned, >= 2 * RTCR_BADGE_STEP and <= RTCR_BADGE_RANGE (-EINVAL). */
int rtcr_badge_set_range(rtcr_kernel_t *k, rtcr_badge_t end);

/* ---- objects (the factory, as l4_factory_create_*) ---------------------------------------
 * Creation returns a reference owned by the caller (the agent, i.e. "core"); the object also
 * lives as long as any capability names it. rtcr_kobj_unref() drops the caller's reference.
 * rtcr_kobj_delete() destroys the object now: every capability to it becomes stale, threads
 * blocked on it wake with -EPIPE, and IRQs attached to a deleted thread are detached.
 * Deleting a thread also deletes its thread-area gate, pager and IRQ and unmaps their slots
 * (Platform_pd::unbind_thread); deleting a task deletes its threads and revokes every
 * capability in its space. Objects that name each other (a task through its slot-1
 * capability, a bound thread through its own gate) live until they are deleted or the kernel
 * is destroyed. All creation functions: -EINVAL for NULL arguments, -ENOMEM. */

/* A task with an empty space except slot RTCR_TASK_CAP, which holds a capability to the task
 * itself with RTCR_CAP_RWS (core maps L4_BASE_TASK_CAP when it creates a PD). */
int rtcr_task_create(rtcr_kernel_t *k, const char *name, rtcr_kobj_t **ret_task);
/* A thread of `task` (-EPROTOTYPE, -EIDRM for a bad task), not yet bound (index -ENOENT). */
int rtcr_thread_create(rtcr_kernel_t *k, rtcr_kobj_t *task, const char *name,
                       rtcr_kobj_t **ret_thread);
/* An IPC gate bound to `thread` (may be NULL: unbound) with label `badge` (4-aligned, else
 * -EINVAL). The gate does not take ownership of the badge; see rtcr_gate_create_rpc(). */
int rtcr_gate_create(rtcr_kernel_t *k, rtcr_kobj_t *thread, rtcr_badge_t badge,
                     rtcr_kobj_t **ret_gate);
/* PD alloc_rpc_cap: allocate a badge and create a gate bound to `thread` (may be NULL)
 * labelled with it. The badge is freed when the gate is deleted. -EOVERFLOW: no badge left. */
int rtcr_gate_create_rpc(rtcr_kernel_t *k, rtcr_kobj_t *thread, rtcr_kobj_t **ret_gate);
int rtcr_irq_create(rtcr_kernel_t *k, rtcr_kobj_t **ret_irq);

void rtcr_kobj_ref(rtcr_kobj_t *o);
void rtcr_kobj_unref(rtcr_kobj_t **p); /* NULL-safe, NULLs *p */
/* -EIDRM if already deleted, -EINVAL for NULL or an object of another kernel */
int rtcr_kobj_delete(rtcr_kernel_t *k, rtcr_kobj_t *o);
enum rtcr_kobj_type rtcr_kobj_type_of(const rtcr_kobj_t *o);
bool rtcr_kobj_is_deleted(const rtcr_kobj_t *o);
/* A per-ECU unique, never-reused object id (for dumps and checkpoint identity). */
uint64_t rtcr_kobj_id(const rtcr_kobj_t *o);
/* What the object is, for dumps ("LOG session 'brake'"); copied, may be NULL. The string
 * returned by rtcr_kobj_name() is borrowed until the next set_name or the object's end. */
void rtcr_kobj_set_name(rtcr_kobj_t *o, const char *name);
const char *rtcr_kobj_name(const rtcr_kobj_t *o);
/* An opaque pointer for the owner (the agent's record of the object); not interpreted. */
void rtcr_kobj_set_user(rtcr_kobj_t *o, void *user);
void *rtcr_kobj_user(const rtcr_kobj_t *o);
/* The badge of a gate (its label); RTCR_BADGE_INVALID for other types. */
rtcr_badge_t rtcr_kobj_badge(const rtcr_kobj_t *o);
const char *rtcr_kobj_type_name(enum rtcr_kobj_type t); /* "task", "thread", "gate", "irq" */

/* ---- tasks and capability spaces --------------------------------------------------------- */

/* Put a capability to `obj` with `rights` into `slot` of `task` (core's direct install, used
 * when core sets up a PD and on restore). -EEXIST if occupied, -ERANGE, -EIDRM (task or obj
 * deleted), -EPROTOTYPE (task), -EINVAL (NULL, rights beyond RTCR_CAP_ALL). The new
 * capability is a root of the mapping tree. */
int rtcr_task_install(rtcr_kernel_t *k, rtcr_kobj_t *task, unsigned slot, rtcr_kobj_t *obj,
                      unsigned rights);
/* l4_task_map: copy the capability at `src_slot` of `src` into `dst_slot` of `dst`, with
 * rights = source rights & `rights`. Needs S on the source capability (-EPERM). With `grant`
 * the source slot is emptied (a move that keeps the capability's place in the mapping tree).
 * The copy is derived from the source. Errors: resolution of the source (-ERANGE, -ENOENT,
 * -EIDRM), -ERANGE/-EEXIST for the destination, -EPROTOTYPE, -EINVAL. */
int rtcr_task_map(rtcr_kernel_t *k, rtcr_kobj_t *dst, unsigned dst_slot, rtcr_kobj_t *src,
                  unsigned src_slot, unsigned rights, bool grant);
/* l4_task_unmap: remove the capability at `slot` and everything derived from it, in every
 * task. With `delete_obj` (L4_FP_DELETE_OBJ) the object is deleted too (needs D, -EPERM).
 * A stale capability is simply removed. -ENOENT if empty, -ERANGE. */
int rtcr_task_unmap(rtcr_kernel_t *k, rtcr_kobj_t *task, unsigned slot, bool delete_obj);
/* l4_task_cap_valid: 1 if the slot holds a live capability, 0 if empty or stale, <0 on error */
int rtcr_task_cap_valid(rtcr_kernel_t *k, rtcr_kobj_t *task, unsigned slot);
/* First free slot >= RTCR_USER_BASE_CAP (Cap_index_allocator::alloc_range, first fit);
 * -ENOSPC if none. Nothing is reserved: the slot is free until someone fills it. */
int rtcr_task_alloc_slot(rtcr_kernel_t *k, rtcr_kobj_t *task, unsigned *ret_slot);
/* Look up a slot: a new reference to the object (caller unrefs) and its rights. Errors as
 * resolution: -ERANGE, -ENOENT, -EIDRM. */
int rtcr_task_lookup(rtcr_kernel_t *k, rtcr_kobj_t *task, unsigned slot, rtcr_kobj_t **ret_obj,
                     unsigned *ret_rights);
/* The index of `thread` in its task's thread area (0 = main thread); -ENOENT if unbound,
 * -EINVAL if not a thread. */
int rtcr_thread_index(const rtcr_kobj_t *thread);
/* Bind `thread` into its task's thread area at the next free index: creates its gate (an RPC
 * gate with a new badge), pager and lock IRQ and installs them at RTCR_THREAD_SLOT(i, ...), as
 * Platform_pd::bind_thread. -EMLINK when RTCR_THREAD_MAX threads are bound (an index whose
 * three slots are occupied counts as taken). -EINVAL if the thread belongs to another task,
 * -EALREADY if it is bound. The three capabilities get RTCR_CAP_RWS. The pager is an unbound
 * RPC gate (own badge, named "pager of thread 'x'"): core's pager gate, whose server thread
 * does not exist in the emulation, so calls through it fail with -ENOTCONN. The lock IRQ is
 * attached to the thread with label 0, as Platform_thread does. */
int rtcr_task_bind_thread(rtcr_kernel_t *k, rtcr_kobj_t *task, rtcr_kobj_t *thread,
                          unsigned *ret_index);
/* Like rtcr_task_bind_thread at a given index (restore): -EEXIST if the index is taken. */
int rtcr_task_bind_thread_at(rtcr_kernel_t *k, rtcr_kobj_t *task, rtcr_kobj_t *thread,
                             unsigned index);
unsigned rtcr_task_used_slots(rtcr_kernel_t *k, rtcr_kobj_t *task);

/* One capability as seen by an iterator or a dump. */
typedef struct rtcr_cap_info {
    unsigned slot;            /* slot number */
    enum rtcr_kobj_type type; /* object type */
    rtcr_badge_t badge;       /* gate label, RTCR_BADGE_INVALID if not a gate */
    unsigned rights;          /* RTCR_CAP_* */
    bool stale;               /* object deleted */
    uint64_t object_id;       /* rtcr_kobj_id() */
    rtcr_kobj_t *object;      /* borrowed for the duration of the callback */
    const char *name;         /* rtcr_kobj_name(), borrowed */
} rtcr_cap_info_t;

/* Call fn for every occupied slot in ascending order, without the kernel lock held (the
 * slots are snapshotted first). A non-zero return from fn stops and is returned. */
int rtcr_task_foreach_cap(rtcr_kernel_t *k, rtcr_kobj_t *task,
                          int (*fn)(void *ctx, const rtcr_cap_info_t *cap), void *ctx);
/* Print the cap space as an operator reads it, one line per occupied slot, ascending:
 *   0x000201  0x0017a  GATE    LOG session 'brake'
 * i.e. "0x%06x  %-7s  %-6s  %s": slot, badge as 0x%05x or "-" if the object has none, type in
 * upper case, name ("-" if none); a stale capability ends in "  (deleted)". -EIO on a write
 * error. */
int rtcr_task_dump(rtcr_kernel_t *k, rtcr_kobj_t *task, FILE *out);

/* ---- IPC --------------------------------------------------------------------------------- */

/* Receive window of a thread (its buffer registers): `count` consecutive slots from `base` in
 * its task, where capabilities transferred to it are mapped: item k goes to slot base + k.
 * An occupied receive slot is overwritten: its capability is released (only that one; what
 * was derived from it stays, attached to its parent), as Genode re-allocates the window.
 * -EINVAL if count > RTCR_RCV_SLOTS_MAX, -ERANGE if the window leaves the space, -EACCES if it
 * starts below RTCR_USER_BASE_CAP. Count 0 (the default) accepts no capabilities. */
int rtcr_thread_set_rcv_window(rtcr_kernel_t *k, rtcr_kobj_t *thread, unsigned base,
                               unsigned count);
/* Serve IPC to `thread` by calling fn synchronously in the caller's context (how the agent
 * implements core's services). A thread with a handler never blocks: reply_and_wait and
 * irq_receive on it fail with -EINVAL. IRQs attached to it are delivered by calling fn with
 * req->tag.label == RTCR_PROTO_IRQ, no words, label = the attach label, in the pthread that
 * triggers (or unmasks) the IRQ; the reply is ignored. fn NULL returns the thread to the
 * blocking model. -EBUSY while the thread waits or has calls queued or unanswered. Received
 * capabilities land in the thread's receive window; concurrent calls to one handler thread
 * share that window, so a handler takes what it needs out of the window before returning. */
int rtcr_thread_set_handler(rtcr_kernel_t *k, rtcr_kobj_t *thread, rtcr_ipc_handler_fn fn,
                            void *ctx);

/* l4_ipc_call from `caller` (a thread) through the capability at `slot` of the caller's task:
 * send *msg, wait for the reply, which overwrites *msg. Capabilities in the request are mapped
 * into the server thread's receive window, those in the reply into the caller's. The server
 * sees label = gate badge | (cap rights & (S|W)). Needs R on the capability. `timeout_usec`
 * 0 = forever (it bounds the whole call; a handler call is not bounded). Returns 0 on success;
 * a handler's error comes back as the return value, *msg unchanged. Errors: resolution of
 * `slot` (-ERANGE, -ENOENT, -EIDRM), -EPROTOTYPE (not a gate), -EPERM (no R; no S on an item),
 * -EMSGSIZE, -EBADMSG, -ENOTCONN (unbound gate), -EDEADLK, -EBUSY (the caller already blocks),
 * -ETIMEDOUT, -EINTR (cancelled), -EPIPE (server, gate or caller deleted meanwhile). On
 * -ETIMEDOUT/-EINTR after the server received the request, its reply is dropped. */
int rtcr_ipc_call(rtcr_kernel_t *k, rtcr_kobj_t *caller, unsigned slot, rtcr_msg_t *msg,
                  uint64_t timeout_usec);
/* l4_ipc_reply_and_wait for a blocking server thread: send `reply` to the caller of the
 * previous request (if `reply` is non-NULL and one is pending), then wait for the next request
 * or IRQ to this thread. On return *ret_msg holds it and *ret_label the delivered label. An
 * IRQ delivery has tag.label RTCR_PROTO_IRQ and no words. A reply whose caller has gone
 * (timeout, cancel, deletion) is dropped; a NULL reply while a request is unanswered fails
 * that caller with -EPIPE; an invalid reply (-EMSGSIZE, -EBADMSG, -EPERM, ...) is returned
 * without waiting and the caller stays pending. -EBUSY if the thread already waits, -EINVAL
 * for a handler thread, -ETIMEDOUT, -EINTR, -EPIPE (the thread deleted while waiting). */
int rtcr_ipc_reply_and_wait(rtcr_kernel_t *k, rtcr_kobj_t *thread, const rtcr_msg_t *reply,
                            rtcr_msg_t *ret_msg, uint64_t *ret_label, uint64_t timeout_usec);
/* Wake a thread blocked in rtcr_ipc_reply_and_wait / rtcr_irq_receive / a blocking
 * rtcr_ipc_call with -EINTR (used when its process dies or is quiesced). If the thread is not
 * blocked, the cancel is latched and ends its next blocking wait, so a cancel that races with
 * the start of a wait is not lost. Returns 1 if the thread was blocked, 0 if latched. */
int rtcr_thread_cancel_wait(rtcr_kernel_t *k, rtcr_kobj_t *thread);

/* ---- IRQs (l4_irq_*) --------------------------------------------------------------------- */

/* Attach `thread` to the IRQ with `label` (4-aligned not required). -EBUSY if attached or a
 * chained master. A latched trigger is delivered once the thread waits. */
int rtcr_irq_attach(rtcr_kernel_t *k, rtcr_kobj_t *irq, uint64_t label, rtcr_kobj_t *thread);
/* -ENOTCONN if not attached. The pending bit survives; a thread blocked in rtcr_irq_receive
 * on it wakes with -ENOTCONN. */
int rtcr_irq_detach(rtcr_kernel_t *k, rtcr_kobj_t *irq);
/* Trigger: if the attached thread waits (reply_and_wait or irq_receive) and the IRQ is
 * unmasked, deliver now and mask; otherwise latch the pending bit (one bit: triggers while
 * pending coalesce). A chained master forwards to its slaves. */
int rtcr_irq_trigger(rtcr_kernel_t *k, rtcr_kobj_t *irq);
/* Unmask; a latched trigger is then delivered at the next wait. */
int rtcr_irq_unmask(rtcr_kernel_t *k, rtcr_kobj_t *irq);
/* l4_irq_receive: unmask, then wait for this IRQ only (the caller must be its attached thread,
 * else -EPERM; -ENOTCONN if unattached; -EINVAL for a handler thread). -ETIMEDOUT, -EINTR,
 * -EPIPE (IRQ or thread deleted), -ENOTCONN (detached meanwhile). */
int rtcr_irq_receive(rtcr_kernel_t *k, rtcr_kobj_t *irq, rtcr_kobj_t *thread,
                     uint64_t timeout_usec);
/* l4_irq_mux_chain: `slave` receives every trigger of `master`; a master with slaves must have
 * no attached thread (-EBUSY). One level: -EBUSY if the slave is chained already, -EINVAL if
 * master == slave, the master is a slave or the slave a master. Deleting either unchains. */
int rtcr_irq_chain(rtcr_kernel_t *k, rtcr_kobj_t *master, rtcr_kobj_t *slave);

/* State of an IRQ, for checkpoints and dumps. */
typedef struct rtcr_irq_state {
    bool attached;      /* a thread is attached */
    uint64_t label;     /* attach label */
    uint64_t thread_id; /* rtcr_kobj_id() of the attached thread, 0 if none */
    bool pending;       /* a trigger is latched */
    bool masked;        /* delivered and not yet unmasked */
    uint64_t triggers;  /* total triggers (statistics) */
} rtcr_irq_state_t;
int rtcr_irq_state(rtcr_kernel_t *k, rtcr_kobj_t *irq, rtcr_irq_state_t *ret_state);
/* Restore a latched pending bit and mask state (restore only). */
int rtcr_irq_set_state(rtcr_kernel_t *k, rtcr_kobj_t *irq, bool pending, bool masked);

#endif
