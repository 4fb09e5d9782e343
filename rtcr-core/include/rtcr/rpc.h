/* rtcr/rpc.h — the RPC interfaces between a component and its parent (the agent), modelled on
 * Genode's session interfaces (Parent, Pd_session, Cpu_session, Ram_session, Region_map,
 * Rom_session, Log_session, Timer::Session, Irq_session, Signal_source).
 *
 * Message format, as Genode's ipc.cc on Fiasco.OC but without the protocol word (the kernel
 * delivers the invoked object's badge as the label, which is all the protocol word carried):
 *   request: mr[0] = opcode (RTCR_RPC_*), mr[1..] = arguments; capability arguments travel as
 *            map items after the words (see rtcr_msg_t);
 *   reply:   mr[0] = result (int64: 0 or -errno), mr[1..] = results; each returned capability
 *            travels as a map item and its badge is also returned as a word, so the component
 *            can keep its cap map (kcap -> badge) without asking anyone.
 * Strings are a length word followed by the bytes packed 8 per word (little endian).
 *
 * Both sides include this file: the component library (static, libc only) and librtcr.
 */
#ifndef RTCR_RPC_H
#define RTCR_RPC_H

#include <errno.h>
#include <stdint.h>
#include <string.h>

#include <rtcr/kernel.h>

/* Services a component can ask its parent for (Parent::session). */
enum rtcr_service {
    RTCR_SVC_PD = 0,
    RTCR_SVC_CPU,
    RTCR_SVC_RAM,
    RTCR_SVC_RM,
    RTCR_SVC_ROM,
    RTCR_SVC_LOG,
    RTCR_SVC_TIMER,
    RTCR_SVC_IRQ,
    RTCR_SVC_MAX
};

/* Opcodes; one range per interface so a stray call on the wrong object is detected. */
enum rtcr_rpc_op {
    /* Parent (slot RTCR_PARENT_CAP) */
    RTCR_RPC_PARENT_SESSION = 0x100, /* (service, str args) -> session cap, badge */
    RTCR_RPC_PARENT_UPGRADE,         /* (session cap, str args) -> 0 */
    RTCR_RPC_PARENT_CLOSE,           /* (session cap) -> 0 */
    RTCR_RPC_PARENT_EXIT,            /* (code) -> never returns normally */
    RTCR_RPC_PARENT_CONSTRUCTED,     /* () -> 0: construct finished, bootstrap over */
    RTCR_RPC_PARENT_RESUME_INFO,     /* () -> mode, root address (see rtcr_comp_root) */
    RTCR_RPC_PARENT_REGION,          /* (i) -> address, size, pool offset, flags | -ENOENT */
    /* PD session */
    RTCR_RPC_PD_ALLOC_RPC_CAP = 0x200, /* (ep thread index) -> gate cap, badge */
    RTCR_RPC_PD_FREE_RPC_CAP,          /* (gate cap) -> 0 */
    RTCR_RPC_PD_ALLOC_SIGNAL_SOURCE,   /* (ep thread index) -> source irq cap, source id */
    RTCR_RPC_PD_ALLOC_CONTEXT,         /* (source id, imprint) -> context cap, badge */
    RTCR_RPC_PD_FREE_CONTEXT,          /* (context cap) -> 0 */
    RTCR_RPC_PD_SUBMIT,                /* (context cap, count) -> 0 */
    RTCR_RPC_PD_WAIT_FOR_SIGNAL,       /* (source id) -> imprint, count (count 0: none) */
    RTCR_RPC_PD_CAP_SPACE_INFO,        /* (root address, root size) -> 0 */
    /* CPU session */
    RTCR_RPC_CPU_CREATE_THREAD = 0x300, /* (str name) -> thread index */
    /* RAM session */
    RTCR_RPC_RAM_ALLOC = 0x400, /* (size) -> ds cap, badge, size, pool offset */
    RTCR_RPC_RAM_FREE,          /* (ds cap) -> 0 */
    RTCR_RPC_RAM_QUOTA,         /* () -> quota, used */
    /* RM session (the PD's address space) */
    RTCR_RPC_RM_ATTACH =
        0x500,          /* (ds cap, size, offset, at (0 = any), flags) -> address, pool off */
    RTCR_RPC_RM_DETACH, /* (address) -> size */
    /* ROM session */
    RTCR_RPC_ROM_DATASPACE = 0x600, /* () -> ds cap, badge, ds size, content length */
    /* LOG session */
    RTCR_RPC_LOG_WRITE = 0x700, /* (str line) -> 0 */
    /* Timer session */
    RTCR_RPC_TIMER_SIGH = 0x800,     /* (context cap) -> 0 */
    RTCR_RPC_TIMER_TRIGGER_ONCE,     /* (usec) -> 0 */
    RTCR_RPC_TIMER_TRIGGER_PERIODIC, /* (usec, 0 = stop) -> 0 */
    RTCR_RPC_TIMER_NOW,              /* () -> monotonic usec since session creation */
    /* IRQ session */
    RTCR_RPC_IRQ_SIGH = 0x900, /* (context cap) -> 0 */
    RTCR_RPC_IRQ_ACK,          /* () -> 0 */
    RTCR_RPC_IRQ_INFO,         /* () -> line */
    /* component-local RPC objects start here (rtcr_rpc_obj_create) */
    RTCR_RPC_USER = 0x10000,
};

/* RM attach flags */
#define RTCR_RM_WRITABLE   (1u << 0)
#define RTCR_RM_EXECUTABLE (1u << 1)

/* The component's address space: dataspaces are attached inside this window, which the
 * component reserves at start so that nothing else is ever placed there. Identical on every
 * ECU, so pointers into dataspaces stay valid after a restore. */
#define RTCR_AS_BASE 0x200000000000ull
#define RTCR_AS_SIZE (64ull << 30)

/* Limits on strings in messages (bytes, without terminator). */
#define RTCR_RPC_STR_MAX      400
#define RTCR_SESSION_ARGS_MAX 160 /* Genode's Session_args (String<160>) */

/* File descriptors a target process is started with. */
#define RTCR_FD_UTCB   3 /* memfd: the UTCB area, one UTCB per thread */
#define RTCR_FD_POOL   4 /* memfd: the RAM pool holding every dataspace of the target */
#define RTCR_FD_PARENT 5 /* unix seqpacket socket to the agent (uffd hand-over, liveness) */
#define RTCR_ENV_MODE  "RTCR_MODE" /* "fresh" or "restore" */

/* ---- message helpers (bounds-checked; a failed put/get returns -EMSGSIZE/-EBADMSG) ---- */

static inline void rtcr_msg_init(rtcr_msg_t *m, uint64_t op)
{
    memset(&m->tag, 0, sizeof(m->tag));
    m->mr[0] = op;
    m->tag.words = 1;
}

static inline int rtcr_msg_put(rtcr_msg_t *m, uint64_t w)
{
    if (m->tag.items != 0 || m->tag.words >= RTCR_MSG_WORDS)
        return -EMSGSIZE;
    m->mr[m->tag.words++] = w;
    return 0;
}

static inline int rtcr_msg_put_str(rtcr_msg_t *m, const char *s)
{
    size_t len = strlen(s);
    size_t nw = (len + 7) / 8;
    if (len > RTCR_RPC_STR_MAX || m->tag.items != 0 || m->tag.words + 1 + nw > RTCR_MSG_WORDS)
        return -EMSGSIZE;
    m->mr[m->tag.words++] = len;
    memset(&m->mr[m->tag.words], 0, nw * 8);
    memcpy(&m->mr[m->tag.words], s, len);
    m->tag.words += (uint8_t)nw;
    return 0;
}

/* Append a capability item naming `slot` of the sender's task; `grant` moves it. Items must
 * come after all words. */
static inline int rtcr_msg_put_cap(rtcr_msg_t *m, unsigned slot, unsigned rights, int grant)
{
    if (m->tag.words + 2 * (m->tag.items + 1) > RTCR_MSG_WORDS)
        return -EMSGSIZE;
    unsigned at = m->tag.words + 2u * m->tag.items;
    m->mr[at] = RTCR_ITEM_MAP | (grant ? RTCR_MAP_GRANT : 0);
    m->mr[at + 1] = rtcr_obj_fpage(slot, rights);
    m->tag.items++;
    return 0;
}

/* Word `i` of a received message (0 = opcode / result). */
static inline int rtcr_msg_get(const rtcr_msg_t *m, unsigned i, uint64_t *ret)
{
    if (i >= m->tag.words || i >= RTCR_MSG_WORDS)
        return -EBADMSG;
    *ret = m->mr[i];
    return 0;
}

/* String starting at word *pos; advances *pos. buf gets a NUL-terminated copy. */
static inline int rtcr_msg_get_str(const rtcr_msg_t *m, unsigned *pos, char *buf, size_t bufsz)
{
    uint64_t len;
    if (rtcr_msg_get(m, *pos, &len) < 0)
        return -EBADMSG;
    if (len > RTCR_RPC_STR_MAX || len + 1 > bufsz)
        return -EBADMSG;
    size_t nw = (size_t)((len + 7) / 8);
    /* the tag's word count comes from the sender: bound by the registers that exist too */
    if (*pos + 1 + nw > m->tag.words || *pos + 1 + nw > RTCR_MSG_WORDS)
        return -EBADMSG;
    memcpy(buf, &m->mr[*pos + 1], (size_t)len);
    buf[len] = '\0';
    if (memchr(buf, '\0', (size_t)len) != NULL)
        return -EBADMSG; /* embedded NUL */
    *pos += 1 + (unsigned)nw;
    return 0;
}

/* Receive slot of delivered item `i` (the kernel rewrote the fpage to the receive slot). */
static inline int rtcr_msg_get_cap(const rtcr_msg_t *m, unsigned i, unsigned *ret_slot)
{
    if (i >= m->tag.items || m->tag.words + 2u * (i + 1) > RTCR_MSG_WORDS)
        return -EBADMSG;
    *ret_slot = rtcr_fpage_slot(m->mr[m->tag.words + 2 * i + 1]);
    return 0;
}

#endif
