/* rtcr/component.h — the component API: what a target links against.
 *
 * In the spirit of Genode's base API: a component provides rtcr_component_construct(), which
 * runs once on a fresh start; afterwards everything happens in handlers run by its
 * entrypoints — signal handlers (timer, IRQ, user signals) and RPC handlers of its own RPC
 * objects. The main thread is the first entrypoint; more can be created. A capability is a
 * kcap slot number (rtcr_cap_t).
 *
 * State that must survive a checkpoint/restore lives in the component heap (rtcr_heap_alloc),
 * which is carved from RAM dataspaces at fixed addresses: pointers into it, and pointers to
 * code (the binary is static and not position independent, started without address-space
 * randomisation), stay valid in a restored incarnation. Static and global variables, libc's
 * malloc, stdio buffers and thread stacks are NOT preserved: a restored component continues
 * with every entrypoint idle, waiting for its next event, and its construct is not run again.
 *
 * Every function returns >= 0 on success or -errno; the library never prints.
 */
#ifndef RTCR_COMPONENT_H
#define RTCR_COMPONENT_H

#include <stddef.h>
#include <stdint.h>

typedef unsigned rtcr_cap_t;        /* a capability: slot in the component's cap space */
typedef struct rtcr_env rtcr_env_t; /* the component's environment (lives in its heap) */
typedef struct rtcr_ep rtcr_ep_t;   /* an entrypoint (lives in its heap) */

/* Provided by the component: called once, on the main entrypoint, on a fresh start. */
void rtcr_component_construct(rtcr_env_t *env);

/* ---- environment ------------------------------------------------------------------------ */
const char *rtcr_env_name(const rtcr_env_t *env); /* the component's name (its label) */
rtcr_ep_t *rtcr_env_ep(rtcr_env_t *env);          /* the main entrypoint */
/* The component's root object (the pointer it registered; NULL if none): handy for tools. */
void rtcr_env_set_root(rtcr_env_t *env, void *root);
void *rtcr_env_root(const rtcr_env_t *env);
/* RAM quota and use of the component (RAM session). */
int rtcr_env_ram(rtcr_env_t *env, uint64_t *ret_quota, uint64_t *ret_used);
/* Leave: tell the parent and exit the process. */
void rtcr_env_exit(rtcr_env_t *env, int code) __attribute__((noreturn));

/* ---- heap (RAM dataspaces from the component's RAM session) ----------------------------- */
void *rtcr_heap_alloc(rtcr_env_t *env, size_t size); /* zeroed; NULL if the quota is exhausted */
void rtcr_heap_free(rtcr_env_t *env, void *p);       /* NULL-safe */

/* ---- RAM dataspaces and the address space ------------------------------------------------ */
/* Allocate a dataspace of `size` bytes and attach it writable; *ret_ds is its capability. */
int rtcr_ram_alloc_attach(rtcr_env_t *env, size_t size, rtcr_cap_t *ret_ds, void **ret_addr);
/* Detach and free a dataspace made by rtcr_ram_alloc_attach. */
int rtcr_ram_free(rtcr_env_t *env, rtcr_cap_t ds, void *addr);

/* ---- LOG ---------------------------------------------------------------------------------- */
/* Write a line to the component's LOG session (opened on first use, labelled with the name). */
int rtcr_log(rtcr_env_t *env, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- entrypoints and signals -------------------------------------------------------------- */
/* A new entrypoint: a thread bound into the PD's thread area (its gate, pager and lock IRQ
 * occupy three slots from 9), serving signals and RPC objects assigned to it. */
int rtcr_ep_create(rtcr_env_t *env, const char *name, rtcr_ep_t **ret_ep);
unsigned rtcr_ep_thread_index(const rtcr_ep_t *ep);

typedef void (*rtcr_signal_fn)(void *ctx, unsigned count);
/* A signal handler dispatched by `ep`: returns the capability of its signal context (give it
 * to a Timer or IRQ session, or submit to it). `ctx` should point into the heap. */
int rtcr_signal_handler(rtcr_ep_t *ep, rtcr_signal_fn fn, void *ctx, rtcr_cap_t *ret_sigh);
int rtcr_signal_submit(rtcr_env_t *env, rtcr_cap_t sigh, unsigned count);

/* ---- RPC objects -------------------------------------------------------------------------- */
#define RTCR_RPC_ARGS_MAX 32 /* argument / result words per call */
/* An RPC handler: `op` >= RTCR_RPC_USER (rtcr/rpc.h), args in, results out (*ret_n words, at
 * most RTCR_RPC_ARGS_MAX); return >= 0 or -errno (delivered to the caller). */
typedef int (*rtcr_rpc_fn)(void *ctx, uint64_t op, const uint64_t *args, unsigned nargs,
                           uint64_t *ret, unsigned *ret_n);
/* A local RPC object served by `ep`; *ret_cap is a capability to it (PD alloc_rpc_cap). */
int rtcr_rpc_obj_create(rtcr_ep_t *ep, rtcr_rpc_fn fn, void *ctx, rtcr_cap_t *ret_cap);
/* Call an RPC object. Returns the handler's result; results in ret[0..*ret_n-1]. */
int rtcr_rpc_call(rtcr_env_t *env, rtcr_cap_t obj, uint64_t op, const uint64_t *args,
                  unsigned nargs, uint64_t *ret, unsigned max_ret, unsigned *ret_n);

/* ---- Timer --------------------------------------------------------------------------------- */
int rtcr_timer_open(rtcr_env_t *env, rtcr_cap_t *ret_timer);
int rtcr_timer_sigh(rtcr_env_t *env, rtcr_cap_t timer, rtcr_cap_t sigh);
int rtcr_timer_periodic(rtcr_env_t *env, rtcr_cap_t timer, uint64_t usec); /* 0 stops */
int rtcr_timer_oneshot(rtcr_env_t *env, rtcr_cap_t timer, uint64_t usec);
int rtcr_timer_now(rtcr_env_t *env, rtcr_cap_t timer, uint64_t *ret_usec);

/* ---- IRQ ------------------------------------------------------------------------------------ */
/* An IRQ session on simulated interrupt `line`; interrupts arrive as signals at `sigh` and
 * the next one is delivered only after rtcr_irq_ack (a pending one is latched meanwhile). */
int rtcr_irq_open(rtcr_env_t *env, unsigned line, rtcr_cap_t *ret_irq);
int rtcr_irq_sigh(rtcr_env_t *env, rtcr_cap_t irq, rtcr_cap_t sigh);
int rtcr_irq_ack(rtcr_env_t *env, rtcr_cap_t irq);

/* ---- ROM ------------------------------------------------------------------------------------ */
/* Open ROM module `name` and attach its content read-only. */
int rtcr_rom_attach(rtcr_env_t *env, const char *name, const void **ret_data, size_t *ret_size);

/* ---- raw access (for tests and unusual components) ----------------------------------------- */
/* Open a session of `service` (enum rtcr_service) with Genode-style `args`. */
int rtcr_session_open(rtcr_env_t *env, unsigned service, const char *args, rtcr_cap_t *ret_cap);
/* Call capability `cap` with a raw message (rtcr/kernel.h rtcr_msg_t, rtcr/rpc.h helpers);
 * the reply replaces *msg. Returns the IPC result (not the RPC result in mr[0]). */
struct rtcr_msg;
int rtcr_raw_call(rtcr_env_t *env, rtcr_cap_t cap, struct rtcr_msg *msg);
/* The badge the component's cap map records for `cap` (0 if none). */
uint32_t rtcr_capmap_badge(const rtcr_env_t *env, rtcr_cap_t cap);

#endif
