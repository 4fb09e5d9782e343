/* rtcr/image.h — RTCR checkpoint images: epochs, chains of epochs, files.
 *
 * A target's checkpoint is a chain of epochs: one FULL epoch (parent 0) followed by
 * INCREMENTAL epochs, each naming the previous one as its parent (epoch N has parent N-1).
 * Every epoch carries the complete stored state (protobuf StoredState, small); only the page
 * data is incremental: the byte runs of each dataspace written since the parent epoch.
 *
 * One epoch is one contiguous byte buffer — the same bytes go over the wire and into a file
 * (DIR/TARGET/epoch-%08llu.rtcr). The buffer is a fixed little-endian container ("RTCRIMG1",
 * version, section table with a hash per section) holding the sections HEADER (EpochHeader),
 * METADATA (StoredState), PAGEMAP (PageIndex) and DATA (page frames: LZ4 blocks of at most
 * 1 MiB uncompressed, each with an XXH3-64 of its uncompressed bytes). docs/image-format.md
 * gives the layout byte by byte; proto/rtcr_image.proto the schema.
 *
 * Compaction merges epochs base..K into one FULL epoch numbered K (header field
 * compacted_from = base) whose restored state is identical; epoch K+1 then chains onto it.
 *
 * Dataspace lifetime: the memory of dataspace D at epoch K is defined by the epochs of D's
 * current lifetime only — the longest suffix of epochs ..K whose metadata all declare D with
 * the same size. Pages stored before that (a destroyed dataspace whose badge came back) are
 * ignored; a dataspace starts out zero-filled.
 *
 * Errors: functions return >= 0 on success or a negative errno:
 *   -EINVAL   bad argument, or a chain/builder rule broken (see each function)
 *   -EBADMSG  malformed or corrupt image (bad magic, hash mismatch, inconsistent fields)
 *   -EPROTO   unsupported container format version
 *   -E2BIG    a limit of rtcr_image_limits_t exceeded
 *   -ESTALE   an epoch older than (or equal to) the newest epoch of a chain
 *   -ENOMEM   out of memory; -errno of a failed system call for files
 * Functions taking `rtcr_image_err_t *err` (always optional, may be NULL) fill it with a
 * message naming what failed and where, e.g.
 *   "epoch 7: frame 12 of dataspace 0x1a4: hash mismatch".
 *
 * Thread safety: a parsed epoch is immutable; its read-only functions may run concurrently.
 * Builders, images and memory states need external serialisation.
 */
#ifndef RTCR_IMAGE_H
#define RTCR_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "rtcr_image.pb-c.h"

/* ---- container constants --------------------------------------------------------------- */

#define RTCR_IMAGE_MAGIC        "RTCRIMG1" /* 8 bytes, no NUL in the image */
#define RTCR_IMAGE_MAGIC_LEN    8
#define RTCR_IMAGE_VERSION      2u         /* container format version written (and read) */
#define RTCR_IMAGE_VERSION_MIN  1u         /* oldest container format version still read */
#define RTCR_IMAGE_FIXED_HDR    32u        /* bytes of the fixed header */
#define RTCR_IMAGE_SECTION_ENT  32u        /* bytes of one section table entry */
#define RTCR_IMAGE_MAX_SECTIONS 16u        /* section table entries at most */
#define RTCR_IMAGE_ZERO_UNIT    4096u      /* zero-run detection granularity (bytes) */
#define RTCR_IMAGE_FRAME_SIZE   (1u << 20) /* uncompressed bytes per frame written */
#define RTCR_IMAGE_NAME_MAX     64u        /* target name length at most */
#define RTCR_IMAGE_BUILD_ID_MAX 64u        /* build id bytes at most */
#define RTCR_IMAGE_LIBS_MAX     1024u      /* library build ids at most */

/* section types (section table) */
enum rtcr_image_section {
    RTCR_IMAGE_SEC_NONE = 0,
    RTCR_IMAGE_SEC_HEADER = 1,   /* protobuf EpochHeader */
    RTCR_IMAGE_SEC_METADATA = 2, /* protobuf StoredState */
    RTCR_IMAGE_SEC_PAGEMAP = 3,  /* protobuf PageIndex */
    RTCR_IMAGE_SEC_DATA = 4,     /* concatenated frames */
    RTCR_IMAGE_SEC_MAX           /* types >= this are unknown: hash-checked, then skipped */
};

/* default limits (rtcr_image_limits_default) */
#define RTCR_IMAGE_MAX_TOTAL      (8ull << 30) /* one epoch buffer */
#define RTCR_IMAGE_MAX_HEADER     (64u << 10)  /* HEADER section */
#define RTCR_IMAGE_MAX_METADATA   (4u << 20)   /* METADATA section */
#define RTCR_IMAGE_MAX_PAGEMAP    (16u << 20)  /* PAGEMAP section */
#define RTCR_IMAGE_MAX_FRAMES     (1u << 20)   /* frames in one epoch */
#define RTCR_IMAGE_MAX_FRAME_SIZE (1u << 20)   /* uncompressed bytes of one frame */
#define RTCR_IMAGE_MAX_DATASPACE  (4ull << 30) /* size of one dataspace */
#define RTCR_IMAGE_MAX_UNPACKED   (256u << 20) /* memory for the decoded protobuf messages */
#define RTCR_IMAGE_MAX_EPOCHS     100000u      /* epochs in one chain */

/* Bounds a reader enforces before it allocates. Every field must be > 0, max_frame_size
 * at most 1 GiB (else -EINVAL). */
typedef struct rtcr_image_limits {
    uint64_t max_total;      /* bytes of one epoch buffer */
    uint32_t max_header;     /* bytes of the HEADER section */
    uint32_t max_metadata;   /* bytes of the METADATA section */
    uint32_t max_pagemap;    /* bytes of the PAGEMAP section */
    uint32_t max_frames;     /* frames in one epoch */
    uint32_t max_frame_size; /* uncompressed bytes of one frame */
    uint64_t max_dataspace;  /* size of a dataspace (bounds offsets and materialised buffers) */
    uint64_t max_unpacked;   /* heap bytes the decoded protobuf messages of one epoch may use */
    uint32_t max_epochs;     /* epochs in one chain (image) */
    bool skip_frame_check;   /* parse without decompressing frames (hashes still checked on
                              * every later access); default false */
} rtcr_image_limits_t;

/* Fill `l` with the RTCR_IMAGE_MAX_* defaults. */
void rtcr_image_limits_default(rtcr_image_limits_t *l);

/* Diagnostic of the last failure of a call that was given it. */
typedef struct rtcr_image_err {
    char msg[256]; /* NUL-terminated; "" if the call did not fail */
} rtcr_image_err_t;

/* ---- building an epoch ------------------------------------------------------------------ */

/* The build id of a library the target loaded. */
typedef struct rtcr_image_build_id {
    const char *name;  /* file name / soname */
    const uint8_t *id; /* build id bytes */
    size_t len;        /* bytes of id, <= RTCR_IMAGE_BUILD_ID_MAX */
} rtcr_image_build_id_t;

/* What the writer knows about an epoch; everything is copied by rtcr_epoch_builder_new(). */
typedef struct rtcr_epoch_info {
    const char *target;      /* target name: [A-Za-z0-9._-]{1,64}, not starting with '.' */
    uint64_t epoch;          /* epoch number >= 1 */
    uint64_t parent;         /* 0: FULL epoch; else INCREMENTAL and parent == epoch - 1 */
    uint64_t created_usec;   /* CLOCK_REALTIME usec; 0 = now */
    const char *source_ecu;  /* ECU name (may be NULL) */
    const uint8_t *build_id; /* target binary build id (may be NULL if build_id_len 0) */
    size_t build_id_len;     /* bytes, <= RTCR_IMAGE_BUILD_ID_MAX */
    const rtcr_image_build_id_t *libs; /* library build ids (may be NULL if n_libs 0) */
    size_t n_libs;                     /* entries of libs, <= RTCR_IMAGE_LIBS_MAX */
    uint32_t granularity;              /* dirty-tracking unit in bytes */
    uint64_t agent_incarnation;        /* incarnation of the writing agent */
    const char *tracking_mode;         /* e.g. "uffd-wp" (may be NULL) */
    uint64_t pages_scanned;            /* statistics: pages the tracker scanned */
    uint64_t freeze_usec;              /* statistics: pause of the target */
} rtcr_epoch_info_t;

typedef struct rtcr_epoch_builder rtcr_epoch_builder_t;

/* Start an epoch. Validates and copies `info`; the encode-time clock starts here.
 * Returns 0 and the builder in *ret (caller owns, rtcr_epoch_builder_destroy), -EINVAL on a
 * bad info (name, epoch/parent rule, lengths), -ENOMEM. */
int rtcr_epoch_builder_new(const rtcr_epoch_info_t *info, rtcr_epoch_builder_t **ret);

/* NULL-safe, idempotent; NULLs *p. */
void rtcr_epoch_builder_destroy(rtcr_epoch_builder_t **p);

/* Set the stored state. The message (filled by the caller, e.g. with RTCR_IMG__*__INIT
 * structs on the stack) is validated and serialised at once: the caller keeps ownership and
 * may free it on return. May be called again to replace it (also after pages were added).
 * -EINVAL: state fails validation (duplicate/zero badges, slot >= 4096, type/oneof mismatch,
 * thread index >= 128, dataspace size 0); -E2BIG: larger than RTCR_IMAGE_MAX_METADATA or a
 * dataspace larger than RTCR_IMAGE_MAX_DATASPACE; -ENOMEM. */
int rtcr_epoch_builder_set_metadata(rtcr_epoch_builder_t *b, const RtcrImg__StoredState *state);

/* Same with an already serialised StoredState; the bytes are validated and copied verbatim
 * (unknown fields survive). -EBADMSG if they do not decode, other errors as above. */
int rtcr_epoch_builder_set_metadata_blob(rtcr_epoch_builder_t *b, const void *buf, size_t len);
/* Call fn(ctx) after every frame the builder compresses (NULL: none). The checkpointer uses
 * it to bound the time an epoch is encoded at SCHED_IDLE, whatever the size of one add call. */
void rtcr_epoch_builder_set_progress(rtcr_epoch_builder_t *b, void (*fn)(void *ctx), void *ctx);

/* Store `len` bytes of dataspace `ds_badge` at `offset`: split into 4 KiB units (relative to
 * `offset`), all-zero units become zero runs, the rest becomes data runs whose bytes are
 * hashed and compressed into frames of at most the frame size. `data` is only read during the
 * call. A run that continues the previous run of the same dataspace and kind is extended.
 * Runs of one dataspace must be added in ascending order without overlap (the order
 * dataspaces are interleaved is free). len == 0 does nothing. The badge must be a dataspace
 * of the metadata when finishing. Frames do not span calls: to let frames span many small
 * runs, hand them over together with rtcr_epoch_add_runs.
 * -EINVAL: badge 0, NULL data, overlap/descending offset, offset + len overflows or exceeds
 * RTCR_IMAGE_MAX_DATASPACE, builder already finished; -E2BIG: too many frames or bytes;
 * -ENOMEM. On failure the builder is unchanged. */
int rtcr_epoch_add_pages(rtcr_epoch_builder_t *b, uint32_t ds_badge, uint64_t offset,
                         const void *data, size_t len);

/* one run of rtcr_epoch_add_runs */
typedef struct rtcr_epoch_run {
    uint64_t offset; /* byte offset in the dataspace */
    size_t len;      /* bytes (0: skipped) */
} rtcr_epoch_run_t;

/* Store `n` runs of dataspace `ds_badge` whose bytes lie back to back in `data` (run i's
 * bytes follow run i-1's), as rtcr_epoch_add_pages would one by one, except that the frames
 * span the runs: the non-zero bytes are cut into frames of the frame size over their
 * concatenation, so many scattered small runs (dirty pages) compress as a few large frames.
 * A frame ends early only where the data has a zero stretch or at the end of the call. Runs
 * must ascend without overlap, also against runs added before. `data` is only read during the
 * call. Errors as rtcr_epoch_add_pages (-EINVAL also for runs == NULL with n > 0, descending
 * or overlapping runs); on failure the builder is unchanged. */
int rtcr_epoch_add_runs(rtcr_epoch_builder_t *b, uint32_t ds_badge, const rtcr_epoch_run_t *runs,
                        size_t n, const void *data);

/* Record that `len` bytes at `offset` of `ds_badge` are zero (no payload), e.g. a range the
 * target discarded. Same rules and errors as rtcr_epoch_add_pages. */
int rtcr_epoch_add_zero(rtcr_epoch_builder_t *b, uint32_t ds_badge, uint64_t offset, uint64_t len);

/* Size the builder's output for about `raw_bytes` of pages to come, so that frames are
 * compressed straight into the final container without growing it (a hint: adding more
 * still works, it grows then). -EINVAL finished builder; -E2BIG above RTCR_IMAGE_MAX_TOTAL;
 * -ENOMEM. */
int rtcr_epoch_builder_reserve(rtcr_epoch_builder_t *b, uint64_t raw_bytes);

/* Use frames of `size` uncompressed bytes (1 .. RTCR_IMAGE_MAX_FRAME_SIZE; default
 * RTCR_IMAGE_FRAME_SIZE) for pages added from now on. -EINVAL out of range. */
int rtcr_epoch_builder_set_frame_size(rtcr_epoch_builder_t *b, uint32_t size);

/* Finish the epoch: check that metadata was set and that every page run lies inside a
 * dataspace it declares, then lay out the container. Returns 0 with a malloc'ed buffer in
 * *ret_buf (caller frees with free()) and its length in *ret_len. The builder accepts nothing
 * afterwards (only destroy). -EINVAL: no metadata, pages of an undeclared dataspace or
 * beyond its size (err names it), called twice; -E2BIG: limits; -ENOMEM. */
int rtcr_epoch_finish(rtcr_epoch_builder_t *b, rtcr_image_err_t *err, void **ret_buf,
                      size_t *ret_len);

/* ---- parsed epochs ---------------------------------------------------------------------- */

typedef struct rtcr_epoch rtcr_epoch_t;

/* Parse and validate one epoch buffer: magic, version, section table, every length against
 * `limits` (NULL = defaults) before allocating, section hashes, the header/metadata/pagemap
 * messages and their consistency, and (unless limits->skip_frame_check) every frame:
 * decompressed, length- and hash-checked. Never trusts the input; never crashes on it.
 * The buffer is copied; the caller keeps it. Returns 0 and *ret_epoch (caller owns,
 * rtcr_epoch_destroy). -EBADMSG, -EPROTO, -E2BIG, -EINVAL (NULL buf with len > 0), -ENOMEM. */
int rtcr_epoch_parse(const void *buf, size_t len, const rtcr_image_limits_t *limits,
                     rtcr_image_err_t *err, rtcr_epoch_t **ret_epoch);

/* As rtcr_epoch_parse, but takes the malloc'ed buffer *pbuf instead of copying it: on success
 * the epoch owns it and *pbuf is set to NULL; on failure *pbuf stays the caller's. */
int rtcr_epoch_parse_owned(void **pbuf, size_t len, const rtcr_image_limits_t *limits,
                           rtcr_image_err_t *err, rtcr_epoch_t **ret_epoch);

/* NULL-safe, idempotent; NULLs *p. */
void rtcr_epoch_destroy(rtcr_epoch_t **p);

/* Accessors; the returned pointers are borrowed until the epoch is destroyed. */
const RtcrImg__EpochHeader *rtcr_epoch_header(const rtcr_epoch_t *e);
const RtcrImg__StoredState *rtcr_epoch_state(const rtcr_epoch_t *e);
const RtcrImg__PageIndex *rtcr_epoch_page_index(const rtcr_epoch_t *e);
uint64_t rtcr_epoch_number(const rtcr_epoch_t *e);
uint64_t rtcr_epoch_parent(const rtcr_epoch_t *e);
bool rtcr_epoch_is_full(const rtcr_epoch_t *e);
const char *rtcr_epoch_target(const rtcr_epoch_t *e);
/* The wire bytes of the epoch (what a file holds); *ret_len gets their length. */
const void *rtcr_epoch_bytes(const rtcr_epoch_t *e, size_t *ret_len);
/* The serialised METADATA section (StoredState) and its length. */
const void *rtcr_epoch_metadata_blob(const rtcr_epoch_t *e, size_t *ret_len);

/* Called per stored piece of page data: a data frame (`data` = its uncompressed bytes,
 * borrowed until the callback returns) or a whole zero run (`data` NULL). Returning < 0
 * stops the iteration with that value. */
typedef int (*rtcr_image_page_fn)(void *opaque, uint32_t ds_badge, uint64_t offset,
                                  const void *data, size_t len);

/* Call `fn` for every zero run and every piece of data of the epoch, dataspaces in index
 * order, offsets ascending within a dataspace (zero runs with data NULL). A piece is the part
 * of one frame that falls into one data run, so a run longer than a frame comes in several
 * calls. Each frame is decompressed and hash-checked before its pieces are handed out.
 * Returns 0, fn's negative value, -EBADMSG (a frame fails to decompress or its hash
 * mismatches; err names it) or -ENOMEM. */
int rtcr_epoch_foreach_pages(const rtcr_epoch_t *e, rtcr_image_page_fn fn, void *opaque,
                             rtcr_image_err_t *err);

/* ---- chains ----------------------------------------------------------------------------- */

typedef struct rtcr_image rtcr_image_t;

/* An empty chain of `target` (name copied; NULL only on out-of-memory or an invalid name).
 * `limits` NULL = defaults (max_epochs, max_dataspace are used). Caller owns. */
rtcr_image_t *rtcr_image_new(const char *target, const rtcr_image_limits_t *limits);

/* NULL-safe, idempotent; NULLs *p; destroys the epochs it holds. */
void rtcr_image_destroy(rtcr_image_t **p);

/* Append *epoch. Rules: the target must match; an empty chain takes only a FULL epoch; then
 * epoch N must have number last+1 and parent last, with the same build ids (binary and
 * libraries) as the chain's base. A FULL epoch numbered above last replaces the whole chain
 * (a resynchronisation or compaction result). On success the image takes the epoch and
 * *epoch becomes NULL; on failure nothing changes. -ESTALE: number <= last; -EINVAL: wrong
 * target, gap, wrong parent, foreign build id, incremental epoch on an empty chain;
 * -E2BIG: max_epochs. */
int rtcr_image_add_epoch(rtcr_image_t *img, rtcr_epoch_t **epoch, rtcr_image_err_t *err);

const char *rtcr_image_target(const rtcr_image_t *img);
size_t rtcr_image_count(const rtcr_image_t *img);   /* epochs held */
uint64_t rtcr_image_first(const rtcr_image_t *img); /* number of the base epoch, 0 if empty */
uint64_t rtcr_image_last(const rtcr_image_t *img);  /* number of the newest epoch, 0 if empty */
/* The epoch numbered `number`, borrowed until the image changes; NULL if not held. */
const rtcr_epoch_t *rtcr_image_epoch(const rtcr_image_t *img, uint64_t number);

/* Check that the chain is complete and consistent: non-empty, a FULL base, every epoch from
 * base to last present with parent = previous, one target, one build id. 0 or -EINVAL
 * (empty: -ENOENT) with err naming the first problem. */
int rtcr_image_check(const rtcr_image_t *img, rtcr_image_err_t *err);

/* Receives the destination of dataspace `badge` of `size` bytes: *ret_dst must point to
 * `size` writable, zero-filled bytes that stay valid until materialisation returns. Called
 * once per dataspace live at the target epoch, in metadata order. Return < 0 to abort. */
typedef int (*rtcr_image_ds_fn)(void *opaque, uint32_t badge, uint64_t size, void **ret_dst);

/* Reconstruct the memory of every dataspace declared by epoch `epoch`'s metadata: apply the
 * page runs of epochs base..epoch in order (within each dataspace's lifetime, see above)
 * directly into the buffers `fn` provides; every frame is hash-checked after decompression.
 * Decodes on one thread per online CPU (rtcr_image_materialize_into_mt with workers 0).
 * On failure the buffers hold undefined content. -EINVAL: epoch not in the chain; -EBADMSG:
 * corrupt frame; fn's error; -ENOMEM. */
int rtcr_image_materialize_into(const rtcr_image_t *img, uint64_t epoch, rtcr_image_ds_fn fn,
                                void *opaque, rtcr_image_err_t *err);

/* Upper bound on the threads of one materialisation. */
#define RTCR_IMAGE_MAX_WORKERS 16

/* As rtcr_image_materialize_into, decoding on `workers` threads: the calling one and up to
 * workers - 1 that it starts and joins before returning (fewer if threads cannot be started;
 * that is not an error). workers 0 chooses: one per online CPU, at most
 * RTCR_IMAGE_MAX_WORKERS, and fewer for little data (about 1 MiB per thread);
 * rtcr_image_materialize_into is this with 0. `fn` is called on the calling thread only,
 * before any decoding. The epochs are applied oldest first, each epoch's frames spread over
 * the threads; a frame or zero run wholly overwritten by newer epochs is not decoded (the
 * epoch's DATA section hash covered its bytes when it was parsed), zero runs in the first
 * epoch of a dataspace's lifetime are not written (the destination is zero-filled). The
 * result does not depend on `workers`, nor does the error: a corrupt frame is reported as the
 * first one the epoch order meets ("epoch N: frame F of dataspace 0xB: hash mismatch"). */
int rtcr_image_materialize_into_mt(const rtcr_image_t *img, uint64_t epoch, unsigned workers,
                                   rtcr_image_ds_fn fn, void *opaque, rtcr_image_err_t *err);

/* The memory of a target at one epoch: owned buffers per dataspace. */
typedef struct rtcr_memstate rtcr_memstate_t;

/* As rtcr_image_materialize_into with buffers it allocates (calloc). Caller owns *ret. */
int rtcr_image_materialize(const rtcr_image_t *img, uint64_t epoch, rtcr_image_err_t *err,
                           rtcr_memstate_t **ret);
size_t rtcr_memstate_count(const rtcr_memstate_t *m);
/* Dataspace i (0 <= i < count) in metadata order; -ERANGE if i is out of range. */
int rtcr_memstate_get(const rtcr_memstate_t *m, size_t i, uint32_t *ret_badge, uint64_t *ret_size,
                      const uint8_t **ret_data);
/* The content of dataspace `badge` (borrowed) or NULL; *ret_size gets its size if non-NULL. */
const uint8_t *rtcr_memstate_find(const rtcr_memstate_t *m, uint32_t badge, uint64_t *ret_size);
/* The epoch whose memory m holds. */
uint64_t rtcr_memstate_epoch(const rtcr_memstate_t *m);
/* NULL-safe, idempotent; NULLs *p. */
void rtcr_memstate_destroy(rtcr_memstate_t **p);

/* Merge epochs base..upto into one FULL epoch numbered `upto` (metadata and header of epoch
 * `upto`, parent 0, compacted_from = base, all-zero ranges as zero runs) whose materialised
 * state equals that of the chain at `upto`, and replace them by it in the image. If
 * `ret_epoch` is non-NULL it gets the new epoch (borrowed, e.g. for rtcr_epoch_bytes to write
 * the file). Nothing changes on failure. -EINVAL: upto not in the chain; errors of
 * materialisation and building. */
int rtcr_image_compact(rtcr_image_t *img, uint64_t upto, rtcr_image_err_t *err,
                       const rtcr_epoch_t **ret_epoch);

/* The same compaction in three steps, so that the expensive one can run on another thread
 * while the owner of the image goes on adding epochs:
 *   _new     (owner)  takes a view of epochs base..upto: the epoch objects are borrowed, so
 *                     until _commit or _destroy the owner must not drop them (no new full
 *                     epoch, no compaction, no rtcr_image_destroy); adding incremental
 *                     epochs is fine;
 *   _run     (any thread, once) materialises the view and builds the full epoch; it touches
 *                     nothing but the view and the epochs it borrows;
 *   _commit  (owner)  replaces epochs base..upto by the built one, -ESTALE if the chain no
 *                     longer starts with the epochs the view took (nothing changes then),
 *                     the error of _run if it failed. On success *c is destroyed.
 * The containers of the epochs a commit (or a new full epoch) drops are kept as spares,
 * RTCR_IMAGE_SPARES of them and RTCR_IMAGE_SPARE_MAX bytes at most, for
 * rtcr_epoch_builder_reserve_recycled: the next epochs are written into memory whose pages
 * are already mapped (a page fault costs about as much as compressing 2-3 KiB). */
typedef struct rtcr_image_compaction rtcr_image_compaction_t;
#define RTCR_IMAGE_SPARES    64
#define RTCR_IMAGE_SPARE_MAX ((size_t)256 << 20)
int rtcr_image_compaction_new(rtcr_image_t *img, uint64_t upto, rtcr_image_err_t *err,
                              rtcr_image_compaction_t **ret);
int rtcr_image_compaction_run(rtcr_image_compaction_t *c, rtcr_image_err_t *err);
/* Optional, before _run: the memory of an epoch of this very chain materialised earlier,
 * typically what the previous compaction left (rtcr_image_compaction_take_memory; its epoch is
 * then the chain's first). _run applies only the epochs after it onto its buffers instead of
 * decoding the whole chain into fresh ones: a compaction then decodes what was written since
 * the last one, not the whole target. c takes *m (NULLed) in any case: -ESTALE (freed) if its
 * epoch is not in base..upto, -EINVAL on bad arguments. The caller vouches that m is the
 * memory of this chain (the compaction cannot tell a different history of the same numbers). */
int rtcr_image_compaction_set_memory(rtcr_image_compaction_t *c, rtcr_memstate_t **m);
/* After a successful _run: the memory of epoch upto (caller owns it, for the next
 * compaction's _set_memory), or NULL. A compaction also writes the full epoch into the
 * container of the full epoch an earlier commit dropped, if the image kept it as a spare. */
rtcr_memstate_t *rtcr_image_compaction_take_memory(rtcr_image_compaction_t *c);
/* Before _run: call fn(ctx) after every frame the full epoch's encoder compresses
 * (rtcr_epoch_builder_set_progress); the checkpointer pauses the compaction there while it
 * encodes an epoch. */
void rtcr_image_compaction_set_progress(rtcr_image_compaction_t *c, void (*fn)(void *ctx),
                                        void *ctx);
int rtcr_image_compaction_commit(rtcr_image_t *img, rtcr_image_compaction_t **c,
                                 rtcr_image_err_t *err, const rtcr_epoch_t **ret_epoch);
/* The epoch the compaction replaces; the built epoch after a successful _run (borrowed, for
 * writing its file from the thread that ran it), else NULL. */
uint64_t rtcr_image_compaction_epoch(const rtcr_image_compaction_t *c);
const rtcr_epoch_t *rtcr_image_compaction_result(const rtcr_image_compaction_t *c);
/* NULL-safe, idempotent; NULLs *c. */
void rtcr_image_compaction_destroy(rtcr_image_compaction_t **c);
/* How many spare containers img keeps, and their bytes (either pointer may be NULL). */
void rtcr_image_spares(const rtcr_image_t *img, size_t *ret_count, size_t *ret_bytes);

/* As rtcr_epoch_builder_reserve, taking the smallest large enough spare container of `img`
 * (see rtcr_image_compaction_commit) when the builder has no output yet; img may be NULL.
 * The builder owns the container from then on; the finished epoch keeps it. 1: a spare was
 * taken, 0: reserved as rtcr_epoch_builder_reserve does; errors as there. */
int rtcr_epoch_builder_reserve_recycled(rtcr_epoch_builder_t *b, uint64_t raw_bytes,
                                        rtcr_image_t *img);

/* ---- files ------------------------------------------------------------------------------ */

/* Write one epoch buffer to DIR/TARGET/epoch-%08llu.rtcr atomically: create DIR/TARGET
 * (0750) if needed, write a temporary file (O_CLOEXEC), fsync it, rename it over the final
 * name, fsync the directory. The buffer's fixed header, HEADER section and target name are
 * checked (the name must equal `target`); pages are not decompressed. No temporary file is
 * left behind on failure. -EINVAL / -EBADMSG / -EPROTO (buffer), -errno of the I/O. */
int rtcr_image_write_epoch_file(const char *dir, const char *target, const void *buf, size_t len,
                                rtcr_image_err_t *err);

/* The file name of epoch `epoch` of `target` under `dir` into `path` (size bytes).
 * -ENAMETOOLONG if it does not fit. */
int rtcr_image_epoch_path(const char *dir, const char *target, uint64_t epoch, char *path,
                          size_t size);

/* Load the chain of `target` from DIR/TARGET: parse every epoch-*.rtcr file (the number in
 * the name must equal the header's), pick the FULL base that gives the longest chain (the
 * newest such base on ties; epochs below it are superseded and ignored), and add epochs
 * base, base+1, ... while they are present and valid. Returns 0 if every file from the base
 * on was used, 1 if some file was missing, corrupt or does not fit (err names the first such
 * epoch and its problem; the good prefix is loaded), and *ret_image (caller owns) in both
 * cases. -ENOENT: no epoch files (or no directory); -EBADMSG: no valid FULL epoch; -errno. */
int rtcr_image_load_dir(const char *dir, const char *target, const rtcr_image_limits_t *limits,
                        rtcr_image_err_t *err, rtcr_image_t **ret_image);

/* Delete the epoch files of `target` numbered below `keep_from` (superseded by a compacted
 * epoch) and stale temporary files, then fsync the directory. Returns the number of files
 * deleted, or -errno (-ENOENT if the directory does not exist). */
int rtcr_image_prune_dir(const char *dir, const char *target, uint64_t keep_from,
                         rtcr_image_err_t *err);

/* ---- inspection ------------------------------------------------------------------------- */

/* Print the header and statistics, sessions with their per-type state, the cap space (slot,
 * type, rights, object) and the page runs with sizes; verbose adds frames. */
void rtcr_epoch_print(const rtcr_epoch_t *e, FILE *out, bool verbose);

/* Print a summary line per epoch of the chain, and with verbose every epoch in full. */
void rtcr_image_print(const rtcr_image_t *img, FILE *out, bool verbose);

/* Buffer size that holds any text of rtcr_image_time_string, NUL included. */
#define RTCR_IMAGE_TIME_STRING_MAX 32

/* A wall-clock time (CLOCK_REALTIME microseconds, as `created_usec`) as an operator reads it:
 * UTC, ISO 8601 with milliseconds, "2026-11-21T11:08:54.704Z" (microseconds truncated; years
 * after 9999 get more digits). Written into buf (len bytes; RTCR_IMAGE_TIME_STRING_MAX is
 * always enough, a smaller buffer gets a truncated, NUL-terminated text); "?" if the time
 * cannot be broken down. Returns buf. Does not depend on the TZ environment variable. */
const char *rtcr_image_time_string(uint64_t usec, char *buf, size_t len);

/* Name of a session type (SESSION_*) / kernel object type (KOBJ_*), "?" if unknown. */
const char *rtcr_image_session_type_name(int type);
const char *rtcr_image_kobj_type_name(int type);

#endif /* RTCR_IMAGE_H */
