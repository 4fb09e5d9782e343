/* rtcr_image_print.c — human-readable dump of epochs and chains (`ecuctl inspect FILE`).
 *
 * Prints only what was parsed and validated; never fails (output errors are the stream's).
 * Layout: header and statistics, then sessions with their per-type state, the cap space
 * (slot, type, rights, object), and the page runs with sizes (frames with verbose).
 * Wall-clock times are shown as UTC ISO 8601 (what an operator compares with logs and
 * other ECUs, whatever the local time zone); durations stay numbers with their unit.
 */
#include <inttypes.h>
#include <string.h>
#include <time.h>

#include <rtcr/image.h>
#include <rtcr/kernel.h>

#include "rtcr_image_int.h"

const char *rtcr_image_session_type_name(int type)
{
    static const char *const names[] = {"none", "PD",  "CPU",   "RAM", "RM",
                                        "ROM",  "LOG", "TIMER", "IRQ"};

    return type >= 0 && (size_t)type < sizeof(names) / sizeof(names[0]) ? names[type] : "?";
}

const char *rtcr_image_kobj_type_name(int type)
{
    static const char *const names[] = {"none", "task", "thread", "gate", "irq"};

    return type >= 0 && (size_t)type < sizeof(names) / sizeof(names[0]) ? names[type] : "?";
}

const char *rtcr_image_time_string(uint64_t usec, char *buf, size_t len)
{
    time_t sec = (time_t)(usec / 1000000u);
    struct tm tm;
    char date[RTCR_IMAGE_TIME_STRING_MAX];

    if (len == 0)
        return buf;
    if (!gmtime_r(&sec, &tm) || strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm) == 0)
        snprintf(buf, len, "?");
    else
        snprintf(buf, len, "%s.%03uZ", date, (unsigned)(usec / 1000u % 1000u));
    return buf;
}

static const char *role_name(int role)
{
    static const char *const names[] = {"none",          "task",         "parent",     "thread",
                                        "thread-gate",   "thread-pager", "thread-irq", "rpc-object",
                                        "signal-source", "irq-session"};

    return role >= 0 && (size_t)role < sizeof(names) / sizeof(names[0]) ? names[role] : "?";
}

static const char *rm_role_name(int role)
{
    static const char *const names[] = {"", "address-space", "stack-area", "linker-area",
                                        "managed"};

    return role >= 0 && (size_t)role < sizeof(names) / sizeof(names[0]) ? names[role] : "?";
}

static const char *ack_name(int s)
{
    static const char *const names[] = {"none", "acked", "waiting-for-ack"};

    return s >= 0 && (size_t)s < sizeof(names) / sizeof(names[0]) ? names[s] : "?";
}

static const char *str(const char *s)
{
    return s ? s : "";
}

static void print_hex(FILE *out, const ProtobufCBinaryData *b)
{
    if (b->len == 0)
        fputs("-", out);
    for (size_t i = 0; i < b->len; i++)
        fprintf(out, "%02x", b->data[i]);
}

static void print_region_maps(FILE *out, const char *indent, RtcrImg__RegionMap *const *rms,
                              size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const RtcrImg__RegionMap *rm = rms[i];
        fprintf(out,
                "%sregion map 0x%x %s size %" PRIu64 " ds 0x%x sigh 0x%x, %zu "
                "attachment(s)\n",
                indent, rm->badge, rm_role_name(rm->role), rm->size, rm->ds_badge, rm->sigh_badge,
                rm->n_attachments);
        for (size_t k = 0; k < rm->n_attachments; k++) {
            const RtcrImg__Attachment *a = rm->attachments[k];
            fprintf(out,
                    "%s  at 0x%08" PRIx64 " size %" PRIu64 " ds 0x%x offset %" PRIu64 " %c%c\n",
                    indent, a->addr, a->size, a->ds_badge, a->offset, a->writable ? 'w' : '-',
                    a->executable ? 'x' : '-');
        }
    }
}

static void print_session(FILE *out, const RtcrImg__Session *s)
{
    fprintf(out, "  session 0x%x %s%s quota %" PRIu64 " args \"%s\"", s->badge,
            rtcr_image_session_type_name(s->type), s->bootstrapped ? " bootstrapped" : "",
            s->ram_quota, str(s->creation_args));
    if (s->upgrade_args && s->upgrade_args[0])
        fprintf(out, " upgrades \"%s\"", s->upgrade_args);
    fputc('\n', out);
    switch (s->state_case) {
    case RTCR_IMG__SESSION__STATE_PD: {
        const RtcrImg__PdSession *pd = s->pd;
        fprintf(out, "    cap limit %u", pd->cap_limit);
        if (pd->cap_space_info) {
            const RtcrImg__CapSpaceInfo *ci = pd->cap_space_info;
            if (ci->cap_map)
                fprintf(out, ", cap map 0x%" PRIx64 "+%" PRIu64, ci->cap_map->addr,
                        ci->cap_map->size);
            if (ci->object_pool)
                fprintf(out, ", object pool 0x%" PRIx64 "+%" PRIu64, ci->object_pool->addr,
                        ci->object_pool->size);
        }
        fputc('\n', out);
        for (size_t i = 0; i < pd->n_signal_sources; i++)
            fprintf(out, "    signal source 0x%x\n", pd->signal_sources[i]->badge);
        for (size_t i = 0; i < pd->n_signal_contexts; i++) {
            const RtcrImg__SignalContext *c = pd->signal_contexts[i];
            fprintf(out, "    signal context 0x%x source 0x%x imprint 0x%" PRIx64 " pending %u\n",
                    c->badge, c->source_badge, c->imprint, c->pending);
        }
        for (size_t i = 0; i < pd->n_native_caps; i++)
            fprintf(out, "    rpc object 0x%x served by thread %u\n", pd->native_caps[i]->badge,
                    pd->native_caps[i]->ep_thread);
        print_region_maps(out, "    ", pd->region_maps, pd->n_region_maps);
        break;
    }
    case RTCR_IMG__SESSION__STATE_CPU:
        if (s->cpu->sigh_badge)
            fprintf(out, "    exception sigh 0x%x\n", s->cpu->sigh_badge);
        for (size_t i = 0; i < s->cpu->n_threads; i++) {
            const RtcrImg__Thread *t = s->cpu->threads[i];
            fprintf(out, "    thread %u \"%s\" badge 0x%x gate 0x%x%s%s\n", t->index, str(t->name),
                    t->badge, t->gate_badge, t->is_entrypoint ? " entrypoint" : "",
                    t->started ? " started" : "");
        }
        break;
    case RTCR_IMG__SESSION__STATE_RAM:
        for (size_t i = 0; i < s->ram->n_dataspaces; i++) {
            const RtcrImg__Dataspace *d = s->ram->dataspaces[i];
            fprintf(out, "    dataspace 0x%x size %" PRIu64 " quota %" PRIu64 "\n", d->badge,
                    d->size, d->quota_used);
        }
        break;
    case RTCR_IMG__SESSION__STATE_RM:
        print_region_maps(out, "    ", s->rm->region_maps, s->rm->n_region_maps);
        break;
    case RTCR_IMG__SESSION__STATE_ROM:
        fprintf(out, "    module \"%s\" ds 0x%x sigh 0x%x\n", str(s->rom->module), s->rom->ds_badge,
                s->rom->sigh_badge);
        break;
    case RTCR_IMG__SESSION__STATE_LOG:
        fprintf(out, "    label \"%s\"\n", str(s->log->label));
        break;
    case RTCR_IMG__SESSION__STATE_TIMER:
        fprintf(out, "    sigh 0x%x %s period %" PRIu64 " us remaining %" PRIu64 " us%s\n",
                s->timer->sigh_badge, s->timer->periodic ? "periodic" : "one-shot",
                s->timer->period_usec, s->timer->remaining_usec, s->timer->armed ? " armed" : "");
        break;
    case RTCR_IMG__SESSION__STATE_IRQ:
        fprintf(out, "    line %u sigh 0x%x %s%s\n", s->irq->line, s->irq->sigh_badge,
                ack_name(s->irq->ack_state), s->irq->pending ? " pending" : "");
        break;
    default:
        break;
    }
}

static void print_object(FILE *out, const RtcrImg__ObjectRef *o)
{
    if (!o) {
        fputs("?", out);
        return;
    }
    fputs(role_name(o->role), out);
    switch (o->role) {
    case RTCR_IMG__OBJ_ROLE__ROLE_THREAD:
    case RTCR_IMG__OBJ_ROLE__ROLE_THREAD_GATE:
    case RTCR_IMG__OBJ_ROLE__ROLE_THREAD_PAGER:
    case RTCR_IMG__OBJ_ROLE__ROLE_THREAD_IRQ:
        fprintf(out, " %u", o->thread_index);
        break;
    case RTCR_IMG__OBJ_ROLE__ROLE_RPC_OBJECT:
    case RTCR_IMG__OBJ_ROLE__ROLE_SIGNAL_SOURCE:
    case RTCR_IMG__OBJ_ROLE__ROLE_IRQ_SESSION:
        fprintf(out, " 0x%x", o->badge);
        break;
    default:
        break;
    }
}

void rtcr_epoch_print(const rtcr_epoch_t *e, FILE *out, bool verbose)
{
    const RtcrImg__EpochHeader *h = e->hdr;
    const RtcrImg__EpochStats *st = h->stats;
    const RtcrImg__StoredState *s = e->state;
    const RtcrImg__PageIndex *idx = e->index;

    fprintf(out, "epoch %" PRIu64 " of '%s': %s", h->epoch, h->target,
            h->kind == RTCR_IMG__EPOCH_KIND__EPOCH_FULL ? "full" : "incremental");
    if (h->parent)
        fprintf(out, ", parent %" PRIu64, h->parent);
    if (h->compacted_from)
        fprintf(out, ", compacted from %" PRIu64, h->compacted_from);
    fprintf(out, ", %zu bytes, format version %u\n", e->len, e->version);
    char created[RTCR_IMAGE_TIME_STRING_MAX];
    fprintf(out,
            "  created %s on ECU '%s' (agent incarnation %" PRIu64
            "), tracking %s granularity %u\n",
            rtcr_image_time_string(h->created_usec, created, sizeof(created)), str(h->source_ecu),
            h->agent_incarnation, h->tracking_mode && h->tracking_mode[0] ? h->tracking_mode : "-",
            h->granularity);
    fputs("  build id ", out);
    print_hex(out, &h->build_id);
    fputc('\n', out);
    for (size_t i = 0; i < h->n_libraries; i++) {
        fprintf(out, "  library %s ", str(h->libraries[i]->name));
        print_hex(out, &h->libraries[i]->id);
        fputc('\n', out);
    }
    if (st)
        fprintf(out,
                "  stats: pages scanned %" PRIu64 " written %" PRIu64 " zero %" PRIu64
                ", bytes %" PRIu64 " -> %" PRIu64 " in %" PRIu64 " frame(s), freeze %" PRIu64
                " us, encode %" PRIu64 " us\n",
                st->pages_scanned, st->pages_written, st->pages_zero, st->bytes_raw,
                st->bytes_stored, st->frames, st->freeze_usec, st->encode_usec);

    fprintf(out, "sessions (%zu):\n", s->n_sessions);
    for (size_t i = 0; i < s->n_sessions; i++)
        print_session(out, s->sessions[i]);

    fprintf(out, "cap space (%zu):\n", s->cap_space ? s->cap_space->n_entries : (size_t)0);
    for (size_t i = 0; s->cap_space && i < s->cap_space->n_entries; i++) {
        const RtcrImg__CapEntry *c = s->cap_space->entries[i];
        fprintf(out, "  slot %4u (0x%03x) %-6s %c%c%c%c ", c->slot, c->slot,
                rtcr_image_kobj_type_name(c->type), c->rights & RTCR_CAP_R ? 'r' : '-',
                c->rights & RTCR_CAP_W ? 'w' : '-', c->rights & RTCR_CAP_S ? 's' : '-',
                c->rights & RTCR_CAP_D ? 'd' : '-');
        print_object(out, c->object);
        fputc('\n', out);
    }

    fprintf(out, "pages (%zu dataspace(s), %zu data bytes):\n", idx->n_dataspaces, e->data_len);
    for (size_t i = 0; i < idx->n_dataspaces; i++) {
        const RtcrImg__DataspacePages *dp = idx->dataspaces[i];
        size_t f0 = e->ds_frame0[i], f1 = e->ds_frame0[i + 1];
        uint64_t raw = 0, stored = 0;
        for (size_t f = f0; f < f1; f++) {
            raw += e->frames[f].size;
            stored += e->frames[f].stored;
        }
        fprintf(out,
                "  dataspace 0x%x: %zu run(s), %zu frame(s), %" PRIu64 " -> %" PRIu64 " bytes\n",
                dp->badge, dp->n_runs, f1 - f0, raw, stored);
        for (size_t j = 0; j < dp->n_runs; j++) {
            const RtcrImg__PageRun *r = dp->runs[j];
            fprintf(out, "    0x%08" PRIx64 "..0x%08" PRIx64 " %10" PRIu64 " bytes %s\n", r->offset,
                    r->offset + r->length, r->length, r->zero ? "zero" : "data");
        }
        for (size_t f = f0; verbose && f < f1; f++) {
            const struct rtcr_image_frame *fr = &e->frames[f];
            const struct rtcr_image_piece *pc = &e->pieces[fr->first_piece];
            fprintf(out, "    frame %zu: %u -> %u bytes%s hash %016" PRIx64 ", to", f - f0,
                    fr->size, fr->stored, fr->stored == fr->size ? " (raw)" : "", fr->hash);
            for (uint32_t k = 0; k < fr->n_pieces; k++)
                fprintf(out, " 0x%08" PRIx64 "+%u", pc[k].ds_off, pc[k].len);
            fputc('\n', out);
        }
    }
}

void rtcr_image_print(const rtcr_image_t *img, FILE *out, bool verbose)
{
    uint64_t first = rtcr_image_first(img), last = rtcr_image_last(img);

    fprintf(out, "target '%s': %zu epoch(s)", rtcr_image_target(img), rtcr_image_count(img));
    if (rtcr_image_count(img))
        fprintf(out, ", %" PRIu64 "..%" PRIu64, first, last);
    fputc('\n', out);
    for (uint64_t n = first; rtcr_image_count(img) && n <= last; n++) {
        const rtcr_epoch_t *e = rtcr_image_epoch(img, n);
        const RtcrImg__EpochStats *st = e->hdr->stats;
        fprintf(out, "  epoch %8" PRIu64 " %-11s %10zu bytes", n,
                rtcr_epoch_is_full(e) ? "full" : "incremental", e->len);
        if (st)
            fprintf(out,
                    ", pages %" PRIu64 "+%" PRIu64 " zero, freeze %" PRIu64 " us, encode %" PRIu64
                    " us",
                    st->pages_written, st->pages_zero, st->freeze_usec, st->encode_usec);
        fputc('\n', out);
    }
    for (uint64_t n = first; verbose && rtcr_image_count(img) && n <= last; n++) {
        fputc('\n', out);
        rtcr_epoch_print(rtcr_image_epoch(img, n), out, verbose);
    }
}
