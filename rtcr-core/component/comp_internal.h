/* comp_internal.h — the component library's private structures (not a public header).
 *
 * Two kinds of state:
 *   - process state (struct comp_proc, one static instance): how this process reaches the
 *     agent — the UTCB area mapping, the pool fd, where the root is. Rebuilt by every process
 *     at start; never checkpointed.
 *   - component state: the root dataspace (struct rtcr_croot, then struct rtcr_env) and the
 *     heap. Lives in RAM dataspaces, so it is checkpointed and restored at the same address.
 */
#ifndef RTCR_COMP_INTERNAL_H
#define RTCR_COMP_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <rtcr/component.h>
#include <rtcr/croot.h>
#include <rtcr/kernel.h>
#include <rtcr/rpc.h>
#include <rtcr/utcb.h>

#define COMP_ROOT_SIZE   (64u * 1024) /* the root dataspace */
#define COMP_HEAP_CHUNK  (64u * 1024) /* minimum heap dataspace */
#define COMP_HEAP_CHUNKS 64           /* heap dataspaces at most */
#define COMP_ENV_MAGIC   0x31564e45u  /* "ENV1" */
#define COMP_EP_MAGIC    0x31205045u  /* "EP 1" */
#define COMP_SIG_MAGIC   0x31474953u  /* "SIG1" */

struct rtcr_ep {
    uint32_t magic;        /* COMP_EP_MAGIC while in use */
    uint32_t index;        /* thread index in the PD's thread area */
    uint64_t source_id;    /* the entrypoint's signal source */
    rtcr_cap_t source_irq; /* its IRQ (attached to this thread by core) */
    char name[32];         /* thread name */
    struct rtcr_env *env;  /* back pointer (heap address) */
};

/* A signal handler record; its address is the signal context's imprint. */
struct comp_sigrec {
    uint32_t magic;    /* COMP_SIG_MAGIC */
    uint32_t ep;       /* dispatching entrypoint's thread index */
    rtcr_signal_fn fn; /* handler */
    void *ctx;         /* its context */
};

struct heap_chunk {
    uint64_t addr; /* attached at */
    uint64_t size; /* bytes */
    rtcr_cap_t ds; /* dataspace capability */
};

struct rtcr_env {
    uint32_t magic;                             /* COMP_ENV_MAGIC */
    char name[64];                              /* component name (label) */
    rtcr_cap_t pd, cpu, ram, rm;                /* environment sessions */
    rtcr_cap_t log;                             /* LOG session, 0 until first use */
    rtcr_cap_t root_ds;                         /* the root dataspace */
    pthread_mutex_t lock;                       /* protects capmap allocation, pool, heap */
    struct rtcr_ep eps[RTCR_THREAD_MAX];        /* entrypoints by thread index */
    struct heap_chunk chunks[COMP_HEAP_CHUNKS]; /* heap dataspaces */
    unsigned n_chunks;                          /* used entries of chunks */
    void *free_list;                            /* heap free blocks, address order */
    void *user_root;                            /* rtcr_env_set_root */
};

struct comp_proc {
    void *utcb_base;         /* UTCB area mapping */
    size_t utcb_size;        /* its size */
    int pool_fd;             /* RAM pool memfd */
    struct rtcr_croot *root; /* the root, once attached */
    uint32_t *capmap;        /* boot map before the root exists, then root->capmap */
    struct rtcr_env *env;    /* the environment */
};
extern struct comp_proc comp_proc;

/* the calling thread's UTCB */
rtcr_utcb_t *comp_utcb(void);
void comp_set_thread(unsigned index);

/* capability slots */
int comp_slot_reserve(unsigned *ret_slot);
void comp_slot_release(unsigned slot);

/* Call `cap` with *msg; with `want_cap` one receive slot is reserved and the received cap's
 * badge (word 1 of the reply) recorded. Returns the RPC result (mr[0]) or an IPC error;
 * *ret_slot gets the received slot (if want_cap). */
int comp_call(rtcr_cap_t cap, rtcr_msg_t *msg, bool want_cap, rtcr_cap_t *ret_slot);
/* Map a dataspace given its pool offset at `addr` (MAP_FIXED inside the AS window). */
int comp_map(uint64_t addr, uint64_t size, uint64_t pool_off, unsigned flags);
int comp_attach(rtcr_env_t *env, rtcr_cap_t ds, uint64_t size, uint64_t at, unsigned flags,
                uint64_t *ret_addr);

/* entrypoint loop (never returns) */
void comp_ep_loop(struct rtcr_ep *ep) __attribute__((noreturn));
int comp_ep_init(rtcr_env_t *env, unsigned index, const char *name);
void *comp_ep_thread(void *ep);

#endif
