/* rtcr/croot.h — the component root: the part of a component's memory its parent reads and
 * rewrites.
 *
 * The root lives at the start of the component's first RAM dataspace, whose address the
 * component reports through the PD session (cap_space_info), as proposed for Genode on the
 * mailing list. It holds two flat tables without pointers, so the parent can interpret and
 * patch them from a checkpoint image alone:
 *   cap map      capmap[kcap] = badge of the object the component holds in that slot (0: none)
 *                (Genode's Cap_index array indexed by slot: kcap = index << 12)
 *   object pool  the component's local RPC objects: badge -> serving entrypoint, handler, ctx
 *                (Genode's Object_pool, keyed by badge)
 * After a restore the parent rewrites every old badge in both tables to the new one; nothing
 * else in the component refers to badges. Everything after the tables belongs to the
 * component library (environment, entrypoints, heap).
 */
#ifndef RTCR_CROOT_H
#define RTCR_CROOT_H

#include <stdint.h>

#include <rtcr/kernel.h>

#define RTCR_CROOT_MAGIC   0x544f4f5252435452ull /* "RTCRROOT" */
#define RTCR_CROOT_VERSION 1u
#define RTCR_POOL_MAX      256 /* local RPC objects per component */

/* capmap flags */
#define RTCR_CAPMAP_RESERVED 0xffffffffu /* slot reserved as a receive window, no cap yet */

struct rtcr_pool_entry {
    uint32_t badge; /* badge of the RPC object, 0 = free entry */
    uint32_t kcap;  /* slot of its capability in the component */
    uint32_t ep;    /* thread index of the serving entrypoint */
    uint32_t magic; /* RTCR_POOL_ENTRY_MAGIC while in use */
    uint64_t fn;    /* handler (code address: identical after restore) */
    uint64_t ctx;   /* handler context (heap address: identical after restore) */
};
#define RTCR_POOL_ENTRY_MAGIC 0x4f424a31u /* "OBJ1" */

struct rtcr_croot {
    uint64_t magic;                             /* RTCR_CROOT_MAGIC */
    uint32_t version;                           /* RTCR_CROOT_VERSION */
    uint32_t size;                              /* bytes of the root, tables included */
    uint32_t capmap[RTCR_CAP_SLOTS];            /* kcap -> badge, 0 none, RESERVED window */
    struct rtcr_pool_entry pool[RTCR_POOL_MAX]; /* object pool */
};

#endif
