/* rtcr_image_int.h — internals shared by rtcr_image*.c (not installed, not for other modules).
 *
 * A parsed epoch owns its wire buffer; the decoded protobuf messages are allocated through a
 * budgeted allocator (limits.max_unpacked), so a hostile image cannot make the decoder
 * allocate without bound. The sorted dataspace table (badge -> size) of the metadata and the
 * frame table are computed once at parse time. The frame table is the same for both format
 * versions (frames of a run in version 1, frames of a dataspace spanning its runs in version
 * 2): every frame, in index order, with its DATA offset and the pieces of data runs that its
 * uncompressed bytes fill, so no other code needs to know which version an epoch has.
 */
#ifndef RTCR_IMAGE_INT_H
#define RTCR_IMAGE_INT_H

#include <stdarg.h>

#include <protobuf-c/protobuf-c.h>

#include <rtcr/image.h>

/* a RAM dataspace declared by the metadata */
struct rtcr_image_ds {
    uint32_t badge; /* dataspace badge */
    uint64_t size;  /* bytes */
};

/* one frame of an epoch, in index order (dataspaces in index order, then DATA order) */
struct rtcr_image_frame {
    uint64_t data_off;  /* offset of its stored bytes in the DATA section */
    uint64_t hash;      /* XXH3-64 of its uncompressed bytes */
    uint32_t size;      /* uncompressed bytes */
    uint32_t stored;    /* bytes in DATA (== size: raw, < size: one LZ4 block) */
    size_t first_piece; /* its first entry in the epoch's pieces */
    uint32_t n_pieces;  /* its entries in pieces (>= 1), ascending in the dataspace */
};

/* `len` bytes at `frame_off` of a frame's uncompressed bytes belong at `ds_off` */
struct rtcr_image_piece {
    uint64_t ds_off;    /* byte offset in the dataspace */
    uint32_t frame_off; /* byte offset in the uncompressed frame */
    uint32_t len;       /* bytes, > 0 */
};

/* protobuf-c allocator with an upper bound on live bytes */
struct rtcr_image_budget {
    ProtobufCAllocator pa; /* handed to protobuf-c; allocator_data points at this struct */
    uint64_t used;         /* live bytes including per-block headers */
    uint64_t max;          /* bound on used */
    bool exceeded;         /* an allocation was refused for the bound */
};

struct rtcr_epoch {
    uint8_t *buf;                    /* the owned wire bytes */
    size_t len;                      /* bytes of buf */
    struct rtcr_image_budget budget; /* allocator of the decoded messages below */
    RtcrImg__EpochHeader *hdr;       /* decoded HEADER section */
    RtcrImg__StoredState *state;     /* decoded METADATA section */
    RtcrImg__PageIndex *index;       /* decoded PAGEMAP section */
    const uint8_t *meta;             /* METADATA section bytes (inside buf) */
    size_t meta_len;                 /* bytes of meta */
    const uint8_t *data;             /* DATA section bytes (inside buf) */
    size_t data_len;                 /* bytes of data */
    struct rtcr_image_ds *ds;        /* declared dataspaces, sorted by badge */
    size_t n_ds;                     /* entries of ds */
    uint16_t version;                /* container format version of buf */
    struct rtcr_image_frame *frames; /* every frame, in index order */
    size_t n_frames;                 /* entries of frames */
    struct rtcr_image_piece *pieces; /* the pieces of the frames, in frame order */
    size_t n_pieces;                 /* entries of pieces */
    size_t *ds_frame0;               /* index->dataspaces[i]'s frames are frames[ds_frame0[i] ..
                                        ds_frame0[i + 1]) (n_dataspaces + 1 entries) */
    uint32_t max_frame;              /* largest uncompressed frame of the epoch */
};

/* Take e's container out of it (e must be destroyed next): the buffer and its usable size. */
uint8_t *rtcr_image__epoch_take_buf(rtcr_epoch_t *e, size_t *ret_cap);

/* A spare container of img with at least `need` usable bytes (smallest fit), removed from the
 * spares, or NULL (img NULL, none fits). */
void *rtcr_image__take_spare(rtcr_image_t *img, size_t need, size_t *ret_cap);

/* printf-style message into err (NULL-safe) */
void rtcr_image__err(rtcr_image_err_t *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* 1 if `name` is a valid target name */
bool rtcr_image__valid_name(const char *name);

/* the declared dataspace `badge` of e, or NULL */
const struct rtcr_image_ds *rtcr_image__ds_find(const struct rtcr_image_ds *ds, size_t n,
                                                uint32_t badge);

/* Decode one frame into dst (ulen bytes) and check its hash. 0 or -EBADMSG with *why set. */
int rtcr_image__frame_decode(const uint8_t *src, uint32_t stored, uint8_t *dst, uint32_t ulen,
                             uint64_t hash, const char **why);

/* Parse only the fixed header, section table and HEADER section of buf (hashes checked);
 * *ret_hdr is a protobuf-c message the caller frees with rtcr_img__epoch_header__free_unpacked
 * (NULL allocator). Used by the file writer. */
int rtcr_image__peek_header(const void *buf, size_t len, rtcr_image_err_t *err,
                            RtcrImg__EpochHeader **ret_hdr);

/* Write container format `version` (RTCR_IMAGE_VERSION_MIN .. RTCR_IMAGE_VERSION) instead of
 * the current one; only before any page was added (for tests and older readers: version 1
 * has a frame list per run, so frames never span runs). -EINVAL otherwise. */
int rtcr_image__builder_set_version(rtcr_epoch_builder_t *b, uint16_t version);

/* The container size rtcr_epoch_builder_reserve(b, raw_bytes) asks for on a fresh builder
 * (SIZE_MAX if raw_bytes is beyond any epoch). */
size_t rtcr_image__reserve_need(uint64_t raw_bytes);

/* Hand b a container (malloc'd, `cap` usable bytes) to write into instead of its own; b owns
 * it from now on, the finished epoch keeps it. Only before any frame was added: -EINVAL
 * otherwise (buf is freed then). */
int rtcr_image__builder_give(rtcr_epoch_builder_t *b, uint8_t *buf, size_t cap);

/* mark a builder's epoch as the compaction of epochs from..its number */
void rtcr_image__builder_set_compacted(rtcr_epoch_builder_t *b, uint64_t from);

/* monotonic / realtime clock in usec */
uint64_t rtcr_image__now_usec(bool realtime);

#endif /* RTCR_IMAGE_INT_H */
