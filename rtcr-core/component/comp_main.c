/* comp_main.c — start of a component process, its calls to the parent, cap map and heap.
 *
 * main() is here: a target binary provides only rtcr_component_construct(). On a fresh start
 * the library opens the environment sessions (PD, RAM, RM, CPU) through the parent at slot 8,
 * allocates the root dataspace at the start of the address-space window, reports it through
 * the PD session (cap_space_info), creates the main entrypoint's signal source, runs
 * construct and then serves the main entrypoint forever.
 *
 * In restore mode (RTCR_MODE=restore) the agent has already recreated every kernel object
 * and capability and refilled the dataspaces: the library asks the parent where the root is
 * and which regions to map, maps them at their old addresses, restarts the other
 * entrypoints' threads idle, and serves — construct is not run again.
 *
 * The cap map is kept in the root (rtcr/croot.h): every capability the component receives is
 * recorded there with its badge; receive windows are single slots allocated first-fit from
 * RTCR_USER_BASE_CAP, as Genode's Cap_index_allocator does.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <rtcr/dirty.h>

#include "comp_internal.h"

struct comp_proc comp_proc = {.pool_fd = RTCR_FD_POOL};

static uint32_t boot_capmap[RTCR_CAP_SLOTS]; /* until the root exists */
static pthread_mutex_t boot_lock = PTHREAD_MUTEX_INITIALIZER;
static __thread rtcr_utcb_t *my_utcb;

rtcr_utcb_t *comp_utcb(void)
{
    return my_utcb;
}

void comp_set_thread(unsigned index)
{
    my_utcb = rtcr_utcb_area_at(comp_proc.utcb_base, index);
    if (!my_utcb)
        abort();
}

/* The cap map's allocation lock is process-local (never in checkpointed memory) and separate
 * from the environment lock, which the heap holds while it calls out to grow. */
static pthread_mutex_t *cap_lock(void)
{
    return &boot_lock;
}

/* ---- cap map ------------------------------------------------------------------------------ */

int comp_slot_reserve(unsigned *ret_slot)
{
    pthread_mutex_t *l = cap_lock();
    pthread_mutex_lock(l);
    for (unsigned s = RTCR_USER_BASE_CAP; s < RTCR_CAP_SLOTS; s++)
        if (comp_proc.capmap[s] == 0) {
            comp_proc.capmap[s] = RTCR_CAPMAP_RESERVED;
            pthread_mutex_unlock(l);
            *ret_slot = s;
            return 0;
        }
    pthread_mutex_unlock(l);
    return -ENOSPC;
}

void comp_slot_release(unsigned slot)
{
    if (slot < RTCR_CAP_SLOTS)
        __atomic_store_n(&comp_proc.capmap[slot], 0, __ATOMIC_RELEASE);
}

uint32_t rtcr_capmap_badge(const rtcr_env_t *env, rtcr_cap_t cap)
{
    (void)env;
    if (cap >= RTCR_CAP_SLOTS || comp_proc.capmap[cap] == RTCR_CAPMAP_RESERVED)
        return 0;
    return comp_proc.capmap[cap];
}

/* ---- calls -------------------------------------------------------------------------------- */

static int invoke_call(rtcr_cap_t cap, rtcr_msg_t *msg, unsigned rcv_slot)
{
    rtcr_utcb_t *u = my_utcb;
    u->op = RTCR_UTCB_OP_CALL;
    u->dest = cap;
    u->timeout_usec = 0;
    u->rcv_base = rcv_slot;
    u->rcv_count = rcv_slot ? 1 : 0;
    unsigned n = msg->tag.words + 2u * msg->tag.items;
    u->msg.tag = msg->tag;
    memcpy(u->msg.mr, msg->mr, (n > RTCR_MSG_WORDS ? RTCR_MSG_WORDS : n) * sizeof(uint64_t));
    int r = rtcr_utcb_invoke(u);
    if (r < 0)
        return r;
    msg->tag = u->msg.tag;
    n = msg->tag.words + 2u * msg->tag.items;
    memcpy(msg->mr, u->msg.mr, (n > RTCR_MSG_WORDS ? RTCR_MSG_WORDS : n) * sizeof(uint64_t));
    return r;
}

int comp_call(rtcr_cap_t cap, rtcr_msg_t *msg, bool want_cap, rtcr_cap_t *ret_slot)
{
    unsigned slot = 0;
    int r;
    if (want_cap && (r = comp_slot_reserve(&slot)) < 0)
        return r;
    r = invoke_call(cap, msg, slot);
    if (r >= 0)
        r = msg->tag.words ? (int)(int64_t)msg->mr[0] : -EBADMSG;
    if (want_cap) {
        unsigned got;
        uint64_t badge;
        if (r >= 0 && msg->tag.items == 1 && rtcr_msg_get_cap(msg, 0, &got) == 0 && got == slot &&
            rtcr_msg_get(msg, 1, &badge) == 0 && badge != 0 && badge != RTCR_CAPMAP_RESERVED) {
            __atomic_store_n(&comp_proc.capmap[slot], (uint32_t)badge, __ATOMIC_RELEASE);
            *ret_slot = slot;
        } else {
            comp_slot_release(slot);
            if (r >= 0)
                r = -EBADMSG;
        }
    }
    return r;
}

int rtcr_raw_call(rtcr_env_t *env, rtcr_cap_t cap, struct rtcr_msg *msg)
{
    (void)env;
    return invoke_call(cap, msg, 0);
}

/* ---- memory ------------------------------------------------------------------------------- */

int comp_map(uint64_t addr, uint64_t size, uint64_t pool_off, unsigned flags)
{
    if (addr < RTCR_AS_BASE || size == 0 || addr - RTCR_AS_BASE > RTCR_AS_SIZE - size)
        return -ERANGE;
    int prot = PROT_READ | ((flags & RTCR_RM_WRITABLE) ? PROT_WRITE : 0) |
               ((flags & RTCR_RM_EXECUTABLE) ? PROT_EXEC : 0);
    void *p = mmap((void *)(uintptr_t)addr, size, prot, MAP_SHARED | MAP_FIXED, comp_proc.pool_fd,
                   (off_t)pool_off);
    return p == MAP_FAILED ? -errno : 0;
}

int comp_attach(rtcr_env_t *env, rtcr_cap_t ds, uint64_t size, uint64_t at, unsigned flags,
                uint64_t *ret_addr)
{
    rtcr_msg_t m;
    rtcr_msg_init(&m, RTCR_RPC_RM_ATTACH);
    rtcr_msg_put(&m, ds);
    rtcr_msg_put(&m, size);
    rtcr_msg_put(&m, 0);
    rtcr_msg_put(&m, at);
    rtcr_msg_put(&m, flags);
    int r = comp_call(env->rm, &m, false, NULL);
    if (r < 0)
        return r;
    uint64_t addr, off;
    if (rtcr_msg_get(&m, 1, &addr) < 0 || rtcr_msg_get(&m, 2, &off) < 0)
        return -EBADMSG;
    if (size == 0)
        return -EINVAL;
    r = comp_map(addr, size, off, flags);
    if (r < 0)
        return r;
    *ret_addr = addr;
    return 0;
}

/* RAM_ALLOC: a dataspace capability and its size */
static int ram_alloc(rtcr_cap_t ram, size_t size, rtcr_cap_t *ret_ds, uint64_t *ret_size)
{
    rtcr_msg_t m;
    rtcr_msg_init(&m, RTCR_RPC_RAM_ALLOC);
    rtcr_msg_put(&m, size);
    int r = comp_call(ram, &m, true, ret_ds);
    if (r < 0)
        return r;
    return rtcr_msg_get(&m, 2, ret_size);
}

int rtcr_ram_alloc_attach(rtcr_env_t *env, size_t size, rtcr_cap_t *ret_ds, void **ret_addr)
{
    rtcr_cap_t ds;
    uint64_t dsize, addr;
    int r = ram_alloc(env->ram, size, &ds, &dsize);
    if (r < 0)
        return r;
    r = comp_attach(env, ds, dsize, 0, RTCR_RM_WRITABLE, &addr);
    if (r < 0) {
        rtcr_msg_t m;
        rtcr_msg_init(&m, RTCR_RPC_RAM_FREE);
        rtcr_msg_put(&m, ds);
        comp_call(env->ram, &m, false, NULL);
        return r;
    }
    *ret_ds = ds;
    *ret_addr = (void *)(uintptr_t)addr;
    return 0;
}

int rtcr_ram_free(rtcr_env_t *env, rtcr_cap_t ds, void *addr)
{
    rtcr_msg_t m;
    rtcr_msg_init(&m, RTCR_RPC_RM_DETACH);
    rtcr_msg_put(&m, (uint64_t)(uintptr_t)addr);
    int r = comp_call(env->rm, &m, false, NULL);
    if (r < 0)
        return r;
    /* give the range back to the reservation so that nothing else lands there */
    uint64_t size;
    if (rtcr_msg_get(&m, 1, &size) == 0 && size)
        mmap(addr, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
    rtcr_msg_init(&m, RTCR_RPC_RAM_FREE);
    rtcr_msg_put(&m, ds);
    r = comp_call(env->ram, &m, false, NULL);
    if (r < 0)
        return r;
    /* the capability is gone (its gate was deleted): forget it */
    comp_slot_release(ds);
    return 0;
}

/* ---- heap: first fit over an address-ordered free list, coalescing on free ----------------- */

struct blk {
    uint64_t size;  /* bytes of the block including this header */
    uint32_t magic; /* BLK_FREE or BLK_USED */
    uint32_t pad;   /* keeps the header 16 bytes, so payloads are 16-aligned */
};
struct fblk {
    struct blk h;      /* header */
    struct fblk *next; /* next free block, ascending address */
};
#define BLK_FREE 0x45455246u /* "FREE" */
#define BLK_USED 0x44455355u /* "USED" */
#define BLK_MIN  sizeof(struct fblk)

static void heap_insert(rtcr_env_t *env, struct fblk *b)
{
    struct fblk **pp = (struct fblk **)&env->free_list;
    while (*pp && *pp < b)
        pp = &(*pp)->next;
    b->h.magic = BLK_FREE;
    b->next = *pp;
    *pp = b;
    /* coalesce with the next, then with the previous */
    if (b->next && (char *)b + b->h.size == (char *)b->next) {
        b->h.size += b->next->h.size;
        b->next = b->next->next;
    }
    struct fblk *prev = NULL;
    for (struct fblk *p = env->free_list; p && p != b; p = p->next)
        prev = p;
    if (prev && (char *)prev + prev->h.size == (char *)b) {
        prev->h.size += b->h.size;
        prev->next = b->next;
    }
}

static int heap_grow(rtcr_env_t *env, size_t need)
{
    if (env->n_chunks >= COMP_HEAP_CHUNKS)
        return -ENOSPC;
    size_t size =
        need + sizeof(struct blk) > COMP_HEAP_CHUNK ? need + sizeof(struct blk) : COMP_HEAP_CHUNK;
    rtcr_cap_t ds;
    void *addr;
    int r = rtcr_ram_alloc_attach(env, size, &ds, &addr);
    if (r < 0)
        return r;
    size = (size + 4095) & ~(size_t)4095;
    struct heap_chunk *c = &env->chunks[env->n_chunks++];
    c->addr = (uint64_t)(uintptr_t)addr;
    c->size = size;
    c->ds = ds;
    struct fblk *b = addr;
    b->h.size = size;
    heap_insert(env, b);
    return 0;
}

void *rtcr_heap_alloc(rtcr_env_t *env, size_t size)
{
    if (size == 0 || size > (1ull << 32))
        return NULL;
    size_t need = (size + sizeof(struct blk) + 15) & ~(size_t)15;
    if (need < BLK_MIN)
        need = BLK_MIN;
    pthread_mutex_lock(&env->lock);
    for (int attempt = 0; attempt < 2; attempt++) {
        for (struct fblk **pp = (struct fblk **)&env->free_list; *pp; pp = &(*pp)->next) {
            struct fblk *b = *pp;
            if (b->h.size < need)
                continue;
            if (b->h.size - need >= BLK_MIN + 16) { /* split: the tail stays free */
                struct fblk *rest = (struct fblk *)((char *)b + need);
                rest->h.size = b->h.size - need;
                rest->h.magic = BLK_FREE;
                rest->next = b->next;
                *pp = rest;
                b->h.size = need;
            } else {
                *pp = b->next;
            }
            b->h.magic = BLK_USED;
            pthread_mutex_unlock(&env->lock);
            void *p = (char *)b + sizeof(struct blk);
            memset(p, 0, b->h.size - sizeof(struct blk));
            return p;
        }
        if (attempt == 0 && heap_grow(env, need) < 0)
            break;
    }
    pthread_mutex_unlock(&env->lock);
    return NULL;
}

void rtcr_heap_free(rtcr_env_t *env, void *p)
{
    if (!p)
        return;
    struct blk *h = (struct blk *)((char *)p - sizeof(struct blk));
    if (h->magic != BLK_USED)
        abort(); /* double free or corruption: a programming error in the component */
    pthread_mutex_lock(&env->lock);
    heap_insert(env, (struct fblk *)h);
    pthread_mutex_unlock(&env->lock);
}

/* ---- environment -------------------------------------------------------------------------- */

const char *rtcr_env_name(const rtcr_env_t *env)
{
    return env->name;
}

rtcr_ep_t *rtcr_env_ep(rtcr_env_t *env)
{
    return &env->eps[0];
}

void rtcr_env_set_root(rtcr_env_t *env, void *root)
{
    env->user_root = root;
}

void *rtcr_env_root(const rtcr_env_t *env)
{
    return env->user_root;
}

int rtcr_env_ram(rtcr_env_t *env, uint64_t *ret_quota, uint64_t *ret_used)
{
    rtcr_msg_t m;
    rtcr_msg_init(&m, RTCR_RPC_RAM_QUOTA);
    int r = comp_call(env->ram, &m, false, NULL);
    if (r < 0)
        return r;
    if (rtcr_msg_get(&m, 1, ret_quota) < 0 || rtcr_msg_get(&m, 2, ret_used) < 0)
        return -EBADMSG;
    return 0;
}

void rtcr_env_exit(rtcr_env_t *env, int code)
{
    (void)env;
    rtcr_msg_t m;
    rtcr_msg_init(&m, RTCR_RPC_PARENT_EXIT);
    rtcr_msg_put(&m, (uint64_t)code);
    comp_call(RTCR_PARENT_CAP, &m, false, NULL);
    _exit(code & 0xff);
}

int rtcr_session_open(rtcr_env_t *env, unsigned service, const char *args, rtcr_cap_t *ret_cap)
{
    (void)env;
    rtcr_msg_t m;
    rtcr_msg_init(&m, RTCR_RPC_PARENT_SESSION);
    rtcr_msg_put(&m, service);
    int r = rtcr_msg_put_str(&m, args);
    if (r < 0)
        return r;
    return comp_call(RTCR_PARENT_CAP, &m, true, ret_cap);
}

static void die(const char *what, int r)
{
    char buf[160];
    int n = snprintf(buf, sizeof(buf), "rtcr component: %s failed: %s\n", what, strerror(-r));
    if (n > 0)
        (void)!write(2, buf, (size_t)n);
    _exit(70);
}

static void fresh_start(const char *name)
{
    rtcr_cap_t pd, ram, rm, cpu, root_ds;
    int r;
    comp_proc.capmap = boot_capmap;
    if ((r = rtcr_session_open(NULL, RTCR_SVC_PD, "ram_quota=16K", &pd)) < 0)
        die("PD session", r);
    if ((r = rtcr_session_open(NULL, RTCR_SVC_RAM, "ram_quota=16K", &ram)) < 0)
        die("RAM session", r);
    if ((r = rtcr_session_open(NULL, RTCR_SVC_RM, "ram_quota=16K", &rm)) < 0)
        die("RM session", r);
    if ((r = rtcr_session_open(NULL, RTCR_SVC_CPU, "ram_quota=16K", &cpu)) < 0)
        die("CPU session", r);

    /* the root dataspace at the start of the address-space window */
    uint64_t dsize, addr;
    if ((r = ram_alloc(ram, COMP_ROOT_SIZE, &root_ds, &dsize)) < 0)
        die("root dataspace", r);
    struct rtcr_env tmp = {.rm = rm};
    if ((r = comp_attach(&tmp, root_ds, dsize, RTCR_AS_BASE, RTCR_RM_WRITABLE, &addr)) < 0)
        die("root attach", r);
    struct rtcr_croot *root = (struct rtcr_croot *)(uintptr_t)addr;
    _Static_assert(sizeof(struct rtcr_croot) + sizeof(struct rtcr_env) <= COMP_ROOT_SIZE,
                   "root fits its dataspace");
    root->magic = RTCR_CROOT_MAGIC;
    root->version = RTCR_CROOT_VERSION;
    root->size = (uint32_t)dsize;
    pthread_mutex_lock(&boot_lock);
    memcpy(root->capmap, boot_capmap, sizeof(root->capmap));
    comp_proc.capmap = root->capmap;
    pthread_mutex_unlock(&boot_lock);
    struct rtcr_env *env = (struct rtcr_env *)(root + 1);
    env->magic = COMP_ENV_MAGIC;
    snprintf(env->name, sizeof(env->name), "%s", name);
    env->pd = pd;
    env->ram = ram;
    env->rm = rm;
    env->cpu = cpu;
    env->root_ds = root_ds;
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_PRIVATE);
    pthread_mutex_init(&env->lock, &ma);
    comp_proc.root = root;
    comp_proc.env = env;

    rtcr_msg_t m;
    rtcr_msg_init(&m, RTCR_RPC_PD_CAP_SPACE_INFO);
    rtcr_msg_put(&m, addr);
    rtcr_msg_put(&m, dsize);
    if ((r = comp_call(pd, &m, false, NULL)) < 0)
        die("cap_space_info", r);
    if ((r = comp_ep_init(env, 0, "main")) < 0)
        die("main entrypoint", r);

    rtcr_component_construct(env);

    rtcr_msg_init(&m, RTCR_RPC_PARENT_CONSTRUCTED);
    if ((r = comp_call(RTCR_PARENT_CAP, &m, false, NULL)) < 0)
        die("constructed", r);
    comp_ep_loop(&env->eps[0]);
}

static void restore_start(void)
{
    rtcr_msg_t m;
    int r;
    comp_proc.capmap = boot_capmap; /* unused until the root is mapped */
    rtcr_msg_init(&m, RTCR_RPC_PARENT_RESUME_INFO);
    if ((r = comp_call(RTCR_PARENT_CAP, &m, false, NULL)) < 0)
        die("resume info", r);
    uint64_t mode, root_addr, root_size;
    if (rtcr_msg_get(&m, 1, &mode) < 0 || rtcr_msg_get(&m, 2, &root_addr) < 0 ||
        rtcr_msg_get(&m, 3, &root_size) < 0 || mode != 1 || root_addr == 0)
        die("resume info", -EPROTO);
    for (uint64_t i = 0;; i++) {
        rtcr_msg_init(&m, RTCR_RPC_PARENT_REGION);
        rtcr_msg_put(&m, i);
        r = comp_call(RTCR_PARENT_CAP, &m, false, NULL);
        if (r == -ENOENT)
            break;
        uint64_t addr, size, off, flags;
        if (r < 0 || rtcr_msg_get(&m, 1, &addr) < 0 || rtcr_msg_get(&m, 2, &size) < 0 ||
            rtcr_msg_get(&m, 3, &off) < 0 || rtcr_msg_get(&m, 4, &flags) < 0)
            die("region list", r < 0 ? r : -EBADMSG);
        if ((r = comp_map(addr, size, off, (unsigned)flags)) < 0)
            die("region map", r);
    }
    struct rtcr_croot *root = (struct rtcr_croot *)(uintptr_t)root_addr;
    if (root->magic != RTCR_CROOT_MAGIC || root->version != RTCR_CROOT_VERSION)
        die("root check", -EPROTO);
    struct rtcr_env *env = (struct rtcr_env *)(root + 1);
    if (env->magic != COMP_ENV_MAGIC)
        die("environment check", -EPROTO);
    comp_proc.root = root;
    comp_proc.capmap = root->capmap;
    comp_proc.env = env;
    /* the lock was free at the checkpoint (every entrypoint waited); make it fresh anyway */
    pthread_mutex_init(&env->lock, NULL);
    for (unsigned i = 1; i < RTCR_THREAD_MAX; i++) {
        if (env->eps[i].magic != COMP_EP_MAGIC)
            continue;
        pthread_t th;
        if ((r = -pthread_create(&th, NULL, comp_ep_thread, &env->eps[i])) < 0)
            die("entrypoint thread", r);
        pthread_detach(th);
    }
    rtcr_msg_init(&m, RTCR_RPC_PARENT_CONSTRUCTED); /* tell the parent we run again */
    if ((r = comp_call(RTCR_PARENT_CAP, &m, false, NULL)) < 0)
        die("restored", r);
    comp_ep_loop(&env->eps[0]);
}

int main(int argc, char **argv)
{
    int r = rtcr_utcb_area_attach(RTCR_FD_UTCB, &comp_proc.utcb_base, &comp_proc.utcb_size);
    if (r < 0)
        die("UTCB area (is this started by ecu-agent?)", r);
    /* reserve the address-space window so that nothing else is ever placed there */
    void *w = mmap((void *)(uintptr_t)RTCR_AS_BASE, RTCR_AS_SIZE, PROT_NONE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
    if (w != (void *)(uintptr_t)RTCR_AS_BASE)
        die("address-space reservation", w == MAP_FAILED ? -errno : -EEXIST);
    comp_set_thread(0);
    /* hand the agent a userfaultfd of this process for write tracking (it registers and
     * scans; without one it falls back to comparing hashes) */
    rtcr_dirty_target_send_uffd(RTCR_FD_PARENT);
    const char *mode = getenv(RTCR_ENV_MODE);
    if (mode && strcmp(mode, "restore") == 0)
        restore_start();
    fresh_start(argc > 0 && argv[0] ? argv[0] : "component");
}
