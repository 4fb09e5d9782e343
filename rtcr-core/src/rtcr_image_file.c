/* rtcr_image_file.c — epochs in files: DIR/TARGET/epoch-%08llu.rtcr.
 *
 * A file holds exactly the bytes of one epoch buffer. Writing is atomic in the usual way
 * (redis' rdbSave, systemd's write_string_file_atomic): a temporary ".epoch-N.rtcr.XXXXXX" in
 * the same directory, write, fsync, rename over the final name, fsync the directory. A crash
 * leaves either the old or the new file, plus at worst a temporary file that
 * rtcr_image_prune_dir removes.
 *
 * Loading parses every epoch file, then picks the FULL base that yields the longest chain:
 * after a compaction to K the directory holds the compacted FULL epoch-K (which replaced the
 * incremental one under the same name) and the superseded epochs below K until they are
 * pruned; those are ignored.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <rtcr/image.h>

#include "rtcr_image_int.h"

#define EPOCH_PREFIX "epoch-"
#define EPOCH_SUFFIX ".rtcr"
#define TMP_PREFIX   ".epoch-"

int rtcr_image_epoch_path(const char *dir, const char *target, uint64_t epoch, char *path,
                          size_t size)
{
    int n =
        snprintf(path, size, "%s/%s/" EPOCH_PREFIX "%08" PRIu64 EPOCH_SUFFIX, dir, target, epoch);

    return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

static int fsync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int r = 0;

    if (fd < 0)
        return -errno;
    if (fsync(fd) < 0)
        r = -errno;
    close(fd);
    return r;
}

static int write_all(int fd, const uint8_t *p, size_t len)
{
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int rtcr_image_write_epoch_file(const char *dir, const char *target, const void *buf, size_t len,
                                rtcr_image_err_t *err)
{
    RtcrImg__EpochHeader *h = NULL;
    char tdir[4096], path[4096], tmp[4096];
    int fd = -1, r;

    if (err)
        err->msg[0] = '\0';
    if (!dir || !buf || !rtcr_image__valid_name(target)) {
        rtcr_image__err(err, "write: bad directory, buffer or target name");
        return -EINVAL;
    }
    r = rtcr_image__peek_header(buf, len, err, &h);
    if (r < 0)
        return r;
    if (strcmp(h->target, target) != 0) {
        rtcr_image__err(err, "epoch %" PRIu64 ": belongs to '%s', not '%s'", h->epoch, h->target,
                        target);
        r = -EINVAL;
        goto out;
    }
    if (snprintf(tdir, sizeof(tdir), "%s/%s", dir, target) >= (int)sizeof(tdir) ||
        rtcr_image_epoch_path(dir, target, h->epoch, path, sizeof(path)) < 0 ||
        snprintf(tmp, sizeof(tmp), "%s/" TMP_PREFIX "%08" PRIu64 EPOCH_SUFFIX ".XXXXXX", tdir,
                 h->epoch) >= (int)sizeof(tmp)) {
        r = -ENAMETOOLONG;
        rtcr_image__err(err, "write: path too long");
        goto out;
    }
    if (mkdir(tdir, 0750) < 0 && errno != EEXIST) {
        r = -errno;
        rtcr_image__err(err, "write: cannot create %s: %s", tdir, strerror(-r));
        goto out;
    }
    fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        r = -errno;
        rtcr_image__err(err, "write: cannot create a file in %s: %s", tdir, strerror(-r));
        goto out;
    }
    r = write_all(fd, buf, len);
    if (r == 0 && fchmod(fd, 0640) < 0)
        r = -errno;
    if (r == 0 && fsync(fd) < 0)
        r = -errno;
    if (close(fd) < 0 && r == 0)
        r = -errno;
    fd = -1;
    if (r == 0 && rename(tmp, path) < 0)
        r = -errno;
    if (r < 0) {
        unlink(tmp);
        rtcr_image__err(err, "write: %s: %s", path, strerror(-r));
        goto out;
    }
    r = fsync_dir(tdir);
    if (r < 0)
        rtcr_image__err(err, "write: fsync of %s: %s", tdir, strerror(-r));
out:
    rtcr_img__epoch_header__free_unpacked(h, NULL);
    return r;
}

/* epoch number from a file name "epoch-%08llu.rtcr"; false if it is not one */
static bool epoch_of_name(const char *name, uint64_t *ret)
{
    size_t n = strlen(name), pl = strlen(EPOCH_PREFIX), sl = strlen(EPOCH_SUFFIX);
    uint64_t v = 0;

    if (n <= pl + sl || strncmp(name, EPOCH_PREFIX, pl) != 0 ||
        strcmp(name + n - sl, EPOCH_SUFFIX) != 0)
        return false;
    for (size_t i = pl; i < n - sl; i++) {
        if (name[i] < '0' || name[i] > '9' || v > (UINT64_MAX - 9) / 10)
            return false;
        v = v * 10 + (uint64_t)(name[i] - '0');
    }
    *ret = v;
    return v != 0;
}

static int read_file(int dfd, const char *name, uint64_t max, void **ret_buf, size_t *ret_len)
{
    struct stat st;
    uint8_t *buf;
    size_t got = 0;
    int fd, r = 0;

    fd = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) < 0) {
        r = -errno;
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        r = -EINVAL;
        goto out;
    }
    if ((uint64_t)st.st_size > max) {
        r = -E2BIG;
        goto out;
    }
    buf = malloc(st.st_size ? (size_t)st.st_size : 1);
    if (!buf) {
        r = -ENOMEM;
        goto out;
    }
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            r = n < 0 ? -errno : -EBADMSG; /* shrank while reading */
            free(buf);
            goto out;
        }
        got += (size_t)n;
    }
    *ret_buf = buf;
    *ret_len = got;
out:
    close(fd);
    return r;
}

struct loaded {
    uint64_t number;     /* from the file name */
    rtcr_epoch_t *epoch; /* parsed, or NULL if the file is corrupt */
    int error;           /* parse error if epoch is NULL */
    char msg[256];       /* its message */
};

static int cmp_loaded(const void *a, const void *b)
{
    uint64_t x = ((const struct loaded *)a)->number, y = ((const struct loaded *)b)->number;

    return x < y ? -1 : x > y;
}

int rtcr_image_load_dir(const char *dir, const char *target, const rtcr_image_limits_t *limits,
                        rtcr_image_err_t *err, rtcr_image_t **ret_image)
{
    rtcr_image_limits_t def;
    struct loaded *l = NULL;
    size_t n = 0, cap = 0, best = 0, best_len = 0;
    uint64_t best_end = 0;
    rtcr_image_t *img = NULL;
    char tdir[4096];
    struct dirent *de;
    DIR *d = NULL;
    int dfd = -1, r, result = 0;
    bool problem = false;

    if (err)
        err->msg[0] = '\0';
    if (!dir || !ret_image || !rtcr_image__valid_name(target))
        return -EINVAL;
    if (!limits) {
        rtcr_image_limits_default(&def);
        limits = &def;
    }
    if (snprintf(tdir, sizeof(tdir), "%s/%s", dir, target) >= (int)sizeof(tdir))
        return -ENAMETOOLONG;
    dfd = open(tdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        r = -errno;
        rtcr_image__err(err, "target '%s': cannot open %s: %s", target, tdir, strerror(-r));
        return r;
    }
    d = fdopendir(dfd);
    if (!d) {
        r = -errno;
        close(dfd);
        return r;
    }
    while ((de = readdir(d))) {
        uint64_t num;
        void *buf = NULL;
        size_t len = 0;
        rtcr_image_err_t e2 = {{0}};

        if (!epoch_of_name(de->d_name, &num))
            continue;
        if (n == cap) {
            size_t nc = cap ? 2 * cap : 32;
            struct loaded *nl;
            if (nc > limits->max_epochs * 2ull + 32) {
                r = -E2BIG;
                rtcr_image__err(err, "target '%s': too many epoch files", target);
                goto out;
            }
            nl = realloc(l, nc * sizeof(*nl));
            if (!nl) {
                r = -ENOMEM;
                goto out;
            }
            l = nl;
            cap = nc;
        }
        l[n] = (struct loaded){.number = num};
        r = read_file(dirfd(d), de->d_name, limits->max_total, &buf, &len);
        if (r == 0) {
            r = rtcr_epoch_parse_owned(&buf, len, limits, &e2, &l[n].epoch);
            free(buf);
        } else {
            snprintf(e2.msg, sizeof(e2.msg), "cannot read: %s", strerror(-r));
        }
        if (r == 0 && rtcr_epoch_number(l[n].epoch) != num) {
            snprintf(e2.msg, sizeof(e2.msg), "file holds epoch %" PRIu64,
                     rtcr_epoch_number(l[n].epoch));
            rtcr_epoch_destroy(&l[n].epoch);
            r = -EBADMSG;
        }
        l[n].error = r;
        snprintf(l[n].msg, sizeof(l[n].msg), "%s", e2.msg);
        n++;
    }
    if (n == 0) {
        rtcr_image__err(err, "target '%s': no epoch files in %s", target, tdir);
        r = -ENOENT;
        goto out;
    }
    qsort(l, n, sizeof(*l), cmp_loaded);

    /* the FULL base giving the longest chain; newest base on ties */
    for (size_t i = n; i-- > 0;) {
        size_t len = 1, j = i;
        if (!l[i].epoch || !rtcr_epoch_is_full(l[i].epoch))
            continue;
        while (j + 1 < n && l[j + 1].epoch && l[j + 1].number == l[j].number + 1 &&
               !rtcr_epoch_is_full(l[j + 1].epoch) &&
               rtcr_epoch_parent(l[j + 1].epoch) == l[j].number) {
            j++;
            len++;
        }
        if (best_len == 0 || l[j].number > best_end) {
            best = i;
            best_len = len;
            best_end = l[j].number;
        }
    }
    if (best_len == 0) {
        size_t i = 0;
        while (i < n && !l[i].error)
            i++;
        if (i < n)
            rtcr_image__err(err, "target '%s': no valid full epoch; epoch %" PRIu64 ": %s", target,
                            l[i].number, l[i].msg);
        else
            rtcr_image__err(err, "target '%s': no full epoch", target);
        r = -EBADMSG;
        goto out;
    }

    img = rtcr_image_new(target, limits);
    if (!img) {
        r = -ENOMEM;
        goto out;
    }
    for (size_t i = best; i < n; i++) {
        rtcr_image_err_t e2 = {{0}};
        uint64_t want = l[best].number + (i - best);

        if (l[i].number != want) {
            rtcr_image__err(err, "target '%s': epoch %" PRIu64 " missing", target, want);
            problem = true;
            break;
        }
        if (!l[i].epoch) {
            rtcr_image__err(err, "target '%s': epoch %" PRIu64 " corrupt: %s", target, l[i].number,
                            l[i].msg);
            problem = true;
            break;
        }
        r = rtcr_image_add_epoch(img, &l[i].epoch, &e2);
        if (r < 0) {
            rtcr_image__err(err, "target '%s': epoch %" PRIu64 " does not fit: %s", target,
                            l[i].number, e2.msg);
            problem = true;
            break;
        }
    }
    result = problem ? 1 : 0;
    *ret_image = img;
    img = NULL;
    r = result;
out:
    for (size_t i = 0; i < n; i++)
        rtcr_epoch_destroy(&l[i].epoch);
    free(l);
    rtcr_image_destroy(&img);
    closedir(d);
    return r;
}

int rtcr_image_prune_dir(const char *dir, const char *target, uint64_t keep_from,
                         rtcr_image_err_t *err)
{
    char tdir[4096];
    struct dirent *de;
    DIR *d;
    int dfd, deleted = 0, r = 0;

    if (err)
        err->msg[0] = '\0';
    if (!dir || !rtcr_image__valid_name(target))
        return -EINVAL;
    if (snprintf(tdir, sizeof(tdir), "%s/%s", dir, target) >= (int)sizeof(tdir))
        return -ENAMETOOLONG;
    dfd = open(tdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        r = -errno;
        rtcr_image__err(err, "prune: cannot open %s: %s", tdir, strerror(-r));
        return r;
    }
    d = fdopendir(dfd);
    if (!d) {
        r = -errno;
        close(dfd);
        return r;
    }
    while ((de = readdir(d))) {
        uint64_t num;
        bool stale_tmp = strncmp(de->d_name, TMP_PREFIX, strlen(TMP_PREFIX)) == 0;

        if (!stale_tmp && !(epoch_of_name(de->d_name, &num) && num < keep_from))
            continue;
        if (unlinkat(dirfd(d), de->d_name, 0) < 0) {
            r = -errno;
            rtcr_image__err(err, "prune: cannot delete %s/%s: %s", tdir, de->d_name, strerror(-r));
            break;
        }
        deleted++;
    }
    closedir(d);
    if (r == 0 && deleted) {
        r = fsync_dir(tdir);
        if (r < 0)
            rtcr_image__err(err, "prune: fsync of %s: %s", tdir, strerror(-r));
    }
    return r < 0 ? r : deleted;
}
