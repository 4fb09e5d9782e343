/* rtcr_target.c — a target protection domain as a Linux process, and the agent threads that
 * stand in for its threads in the emulated kernel.
 *
 * A target process is started from its binary with three file descriptors: the UTCB area
 * (RTCR_FD_UTCB), the RAM pool holding all its dataspaces (RTCR_FD_POOL; a sealed memfd that
 * the agent maps too, so checkpointing reads memory without the target's help) and a
 * seqpacket socket to the agent (RTCR_FD_PARENT). It runs with address-space randomisation
 * off and dies with the agent (PR_SET_PDEATHSIG), so code, data and dataspaces sit at the same
 * addresses in every incarnation.
 *
 * Its kernel side: a task whose slot 1 is itself and slot 8 the parent (an RPC object of the
 * agent), thread 0 (the main thread) bound into the thread area at slots 9..11, and a core
 * task + core thread whose handler (rtcr_svc.c) serves every session of the target. Each
 * target thread i has a mirror: an agent pthread that takes the operations the thread posts
 * in UTCB i and performs them in the kernel on its behalf.
 *
 * Teardown after the process ends: mark dead, raise the abort word, delete the target's
 * kernel objects (which wakes mirrors blocked in kernel waits), join the mirrors, then free
 * the records, the pool and the area.
 *
 * The kept pool: allocating and mapping fresh shmem pages is the largest cost of a restore
 * (about 2 us a page here, 35 ms for 64 MiB), so while a target has an image, teardown keeps
 * its pool instead of freeing it: every byte is zeroed (resident pages through the mapping,
 * the rest punched out), and the next incarnation of the same size takes it over, pages
 * allocated and mapped. It is kept only if no process can still hold it (the target's
 * process group is empty) and the target is still listed by its ECU (not being removed).
 *
 * The hot standby (rtcr_standby.c) is a memfd made like a pool. A restore from it moves it
 * into the kept-pool slot, which make_pool adopts, and reserves its dataspaces' extents
 * (target_pool_reserve) so that each recreated dataspace claims its extent (pool_claim)
 * instead of being placed first-fit, and nothing else is placed on their content.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <rtcr/image.h>

#include "ecu_internal.h"
#include "time_internal.h"

extern char **environ;

#define POOL_SLACK (1u << 20) /* pool bytes beyond quota and ROM content */
#define PAGE_SZ    4096u

uint64_t now_usec(void)
{
    return clock_usec(CLOCK_MONOTONIC);
}

uint64_t thread_cpu_usec(void)
{
    return clock_usec(CLOCK_THREAD_CPUTIME_ID);
}

void target_emit(struct rtcr_target *t, enum rtcr_ecu_event ev, const char *detail)
{
    if (t->ecu->event_fn)
        t->ecu->event_fn(t->ecu->event_ctx, t, ev, detail);
}

void target_log_line(struct rtcr_target *t, const char *line)
{
    struct logring *l = &t->log;
    if (l->cap) {
        char *copy = strdup(line);
        if (copy) {
            free(l->lines[l->head]);
            l->lines[l->head] = copy;
            l->head = (l->head + 1) % l->cap;
            if (l->count < l->cap)
                l->count++;
        }
    }
    if (t->ecu->log_fn)
        t->ecu->log_fn(t->ecu->log_ctx, t, line);
}

/* ---- RAM pool: first fit over a sorted extent list -------------------------------------- */

int target_pool_alloc(struct rtcr_target *t, size_t size, size_t *ret_off)
{
    if (t->pool_claim) { /* a restore from the standby: the content is there already */
        for (struct extent *e = t->pool_used; e; e = e->next)
            if (e->reserved && e->off == t->pool_claim_off && e->size == size) {
                e->reserved = false;
                *ret_off = e->off;
                return 0;
            }
        return -EADDRNOTAVAIL;
    }
    size_t off = 0;
    struct extent **pp = &t->pool_used;
    for (; *pp; pp = &(*pp)->next) {
        if ((*pp)->off >= off + size)
            break;
        off = (*pp)->off + (*pp)->size;
    }
    if (off > t->pool_size || size > t->pool_size - off)
        return -ENOSPC;
    struct extent *e = malloc(sizeof(*e));
    if (!e)
        return -ENOMEM;
    e->off = off;
    e->size = size;
    e->reserved = false;
    e->next = *pp;
    *pp = e;
    *ret_off = off;
    return 0;
}

int target_pool_reserve(struct rtcr_target *t, size_t off, size_t size)
{
    if (size == 0 || off > t->pool_size || size > t->pool_size - off)
        return -ENOSPC;
    struct extent **pp = &t->pool_used;
    size_t end = 0;
    for (; *pp && (*pp)->off < off + size; pp = &(*pp)->next)
        end = (*pp)->off + (*pp)->size;
    if (end > off || (*pp && (*pp)->off < off + size))
        return -EEXIST;
    struct extent *e = malloc(sizeof(*e));
    if (!e)
        return -ENOMEM;
    *e = (struct extent){.next = *pp, .off = off, .size = size, .reserved = true};
    *pp = e;
    return 0;
}

bool target_pool_has_reserved(struct rtcr_target *t)
{
    for (struct extent *e = t->pool_used; e; e = e->next)
        if (e->reserved)
            return true;
    return false;
}

void target_pool_free(struct rtcr_target *t, size_t off, size_t size)
{
    for (struct extent **pp = &t->pool_used; *pp; pp = &(*pp)->next) {
        if ((*pp)->off != off)
            continue;
        struct extent *e = *pp;
        *pp = e->next;
        free(e);
        if (t->pool_keep)
            return; /* the whole pool is zeroed when it is kept */
        /* give the memory back and leave zeroes for the next user */
        if (fallocate(t->pool_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
                      (off_t)size) < 0)
            memset(t->pool + off, 0, size);
        return;
    }
}

/* ---- mirrors ------------------------------------------------------------------------------ */

struct mirror_arg {
    struct rtcr_target *t; /* the target */
    unsigned index;        /* thread index */
};

/* Resolve an IRQ capability of the target for the IRQ operations. */
static int target_irq(struct rtcr_target *t, unsigned slot, rtcr_kobj_t **ret)
{
    rtcr_kobj_t *o;
    unsigned rights;
    int r = rtcr_task_lookup(t->ecu->kernel, t->task, slot, &o, &rights);
    if (r < 0)
        return r;
    if (rtcr_kobj_type_of(o) != RTCR_KOBJ_IRQ) {
        rtcr_kobj_unref(&o);
        return -EPROTOTYPE;
    }
    *ret = o;
    return 0;
}

static void *mirror_main(void *p)
{
    struct mirror_arg a = *(struct mirror_arg *)p;
    free(p);
    struct rtcr_target *t = a.t;
    rtcr_kernel_t *k = t->ecu->kernel;
    struct tthread *th = &t->threads[a.index];
    rtcr_utcb_req_t req;
    rtcr_msg_t out;

    for (;;) {
        int r = rtcr_utcb_serve_next(th->m, 0, &req);
        if (r == -ECANCELED || __atomic_load_n(&t->dead, __ATOMIC_ACQUIRE))
            break;
        if (r < 0)
            continue;
        rtcr_kobj_t *kt = th->kthread;
        uint64_t label = 0;
        if (req.rcv_count) {
            r = rtcr_thread_set_rcv_window(k, kt, req.rcv_base, req.rcv_count);
            if (r < 0) {
                rtcr_utcb_complete(th->m, r, NULL, 0);
                continue;
            }
        }
        switch (req.op) {
        case RTCR_UTCB_OP_CALL:
            out = req.msg;
            r = rtcr_ipc_call(k, kt, req.dest, &out, req.timeout_usec);
            rtcr_utcb_complete(th->m, r, r >= 0 ? &out : NULL, 0);
            break;
        case RTCR_UTCB_OP_REPLY_WAIT:
        case RTCR_UTCB_OP_WAIT:
            memset(&out, 0, sizeof(out));
            r = rtcr_ipc_reply_and_wait(k, kt, req.op == RTCR_UTCB_OP_REPLY_WAIT ? &req.msg : NULL,
                                        &out, &label, req.timeout_usec);
            if (r == -EINTR && __atomic_load_n(&t->dead, __ATOMIC_ACQUIRE)) {
                rtcr_utcb_release(th->m);
                goto out;
            }
            /* an IRQ/signal delivery waits while a checkpoint freezes the target; requests
             * and replies (calls in flight) go through so that they can complete */
            pthread_mutex_lock(&t->freeze_lock);
            if (r >= 0 && out.tag.label == RTCR_PROTO_IRQ)
                ckpt_park_if_freezing(t);
            rtcr_utcb_complete(th->m, r, r >= 0 ? &out : NULL, label);
            pthread_mutex_unlock(&t->freeze_lock);
            break;
        case RTCR_UTCB_OP_IRQ_RECEIVE:
        case RTCR_UTCB_OP_IRQ_TRIGGER:
        case RTCR_UTCB_OP_IRQ_UNMASK: {
            rtcr_kobj_t *irq = NULL;
            r = target_irq(t, req.dest, &irq);
            if (r >= 0) {
                if (req.op == RTCR_UTCB_OP_IRQ_RECEIVE) {
                    r = rtcr_irq_receive(k, irq, kt, req.timeout_usec);
                    pthread_mutex_lock(&t->freeze_lock);
                    if (r >= 0)
                        ckpt_park_if_freezing(t);
                    rtcr_kobj_unref(&irq);
                    rtcr_utcb_complete(th->m, r, NULL, 0);
                    pthread_mutex_unlock(&t->freeze_lock);
                    break;
                } else if (req.op == RTCR_UTCB_OP_IRQ_TRIGGER)
                    r = rtcr_irq_trigger(k, irq);
                else
                    r = rtcr_irq_unmask(k, irq);
                rtcr_kobj_unref(&irq);
            }
            rtcr_utcb_complete(th->m, r, NULL, 0);
            break;
        }
        default:
            rtcr_utcb_complete(th->m, -ENOSYS, NULL, 0);
            break;
        }
    }
out:
    return NULL;
}

int target_mirror_start(struct rtcr_target *t, unsigned index)
{
    struct tthread *th = &t->threads[index];
    rtcr_utcb_t *u = rtcr_utcb_area_utcb(t->utcb, index);
    if (!u)
        return -ERANGE;
    int r = rtcr_utcb_mirror_new(u, &t->abort_word, 0, &th->m);
    if (r < 0)
        return r;
    struct mirror_arg *a = malloc(sizeof(*a));
    if (!a) {
        rtcr_utcb_mirror_destroy(&th->m);
        return -ENOMEM;
    }
    a->t = t;
    a->index = index;
    r = -pthread_create(&th->mirror, NULL, mirror_main, a);
    if (r < 0) {
        free(a);
        rtcr_utcb_mirror_destroy(&th->m);
        return r;
    }
    th->mirror_running = true;
    return 0;
}

/* Create, bind and serve a new target thread. t->lock held (called from the CPU service). */
int target_thread_add(struct rtcr_target *t, const char *name, unsigned *ret_index)
{
    rtcr_kernel_t *k = t->ecu->kernel;
    rtcr_kobj_t *kt;
    unsigned index;
    char full[96];
    snprintf(full, sizeof(full), "%s:%s", t->name, name);
    int r = rtcr_thread_create(k, t->task, full, &kt);
    if (r < 0)
        return r;
    r = rtcr_task_bind_thread(k, t->task, kt, &index);
    if (r < 0) {
        rtcr_kobj_delete(k, kt);
        rtcr_kobj_unref(&kt);
        return r;
    }
    t->threads[index].kthread = kt;
    snprintf(t->threads[index].name, sizeof(t->threads[index].name), "%s", name);
    r = target_mirror_start(t, index);
    if (r < 0) {
        rtcr_kobj_delete(k, kt);
        rtcr_kobj_unref(&t->threads[index].kthread);
        return r;
    }
    *ret_index = index;
    return 0;
}

/* ---- process ----------------------------------------------------------------------------- */

static size_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) ? (size_t)st.st_size : 0;
}

void target_spare_drop(struct rtcr_target *t)
{
    if (!t->spare)
        return;
    munmap(t->spare, t->spare_size);
    close(t->spare_fd);
    t->spare = NULL;
    t->spare_fd = -1;
    t->spare_size = 0;
}

/* Is t still one of its ECU's targets (not being removed)? */
static bool target_listed(struct rtcr_target *t)
{
    bool found = false;
    pthread_mutex_lock(&t->ecu->lock);
    for (struct rtcr_target *x = t->ecu->targets; x && !found; x = x->next)
        found = x == t;
    pthread_mutex_unlock(&t->ecu->lock);
    return found;
}

/* May the pool of the incarnation with process `pid` be used again? Not while a process may
 * still hold it: the target is a session and group leader (setsid at launch), so any child
 * it left behind in its group would still have the pool fd. */
static bool pool_unshared(pid_t pid)
{
    return pid <= 0 || (kill(-pid, 0) < 0 && errno == ESRCH);
}

/* Make every byte of a pool zero without faulting in what is not there: resident pages are
 * cleared through the mapping (they stay allocated and mapped for the next incarnation),
 * everything else is punched out (a swapped-out page reads as non-resident). */
static int pool_zero(int fd, uint8_t *pool, size_t size)
{
    size_t pages = size / PAGE_SZ;
    unsigned char *vec = malloc(pages ? pages : 1);
    if (!vec)
        return -ENOMEM;
    if (mincore(pool, size, vec) < 0) {
        int r = -errno;
        free(vec);
        return r;
    }
    int r = 0;
    for (size_t i = 0; i < pages && r >= 0;) {
        size_t j = i;
        bool res = vec[i] & 1;
        while (j < pages && (bool)(vec[j] & 1) == res)
            j++;
        if (res)
            memset(pool + i * PAGE_SZ, 0, (j - i) * PAGE_SZ);
        else if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)(i * PAGE_SZ),
                           (off_t)((j - i) * PAGE_SZ)) < 0)
            r = -errno;
        i = j;
    }
    free(vec);
    return r;
}

size_t target_pool_bytes(struct rtcr_target *t)
{
    size_t size = t->ram_quota + file_size(t->binary) + POOL_SLACK;
    for (size_t i = 0; i < t->n_roms; i++)
        size += file_size(t->roms[i].path) + PAGE_SZ;
    return (size + PAGE_SZ - 1) & ~(size_t)(PAGE_SZ - 1);
}

int target_pool_create(struct rtcr_target *t, const char *what, size_t size, int *ret_fd,
                       uint8_t **ret_map)
{
    char name[NAME_MAX_LEN + 24];
    snprintf(name, sizeof(name), "rtcr-%s-%s", what, t->name);
    int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0)
        return -errno;
    /* sealed: the target holds the fd and must not be able to shrink it under our mapping */
    if (ftruncate(fd, (off_t)size) < 0 ||
        fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
        int r = -errno;
        close(fd);
        return r;
    }
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        int r = -errno;
        close(fd);
        return r;
    }
    *ret_fd = fd;
    *ret_map = p;
    return 0;
}

static int make_pool(struct rtcr_target *t)
{
    size_t size = target_pool_bytes(t);
    /* the kept pool of the previous incarnation, or the standby a restore moved there */
    if (t->spare && t->spare_size == size) {
        t->pool_fd = t->spare_fd;
        t->pool = t->spare;
        t->pool_size = size;
        t->spare = NULL;
        t->spare_fd = -1;
        t->spare_size = 0;
        return 0;
    }
    target_spare_drop(t);
    int fd;
    uint8_t *p;
    int r = target_pool_create(t, "pool", size, &fd, &p);
    if (r < 0)
        return r;
    t->pool_fd = fd;
    t->pool = p;
    t->pool_size = size;
    return 0;
}

/* Kernel objects of a new incarnation: task, parent, core task/thread, main thread. */
static int make_kernel_side(struct rtcr_target *t)
{
    rtcr_kernel_t *k = t->ecu->kernel;
    char name[NAME_MAX_LEN + 16];
    int r = rtcr_task_create(k, t->name, &t->task);
    if (r < 0)
        return r;
    snprintf(name, sizeof(name), "core:%s", t->name);
    if ((r = rtcr_task_create(k, name, &t->core_task)) < 0)
        return r;
    if ((r = rtcr_thread_create(k, t->core_task, name, &t->core_thread)) < 0)
        return r;
    if ((r = rtcr_thread_set_handler(k, t->core_thread, svc_dispatch, t)) < 0)
        return r;
    if ((r = svc_make_parent(t)) < 0)
        return r;
    unsigned index;
    return target_thread_add(t, "main", &index);
}

/* Free the resources of the current incarnation. Called with t->lock NOT held, after the
 * process is gone (or was never started). */
void target_teardown(struct rtcr_target *t)
{
    rtcr_kernel_t *k = t->ecu->kernel;
    pthread_mutex_lock(&t->lock);
    __atomic_store_n(&t->dead, true, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&t->lock);
    pthread_mutex_lock(&t->freeze_lock); /* wake parked mirrors */
    pthread_cond_broadcast(&t->freeze_cond);
    pthread_mutex_unlock(&t->freeze_lock);
    rtcr_utcb_abort(&t->abort_word);
    for (unsigned i = 0; i < RTCR_THREAD_MAX; i++)
        if (t->threads[i].kthread) {
            rtcr_thread_cancel_wait(k, t->threads[i].kthread);
            rtcr_kobj_delete(k, t->threads[i].kthread);
        }
    for (unsigned i = 0; i < RTCR_THREAD_MAX; i++) {
        struct tthread *th = &t->threads[i];
        if (th->mirror_running) {
            pthread_join(th->mirror, NULL);
            th->mirror_running = false;
        }
        rtcr_utcb_mirror_destroy(&th->m);
        rtcr_kobj_unref(&th->kthread);
    }
    ckpt_incarnation_end(t);
    bool listed = target_listed(t);
    pthread_mutex_lock(&t->lock);
    /* keep the pool for a restore (see the top of the file) */
    t->pool_keep =
        listed && t->pool && t->image && rtcr_image_count(t->image) > 0 && pool_unshared(t->pid);
    if (!listed)
        target_spare_drop(t);
    svc_free_all(t);
    if (t->core_thread)
        rtcr_kobj_delete(k, t->core_thread);
    rtcr_kobj_unref(&t->core_thread);
    if (t->core_task)
        rtcr_kobj_delete(k, t->core_task);
    rtcr_kobj_unref(&t->core_task);
    if (t->task)
        rtcr_kobj_delete(k, t->task);
    rtcr_kobj_unref(&t->task);
    while (t->pool_used) {
        struct extent *e = t->pool_used;
        t->pool_used = e->next;
        free(e);
    }
    if (t->pool_keep && pool_zero(t->pool_fd, t->pool, t->pool_size) == 0) {
        target_spare_drop(t);
        t->spare = t->pool;
        t->spare_fd = t->pool_fd;
        t->spare_size = t->pool_size;
    } else {
        if (t->pool)
            munmap(t->pool, t->pool_size);
        if (t->pool_fd >= 0)
            close(t->pool_fd);
    }
    t->pool_keep = false;
    t->pool = NULL;
    t->pool_size = 0;
    t->pool_fd = -1;
    if (t->sock_fd >= 0)
        close(t->sock_fd);
    t->sock_fd = -1;
    if (t->child_sock_fd >= 0)
        close(t->child_sock_fd);
    t->child_sock_fd = -1;
    rtcr_utcb_area_destroy(&t->utcb);
    t->abort_word = 0;
    t->ram_used = 0;
    t->obj_seq = 0;
    t->constructed = false;
    t->pid = 0;
    pthread_mutex_unlock(&t->lock);
}

/* Build the environment of the child before fork (nothing after fork may allocate). */
static char **child_env(const char *mode)
{
    size_t n = 0;
    for (char **e = environ; *e; e++)
        n++;
    char **env = calloc(n + 2, sizeof(*env));
    if (!env)
        return NULL;
    size_t j = 0;
    for (char **e = environ; *e; e++)
        if (strncmp(*e, RTCR_ENV_MODE "=", sizeof(RTCR_ENV_MODE)) != 0)
            env[j++] = *e;
    env[j++] = (char *)mode;
    env[j] = NULL;
    return env;
}

int target_prepare(struct rtcr_target *t)
{
    int sv[2] = {-1, -1};
    int r;
    pthread_mutex_lock(&t->lock);
    t->dead = false;
    t->abort_word = 0;
    t->pool_fd = t->sock_fd = t->child_sock_fd = -1;
    r = rtcr_utcb_area_new(t->name, RTCR_THREAD_MAX, &t->utcb);
    if (r >= 0)
        r = make_pool(t);
    if (r >= 0)
        r = make_kernel_side(t);
    if (r >= 0 && socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        r = -errno;
    if (r >= 0) {
        fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
        t->sock_fd = sv[0];
        t->child_sock_fd = sv[1];
    }
    pthread_mutex_unlock(&t->lock);
    return r;
}

int target_launch(struct rtcr_target *t)
{
    char **env = child_env(t->state == RTCR_TARGET_RESTORING ? RTCR_ENV_MODE "=restore"
                                                             : RTCR_ENV_MODE "=fresh");
    if (!env)
        return -ENOMEM;
    char *argv[] = {t->name, NULL};
    int fds[3] = {rtcr_utcb_area_fd(t->utcb), t->pool_fd, t->child_sock_fd};
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        int r = -errno;
        free(env);
        return r;
    }
    if (pid == 0) {
        /* child: only async-signal-safe calls from here to exec */
        int tmp[3];
        for (int i = 0; i < 3; i++)
            tmp[i] = fcntl(fds[i], F_DUPFD, 10);
        for (int i = 0; i < 3; i++)
            if (tmp[i] < 0 || dup2(tmp[i], RTCR_FD_UTCB + i) < 0)
                _exit(126);
        close_range(RTCR_FD_PARENT + 1, ~0u, 0);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(125);
        setsid();
        personality(ADDR_NO_RANDOMIZE);
        sigset_t all;
        sigemptyset(&all);
        sigprocmask(SIG_SETMASK, &all, NULL);
        execve(t->binary, argv, env);
        _exit(127);
    }
    free(env);
    pthread_mutex_lock(&t->lock);
    close(t->child_sock_fd);
    t->child_sock_fd = -1;
    t->pid = pid;
    t->started_usec = now_usec();
    if (t->starts++ > 0)
        t->restarts++;
    if (t->state != RTCR_TARGET_RESTORING)
        t->state = RTCR_TARGET_STARTING;
    t->failure[0] = '\0';
    t->exit_status = 0;
    t->stopping = false;
    pthread_mutex_unlock(&t->lock);
    return 0;
}

int target_spawn(struct rtcr_target *t)
{
    int r = target_prepare(t);
    if (r >= 0)
        r = target_launch(t);
    if (r < 0)
        target_teardown(t);
    return r;
}
