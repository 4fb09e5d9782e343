/* test_image.c — checkpoint image format: epochs, corruption, limits, chains, files.
 *
 * Every test builds images with the public builder and checks them through the public reader.
 * Random data comes from a fixed-seed xorshift generator, so failures reproduce.
 * With RTCR_IMAGE_SEED_DIR set, test_write_seeds also writes the fuzzing seed corpus there.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <xxhash.h>

#include <rtcr/image.h>

#include "../../rtcr-core/src/rtcr_image_int.h" /* rtcr_image__builder_set_version */

/* ---- helpers ------------------------------------------------------------------------------ */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void fill_random(uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)rnd();
}

/* How make_epoch hands pages to the builder: one rtcr_epoch_add_pages per run (format 2,
 * frames inside runs), rtcr_epoch_add_runs per stretch of data runs of one dataspace (format
 * 2, frames spanning runs) or one add_pages per run into format version 1. Tests of chains
 * run once per mode. */
enum build_mode { BUILD_PER_RUN, BUILD_SPANNING, BUILD_V1, BUILD_MODES };
static enum build_mode build_mode = BUILD_PER_RUN;
static enum build_mode all_modes[BUILD_MODES] = {BUILD_PER_RUN, BUILD_SPANNING, BUILD_V1};

static const uint8_t build_a[] = {0xde, 0xad, 0xbe, 0xef, 0x01, 0x02, 0x03, 0x04};
static const uint8_t build_b[] = {0xba, 0xad, 0xf0, 0x0d};

#define DS1 0x1a4u
#define DS2 0x1b0u
#define DS3 0x1c0u

/* A stored state with every object kind; all structs live in here. */
struct fixture {
    RtcrImg__StoredState state;
    RtcrImg__Session s[8], *sp[8];
    RtcrImg__PdSession pd;
    RtcrImg__SignalSource src, *srcp[1];
    RtcrImg__SignalContext ctx[2], *ctxp[2];
    RtcrImg__NativeCap nc, *ncp[1];
    RtcrImg__CapSpaceInfo csi;
    RtcrImg__MemRange capmap, pool;
    RtcrImg__RegionMap pdrm, *pdrmp[1];
    RtcrImg__Attachment pdatt, *pdattp[1];
    RtcrImg__CpuSession cpu;
    RtcrImg__Thread th[2], *thp[2];
    RtcrImg__RamSession ram;
    RtcrImg__Dataspace ds[3], *dsp[3];
    RtcrImg__RmSession rm;
    RtcrImg__RegionMap rmrm, *rmrmp[1];
    RtcrImg__Attachment att[2], *attp[2];
    RtcrImg__RomSession rom;
    RtcrImg__LogSession log;
    RtcrImg__TimerSession timer;
    RtcrImg__IrqSession irq;
    RtcrImg__CapSpace cs;
    RtcrImg__CapEntry ce[6], *cep[6];
    RtcrImg__ObjectRef obj[6];
};

/* fill f; the RAM session declares `n_ds` dataspaces DS1, DS2, DS3 of the given sizes */
static void fixture_init(struct fixture *f, size_t n_ds, const uint64_t *sizes)
{
    static const uint32_t ds_badges[3] = {DS1, DS2, DS3};

    memset(f, 0, sizeof(*f));
    rtcr_img__stored_state__init(&f->state);
    for (int i = 0; i < 8; i++) {
        rtcr_img__session__init(&f->s[i]);
        f->sp[i] = &f->s[i];
        f->s[i].type = (RtcrImg__SessionType)(i + 1);
        f->s[i].badge = 0x100u + 4u * (uint32_t)i;
        f->s[i].creation_args = "ram_quota=8K, label=\"demo\"";
        f->s[i].ram_quota = 8192u + (uint64_t)i;
    }
    f->s[0].bootstrapped = 1;
    f->s[2].upgrade_args = "ram_quota=4096";

    rtcr_img__pd_session__init(&f->pd);
    rtcr_img__signal_source__init(&f->src);
    f->src.badge = 0x200;
    f->srcp[0] = &f->src;
    for (int i = 0; i < 2; i++) {
        rtcr_img__signal_context__init(&f->ctx[i]);
        f->ctx[i].badge = 0x204u + 4u * (uint32_t)i;
        f->ctx[i].source_badge = 0x200;
        f->ctx[i].imprint = 0xabcdef0123456789ull + (uint64_t)i;
        f->ctx[i].pending = (uint32_t)i;
        f->ctxp[i] = &f->ctx[i];
    }
    rtcr_img__native_cap__init(&f->nc);
    f->nc.badge = 0x210;
    f->nc.ep_thread = 1;
    f->ncp[0] = &f->nc;
    rtcr_img__mem_range__init(&f->capmap);
    f->capmap.addr = 0x40000000;
    f->capmap.size = 4096 * 8;
    rtcr_img__mem_range__init(&f->pool);
    f->pool.addr = 0x40010000;
    f->pool.size = 4096;
    rtcr_img__cap_space_info__init(&f->csi);
    f->csi.cap_map = &f->capmap;
    f->csi.object_pool = &f->pool;
    rtcr_img__region_map__init(&f->pdrm);
    f->pdrm.badge = 0x220;
    f->pdrm.size = 1ull << 30;
    f->pdrm.role = RTCR_IMG__REGION_MAP_ROLE__RM_ROLE_ADDRESS_SPACE;
    rtcr_img__attachment__init(&f->pdatt);
    f->pdatt.ds_badge = DS1;
    f->pdatt.addr = 0x40000000;
    f->pdatt.size = 65536;
    f->pdatt.writable = 1;
    f->pdattp[0] = &f->pdatt;
    f->pdrm.n_attachments = 1;
    f->pdrm.attachments = f->pdattp;
    f->pdrmp[0] = &f->pdrm;
    f->pd.n_signal_sources = 1;
    f->pd.signal_sources = f->srcp;
    f->pd.n_signal_contexts = 2;
    f->pd.signal_contexts = f->ctxp;
    f->pd.n_native_caps = 1;
    f->pd.native_caps = f->ncp;
    f->pd.cap_space_info = &f->csi;
    f->pd.cap_limit = 500;
    f->pd.n_region_maps = 1;
    f->pd.region_maps = f->pdrmp;
    f->s[0].state_case = RTCR_IMG__SESSION__STATE_PD;
    f->s[0].pd = &f->pd;

    rtcr_img__cpu_session__init(&f->cpu);
    for (int i = 0; i < 2; i++) {
        rtcr_img__thread__init(&f->th[i]);
        f->th[i].index = (uint32_t)i;
        f->th[i].name = i ? "ep" : "main";
        f->th[i].is_entrypoint = i == 1;
        f->th[i].started = 1;
        f->th[i].gate_badge = 0x230u + 4u * (uint32_t)i;
        f->th[i].badge = 0x240u + 4u * (uint32_t)i;
        f->thp[i] = &f->th[i];
    }
    f->cpu.n_threads = 2;
    f->cpu.threads = f->thp;
    f->cpu.sigh_badge = 0x204;
    f->s[1].state_case = RTCR_IMG__SESSION__STATE_CPU;
    f->s[1].cpu = &f->cpu;

    rtcr_img__ram_session__init(&f->ram);
    for (size_t i = 0; i < n_ds; i++) {
        rtcr_img__dataspace__init(&f->ds[i]);
        f->ds[i].badge = ds_badges[i];
        f->ds[i].size = sizes[i];
        f->ds[i].quota_used = sizes[i];
        f->ds[i].timestamp = i;
        f->dsp[i] = &f->ds[i];
    }
    f->ram.n_dataspaces = n_ds;
    f->ram.dataspaces = f->dsp;
    f->ram.quota_limit = 1 << 20;
    f->s[2].state_case = RTCR_IMG__SESSION__STATE_RAM;
    f->s[2].ram = &f->ram;

    rtcr_img__rm_session__init(&f->rm);
    rtcr_img__region_map__init(&f->rmrm);
    f->rmrm.badge = 0x250;
    f->rmrm.size = 1 << 20;
    f->rmrm.ds_badge = 0x254;
    f->rmrm.role = RTCR_IMG__REGION_MAP_ROLE__RM_ROLE_MANAGED;
    for (int i = 0; i < 2; i++) {
        rtcr_img__attachment__init(&f->att[i]);
        f->att[i].ds_badge = DS1;
        f->att[i].addr = 0x1000u * (uint64_t)i;
        f->att[i].size = 4096;
        f->att[i].offset = 4096u * (uint64_t)i;
        f->att[i].executable = i == 0;
        f->attp[i] = &f->att[i];
    }
    f->rmrm.n_attachments = 2;
    f->rmrm.attachments = f->attp;
    f->rmrmp[0] = &f->rmrm;
    f->rm.n_region_maps = 1;
    f->rm.region_maps = f->rmrmp;
    f->s[3].state_case = RTCR_IMG__SESSION__STATE_RM;
    f->s[3].rm = &f->rm;

    rtcr_img__rom_session__init(&f->rom);
    f->rom.module = "demo-target";
    f->rom.ds_badge = 0x260;
    f->s[4].state_case = RTCR_IMG__SESSION__STATE_ROM;
    f->s[4].rom = &f->rom;
    rtcr_img__log_session__init(&f->log);
    f->log.label = "demo -> log";
    f->s[5].state_case = RTCR_IMG__SESSION__STATE_LOG;
    f->s[5].log = &f->log;
    rtcr_img__timer_session__init(&f->timer);
    f->timer.sigh_badge = 0x208;
    f->timer.period_usec = 10000;
    f->timer.remaining_usec = 4321;
    f->timer.periodic = 1;
    f->timer.armed = 1;
    f->s[6].state_case = RTCR_IMG__SESSION__STATE_TIMER;
    f->s[6].timer = &f->timer;
    rtcr_img__irq_session__init(&f->irq);
    f->irq.line = 7;
    f->irq.sigh_badge = 0x204;
    f->irq.ack_state = RTCR_IMG__IRQ_ACK_STATE__IRQ_WAITING_FOR_ACK;
    f->irq.pending = 1;
    f->s[7].state_case = RTCR_IMG__SESSION__STATE_IRQ;
    f->s[7].irq = &f->irq;

    f->state.n_sessions = 8;
    f->state.sessions = f->sp;

    static const struct {
        uint32_t slot, type, role, badge, thread;
    } caps[6] = {
        {1, RTCR_IMG__KOBJ_TYPE__KOBJ_TASK, RTCR_IMG__OBJ_ROLE__ROLE_TASK, 0, 0},
        {8, RTCR_IMG__KOBJ_TYPE__KOBJ_GATE, RTCR_IMG__OBJ_ROLE__ROLE_PARENT, 0, 0},
        {9, RTCR_IMG__KOBJ_TYPE__KOBJ_GATE, RTCR_IMG__OBJ_ROLE__ROLE_THREAD_GATE, 0, 0},
        {14, RTCR_IMG__KOBJ_TYPE__KOBJ_IRQ, RTCR_IMG__OBJ_ROLE__ROLE_THREAD_IRQ, 0, 1},
        {0x200, RTCR_IMG__KOBJ_TYPE__KOBJ_GATE, RTCR_IMG__OBJ_ROLE__ROLE_RPC_OBJECT, 0x210, 0},
        {0x201, RTCR_IMG__KOBJ_TYPE__KOBJ_IRQ, RTCR_IMG__OBJ_ROLE__ROLE_SIGNAL_SOURCE, 0x200, 0},
    };
    rtcr_img__cap_space__init(&f->cs);
    for (int i = 0; i < 6; i++) {
        rtcr_img__cap_entry__init(&f->ce[i]);
        rtcr_img__object_ref__init(&f->obj[i]);
        f->ce[i].slot = caps[i].slot;
        f->ce[i].type = (RtcrImg__KobjType)caps[i].type;
        f->ce[i].rights = 0x7;
        f->obj[i].role = (RtcrImg__ObjRole)caps[i].role;
        f->obj[i].badge = caps[i].badge;
        f->obj[i].thread_index = caps[i].thread;
        f->ce[i].object = &f->obj[i];
        f->cep[i] = &f->ce[i];
    }
    f->cs.n_entries = 6;
    f->cs.entries = f->cep;
    f->state.cap_space = &f->cs;
}

static rtcr_epoch_info_t info_for(const char *target, uint64_t epoch, uint64_t parent)
{
    static const rtcr_image_build_id_t libs[1] = {{"libc.so.6", build_b, sizeof(build_b)}};

    return (rtcr_epoch_info_t){.target = target,
                               .epoch = epoch,
                               .parent = parent,
                               .created_usec = 1700000000000000ull + epoch,
                               .source_ecu = "ecu-a",
                               .build_id = build_a,
                               .build_id_len = sizeof(build_a),
                               .libs = libs,
                               .n_libs = 1,
                               .granularity = 4096,
                               .agent_incarnation = 3,
                               .tracking_mode = "uffd-wp",
                               .pages_scanned = 100 + epoch,
                               .freeze_usec = 250};
}

/* a small valid epoch: full metadata, a compressible run, a random run, a zero run */
static void small_epoch(void **ret_buf, size_t *ret_len)
{
    static const uint64_t sizes[3] = {65536, 65536, 65536};
    struct fixture *f = malloc(sizeof(*f));
    rtcr_epoch_info_t info = info_for("demo", 1, 0);
    rtcr_epoch_builder_t *b = NULL;
    uint8_t page[4096];

    assert_non_null(f);
    fixture_init(f, 1, sizes);
    assert_int_equal(rtcr_epoch_builder_new(&info, &b), 0);
    assert_int_equal(rtcr_epoch_builder_set_metadata(b, &f->state), 0);
    memset(page, 'A', sizeof(page));
    assert_int_equal(rtcr_epoch_add_pages(b, DS1, 0, page, 300), 0);
    fill_random(page, 64);
    assert_int_equal(rtcr_epoch_add_pages(b, DS1, 4096, page, 64), 0);
    assert_int_equal(rtcr_epoch_add_zero(b, DS1, 8192, 8192), 0);
    assert_int_equal(rtcr_epoch_finish(b, NULL, ret_buf, ret_len), 0);
    rtcr_epoch_builder_destroy(&b);
    free(f);
}

/* recompute the section and header hashes of a container in place (to reach deeper checks) */
static void rehash(uint8_t *buf, size_t len)
{
    uint32_t n = (uint32_t)buf[12] | (uint32_t)buf[13] << 8;

    for (uint32_t i = 0; i < n; i++) {
        uint8_t *e = buf + 32 + 32 * i;
        uint64_t off = 0, sl = 0, h;
        for (int k = 7; k >= 0; k--) {
            off = off << 8 | e[8 + k];
            sl = sl << 8 | e[16 + k];
        }
        assert_true(off + sl <= len);
        h = XXH3_64bits(buf + off, sl);
        for (int k = 0; k < 8; k++)
            e[24 + k] = (uint8_t)(h >> (8 * k));
    }
    uint64_t h = XXH3_64bits_withSeed(buf + 32, 32 * n, XXH3_64bits(buf, 24));
    for (int k = 0; k < 8; k++)
        buf[24 + k] = (uint8_t)(h >> (8 * k));
}

/* offset of section `type` in buf */
static size_t section_off(const uint8_t *buf, uint32_t type, size_t *ret_len)
{
    uint32_t n = (uint32_t)buf[12];

    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *e = buf + 32 + 32 * i;
        uint64_t off = 0, sl = 0;
        if (e[0] != type)
            continue;
        for (int k = 7; k >= 0; k--) {
            off = off << 8 | e[8 + k];
            sl = sl << 8 | e[16 + k];
        }
        *ret_len = sl;
        return off;
    }
    fail_msg("no section %u", type);
    return 0;
}

struct collect {
    uint8_t *mem;  /* reconstruction of one dataspace */
    size_t size;   /* its size */
    uint32_t ds;   /* the dataspace collected */
    int zero_runs; /* zero runs seen */
    int frames;    /* data frames seen */
};

static int collect_fn(void *opaque, uint32_t ds, uint64_t offset, const void *data, size_t len)
{
    struct collect *c = opaque;

    if (ds != c->ds)
        return 0;
    if (offset + len > c->size)
        return -ERANGE;
    if (data) {
        memcpy(c->mem + offset, data, len);
        c->frames++;
    } else {
        memset(c->mem + offset, 0, len);
        c->zero_runs++;
    }
    return 0;
}

static size_t packed(const RtcrImg__StoredState *s, uint8_t **ret)
{
    size_t n = rtcr_img__stored_state__get_packed_size(s);

    *ret = malloc(n ? n : 1);
    assert_non_null(*ret);
    rtcr_img__stored_state__pack(s, *ret);
    return n;
}

/* ---- epochs ------------------------------------------------------------------------------- */

static void test_roundtrip_all_kinds(void **state)
{
    static const uint64_t sizes[3] = {65536, 8192, 4096};
    struct fixture *f = malloc(sizeof(*f));
    rtcr_epoch_info_t info = info_for("demo", 7, 6);
    rtcr_epoch_builder_t *b = NULL;
    rtcr_epoch_t *e = NULL;
    rtcr_image_err_t err;
    void *buf;
    size_t len, n1, n2;
    uint8_t *p1, *p2;
    (void)state;

    assert_non_null(f);
    fixture_init(f, 3, sizes);
    assert_int_equal(rtcr_epoch_builder_new(&info, &b), 0);
    assert_int_equal(rtcr_epoch_builder_set_metadata(b, &f->state), 0);
    assert_int_equal(rtcr_epoch_finish(b, &err, &buf, &len), 0);
    assert_memory_equal(buf, RTCR_IMAGE_MAGIC, 8);
    assert_int_equal(rtcr_epoch_parse(buf, len, NULL, &err, &e), 0);

    const RtcrImg__EpochHeader *h = rtcr_epoch_header(e);
    assert_string_equal(h->target, "demo");
    assert_int_equal(h->epoch, 7);
    assert_int_equal(h->parent, 6);
    assert_int_equal(h->kind, RTCR_IMG__EPOCH_KIND__EPOCH_INCREMENTAL);
    assert_false(rtcr_epoch_is_full(e));
    assert_int_equal(h->created_usec, 1700000000000007ull);
    assert_string_equal(h->source_ecu, "ecu-a");
    assert_int_equal(h->build_id.len, sizeof(build_a));
    assert_memory_equal(h->build_id.data, build_a, sizeof(build_a));
    assert_int_equal(h->n_libraries, 1);
    assert_string_equal(h->libraries[0]->name, "libc.so.6");
    assert_memory_equal(h->libraries[0]->id.data, build_b, sizeof(build_b));
    assert_int_equal(h->granularity, 4096);
    assert_int_equal(h->agent_incarnation, 3);
    assert_string_equal(h->tracking_mode, "uffd-wp");
    assert_non_null(h->stats);
    assert_int_equal(h->stats->pages_scanned, 107);
    assert_int_equal(h->stats->freeze_usec, 250);

    /* the state survives byte for byte, and spot checks per kind */
    n1 = packed(&f->state, &p1);
    n2 = packed(rtcr_epoch_state(e), &p2);
    assert_int_equal(n1, n2);
    assert_memory_equal(p1, p2, n1);
    free(p1);
    free(p2);
    const RtcrImg__StoredState *s = rtcr_epoch_state(e);
    assert_int_equal(s->n_sessions, 8);
    assert_int_equal(s->sessions[0]->pd->signal_contexts[1]->imprint, 0xabcdef012345678aull);
    assert_int_equal(s->sessions[0]->pd->cap_space_info->cap_map->addr, 0x40000000);
    assert_string_equal(s->sessions[1]->cpu->threads[1]->name, "ep");
    assert_true(s->sessions[1]->cpu->threads[1]->is_entrypoint);
    assert_int_equal(s->sessions[2]->ram->dataspaces[1]->size, 8192);
    assert_int_equal(s->sessions[3]->rm->region_maps[0]->attachments[1]->offset, 4096);
    assert_string_equal(s->sessions[4]->rom->module, "demo-target");
    assert_string_equal(s->sessions[5]->log->label, "demo -> log");
    assert_int_equal(s->sessions[6]->timer->remaining_usec, 4321);
    assert_int_equal(s->sessions[7]->irq->ack_state, RTCR_IMG__IRQ_ACK_STATE__IRQ_WAITING_FOR_ACK);
    assert_int_equal(s->cap_space->entries[3]->object->role, RTCR_IMG__OBJ_ROLE__ROLE_THREAD_IRQ);
    assert_int_equal(s->cap_space->entries[3]->object->thread_index, 1);
    assert_int_equal(s->cap_space->entries[5]->object->badge, 0x200);

    /* the wire bytes are kept verbatim */
    size_t blen;
    const void *bytes = rtcr_epoch_bytes(e, &blen);
    assert_int_equal(blen, len);
    assert_memory_equal(bytes, buf, len);

    /* the inspector shows every part */
    char *text = NULL;
    size_t tlen = 0;
    FILE *out = open_memstream(&text, &tlen);
    assert_non_null(out);
    rtcr_epoch_print(e, out, true);
    fclose(out);
    assert_non_null(strstr(text, "epoch 7 of 'demo': incremental, parent 6"));
    /* created_usec 1700000000.000007 s: a UTC ISO 8601 date, not raw seconds */
    assert_non_null(strstr(text, "\n  created 2023-11-14T22:13:20.000Z on ECU 'ecu-a' (agent "
                                 "incarnation 3), tracking uffd-wp granularity 4096\n"));
    assert_non_null(strstr(text, "slot    9 (0x009) gate"));
    assert_non_null(strstr(text, "thread-irq 1"));
    assert_non_null(strstr(text, "signal-source 0x200"));
    assert_non_null(strstr(text, "line 7 sigh 0x204 waiting-for-ack pending"));
    assert_non_null(strstr(text, "thread 1 \"ep\""));
    free(text);

    rtcr_epoch_destroy(&e);
    rtcr_epoch_destroy(&e);
    assert_null(e);
    rtcr_epoch_builder_destroy(&b);
    assert_null(b);
    free(buf);
    free(f);
}

/* Wall-clock times for operators: UTC ISO 8601 with milliseconds (truncated), independent of
 * the local zone; bounded by RTCR_IMAGE_TIME_STRING_MAX even for the largest value. */
static void test_time_string(void **state)
{
    char buf[RTCR_IMAGE_TIME_STRING_MAX];
    (void)state;

    setenv("TZ", "EST+5", 1); /* a zone far from UTC */
    tzset();
    assert_string_equal(rtcr_image_time_string(1795259645774610ull, buf, sizeof(buf)),
                        "2026-11-21T11:14:05.774Z");
    assert_string_equal(rtcr_image_time_string(0, buf, sizeof(buf)), "1970-01-01T00:00:00.000Z");
    assert_string_equal(rtcr_image_time_string(999999, buf, sizeof(buf)),
                        "1970-01-01T00:00:00.999Z");
    assert_string_equal(rtcr_image_time_string(1700000000001000ull, buf, sizeof(buf)),
                        "2023-11-14T22:13:20.001Z");
    /* the largest value (an image can hold anything): more year digits, still fits */
    assert_string_equal(rtcr_image_time_string(UINT64_MAX, buf, sizeof(buf)),
                        "586524-01-19T08:01:49.551Z");
    unsetenv("TZ");
    tzset();

    /* a short buffer gets a truncated, terminated text; an empty one is left alone */
    char small[11];
    assert_ptr_equal(rtcr_image_time_string(1795259645774610ull, small, sizeof(small)), small);
    assert_string_equal(small, "2026-11-21");
    small[0] = 'x';
    assert_ptr_equal(rtcr_image_time_string(1795259645774610ull, small, 0), small);
    assert_int_equal(small[0], 'x');
}

static void test_pages_random_and_zero(void **state)
{
    static const uint64_t sizes[3] = {256 * 1024, 8192, 4096};
    enum { SZ = 256 * 1024 };
    struct fixture *f = malloc(sizeof(*f));
    rtcr_epoch_info_t info = info_for("demo", 1, 0);
    rtcr_epoch_builder_t *b = NULL;
    rtcr_epoch_t *e = NULL;
    uint8_t *mem = calloc(1, SZ), *back = malloc(SZ);
    struct collect c = {.mem = back, .size = SZ, .ds = DS1};
    void *buf;
    size_t len;
    (void)state;

    assert_non_null(f);
    fixture_init(f, 3, sizes);
    /* pages: random, zero, half-text, random ... and a tail of 100 bytes */
    for (size_t pg = 0; pg < SZ / 4096; pg++) {
        uint8_t *p = mem + pg * 4096;
        switch (rnd() % 3) {
        case 0:
            fill_random(p, 4096);
            break;
        case 1:
            break;
        default:
            memset(p, (int)(pg & 0xff), 2048);
        }
    }
    memset(back, 0x55, SZ);
    assert_int_equal(rtcr_epoch_builder_new(&info, &b), 0);
    assert_int_equal(rtcr_epoch_builder_set_metadata(b, &f->state), 0);
    assert_int_equal(rtcr_epoch_add_pages(b, DS1, 0, mem, SZ - 100), 0);
    assert_int_equal(rtcr_epoch_add_pages(b, DS1, SZ - 100, mem + SZ - 100, 100), 0);
    assert_int_equal(rtcr_epoch_add_pages(b, DS2, 0, mem, 8192), 0);
    assert_int_equal(rtcr_epoch_finish(b, NULL, &buf, &len), 0);
    assert_int_equal(rtcr_epoch_parse(buf, len, NULL, NULL, &e), 0);
    assert_int_equal(rtcr_epoch_foreach_pages(e, collect_fn, &c, NULL), 0);
    assert_memory_equal(back, mem, SZ);
    assert_true(c.zero_runs > 0);
    assert_true(c.frames > 0);
    const RtcrImg__EpochStats *st = rtcr_epoch_header(e)->stats;
    assert_true(st->pages_zero > 0);
    assert_int_equal(st->pages_zero + st->pages_written, SZ / 4096 + 1 /* the tail */ + 2);
    assert_true(st->bytes_stored < st->bytes_raw);
    /* runs alternate (adjacent runs of one kind were merged) */
    const RtcrImg__DataspacePages *dp = rtcr_epoch_page_index(e)->dataspaces[0];
    for (size_t j = 1; j < dp->n_runs; j++) {
        assert_int_equal(dp->runs[j]->offset, dp->runs[j - 1]->offset + dp->runs[j - 1]->length);
        assert_true(dp->runs[j]->zero != dp->runs[j - 1]->zero);
    }
    rtcr_epoch_destroy(&e);
    rtcr_epoch_builder_destroy(&b);
    free(buf);
    free(mem);
    free(back);
    free(f);
}

static void count_frame(void *ctx)
{
    (*(unsigned *)ctx)++;
}

static void test_frames_split(void **state)
{
    static const uint64_t sizes[3] = {4 << 20, 65536, 4096};
    struct fixture *f = malloc(sizeof(*f));
    rtcr_epoch_info_t info = info_for("demo", 1, 0);
    rtcr_epoch_builder_t *b = NULL;
    rtcr_epoch_t *e = NULL;
    size_t big = (2u << 20) + 1, len;
    uint8_t *mem = malloc(big);
    void *buf;
    (void)state;

    assert_non_null(f);
    fixture_init(f, 2, sizes);
    fill_random(mem, big);
    assert_int_equal(rtcr_epoch_builder_new(&info, &b), 0);
    assert_int_equal(rtcr_epoch_builder_set_metadata(b, &f->state), 0);
    unsigned frames = 0; /* the progress hook sees every frame as it is compressed */
    rtcr_epoch_builder_set_progress(b, count_frame, &frames);
    /* default frame size: 1 MiB + 1 MiB + 1 byte */
    assert_int_equal(rtcr_epoch_add_pages(b, DS1, 0, mem, big), 0);
    assert_int_equal(frames, 3);
    rtcr_epoch_builder_set_progress(b, NULL, NULL);
    /* 8 KiB frames: 3 * 8192 + 100, compressible content */
    assert_int_equal(rtcr_epoch_builder_set_frame_size(b, 8192), 0);
    assert_int_equal(rtcr_epoch_builder_set_frame_size(b, 0), -EINVAL);
    assert_int_equal(rtcr_epoch_builder_set_frame_size(b, RTCR_IMAGE_MAX_FRAME_SIZE + 1), -EINVAL);
    memset(mem, 'x', 3 * 8192 + 100);
    assert_int_equal(rtcr_epoch_add_pages(b, DS2, 0, mem, 3 * 8192 + 100), 0);
    assert_int_equal(frames, 3); /* unhooked */
    assert_int_equal(rtcr_epoch_finish(b, NULL, &buf, &len), 0);
    assert_int_equal(rtcr_epoch_parse(buf, len, NULL, NULL, &e), 0);

    /* format version 2: the frames are the dataspace's, the runs carry none */
    const RtcrImg__PageIndex *idx = rtcr_epoch_page_index(e);
    assert_int_equal(idx->n_dataspaces, 2);
    const RtcrImg__DataspacePages *d1 = idx->dataspaces[0];
    assert_int_equal(d1->n_runs, 1);
    assert_int_equal(d1->runs[0]->n_frame_size, 0);
    assert_int_equal(d1->n_frame_size, 3);
    assert_int_equal(d1->frame_size[0], 1u << 20);
    assert_int_equal(d1->frame_size[1], 1u << 20);
    assert_int_equal(d1->frame_size[2], 1);
    assert_int_equal(d1->frame_stored[0], 1u << 20); /* random: stored raw */
    const RtcrImg__DataspacePages *d2 = idx->dataspaces[1];
    assert_int_equal(d2->n_frame_size, 4);
    assert_int_equal(d2->frame_size[0], 8192);
    assert_int_equal(d2->frame_size[3], 100);
    assert_true(d2->frame_stored[0] < 8192); /* compressible: LZ4 */

    /* a reader limit below the frame size refuses the epoch */
    rtcr_image_limits_t lim;
    rtcr_image_err_t err;
    rtcr_epoch_t *e2 = NULL;
    rtcr_image_limits_default(&lim);
    lim.max_frame_size = (1u << 20) - 1;
    assert_int_equal(rtcr_epoch_parse(buf, len, &lim, &err, &e2), -E2BIG);
    assert_non_null(strstr(err.msg, "frame 0 of dataspace 0x1a4"));
    assert_null(e2);
    rtcr_epoch_destroy(&e);
    rtcr_epoch_builder_destroy(&b);
    free(buf);
    free(mem);
    free(f);
}

/* pieces handed out by rtcr_epoch_foreach_pages must ascend within a dataspace */
struct order_check {
    uint8_t *mem;  /* reconstruction of DS1 */
    size_t size;   /* its size */
    uint64_t next; /* lowest offset allowed for the next call */
    size_t calls;  /* data calls */
};

static int order_fn(void *opaque, uint32_t ds, uint64_t offset, const void *data, size_t len)
{
    struct order_check *c = opaque;

    if (ds != DS1 || offset < c->next || offset + len > c->size)
        return -ERANGE;
    c->next = offset + len;
    if (data) {
        memcpy(c->mem + offset, data, len);
        c->calls++;
    } else {
        memset(c->mem + offset, 0, len);
    }
    return 0;
}

#define SPAN_SZ (8u << 20) /* the dataspace of test_frames_span_runs */

/* rtcr_image_materialize_into_mt destination: the one dataspace into the caller's buffer */
static int zeroed_dst_fn(void *opaque, uint32_t badge, uint64_t size, void **ret_dst)
{
    if (badge != DS1 || size != SPAN_SZ)
        return -EINVAL;
    *ret_dst = opaque;
    return 0;
}

/* Many scattered runs of odd lengths handed over together: the frames span the runs (a
 * frame ends only at a zero stretch, at the frame size and at the end of the call), far
 * fewer frames than runs; the pages read back exactly, in ascending order; materialising
 * gives the same memory as per-run frames (format 2) and as format 1. */
static void test_frames_span_runs(void **state)
{
    enum { SZ = SPAN_SZ, NR = 600, FRAME = 65536 };
    static const uint64_t sizes[1] = {SZ};
    struct fixture *f = malloc(sizeof(*f));
    uint8_t *mem = calloc(1, SZ), *cat = malloc(SZ), *model = calloc(1, SZ), *back = malloc(SZ);
    rtcr_epoch_run_t runs[NR];
    size_t total = 0, data_runs = 0, len;
    uint64_t pos = 0;
    rtcr_image_err_t err;
    (void)state;

    assert_true(f && mem && cat && model && back);
    fixture_init(f, 1, sizes);
    for (size_t i = 0; i < NR; i++) {
        uint64_t gap = (rnd() % 3) * 4096 + (rnd() % 2) * 100, rl = 1000 + rnd() % 6000;
        pos += gap;
        assert_true(pos + rl <= SZ);
        runs[i] = (rtcr_epoch_run_t){.offset = pos, .len = rl};
        switch (i % 7) {
        case 0: /* all zero: a zero run that interrupts the frames */
            break;
        case 1:
            fill_random(mem + pos, rl);
            break;
        default: /* compressible */
            for (uint64_t k = 0; k < rl; k++)
                mem[pos + k] = (uint8_t)("checkpoint"[k % 10] + i);
        }
        memcpy(cat + total, mem + pos, rl);
        memcpy(model + pos, mem + pos, rl);
        total += rl;
        data_runs += i % 7 != 0;
        pos += rl;
    }
    assert_true(pos < SZ);

    for (enum build_mode m = 0; m < BUILD_MODES; m++) {
        rtcr_epoch_info_t info = info_for("demo", 1, 0);
        rtcr_epoch_builder_t *b = NULL;
        rtcr_epoch_t *e = NULL;
        void *buf;

        assert_int_equal(rtcr_epoch_builder_new(&info, &b), 0);
        assert_int_equal(rtcr_epoch_builder_set_metadata(b, &f->state), 0);
        assert_int_equal(rtcr_epoch_builder_set_frame_size(b, FRAME), 0);
        if (m == BUILD_V1)
            assert_int_equal(rtcr_image__builder_set_version(b, 1), 0);
        if (m == BUILD_SPANNING) {
            assert_int_equal(rtcr_epoch_add_runs(b, DS1, runs, NR, cat), 0);
        } else {
            for (size_t i = 0, at = 0; i < NR; at += runs[i].len, i++)
                assert_int_equal(
                    rtcr_epoch_add_pages(b, DS1, runs[i].offset, cat + at, runs[i].len), 0);
        }
        assert_int_equal(rtcr_image__builder_set_version(b, 1), -EINVAL); /* pages added */
        if (rtcr_epoch_finish(b, &err, &buf, &len) != 0)
            fail_msg("finish: %s", err.msg);
        if (rtcr_epoch_parse_owned(&buf, len, NULL, &err, &e) != 0)
            fail_msg("parse (mode %d): %s", m, err.msg);
        assert_int_equal(e->version, m == BUILD_V1 ? 1 : 2);

        /* the frame table */
        const RtcrImg__EpochStats *st = rtcr_epoch_header(e)->stats;
        size_t spanning = 0, mid = 0;
        for (size_t k = 0; k < e->n_frames; k++) {
            spanning += e->frames[k].n_pieces > 1;
            for (uint32_t q = 0; q < e->frames[k].n_pieces; q++)
                mid += e->pieces[e->frames[k].first_piece + q].frame_off != 0;
        }
        assert_int_equal(st->frames, e->n_frames);
        if (m == BUILD_SPANNING) {
            /* ~2 MB of data in 64 KiB frames, cut also at the ~86 zero runs */
            assert_true(e->n_frames < data_runs / 3);
            assert_true(spanning > 0 && mid > 0);
        } else {
            assert_true(e->n_frames >= data_runs);
            assert_int_equal(spanning, 0);
            assert_int_equal(mid, 0);
        }

        /* read back: ascending, exact, untouched elsewhere */
        struct order_check oc = {.mem = back, .size = SZ};
        memset(back, 0, SZ);
        if (rtcr_epoch_foreach_pages(e, order_fn, &oc, &err) != 0)
            fail_msg("foreach (mode %d): %s", m, err.msg);
        assert_memory_equal(back, model, SZ);
        assert_true(oc.calls > 0);

        /* materialised with 1, 2, 3, 8 and automatic workers */
        rtcr_image_t *img = rtcr_image_new("demo", NULL);
        assert_int_equal(rtcr_image_add_epoch(img, &e, &err), 0);
        for (size_t w = 0; w < 5; w++) {
            static const unsigned workers[5] = {1, 2, 3, 8, 0};
            memset(back, 0, SZ); /* destinations start zero-filled */
            if (rtcr_image_materialize_into_mt(img, 1, workers[w], zeroed_dst_fn, back, &err) != 0)
                fail_msg("materialize (mode %d, %u workers): %s", m, workers[w], err.msg);
            assert_memory_equal(back, model, SZ);
        }
        rtcr_image_destroy(&img);
        rtcr_epoch_builder_destroy(&b);
    }

    /* argument checks: descending, overlapping what the dataspace has, NULL runs, empty */
    {
        rtcr_epoch_info_t info = info_for("demo", 1, 0);
        rtcr_epoch_builder_t *b = NULL;
        rtcr_epoch_run_t bad[2] = {{8192, 100}, {4096, 100}};
        rtcr_epoch_run_t ovl[2] = {{0, 5000}, {4096, 100}};
        rtcr_epoch_run_t empty[2] = {{0, 0}, {4096, 0}};
        rtcr_epoch_run_t ok[2] = {{65536, 100}, {65636, 100}};
        rtcr_epoch_run_t before[1] = {{65000, 10}};
        assert_int_equal(rtcr_epoch_builder_new(&info, &b), 0);
        assert_int_equal(rtcr_epoch_add_runs(b, DS1, bad, 2, cat), -EINVAL);
        assert_int_equal(rtcr_epoch_add_runs(b, DS1, ovl, 2, cat), -EINVAL);
        assert_int_equal(rtcr_epoch_add_runs(b, DS1, NULL, 1, cat), -EINVAL);
        assert_int_equal(rtcr_epoch_add_runs(b, DS1, ok, 2, NULL), -EINVAL);
        assert_int_equal(rtcr_epoch_add_runs(b, 0, ok, 2, cat), -EINVAL);
        assert_int_equal(rtcr_epoch_add_runs(b, DS1, empty, 2, NULL), 0);
        assert_int_equal(rtcr_epoch_add_runs(b, DS1, ok, 2, cat), 0);
        assert_int_equal(rtcr_epoch_add_runs(b, DS1, before, 1, cat), -EINVAL);
        rtcr_epoch_builder_destroy(&b);
    }
    free(f);
    free(mem);
    free(cat);
    free(model);
    free(back);
}

/* Replace the PAGEMAP section (the writer puts it last) of the container in *pbuf by the
 * PageIndex `idx`, fix the lengths and recompute every hash. */
static void replace_index(uint8_t **pbuf, size_t *plen, const RtcrImg__PageIndex *idx)
{
    size_t mlen, moff = section_off(*pbuf, RTCR_IMAGE_SEC_PAGEMAP, &mlen);
    size_t nlen = rtcr_img__page_index__get_packed_size(idx), total = moff + nlen;
    uint8_t *nb = malloc(total);
    uint32_t n = (*pbuf)[12];

    assert_non_null(nb);
    assert_int_equal(moff + mlen, *plen); /* last section */
    memcpy(nb, *pbuf, moff);
    rtcr_img__page_index__pack(idx, nb + moff);
    for (uint32_t i = 0; i < n; i++) {
        uint8_t *e = nb + 32 + 32 * i;
        if (e[0] == RTCR_IMAGE_SEC_PAGEMAP)
            for (int k = 0; k < 8; k++)
                e[16 + k] = (uint8_t)((uint64_t)nlen >> (8 * k));
    }
    for (int k = 0; k < 8; k++)
        nb[16 + k] = (uint8_t)((uint64_t)total >> (8 * k));
    rehash(nb, total);
    free(*pbuf);
    *pbuf = nb;
    *plen = total;
}

/* Format 2 index rules behind the hashes: frames on the dataspace only, consistent lists,
 * frames holding exactly the bytes of the data runs. */
static void test_v2_index_rules(void **state)
{
    void *orig;
    size_t olen;
    rtcr_image_err_t err;
    (void)state;

    small_epoch(&orig, &olen);
    for (int c = 0; c < 4; c++) {
        size_t mlen, moff = section_off(orig, RTCR_IMAGE_SEC_PAGEMAP, &mlen), len = olen;
        uint8_t *buf = malloc(olen);
        RtcrImg__PageIndex *idx;
        rtcr_epoch_t *e = NULL;
        uint32_t extra[1] = {7};

        assert_non_null(buf);
        memcpy(buf, orig, olen);
        idx = rtcr_img__page_index__unpack(NULL, mlen, buf + moff);
        assert_non_null(idx);
        RtcrImg__DataspacePages *dp = idx->dataspaces[0];
        RtcrImg__PageRun *run0 = dp->runs[0];
        uint32_t *saved = run0->frame_size;
        size_t saved_n = run0->n_frame_size, saved_stored = dp->n_frame_stored;
        const char *want = NULL;
        switch (c) {
        case 0: /* unchanged */
            break;
        case 1:
            dp->frame_size[0] += 1;
            want = "epoch 1: dataspace 0x1a4: frames hold 365 bytes, the data runs 364";
            break;
        case 2:
            run0->frame_size = extra;
            run0->n_frame_size = 1;
            want = "epoch 1: run 0 of dataspace 0x1a4: inconsistent frame lists (format version 2)";
            break;
        default:
            dp->n_frame_stored = dp->n_frame_size - 1;
            want = "epoch 1: dataspace 0x1a4: inconsistent frame lists (format version 2)";
        }
        replace_index(&buf, &len, idx);
        if (c == 1)
            dp->frame_size[0] -= 1;
        run0->frame_size = saved;
        run0->n_frame_size = saved_n;
        dp->n_frame_stored = saved_stored;
        rtcr_img__page_index__free_unpacked(idx, NULL);
        if (!want) {
            assert_int_equal(rtcr_epoch_parse(buf, len, NULL, &err, &e), 0);
            rtcr_epoch_destroy(&e);
        } else {
            assert_int_equal(rtcr_epoch_parse(buf, len, NULL, &err, &e), -EBADMSG);
            assert_string_equal(err.msg, want);
            assert_null(e);
        }
        free(buf);
    }
    free(orig);
}

/* Images written by the format 1 writer (the fuzzing seeds committed before format 2) still
 * parse, read back and print; the truncated one is refused. Run from the source tree. */
static void test_v1_files_still_read(void **state)
{
    static const char *const names[3] = {"tests/fuzz/corpus/image/v1-small-full.rtcr",
                                         "tests/fuzz/corpus/image/v1-incremental.rtcr",
                                         "tests/fuzz/corpus/image/v1-truncated.rtcr"};
    (void)state;

    for (int i = 0; i < 3; i++) {
        FILE *fp = fopen(names[i], "rb");
        uint8_t buf[8192];
        size_t len;
        rtcr_epoch_t *e = NULL;
        rtcr_image_err_t err;
        uint8_t back[65536];
        struct collect c = {.mem = back, .size = sizeof(back), .ds = DS1};

        if (!fp)
            fail_msg("%s: %s (tests run from the source tree)", names[i], strerror(errno));
        len = fread(buf, 1, sizeof(buf), fp);
        fclose(fp);
        assert_int_equal(buf[8], 1); /* format version 1 */
        if (i == 2) {
            assert_int_equal(rtcr_epoch_parse(buf, len, NULL, &err, &e), -EBADMSG);
            continue;
        }
        if (rtcr_epoch_parse(buf, len, NULL, &err, &e) != 0)
            fail_msg("%s: %s", names[i], err.msg);
        assert_int_equal(e->version, 1);
        assert_true(e->n_frames > 0);
        memset(back, 0x55, sizeof(back));
        assert_int_equal(rtcr_epoch_foreach_pages(e, collect_fn, &c, &err), 0);
        assert_true(c.frames > 0);
        char *text = NULL;
        size_t tlen = 0;
        FILE *mf = open_memstream(&text, &tlen);
        assert_non_null(mf);
        rtcr_epoch_print(e, mf, true);
        fclose(mf);
        assert_non_null(strstr(text, "format version 1"));
        assert_non_null(strstr(text, "frame 0:"));
        free(text);
        rtcr_epoch_destroy(&e);
    }
}

static void test_corrupt_every_byte(void **state)
{
    void *buf;
    size_t len;
    uint8_t *copy;
    rtcr_epoch_t *e = NULL;
    rtcr_image_limits_t lim;
    (void)state;

    small_epoch(&buf, &len);
    assert_int_equal(rtcr_epoch_parse(buf, len, NULL, NULL, &e), 0);
    rtcr_epoch_destroy(&e);
    copy = malloc(len);
    rtcr_image_limits_default(&lim);
    for (size_t i = 0; i < len; i++) {
        static const uint8_t flips[2] = {0x01, 0xff};
        for (int k = 0; k < 2; k++) {
            rtcr_image_err_t err = {{0}};
            memcpy(copy, buf, len);
            copy[i] ^= flips[k];
            lim.skip_frame_check = k == 1;
            int r = rtcr_epoch_parse(copy, len, &lim, &err, &e);
            if (r >= 0)
                fail_msg("flip 0x%02x at byte %zu of %zu accepted", flips[k], i, len);
            assert_true(r == -EBADMSG || r == -EPROTO || r == -E2BIG);
            assert_true(err.msg[0] != '\0');
            assert_null(e);
        }
    }
    free(copy);
    free(buf);
}

static void test_truncated_every_length(void **state)
{
    void *buf;
    size_t len;
    rtcr_epoch_t *e = NULL;
    uint8_t *longer;
    (void)state;

    small_epoch(&buf, &len);
    for (size_t n = 0; n < len; n++) {
        rtcr_image_err_t err = {{0}};
        /* a private copy of exactly n bytes, so ASan sees any read beyond */
        uint8_t *p = malloc(n ? n : 1);
        memcpy(p, buf, n);
        assert_int_equal(rtcr_epoch_parse(p, n, NULL, &err, &e), -EBADMSG);
        assert_true(err.msg[0] != '\0');
        free(p);
    }
    /* one byte too many */
    longer = calloc(1, len + 1);
    memcpy(longer, buf, len);
    assert_int_equal(rtcr_epoch_parse(longer, len + 1, NULL, NULL, &e), -EBADMSG);
    assert_int_equal(rtcr_epoch_parse(NULL, 5, NULL, NULL, &e), -EINVAL);
    assert_null(e);
    free(longer);
    free(buf);
}

static void test_magic_version(void **state)
{
    void *buf;
    size_t len;
    rtcr_epoch_t *e = NULL;
    rtcr_image_err_t err;
    uint8_t *p;
    (void)state;

    small_epoch(&buf, &len);
    p = buf;
    p[7] = '2';
    assert_int_equal(rtcr_epoch_parse(p, len, NULL, &err, &e), -EBADMSG);
    assert_non_null(strstr(err.msg, "magic"));
    p[7] = '1';
    assert_int_equal(p[8], RTCR_IMAGE_VERSION);
    p[8] = RTCR_IMAGE_VERSION + 1; /* hashes recomputed: still refused for the version */
    rehash(p, len);
    assert_int_equal(rtcr_epoch_parse(p, len, NULL, &err, &e), -EPROTO);
    assert_non_null(strstr(err.msg, "version 3, this reader supports 1 to 2"));
    p[8] = 0;
    rehash(p, len);
    assert_int_equal(rtcr_epoch_parse(p, len, NULL, &err, &e), -EPROTO);
    /* a version 2 index under a version 1 label: frames where version 1 has none */
    p[8] = 1;
    rehash(p, len);
    assert_int_equal(rtcr_epoch_parse(p, len, NULL, &err, &e), -EBADMSG);
    assert_string_equal(err.msg,
                        "epoch 1: dataspace 0x1a4: inconsistent frame lists (format version 1)");
    p[8] = RTCR_IMAGE_VERSION;
    rehash(p, len);
    assert_int_equal(rtcr_epoch_parse(p, len, NULL, &err, &e), 0);
    rtcr_epoch_destroy(&e);
    free(buf);
}

static void test_limits(void **state)
{
    void *buf;
    size_t len;
    rtcr_epoch_t *e = NULL;
    rtcr_image_limits_t lim;
    rtcr_image_err_t err;
    (void)state;

    small_epoch(&buf, &len);
    rtcr_image_limits_default(&lim);
    lim.max_total = len - 1;
    assert_int_equal(rtcr_epoch_parse(buf, len, &lim, &err, &e), -E2BIG);
    rtcr_image_limits_default(&lim);
    lim.max_metadata = 16;
    assert_int_equal(rtcr_epoch_parse(buf, len, &lim, &err, &e), -E2BIG);
    assert_non_null(strstr(err.msg, "metadata section"));
    rtcr_image_limits_default(&lim);
    lim.max_pagemap = 4;
    assert_int_equal(rtcr_epoch_parse(buf, len, &lim, &err, &e), -E2BIG);
    rtcr_image_limits_default(&lim);
    lim.max_header = 4;
    assert_int_equal(rtcr_epoch_parse(buf, len, &lim, &err, &e), -E2BIG);
    rtcr_image_limits_default(&lim);
    lim.max_frames = 1; /* the small epoch has 2 frames */
    assert_int_equal(rtcr_epoch_parse(buf, len, &lim, &err, &e), -E2BIG);
    assert_non_null(strstr(err.msg, "frames"));
    rtcr_image_limits_default(&lim);
    lim.max_frame_size = 64;
    assert_int_equal(rtcr_epoch_parse(buf, len, &lim, &err, &e), -E2BIG);
    rtcr_image_limits_default(&lim);
    lim.max_dataspace = 4096; /* the dataspace has 64 KiB */
    assert_int_equal(rtcr_epoch_parse(buf, len, &lim, &err, &e), -E2BIG);
    assert_non_null(strstr(err.msg, "dataspace 0x1a4"));
    rtcr_image_limits_default(&lim);
    lim.max_unpacked = 256;
    assert_int_equal(rtcr_epoch_parse(buf, len, &lim, &err, &e), -E2BIG);
    rtcr_image_limits_default(&lim);
    lim.max_total = 0;
    assert_int_equal(rtcr_epoch_parse(buf, len, &lim, &err, &e), -EINVAL);
    assert_null(e);
    rtcr_image_limits_default(&lim);
    assert_int_equal(rtcr_epoch_parse(buf, len, &lim, &err, &e), 0);
    rtcr_epoch_destroy(&e);
    free(buf);
}

static void test_corrupt_frame_rehashed(void **state)
{
    void *buf;
    size_t len, dlen, doff;
    rtcr_epoch_t *e = NULL;
    rtcr_image_limits_t lim;
    rtcr_image_err_t err;
    uint8_t *p;
    uint8_t back[65536];
    struct collect c = {.mem = back, .size = sizeof(back), .ds = DS1};
    (void)state;

    small_epoch(&buf, &len);
    p = buf;
    /* the last frame is the 64 random bytes, stored raw: flipping one gives a hash mismatch
     * that only the frame hash can catch once the section hashes are recomputed */
    doff = section_off(p, RTCR_IMAGE_SEC_DATA, &dlen);
    assert_true(dlen > 64);
    p[doff + dlen - 1] ^= 0x40;
    rehash(p, len);
    assert_int_equal(rtcr_epoch_parse(p, len, NULL, &err, &e), -EBADMSG);
    assert_string_equal(err.msg, "epoch 1: frame 1 of dataspace 0x1a4: hash mismatch");
    rtcr_image_limits_default(&lim);
    lim.skip_frame_check = true;
    assert_int_equal(rtcr_epoch_parse(p, len, &lim, &err, &e), 0);
    assert_int_equal(rtcr_epoch_foreach_pages(e, collect_fn, &c, &err), -EBADMSG);
    assert_non_null(strstr(err.msg, "hash mismatch"));
    rtcr_epoch_destroy(&e);

    /* the compressed first frame: decompression fails or the hash mismatches */
    p[doff + dlen - 1] ^= 0x40;
    p[doff + 2] ^= 0x55;
    rehash(p, len);
    assert_int_equal(rtcr_epoch_parse(p, len, NULL, &err, &e), -EBADMSG);
    assert_non_null(strstr(err.msg, "frame 0 of dataspace 0x1a4"));

    /* metadata changed and rehashed: the header's metadata hash catches it */
    p[doff + 2] ^= 0x55;
    size_t mlen, moff = section_off(p, RTCR_IMAGE_SEC_METADATA, &mlen);
    p[moff + mlen - 1] ^= 0x01;
    rehash(p, len);
    assert_int_equal(rtcr_epoch_parse(p, len, NULL, &err, &e), -EBADMSG);
    assert_non_null(strstr(err.msg, "metadata hash"));
    free(buf);
}

static void test_builder_errors(void **state)
{
    static const uint64_t sizes[3] = {8192, 8192, 8192};
    struct fixture *f = malloc(sizeof(*f));
    rtcr_epoch_info_t info = info_for("demo", 3, 2);
    rtcr_epoch_builder_t *b = NULL;
    rtcr_image_err_t err;
    uint8_t page[4096] = {1};
    void *buf = NULL;
    size_t len;
    (void)state;

    fixture_init(f, 1, sizes);
    info.target = "../etc";
    assert_int_equal(rtcr_epoch_builder_new(&info, &b), -EINVAL);
    info.target = "";
    assert_int_equal(rtcr_epoch_builder_new(&info, &b), -EINVAL);
    info.target = "demo";
    info.parent = 1; /* not epoch - 1 */
    assert_int_equal(rtcr_epoch_builder_new(&info, &b), -EINVAL);
    info.parent = 2;
    info.epoch = 0;
    assert_int_equal(rtcr_epoch_builder_new(&info, &b), -EINVAL);
    info.epoch = 3;
    info.build_id_len = RTCR_IMAGE_BUILD_ID_MAX + 1;
    assert_int_equal(rtcr_epoch_builder_new(&info, &b), -EINVAL);
    info.build_id_len = sizeof(build_a);
    assert_null(b);
    assert_int_equal(rtcr_epoch_builder_new(&info, &b), 0);

    /* no metadata yet */
    assert_int_equal(rtcr_epoch_finish(b, &err, &buf, &len), -EINVAL);
    assert_non_null(strstr(err.msg, "no metadata"));
    /* order and overlap */
    assert_int_equal(rtcr_epoch_add_pages(b, DS1, 4096, page, 4096), 0);
    assert_int_equal(rtcr_epoch_add_pages(b, DS1, 0, page, 4096), -EINVAL);
    assert_int_equal(rtcr_epoch_add_pages(b, DS1, 4096 + 100, page, 10), -EINVAL);
    assert_int_equal(rtcr_epoch_add_pages(b, 0, 0, page, 10), -EINVAL);
    assert_int_equal(rtcr_epoch_add_pages(b, DS1, 8192, NULL, 10), -EINVAL);
    assert_int_equal(rtcr_epoch_add_pages(b, DS1, UINT64_MAX - 5, page, 10), -EINVAL);
    assert_int_equal(rtcr_epoch_add_pages(b, DS1, 8192, page, 0), 0);
    /* bad metadata: duplicate session badge, slot out of range, mismatched oneof */
    f->s[1].badge = f->s[0].badge;
    assert_int_equal(rtcr_epoch_builder_set_metadata(b, &f->state), -EINVAL);
    f->s[1].badge = 0x104;
    f->ce[5].slot = 4096;
    assert_int_equal(rtcr_epoch_builder_set_metadata(b, &f->state), -EINVAL);
    f->ce[5].slot = 0x201;
    f->s[5].type = RTCR_IMG__SESSION_TYPE__SESSION_TIMER;
    assert_int_equal(rtcr_epoch_builder_set_metadata(b, &f->state), -EINVAL);
    f->s[5].type = RTCR_IMG__SESSION_TYPE__SESSION_LOG;
    f->ds[0].size = 1ull << 40;
    assert_int_equal(rtcr_epoch_builder_set_metadata(b, &f->state), -E2BIG);
    f->ds[0].size = 8192;
    assert_int_equal(rtcr_epoch_builder_set_metadata_blob(b, "\xff\xff\xff", 3), -EBADMSG);
    assert_int_equal(rtcr_epoch_builder_set_metadata(b, &f->state), 0);
    /* pages of an undeclared dataspace */
    assert_int_equal(rtcr_epoch_add_pages(b, DS3, 0, page, 4096), 0);
    assert_int_equal(rtcr_epoch_finish(b, &err, &buf, &len), -EINVAL);
    assert_non_null(strstr(err.msg, "dataspace 0x1c0"));
    rtcr_epoch_builder_destroy(&b);

    /* pages beyond the dataspace size */
    assert_int_equal(rtcr_epoch_builder_new(&info, &b), 0);
    assert_int_equal(rtcr_epoch_builder_set_metadata(b, &f->state), 0);
    assert_int_equal(rtcr_epoch_add_pages(b, DS1, 8192, page, 1), 0);
    assert_int_equal(rtcr_epoch_finish(b, &err, &buf, &len), -EINVAL);
    assert_non_null(strstr(err.msg, "beyond its size"));
    rtcr_epoch_builder_destroy(&b);

    /* finish twice */
    assert_int_equal(rtcr_epoch_builder_new(&info, &b), 0);
    assert_int_equal(rtcr_epoch_builder_set_metadata(b, &f->state), 0);
    assert_int_equal(rtcr_epoch_finish(b, &err, &buf, &len), 0);
    free(buf);
    assert_int_equal(rtcr_epoch_finish(b, &err, &buf, &len), -EINVAL);
    assert_int_equal(rtcr_epoch_add_pages(b, DS1, 0, page, 1), -EINVAL);
    rtcr_epoch_builder_destroy(&b);
    rtcr_epoch_builder_destroy(NULL);
    free(f);
}

/* ---- chains ------------------------------------------------------------------------------- */

/* An epoch of target `t` with the fixture's state (dataspace sizes as given) and, per
 * dataspace, the given runs taken from mem[d] (NULL run data = zero run). */
struct run {
    int ds;       /* index 0..2 into DS1..DS3 */
    uint64_t off; /* offset */
    uint64_t len; /* bytes */
    bool zero;    /* add_zero instead of pages */
};

/* runs[i..) of one dataspace, all data, as one rtcr_epoch_add_runs call; returns the next i */
static size_t add_spanning(rtcr_epoch_builder_t *b, uint32_t badge, uint8_t *mem,
                           const struct run *runs, size_t n, size_t i)
{
    size_t j = i, total = 0, at = 0;
    while (j < n && !runs[j].zero && runs[j].ds == runs[i].ds)
        total += runs[j++].len;
    uint8_t *cat = malloc(total);
    rtcr_epoch_run_t *rr = calloc(j - i, sizeof(*rr));
    assert_true(cat && rr);
    for (size_t k = i; k < j; k++) {
        memcpy(cat + at, mem + runs[k].off, runs[k].len);
        rr[k - i] = (rtcr_epoch_run_t){.offset = runs[k].off, .len = runs[k].len};
        at += runs[k].len;
    }
    assert_int_equal(rtcr_epoch_add_runs(b, badge, rr, j - i, cat), 0);
    free(cat);
    free(rr);
    return j;
}

static rtcr_epoch_t *make_epoch(const char *t, uint64_t num, uint64_t parent, size_t n_ds,
                                const uint64_t *sizes, uint8_t *const *mem, const struct run *runs,
                                size_t n_runs, const uint8_t *bid)
{
    static const uint32_t badges[3] = {DS1, DS2, DS3};
    struct fixture *f = malloc(sizeof(*f));
    rtcr_epoch_info_t info = info_for(t, num, parent);
    rtcr_epoch_builder_t *b = NULL;
    rtcr_epoch_t *e = NULL;
    rtcr_image_err_t err;
    void *buf;
    size_t len;

    assert_non_null(f);
    if (bid) { /* the only other build id the tests use */
        info.build_id = bid;
        info.build_id_len = sizeof(build_b);
    }
    fixture_init(f, n_ds, sizes);
    assert_int_equal(rtcr_epoch_builder_new(&info, &b), 0);
    assert_int_equal(rtcr_epoch_builder_set_frame_size(b, 8192), 0);
    if (build_mode == BUILD_V1)
        assert_int_equal(rtcr_image__builder_set_version(b, 1), 0);
    for (size_t i = 0; i < n_runs;) {
        const struct run *r = &runs[i];
        if (r->zero) {
            assert_int_equal(rtcr_epoch_add_zero(b, badges[r->ds], r->off, r->len), 0);
            i++;
        } else if (build_mode == BUILD_SPANNING) {
            i = add_spanning(b, badges[r->ds], mem[r->ds], runs, n_runs, i);
        } else {
            assert_int_equal(
                rtcr_epoch_add_pages(b, badges[r->ds], r->off, mem[r->ds] + r->off, r->len), 0);
            i++;
        }
    }
    assert_int_equal(rtcr_epoch_builder_set_metadata(b, &f->state), 0);
    if (rtcr_epoch_finish(b, &err, &buf, &len) != 0)
        fail_msg("finish: %s", err.msg);
    if (rtcr_epoch_parse_owned(&buf, len, NULL, &err, &e) != 0)
        fail_msg("parse: %s", err.msg);
    assert_null(buf);
    rtcr_epoch_builder_destroy(&b);
    free(f);
    return e;
}

/* Frames of interleaved dataspaces (DS1, DS2, DS1, DS2) are reordered into PageIndex order at
 * finish; a reserved builder and a growing one give epochs with the same pages. */
static void test_interleaved_and_reserve(void **state)
{
    static const uint64_t sizes[2] = {65536, 32768};
    uint8_t *mem[2] = {malloc(65536), malloc(32768)};
    struct run runs[5] = {{0, 0, 8192, false},
                          {1, 4096, 12288, false},
                          {0, 20480, 4096, true},
                          {0, 40960, 16384, false},
                          {1, 24576, 8192, false}};
    (void)state;

    assert_non_null(mem[0]);
    assert_non_null(mem[1]);
    fill_random(mem[0], 65536);
    fill_random(mem[1], 32768);
    rtcr_epoch_t *e = make_epoch("demo", 1, 0, 2, sizes, mem, runs, 5, NULL);
    static const uint32_t badges[2] = {DS1, DS2};
    for (int d = 0; d < 2; d++) {
        struct collect c = {.mem = calloc(1, sizes[d]), .size = sizes[d], .ds = badges[d]};
        assert_non_null(c.mem);
        assert_int_equal(rtcr_epoch_foreach_pages(e, collect_fn, &c, NULL), 0);
        for (size_t i = 0; i < 5; i++)
            if (runs[i].ds == d && !runs[i].zero)
                assert_memory_equal(c.mem + runs[i].off, mem[d] + runs[i].off, runs[i].len);
        assert_int_equal(c.zero_runs, d == 0 ? 1 : 0);
        free(c.mem);
    }
    rtcr_epoch_destroy(&e);

    /* reserve: a hint only; errors on a finished builder and above the image limit */
    struct fixture *f = malloc(sizeof(*f));
    assert_non_null(f);
    fixture_init(f, 2, sizes);
    void *bufs[2];
    size_t lens[2];
    for (int k = 0; k < 2; k++) {
        rtcr_epoch_info_t info = info_for("demo", 1, 0);
        info.created_usec = 1; /* both epochs alike, byte for byte */
        rtcr_epoch_builder_t *b = NULL;
        assert_int_equal(rtcr_epoch_builder_new(&info, &b), 0);
        assert_int_equal(rtcr_epoch_builder_reserve(b, RTCR_IMAGE_MAX_TOTAL + 1ull), -E2BIG);
        if (k == 1)
            assert_int_equal(rtcr_epoch_builder_reserve(b, 4096), 0); /* too small: grows */
        assert_int_equal(rtcr_epoch_builder_set_metadata(b, &f->state), 0);
        assert_int_equal(rtcr_epoch_add_pages(b, DS1, 0, mem[0], 65536), 0);
        assert_int_equal(rtcr_epoch_add_pages(b, DS2, 0, mem[1], 32768), 0);
        assert_int_equal(rtcr_epoch_finish(b, NULL, &bufs[k], &lens[k]), 0);
        assert_int_equal(rtcr_epoch_builder_reserve(b, 4096), -EINVAL);
        rtcr_epoch_builder_destroy(&b);
    }
    /* (the lengths may differ by the varint of the encode time in the header) */
    for (int k = 0; k < 2; k++) {
        assert_int_equal(rtcr_epoch_parse(bufs[k], lens[k], NULL, NULL, &e), 0);
        for (int d = 0; d < 2; d++) {
            struct collect c = {.mem = calloc(1, sizes[d]), .size = sizes[d], .ds = badges[d]};
            assert_non_null(c.mem);
            assert_int_equal(rtcr_epoch_foreach_pages(e, collect_fn, &c, NULL), 0);
            assert_memory_equal(c.mem, mem[d], sizes[d]);
            free(c.mem);
        }
        rtcr_epoch_destroy(&e);
        free(bufs[k]);
    }
    free(f);
    free(mem[0]);
    free(mem[1]);
}

static void test_chain_validation(void **state)
{
    static const uint64_t sizes[1] = {16384};
    uint8_t *mem[1] = {calloc(1, 16384)};
    struct run r1[1] = {{0, 0, 4096, false}};
    rtcr_image_t *img = rtcr_image_new("demo", NULL);
    rtcr_epoch_t *e;
    rtcr_image_err_t err;
    (void)state;

    assert_null(rtcr_image_new("a/b", NULL));
    assert_non_null(img);
    assert_int_equal(rtcr_image_check(img, &err), -ENOENT);
    fill_random(mem[0], 16384);

    /* an incremental epoch cannot start a chain */
    e = make_epoch("demo", 2, 1, 1, sizes, mem, r1, 1, NULL);
    assert_int_equal(rtcr_image_add_epoch(img, &e, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "no full epoch"));
    assert_non_null(e);
    rtcr_epoch_destroy(&e);
    /* wrong target */
    e = make_epoch("other", 1, 0, 1, sizes, mem, r1, 1, NULL);
    assert_int_equal(rtcr_image_add_epoch(img, &e, &err), -EINVAL);
    rtcr_epoch_destroy(&e);

    for (uint64_t n = 1; n <= 3; n++) {
        e = make_epoch("demo", n, n - 1, 1, sizes, mem, r1, 1, NULL);
        assert_int_equal(rtcr_image_add_epoch(img, &e, &err), 0);
        assert_null(e);
    }
    assert_int_equal(rtcr_image_count(img), 3);
    assert_int_equal(rtcr_image_first(img), 1);
    assert_int_equal(rtcr_image_last(img), 3);
    assert_int_equal(rtcr_image_check(img, &err), 0);

    /* old or duplicate */
    e = make_epoch("demo", 3, 2, 1, sizes, mem, r1, 1, NULL);
    assert_int_equal(rtcr_image_add_epoch(img, &e, &err), -ESTALE);
    rtcr_epoch_destroy(&e);
    /* gap (epoch 5 names parent 4, the chain ends at 3) */
    e = make_epoch("demo", 5, 4, 1, sizes, mem, r1, 1, NULL);
    assert_int_equal(rtcr_image_add_epoch(img, &e, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "missing 4"));
    rtcr_epoch_destroy(&e);
    /* foreign build id */
    e = make_epoch("demo", 4, 3, 1, sizes, mem, r1, 1, build_b);
    assert_int_equal(rtcr_image_add_epoch(img, &e, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "foreign build id"));
    rtcr_epoch_destroy(&e);
    assert_int_equal(rtcr_image_count(img), 3);
    assert_int_equal(rtcr_image_check(img, &err), 0);

    /* a newer full epoch replaces the chain */
    e = make_epoch("demo", 9, 0, 1, sizes, mem, r1, 1, build_b);
    assert_int_equal(rtcr_image_add_epoch(img, &e, &err), 0);
    assert_int_equal(rtcr_image_count(img), 1);
    assert_int_equal(rtcr_image_first(img), 9);
    assert_null(rtcr_image_epoch(img, 3));
    assert_non_null(rtcr_image_epoch(img, 9));
    assert_int_equal(rtcr_image_materialize(img, 3, &err, &(rtcr_memstate_t *){NULL}), -EINVAL);

    rtcr_image_destroy(&img);
    rtcr_image_destroy(&img);
    assert_null(img);
    free(mem[0]);
}

/* reference model: apply epochs by hand */
static void test_materialize_lifetime(void **state)
{
    uint64_t sz2[2] = {16384, 8192}, sz1[1] = {16384};
    uint8_t *m1[2] = {malloc(16384), malloc(8192)};
    uint8_t *m2[2] = {malloc(16384), malloc(8192)};
    uint8_t *m3[2] = {malloc(16384), malloc(8192)};
    rtcr_image_t *img = rtcr_image_new("demo", NULL);
    rtcr_memstate_t *ms = NULL;
    rtcr_epoch_t *e;
    rtcr_image_err_t err;
    const uint8_t *d;
    uint64_t size;
    uint32_t badge;
    (void)state;

    fill_random(m1[0], 16384);
    fill_random(m1[1], 8192);
    fill_random(m2[0], 16384);
    fill_random(m3[0], 16384);
    memset(m3[1], 0x77, 8192);

    /* 1: both dataspaces fully; 2: DS2 gone, DS1 page 1 rewritten;
     * 3: DS2 back (same badge, same size) with only page 1 written; DS1 page 2 zeroed */
    struct run e1[2] = {{0, 0, 16384, false}, {1, 0, 8192, false}};
    struct run e2[1] = {{0, 4096, 4096, false}};
    struct run e3[2] = {{0, 8192, 4096, true}, {1, 4096, 4096, false}};
    e = make_epoch("demo", 1, 0, 2, sz2, m1, e1, 2, NULL);
    assert_int_equal(rtcr_image_add_epoch(img, &e, &err), 0);
    e = make_epoch("demo", 2, 1, 1, sz1, m2, e2, 1, NULL);
    assert_int_equal(rtcr_image_add_epoch(img, &e, &err), 0);
    e = make_epoch("demo", 3, 2, 2, sz2, m3, e3, 2, NULL);
    assert_int_equal(rtcr_image_add_epoch(img, &e, &err), 0);

    assert_int_equal(rtcr_image_materialize(img, 3, &err, &ms), 0);
    assert_int_equal(rtcr_memstate_count(ms), 2);
    assert_int_equal(rtcr_memstate_get(ms, 2, &badge, &size, &d), -ERANGE);
    assert_int_equal(rtcr_memstate_get(ms, 0, &badge, &size, &d), 0);
    assert_int_equal(badge, DS1);
    assert_int_equal(size, 16384);
    assert_memory_equal(d, m1[0], 4096);
    assert_memory_equal(d + 4096, m2[0] + 4096, 4096);
    for (size_t i = 8192; i < 12288; i++)
        assert_int_equal(d[i], 0);
    assert_memory_equal(d + 12288, m1[0] + 12288, 4096);
    d = rtcr_memstate_find(ms, DS2, &size);
    assert_non_null(d);
    assert_int_equal(size, 8192);
    /* DS2's old content of epoch 1 is not resurrected: page 0 reads as zero */
    for (size_t i = 0; i < 4096; i++)
        assert_int_equal(d[i], 0);
    assert_memory_equal(d + 4096, m3[1] + 4096, 4096);
    assert_null(rtcr_memstate_find(ms, DS3, NULL));
    rtcr_memstate_destroy(&ms);

    /* epoch 2: DS1 only */
    assert_int_equal(rtcr_image_materialize(img, 2, &err, &ms), 0);
    assert_int_equal(rtcr_memstate_count(ms), 1);
    d = rtcr_memstate_find(ms, DS1, NULL);
    assert_memory_equal(d, m1[0], 4096);
    assert_memory_equal(d + 4096, m2[0] + 4096, 4096);
    assert_memory_equal(d + 8192, m1[0] + 8192, 8192);
    rtcr_memstate_destroy(&ms);
    rtcr_memstate_destroy(&ms);

    rtcr_image_destroy(&img);
    for (int i = 0; i < 2; i++) {
        free(m1[i]);
        free(m2[i]);
        free(m3[i]);
    }
}

enum { NDS = 3, DSZ = 64 * 1024 };

/* Random chain of `n` epochs with a reference model; returns the models per epoch in
 * model[k][ds] (NULL if the dataspace is not declared at epoch k+1). */
struct chain {
    rtcr_image_t *img;        /* the chain */
    uint8_t *model[101][NDS]; /* expected content per epoch and dataspace */
    uint64_t size[101][NDS];  /* declared size (0 = not declared) */
};

static void chain_build(struct chain *c, int n)
{
    uint8_t *cur[NDS];
    uint64_t size[NDS] = {DSZ, DSZ / 2, 0};
    rtcr_image_err_t err;

    c->img = rtcr_image_new("demo", NULL);
    for (int d = 0; d < NDS; d++)
        cur[d] = calloc(1, DSZ);
    for (int k = 1; k <= n; k++) {
        struct run runs[64];
        size_t nr = 0;
        uint64_t sizes[NDS];
        size_t n_ds;
        /* dataspace life: DS3 appears at 30 (32 KiB), is destroyed at 60, returns at 70
         * with another size (16 KiB) and the same badge */
        if (k == 30)
            size[2] = DSZ / 2;
        if (k == 60)
            size[2] = 0;
        if (k == 70)
            size[2] = DSZ / 4;
        for (int d = 0; d < NDS; d++)
            if (size[d] == 0 || (k > 1 && c->size[k - 2][d] != size[d]))
                memset(cur[d], 0, DSZ); /* new lifetime starts zero-filled */
        for (int d = 0; d < NDS; d++) {
            uint64_t pos = 0;
            if (!size[d])
                continue;
            /* a few random runs in ascending order */
            while (nr < 64 && pos < size[d]) {
                uint64_t gap = (rnd() % 6) * 1024, len = 1 + rnd() % 9000;
                if (pos + gap >= size[d])
                    break;
                pos += gap;
                if (len > size[d] - pos)
                    len = size[d] - pos;
                int kind = (int)(rnd() % 4);
                if (kind == 0) {
                    memset(cur[d] + pos, 0, len);
                    runs[nr++] = (struct run){d, pos, len, true};
                } else {
                    if (kind == 1)
                        fill_random(cur[d] + pos, len);
                    else if (kind == 2)
                        memset(cur[d] + pos, 0, len); /* zero data: detected as zero run */
                    else
                        memset(cur[d] + pos, (int)(rnd() & 0xff), len);
                    runs[nr++] = (struct run){d, pos, len, false};
                }
                pos += len;
            }
        }
        /* the fixture declares the first n_ds of DS1..DS3: keep DS3 last */
        n_ds = size[2] ? 3 : 2;
        for (int d = 0; d < NDS; d++)
            sizes[d] = size[d];
        rtcr_epoch_t *e =
            make_epoch("demo", (uint64_t)k, (uint64_t)k - 1, n_ds, sizes, cur, runs, nr, NULL);
        if (rtcr_image_add_epoch(c->img, &e, &err) != 0)
            fail_msg("epoch %d: %s", k, err.msg);
        for (int d = 0; d < NDS; d++) {
            c->size[k - 1][d] = size[d];
            c->model[k - 1][d] = NULL;
            if (size[d]) {
                c->model[k - 1][d] = malloc(size[d]);
                memcpy(c->model[k - 1][d], cur[d], size[d]);
            }
        }
    }
    for (int d = 0; d < NDS; d++)
        free(cur[d]);
}

static void chain_free(struct chain *c, int n)
{
    for (int k = 0; k < n; k++)
        for (int d = 0; d < NDS; d++)
            free(c->model[k][d]);
    rtcr_image_destroy(&c->img);
}

static void expect_kept_memory(const rtcr_memstate_t *m, const struct chain *c, int k);

static void expect_state(const rtcr_image_t *img, const struct chain *c, int k)
{
    rtcr_memstate_t *ms = NULL;
    rtcr_image_err_t err;

    if (rtcr_image_materialize(img, (uint64_t)k, &err, &ms) != 0)
        fail_msg("materialize %d: %s", k, err.msg);
    expect_kept_memory(ms, c, k);
    rtcr_memstate_destroy(&ms);
}

/* Add copies of epochs lo..hi of src to dst, each in a container of whole 64 KiB as the
 * checkpointer's reserve makes them (so that they can be recycled for a small epoch). */
static void copy_epochs(rtcr_image_t *dst, const rtcr_image_t *src, uint64_t lo, uint64_t hi)
{
    rtcr_image_err_t err;
    for (uint64_t n = lo; n <= hi; n++) {
        size_t len;
        const void *bytes = rtcr_epoch_bytes(rtcr_image_epoch(src, n), &len);
        void *buf = malloc((len + 65535) / 65536 * 65536);
        assert_non_null(buf);
        memcpy(buf, bytes, len);
        rtcr_epoch_t *e = NULL;
        if (rtcr_epoch_parse_owned(&buf, len, NULL, &err, &e) != 0 ||
            rtcr_image_add_epoch(dst, &e, &err) != 0)
            fail_msg("epoch %llu: %s", (unsigned long long)n, err.msg);
    }
}

struct compact_job {
    rtcr_image_compaction_t *c; /* the job */
    int r;                      /* its result */
    rtcr_image_err_t err;       /* its message */
};

static void *compact_thread(void *p)
{
    struct compact_job *j = p;
    j->r = rtcr_image_compaction_run(j->c, &j->err);
    return NULL;
}

/* Compaction in three steps, the middle one on another thread while the owner appends epochs;
 * commit checks the chain; the containers of the dropped epochs become spares, and a builder
 * that takes one writes the same bytes as one that does not. */
static void test_compaction_in_background(void **state)
{
    struct chain *c = calloc(1, sizeof(*c));
    rtcr_image_t *img = rtcr_image_new("demo", NULL), *other = rtcr_image_new("demo", NULL);
    struct compact_job j = {0};
    const rtcr_epoch_t *full = NULL;
    rtcr_image_err_t err;
    pthread_t th;
    size_t n_sp = 0, sp_bytes = 0;

    (void)state;
    chain_build(c, 100);
    copy_epochs(img, c->img, 1, 60);
    copy_epochs(other, c->img, 1, 60); /* same content, other epoch objects */

    assert_int_equal(rtcr_image_compaction_new(img, 61, &err, &j.c), -EINVAL);
    assert_int_equal(rtcr_image_compaction_new(img, 60, &err, &j.c), 0);
    assert_int_equal(rtcr_image_compaction_epoch(j.c), 60);
    assert_null(rtcr_image_compaction_result(j.c));
    /* committing before it ran changes nothing */
    assert_int_equal(rtcr_image_compaction_commit(img, &j.c, &err, NULL), -EINVAL);
    assert_non_null(j.c);
    assert_int_equal(rtcr_image_count(img), 60);

    unsigned frames = 0; /* the full epoch's encoder reports every frame */
    rtcr_image_compaction_set_progress(j.c, count_frame, &frames);
    assert_int_equal(pthread_create(&th, NULL, compact_thread, &j), 0);
    copy_epochs(img, c->img, 61, 100); /* meanwhile, the chain grows */
    assert_int_equal(pthread_join(th, NULL), 0);
    if (j.r != 0)
        fail_msg("compaction run: %s", j.err.msg);
    assert_non_null(rtcr_image_compaction_result(j.c));
    const RtcrImg__PageIndex *cidx = rtcr_epoch_page_index(rtcr_image_compaction_result(j.c));
    size_t want = 0;
    for (size_t i = 0; i < cidx->n_dataspaces; i++)
        want += cidx->dataspaces[i]->n_frame_size;
    assert_true(want > 0);
    assert_int_equal(frames, want);
    assert_int_equal(rtcr_image_compaction_run(j.c, &err), -EINVAL); /* once */

    /* a chain that does not start with the epochs it read refuses the result */
    assert_int_equal(rtcr_image_compaction_commit(other, &j.c, &err, NULL), -ESTALE);
    assert_non_null(strstr(err.msg, "changed while epoch 60 was being compacted"));
    assert_int_equal(rtcr_image_count(other), 60);

    rtcr_image_spares(img, &n_sp, &sp_bytes);
    assert_int_equal(n_sp, 0);
    assert_int_equal(rtcr_image_compaction_commit(img, &j.c, &err, &full), 0);
    assert_null(j.c);
    assert_true(rtcr_epoch_is_full(full));
    assert_int_equal(rtcr_epoch_number(full), 60);
    assert_int_equal(rtcr_epoch_header(full)->compacted_from, 1);
    assert_int_equal(rtcr_image_first(img), 60);
    assert_int_equal(rtcr_image_count(img), 41);
    assert_int_equal(rtcr_image_check(img, &err), 0);
    for (int k = 60; k <= 100; k += 5)
        expect_state(img, c, k);

    /* the 60 epochs' containers are spares now */
    rtcr_image_spares(img, &n_sp, &sp_bytes);
    assert_int_equal(n_sp, 60);
    assert_true(sp_bytes > 0 && sp_bytes <= RTCR_IMAGE_SPARE_MAX);

    /* a builder taking a spare writes exactly what one with a fresh buffer writes */
    const rtcr_epoch_t *last = rtcr_image_epoch(img, 100);
    const RtcrImg__EpochHeader *lh = rtcr_epoch_header(last);
    rtcr_epoch_info_t info = {.target = "demo",
                              .epoch = 101,
                              .parent = 100,
                              .created_usec = 12345,
                              .build_id = lh->build_id.data,
                              .build_id_len = lh->build_id.len,
                              .granularity = 4096};
    size_t mlen;
    const void *meta = rtcr_epoch_metadata_blob(last, &mlen);
    uint8_t *page = malloc(8192);
    fill_random(page, 8192);
    void *out[2] = {NULL, NULL};
    size_t len[2] = {0, 0};
    for (int i = 0; i < 2; i++) {
        rtcr_epoch_builder_t *b = NULL;
        assert_int_equal(rtcr_epoch_builder_new(&info, &b), 0);
        assert_int_equal(rtcr_epoch_builder_set_metadata_blob(b, meta, mlen), 0);
        if (i == 0)
            assert_int_equal(rtcr_epoch_builder_reserve(b, 8192), 0);
        else
            assert_int_equal(rtcr_epoch_builder_reserve_recycled(b, 8192, img), 1);
        assert_int_equal(rtcr_epoch_add_pages(b, DS1, 0, page, 8192), 0);
        assert_int_equal(rtcr_epoch_finish(b, &err, &out[i], &len[i]), 0);
        rtcr_epoch_builder_destroy(&b);
    }
    size_t n_sp2 = 0;
    rtcr_image_spares(img, &n_sp2, NULL);
    assert_int_equal(n_sp2, n_sp - 1); /* one spare taken */
    /* the same pages (the headers differ in encode_usec only) */
    rtcr_epoch_t *e = NULL, *e0 = NULL;
    assert_int_equal(rtcr_epoch_parse(out[0], len[0], NULL, &err, &e0), 0);
    assert_int_equal(rtcr_epoch_parse_owned(&out[1], len[1], NULL, &err, &e), 0);
    struct collect cc[2];
    for (int i = 0; i < 2; i++) {
        cc[i] = (struct collect){.mem = calloc(1, DSZ), .size = DSZ, .ds = DS1};
        assert_int_equal(rtcr_epoch_foreach_pages(i ? e : e0, collect_fn, &cc[i], &err), 0);
    }
    assert_memory_equal(cc[0].mem, page, 8192);
    assert_memory_equal(cc[0].mem, cc[1].mem, DSZ);
    assert_int_equal(cc[0].frames, cc[1].frames);
    free(cc[0].mem);
    free(cc[1].mem);
    rtcr_epoch_destroy(&e0);
    rtcr_epoch_destroy(&e);
    /* no spare fits a request above every spare: a fresh buffer, spares untouched */
    rtcr_epoch_builder_t *b = NULL;
    assert_int_equal(rtcr_epoch_builder_new(&info, &b), 0);
    assert_int_equal(rtcr_epoch_builder_reserve_recycled(b, (uint64_t)RTCR_IMAGE_SPARE_MAX, img),
                     0);
    rtcr_image_spares(img, &n_sp2, NULL);
    assert_int_equal(n_sp2, n_sp - 1);
    rtcr_epoch_builder_destroy(&b);

    free(out[0]);
    free(page);
    rtcr_image_destroy(&img); /* frees the spares too (checked by asan / memcheck) */
    rtcr_image_destroy(&other);
    chain_free(c, 100);
    free(c);
}

/* Compare m (the memory of epoch k, materialised or kept by a compaction) with the model. */
static void expect_kept_memory(const rtcr_memstate_t *m, const struct chain *c, int k)
{
    static const uint32_t badges[NDS] = {DS1, DS2, DS3};
    size_t want = 0;

    assert_int_equal(rtcr_memstate_epoch(m), (uint64_t)k);
    for (int d = 0; d < NDS; d++) {
        uint64_t size = 0;
        const uint8_t *data = rtcr_memstate_find(m, badges[d], &size);
        if (!c->size[k - 1][d]) {
            assert_null(data);
            continue;
        }
        want++;
        assert_non_null(data);
        assert_int_equal(size, c->size[k - 1][d]);
        if (memcmp(data, c->model[k - 1][d], size) != 0)
            fail_msg("memory of epoch %d: dataspace %d differs from the model", k, d);
    }
    assert_int_equal(rtcr_memstate_count(m), want);
}

/* Compact the chain of img up to `upto` on top of *mem (may point at NULL); *mem gets the
 * memory of upto. Returns how many spares the compaction took for its output. */
static size_t compact_on(rtcr_image_t *img, uint64_t upto, rtcr_memstate_t **mem)
{
    rtcr_image_compaction_t *cj = NULL;
    rtcr_image_err_t err;
    size_t n0 = 0, n1 = 0;

    rtcr_image_spares(img, &n0, NULL);
    assert_int_equal(rtcr_image_compaction_new(img, upto, &err, &cj), 0);
    rtcr_image_spares(img, &n1, NULL);
    assert_null(rtcr_image_compaction_take_memory(cj)); /* not run yet */
    if (*mem)
        assert_int_equal(rtcr_image_compaction_set_memory(cj, mem), 0);
    assert_null(*mem);
    if (rtcr_image_compaction_run(cj, &err) != 0)
        fail_msg("compaction to %llu: %s", (unsigned long long)upto, err.msg);
    *mem = rtcr_image_compaction_take_memory(cj);
    assert_non_null(*mem);
    assert_null(rtcr_image_compaction_take_memory(cj)); /* taken */
    assert_int_equal(rtcr_image_compaction_commit(img, &cj, &err, NULL), 0);
    return n0 - n1;
}

/* A compaction built on the memory the previous one left applies only the epochs since: the
 * result equals the chain, across dataspaces born, destroyed and reborn with another size in
 * between; the next compaction writes into the container of the full epoch the previous
 * commit dropped. */
static void test_compaction_on_kept_memory(void **state)
{
    struct chain *c = calloc(1, sizeof(*c));
    rtcr_image_t *img = rtcr_image_new("demo", NULL);
    rtcr_memstate_t *mem = NULL, *other = NULL;
    rtcr_image_compaction_t *cj = NULL;
    rtcr_image_err_t err;

    (void)state;
    chain_build(c, 100);
    copy_epochs(img, c->img, 1, 25);
    assert_int_equal(compact_on(img, 25, &mem), 0); /* nothing to recycle yet */
    expect_kept_memory(mem, c, 25);
    expect_state(img, c, 25);

    /* DS3 is born at 30 and destroyed at 60: not in the kept memory, not in the result */
    copy_epochs(img, c->img, 26, 65);
    compact_on(img, 65, &mem);
    expect_kept_memory(mem, c, 65);
    expect_state(img, c, 65);
    assert_int_equal(rtcr_epoch_header(rtcr_image_epoch(img, 65))->compacted_from, 25);

    /* DS3 returns at 70 with another size; the full epoch 25's container is a spare now and
     * the next compaction writes into it (the incremental epochs' ones are too small) */
    copy_epochs(img, c->img, 66, 100);
    size_t n_sp = 0;
    rtcr_image_spares(img, &n_sp, NULL);
    assert_true(n_sp > 0);
    assert_int_equal(compact_on(img, 100, &mem), 1);
    expect_kept_memory(mem, c, 100);
    expect_state(img, c, 100);
    assert_int_equal(rtcr_image_check(img, &err), 0);

    /* memory of an epoch outside the view is refused and freed; so are bad arguments */
    assert_int_equal(rtcr_image_materialize(c->img, 50, &err, &other), 0);
    assert_int_equal(rtcr_image_compaction_new(img, 100, &err, &cj), 0);
    assert_int_equal(rtcr_image_compaction_set_memory(cj, &other), -ESTALE);
    assert_null(other);
    assert_int_equal(rtcr_image_compaction_set_memory(cj, NULL), -EINVAL);
    assert_int_equal(rtcr_image_compaction_set_memory(NULL, &mem), -EINVAL);
    assert_null(mem);
    rtcr_image_compaction_destroy(&cj);

    rtcr_image_destroy(&img);
    chain_free(c, 100);
    free(c);
}

static void test_compaction_equivalence(void **state)
{
    struct chain *c = calloc(1, sizeof(*c));
    const rtcr_epoch_t *full = NULL;
    rtcr_image_err_t err;
    size_t before, after;

    build_mode = *state ? *(enum build_mode *)*state : BUILD_PER_RUN;

    chain_build(c, 100);
    assert_int_equal(rtcr_image_check(c->img, &err), 0);
    for (int k = 1; k <= 100; k += 11)
        expect_state(c->img, c, k);
    expect_state(c->img, c, 100);

    /* compact 1..50, then 51..100 still apply on top */
    assert_int_equal(rtcr_image_compact(c->img, 50, &err, &full), 0);
    assert_non_null(full);
    assert_true(rtcr_epoch_is_full(full));
    assert_int_equal(rtcr_epoch_number(full), 50);
    assert_int_equal(rtcr_epoch_header(full)->compacted_from, 1);
    assert_int_equal(rtcr_image_first(c->img), 50);
    assert_int_equal(rtcr_image_count(c->img), 51);
    assert_int_equal(rtcr_image_check(c->img, &err), 0);
    assert_int_equal(rtcr_image_compact(c->img, 49, &err, NULL), -EINVAL);
    for (int k = 50; k <= 100; k += 7)
        expect_state(c->img, c, k);
    expect_state(c->img, c, 100);

    /* compact everything: the single full epoch restores the same state as the chain did */
    before = 0;
    for (uint64_t n = 50; n <= 100; n++)
        before += (rtcr_epoch_bytes(rtcr_image_epoch(c->img, n), &after), after);
    assert_int_equal(rtcr_image_compact(c->img, 100, &err, &full), 0);
    assert_int_equal(rtcr_image_count(c->img), 1);
    assert_int_equal(rtcr_epoch_header(full)->compacted_from, 50);
    expect_state(c->img, c, 100);
    rtcr_epoch_bytes(full, &after);
    assert_true(after < before);
    /* and a parse with frame checks accepts the compacted bytes */
    rtcr_epoch_t *e2 = NULL;
    size_t len;
    const void *bytes = rtcr_epoch_bytes(full, &len);
    assert_int_equal(rtcr_epoch_parse(bytes, len, NULL, &err, &e2), 0);
    rtcr_epoch_destroy(&e2);

    chain_free(c, 100);
    free(c);
    build_mode = BUILD_PER_RUN;
}

/* ---- files -------------------------------------------------------------------------------- */

static void rm_tree(const char *dir)
{
    char path[4096];
    DIR *d = opendir(dir);
    struct dirent *de;

    if (!d)
        return;
    while ((de = readdir(d))) {
        struct stat st;
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
            rm_tree(path);
        else
            unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

static int count_files(const char *dir, int *ret_tmp)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int n = 0, tmp = 0;

    assert_non_null(d);
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.' && strncmp(de->d_name, ".epoch-", 7) != 0)
            continue;
        if (de->d_name[0] == '.')
            tmp++;
        n++;
    }
    closedir(d);
    *ret_tmp = tmp;
    return n;
}

static void *read_all(const char *path, size_t *ret_len)
{
    FILE *f = fopen(path, "rbe");
    uint8_t *buf;
    long n;

    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)n + 1);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *ret_len = (size_t)n;
    return buf;
}

static void test_files(void **state)
{
    char dir[] = "/tmp/rtcr-test-image.XXXXXX", tdir[256], path[4096];
    struct chain *c = calloc(1, sizeof(*c));
    rtcr_image_t *img = NULL;
    rtcr_image_err_t err;
    int tmp;
    (void)state;

    assert_non_null(mkdtemp(dir));
    snprintf(tdir, sizeof(tdir), "%s/demo", dir);
    chain_build(c, 10);
    for (uint64_t n = 1; n <= 10; n++) {
        size_t len, flen;
        const void *bytes = rtcr_epoch_bytes(rtcr_image_epoch(c->img, n), &len);
        assert_int_equal(rtcr_image_write_epoch_file(dir, "demo", bytes, len, &err), 0);
        assert_int_equal(rtcr_image_epoch_path(dir, "demo", n, path, sizeof(path)), 0);
        void *back = read_all(path, &flen);
        assert_int_equal(flen, len);
        assert_memory_equal(back, bytes, len);
        free(back);
    }
    /* rewriting replaces atomically; no temporary files remain */
    {
        size_t len;
        const void *bytes = rtcr_epoch_bytes(rtcr_image_epoch(c->img, 3), &len);
        assert_int_equal(rtcr_image_write_epoch_file(dir, "demo", bytes, len, &err), 0);
        assert_int_equal(rtcr_image_write_epoch_file(dir, "other", bytes, len, &err), -EINVAL);
        assert_int_equal(rtcr_image_write_epoch_file(dir, "demo", bytes, len - 1, &err), -EBADMSG);
        assert_int_equal(rtcr_image_write_epoch_file("/nonexistent/x", "demo", bytes, len, &err),
                         -ENOENT);
    }
    assert_int_equal(count_files(tdir, &tmp), 10);
    assert_int_equal(tmp, 0);
    assert_int_equal(rtcr_image_epoch_path(dir, "demo", 1, path, 8), -ENAMETOOLONG);

    /* load everything */
    assert_int_equal(rtcr_image_load_dir(dir, "demo", NULL, &err, &img), 0);
    assert_int_equal(rtcr_image_first(img), 1);
    assert_int_equal(rtcr_image_last(img), 10);
    expect_state(img, c, 10);
    rtcr_image_destroy(&img);

    /* a corrupt middle epoch: the good prefix 1..5 is kept, epoch 6 named */
    size_t flen;
    assert_int_equal(rtcr_image_epoch_path(dir, "demo", 6, path, sizeof(path)), 0);
    uint8_t *bytes = read_all(path, &flen);
    bytes[flen / 2] ^= 0x10;
    FILE *f = fopen(path, "wbe");
    assert_int_equal(fwrite(bytes, 1, flen, f), flen);
    fclose(f);
    free(bytes);
    assert_int_equal(rtcr_image_load_dir(dir, "demo", NULL, &err, &img), 1);
    assert_non_null(strstr(err.msg, "epoch 6 corrupt"));
    assert_int_equal(rtcr_image_first(img), 1);
    assert_int_equal(rtcr_image_last(img), 5);
    expect_state(img, c, 5);

    /* compact the prefix, write the full epoch 5 over the incremental one, prune below 5 */
    const rtcr_epoch_t *full = NULL;
    size_t len;
    assert_int_equal(rtcr_image_compact(img, 5, &err, &full), 0);
    const void *fb = rtcr_epoch_bytes(full, &len);
    assert_int_equal(rtcr_image_write_epoch_file(dir, "demo", fb, len, &err), 0);
    /* a stale temporary file from a crash is removed by pruning */
    snprintf(path, sizeof(path), "%s/.epoch-00000011.rtcr.abcdef", tdir);
    close(open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
    assert_int_equal(rtcr_image_prune_dir(dir, "demo", 5, &err), 4 + 1);
    assert_int_equal(count_files(tdir, &tmp), 6); /* 5 (full), 6 (corrupt), 7..10 */
    assert_int_equal(tmp, 0);
    rtcr_image_destroy(&img);

    /* repair epoch 6 from memory: the chain 5(full)..10 loads cleanly */
    {
        const void *b6 = rtcr_epoch_bytes(rtcr_image_epoch(c->img, 6), &len);
        assert_int_equal(rtcr_image_write_epoch_file(dir, "demo", b6, len, &err), 0);
    }
    assert_int_equal(rtcr_image_load_dir(dir, "demo", NULL, &err, &img), 0);
    assert_int_equal(rtcr_image_first(img), 5);
    assert_true(rtcr_epoch_is_full(rtcr_image_epoch(img, 5)));
    assert_int_equal(rtcr_image_last(img), 10);
    expect_state(img, c, 10);
    rtcr_image_destroy(&img);

    /* a missing epoch ends the chain before it */
    assert_int_equal(rtcr_image_epoch_path(dir, "demo", 8, path, sizeof(path)), 0);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(rtcr_image_load_dir(dir, "demo", NULL, &err, &img), 1);
    assert_non_null(strstr(err.msg, "epoch 8 missing"));
    assert_int_equal(rtcr_image_last(img), 7);
    rtcr_image_destroy(&img);

    /* a file whose name does not match its epoch is rejected */
    assert_int_equal(rtcr_image_epoch_path(dir, "demo", 9, path, sizeof(path)), 0);
    char p7[4096];
    assert_int_equal(rtcr_image_epoch_path(dir, "demo", 7, p7, sizeof(p7)), 0);
    assert_int_equal(rename(path, p7), 0);
    assert_int_equal(rtcr_image_load_dir(dir, "demo", NULL, &err, &img), 1);
    assert_non_null(strstr(err.msg, "epoch 7 corrupt: file holds epoch 9"));
    assert_int_equal(rtcr_image_last(img), 6);
    rtcr_image_destroy(&img);

    /* no files at all */
    assert_int_equal(rtcr_image_load_dir(dir, "nothing", NULL, &err, &img), -ENOENT);
    assert_int_equal(rtcr_image_prune_dir(dir, "nothing", 5, &err), -ENOENT);
    assert_null(img);

    /* chain print */
    assert_int_equal(rtcr_image_load_dir(dir, "demo", NULL, &err, &img), 1);
    char *text = NULL;
    size_t tlen = 0;
    FILE *out = open_memstream(&text, &tlen);
    rtcr_image_print(img, out, false);
    fclose(out);
    assert_non_null(strstr(text, "target 'demo': 2 epoch(s), 5..6"));
    assert_non_null(strstr(text, "full"));
    free(text);
    rtcr_image_destroy(&img);

    chain_free(c, 10);
    free(c);
    rm_tree(dir);
}

/* ---- seed corpus -------------------------------------------------------------------------- */

static void write_seed(const char *dir, const char *name, const void *buf, size_t len)
{
    char path[4096];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "wbe");
    assert_non_null(f);
    assert_int_equal(fwrite(buf, 1, len, f), len);
    fclose(f);
}

static void test_write_seeds(void **state)
{
    const char *dir = getenv("RTCR_IMAGE_SEED_DIR");
    static const uint64_t sizes[3] = {16384, 8192, 4096};
    uint8_t *mem[3] = {malloc(16384), malloc(8192), malloc(4096)};
    void *buf;
    size_t len;
    (void)state;

    if (!dir) {
        for (int i = 0; i < 3; i++)
            free(mem[i]);
        skip();
    }
    small_epoch(&buf, &len);
    write_seed(dir, "small-full.rtcr", buf, len);
    write_seed(dir, "truncated.rtcr", buf, len / 2);
    rtcr_epoch_t *se = NULL;
    assert_int_equal(rtcr_epoch_parse(buf, len, NULL, NULL, &se), 0);
    size_t mlen;
    const void *meta = rtcr_epoch_metadata_blob(se, &mlen);
    write_seed(dir, "metadata.pb", meta, mlen); /* for the fuzzer's metadata mode */
    rtcr_epoch_destroy(&se);
    free(buf);
    memset(mem[0], 'q', 16384);
    fill_random(mem[1], 8192);
    memset(mem[2], 0, 4096);
    struct run runs[4] = {
        {0, 0, 8192, false}, {0, 12288, 4096, true}, {1, 100, 900, false}, {2, 0, 4096, false}};
    rtcr_epoch_t *e = make_epoch("seed", 2, 1, 3, sizes, mem, runs, 4, NULL);
    const void *b = rtcr_epoch_bytes(e, &len);
    write_seed(dir, "incremental.rtcr", b, len);
    rtcr_epoch_destroy(&e);
    for (int i = 0; i < 3; i++)
        free(mem[i]);
}

/* ---- parallel materialisation ------------------------------------------------------------- */

/* destinations for rtcr_image_materialize_into_mt: calloc'ed, up to NDS dataspaces */
struct mt_dst {
    uint32_t badge[NDS]; /* dataspaces in callback order */
    uint64_t size[NDS];  /* their sizes */
    uint8_t *mem[NDS];   /* their buffers */
    size_t n;            /* used entries */
};

static int mt_dst_fn(void *opaque, uint32_t badge, uint64_t size, void **ret_dst)
{
    struct mt_dst *d = opaque;

    if (d->n == NDS)
        return -ENOSPC;
    d->mem[d->n] = calloc(1, size);
    if (!d->mem[d->n])
        return -ENOMEM;
    d->badge[d->n] = badge;
    d->size[d->n] = size;
    *ret_dst = d->mem[d->n++];
    return 0;
}

static void mt_dst_free(struct mt_dst *d)
{
    for (size_t i = 0; i < d->n; i++)
        free(d->mem[i]);
    memset(d, 0, sizeof(*d));
}

static const uint8_t *mt_find(const struct mt_dst *d, uint32_t badge, uint64_t *ret_size)
{
    for (size_t i = 0; i < d->n; i++)
        if (d->badge[i] == badge) {
            *ret_size = d->size[i];
            return d->mem[i];
        }
    return NULL;
}

static const unsigned mt_workers[] = {1, 2, 3, 8, 0};

/* The 100-epoch random chain (overlapping runs, zero runs, dataspaces that come and go) gives
 * the model's content with every worker count, at several epochs. */
static void test_materialize_parallel_equals_serial(void **state)
{
    static const uint32_t badges[NDS] = {DS1, DS2, DS3};
    struct chain *c = calloc(1, sizeof(*c));
    rtcr_image_err_t err;

    build_mode = *state ? *(enum build_mode *)*state : BUILD_PER_RUN;

    assert_non_null(c);
    chain_build(c, 100);
    for (int k = 1; k <= 100; k += 9) {
        for (size_t w = 0; w < sizeof(mt_workers) / sizeof(mt_workers[0]); w++) {
            struct mt_dst d = {0};
            size_t want = 0;
            if (rtcr_image_materialize_into_mt(c->img, (uint64_t)k, mt_workers[w], mt_dst_fn, &d,
                                               &err) != 0)
                fail_msg("materialize %d with %u workers: %s", k, mt_workers[w], err.msg);
            for (int i = 0; i < NDS; i++) {
                uint64_t size = 0;
                const uint8_t *data = mt_find(&d, badges[i], &size);
                if (!c->size[k - 1][i]) {
                    assert_null(data);
                    continue;
                }
                want++;
                assert_non_null(data);
                assert_int_equal(size, c->size[k - 1][i]);
                if (memcmp(data, c->model[k - 1][i], size) != 0)
                    fail_msg("epoch %d dataspace %d with %u workers differs from the model", k, i,
                             mt_workers[w]);
            }
            assert_int_equal(d.n, want);
            mt_dst_free(&d);
        }
    }
    chain_free(c, 100);
    free(c);
    build_mode = BUILD_PER_RUN;
}

/* Epoch `num` of DS1 (64 KiB of random data, 8 KiB frames stored raw) with `n` runs, with
 * the byte at DATA offset `flip` (if not SIZE_MAX) corrupted: section hashes recomputed and
 * parsed without the frame check, as a locally built epoch is. */
static rtcr_epoch_t *mt_epoch(uint64_t num, uint8_t *mem, const struct run *runs, size_t n,
                              size_t flip)
{
    static const uint64_t sizes[1] = {DSZ};
    rtcr_epoch_t *e = make_epoch("demo", num, num - 1, 1, sizes, &mem, runs, n, NULL), *e2 = NULL;
    rtcr_image_limits_t lim;
    rtcr_image_err_t err;
    size_t len, dlen;
    const void *bytes = rtcr_epoch_bytes(e, &len);
    uint8_t *buf = malloc(len);

    assert_non_null(buf);
    memcpy(buf, bytes, len);
    rtcr_epoch_destroy(&e);
    if (flip != SIZE_MAX) {
        size_t doff = section_off(buf, RTCR_IMAGE_SEC_DATA, &dlen);
        assert_true(flip < dlen);
        buf[doff + flip] ^= 0x21;
        rehash(buf, len);
    }
    rtcr_image_limits_default(&lim);
    lim.skip_frame_check = true;
    if (rtcr_epoch_parse(buf, len, &lim, &err, &e2) != 0)
        fail_msg("parse: %s", err.msg);
    free(buf);
    return e2;
}

/* Materialise epoch `k` with every worker count; expect `r` and, on success, `model`; on
 * failure the same message from every worker count. */
static void mt_expect(const rtcr_image_t *img, uint64_t k, int r, const uint8_t *model,
                      const char *msg)
{
    for (size_t w = 0; w < sizeof(mt_workers) / sizeof(mt_workers[0]); w++) {
        struct mt_dst d = {0};
        rtcr_image_err_t err;
        uint64_t size = 0;
        int got = rtcr_image_materialize_into_mt(img, k, mt_workers[w], mt_dst_fn, &d, &err);
        if (got != r)
            fail_msg("epoch %llu, %u workers: %d (%s), expected %d", (unsigned long long)k,
                     mt_workers[w], got, err.msg, r);
        if (r == 0) {
            const uint8_t *data = mt_find(&d, DS1, &size);
            assert_non_null(data);
            assert_int_equal(size, DSZ);
            assert_memory_equal(data, model, DSZ);
        } else {
            assert_string_equal(err.msg, msg);
        }
        mt_dst_free(&d);
    }
}

/* Frames wholly overwritten by newer epochs are not decoded; frames partly overwritten are,
 * and a corrupt one fails with the same error (the first in epoch order) for every worker
 * count, also when several frames are corrupt. */
static void test_materialize_parallel_corrupt(void **state)
{
    uint8_t *m1 = malloc(DSZ), *m2 = malloc(DSZ), *model = malloc(DSZ);
    /* epoch 2 rewrites frames 1 and 2 of epoch 1 whole and part of frame 4; epoch 3 zeroes
     * frame 6 whole and part of frame 7 */
    struct run full[1] = {{0, 0, DSZ, false}};
    struct run inc2[2] = {{0, 8192, 16384, false}, {0, 33000, 1000, false}};
    struct run inc3[1] = {{0, 49152, 10000, true}};
    rtcr_image_t *img;
    rtcr_image_err_t err;
    rtcr_epoch_t *e;
    (void)state;

    assert_true(m1 && m2 && model);
    fill_random(m1, DSZ);
    fill_random(m2, DSZ);
    memcpy(model, m1, DSZ);
    memcpy(model + 8192, m2 + 8192, 16384);
    memcpy(model + 33000, m2 + 33000, 1000);
    memset(model + 49152, 0, 10000);

    /* intact chain */
    img = rtcr_image_new("demo", NULL);
    e = mt_epoch(1, m1, full, 1, SIZE_MAX);
    assert_int_equal(rtcr_image_add_epoch(img, &e, &err), 0);
    e = mt_epoch(2, m2, inc2, 2, SIZE_MAX);
    assert_int_equal(rtcr_image_add_epoch(img, &e, &err), 0);
    e = mt_epoch(3, m2, inc3, 1, SIZE_MAX);
    assert_int_equal(rtcr_image_add_epoch(img, &e, &err), 0);
    mt_expect(img, 3, 0, model, NULL);
    rtcr_image_destroy(&img);

    /* frames 1 and 6 of epoch 1 corrupt: both wholly overwritten, never decoded, the result
     * is still exact; at epoch 1 itself frame 1 is the first corrupt one */
    img = rtcr_image_new("demo", NULL);
    e = mt_epoch(1, m1, full, 1, 1 * 8192 + 77);
    rtcr_epoch_t *e1b = mt_epoch(1, m1, full, 1, 6 * 8192 + 5);
    rtcr_epoch_destroy(&e1b);
    assert_int_equal(rtcr_image_add_epoch(img, &e, &err), 0);
    e = mt_epoch(2, m2, inc2, 2, SIZE_MAX);
    assert_int_equal(rtcr_image_add_epoch(img, &e, &err), 0);
    e = mt_epoch(3, m2, inc3, 1, SIZE_MAX);
    assert_int_equal(rtcr_image_add_epoch(img, &e, &err), 0);
    mt_expect(img, 3, 0, model, NULL);
    mt_expect(img, 1, -EBADMSG, NULL, "epoch 1: frame 1 of dataspace 0x1a4: hash mismatch");
    rtcr_image_destroy(&img);

    /* frame 4 of epoch 1 corrupt (only partly overwritten): refused */
    img = rtcr_image_new("demo", NULL);
    e = mt_epoch(1, m1, full, 1, 4 * 8192 + 8000);
    assert_int_equal(rtcr_image_add_epoch(img, &e, &err), 0);
    e = mt_epoch(2, m2, inc2, 2, SIZE_MAX);
    assert_int_equal(rtcr_image_add_epoch(img, &e, &err), 0);
    e = mt_epoch(3, m2, inc3, 1, SIZE_MAX);
    assert_int_equal(rtcr_image_add_epoch(img, &e, &err), 0);
    mt_expect(img, 3, -EBADMSG, NULL, "epoch 1: frame 4 of dataspace 0x1a4: hash mismatch");
    rtcr_image_destroy(&img);

    /* a corrupt frame in epoch 2 (its second run, frame 2 of the epoch) and the last frame of
     * epoch 3's base both bad: epoch 1's frame 7 comes first in epoch order */
    img = rtcr_image_new("demo", NULL);
    e = mt_epoch(1, m1, full, 1, 7 * 8192 + 1);
    assert_int_equal(rtcr_image_add_epoch(img, &e, &err), 0);
    e = mt_epoch(2, m2, inc2, 2, 16384 + 10);
    assert_int_equal(rtcr_image_add_epoch(img, &e, &err), 0);
    mt_expect(img, 2, -EBADMSG, NULL, "epoch 1: frame 7 of dataspace 0x1a4: hash mismatch");
    rtcr_image_destroy(&img);

    /* only epoch 2's last frame bad */
    img = rtcr_image_new("demo", NULL);
    e = mt_epoch(1, m1, full, 1, SIZE_MAX);
    assert_int_equal(rtcr_image_add_epoch(img, &e, &err), 0);
    e = mt_epoch(2, m2, inc2, 2, 16384 + 10);
    assert_int_equal(rtcr_image_add_epoch(img, &e, &err), 0);
    mt_expect(img, 2, -EBADMSG, NULL, "epoch 2: frame 2 of dataspace 0x1a4: hash mismatch");
    rtcr_image_destroy(&img);

    /* bad arguments */
    assert_int_equal(rtcr_image_materialize_into_mt(NULL, 1, 2, mt_dst_fn, NULL, &err), -EINVAL);
    free(m1);
    free(m2);
    free(model);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_all_kinds),
        cmocka_unit_test(test_time_string),
        cmocka_unit_test(test_pages_random_and_zero),
        cmocka_unit_test(test_frames_split),
        cmocka_unit_test(test_frames_span_runs),
        cmocka_unit_test(test_v2_index_rules),
        cmocka_unit_test(test_v1_files_still_read),
        cmocka_unit_test(test_corrupt_every_byte),
        cmocka_unit_test(test_truncated_every_length),
        cmocka_unit_test(test_magic_version),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_corrupt_frame_rehashed),
        cmocka_unit_test(test_builder_errors),
        cmocka_unit_test(test_interleaved_and_reserve),
        cmocka_unit_test(test_chain_validation),
        cmocka_unit_test(test_materialize_lifetime),
        cmocka_unit_test(test_compaction_in_background),
        cmocka_unit_test(test_compaction_on_kept_memory),
        cmocka_unit_test_prestate(test_compaction_equivalence, &all_modes[BUILD_PER_RUN]),
        cmocka_unit_test_prestate(test_compaction_equivalence, &all_modes[BUILD_SPANNING]),
        cmocka_unit_test_prestate(test_compaction_equivalence, &all_modes[BUILD_V1]),
        cmocka_unit_test(test_files),
        cmocka_unit_test(test_write_seeds),
        cmocka_unit_test_prestate(test_materialize_parallel_equals_serial,
                                  &all_modes[BUILD_PER_RUN]),
        cmocka_unit_test_prestate(test_materialize_parallel_equals_serial,
                                  &all_modes[BUILD_SPANNING]),
        cmocka_unit_test_prestate(test_materialize_parallel_equals_serial, &all_modes[BUILD_V1]),
        cmocka_unit_test(test_materialize_parallel_corrupt),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
