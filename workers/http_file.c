/* http_file: a direct-mapped cache (one entry per slot, a colliding path
 * replaces it) so its size is fixed. Paths are resolved with realpath and
 * must stay under the root's own real path: symlinks out of it are 403. */
#include "workers/http_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "server/log.h"
#include "workers/http_path.h"
#include "workers/mime.h"

struct http_root {
    char root[PATH_MAX];        /* real path, no trailing slash */
    size_t rootlen;
    char index[256];
};

struct http_cache {
    size_t nslots;
    struct http_file *slots[];
};

static const struct {
    const char *suffix, *name;
} encodings[HTTP_ENC_COUNT] = {
    [HTTP_ENC_BR] = { ".br", "br" }, [HTTP_ENC_GZIP] = { ".gz", "gzip" },
};

struct http_root *http_root_new(const char *root, const char *index)
{
    struct http_root *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    if (!realpath(root, r->root)) {
        int err = errno;
        free(r);
        errno = err;
        return NULL;
    }
    r->rootlen = strlen(r->root);
    if (r->rootlen == 1)
        r->rootlen = 0;         /* root is "/": every path is under it */
    snprintf(r->index, sizeof r->index, "%s", index);
    return r;
}

void http_root_free(struct http_root *r)
{
    free(r);
}

const char *http_root_index(const struct http_root *r)
{
    return r->index;
}

const char *http_root_path(const struct http_root *r)
{
    return r->root;
}

struct http_cache *http_cache_new(size_t slots)
{
    struct http_cache *hc = calloc(1, sizeof *hc + slots * sizeof hc->slots[0]);
    if (hc)
        hc->nslots = slots;
    return hc;
}

static void file_free(struct http_file *f);

/* A variant goes with its file, or when its last response is sent. */
static void drop(struct http_file *f)
{
    if (f->refs > 0)
        f->dead = true;
    else
        file_free(f);
}

static void file_free(struct http_file *f)
{
    for (int i = 0; i < HTTP_ENC_COUNT; i++)
        if (f->variant[i])
            drop(f->variant[i]);
    if (f->fd >= 0)
        close(f->fd);
    free(f->data);
    free(f->key);
    free(f);
}

void http_file_hold(struct http_file *f)
{
    f->refs++;
}

void http_file_release(struct http_file *f)
{
    if (--f->refs == 0 && f->dead)
        file_free(f);
}

static void evict(struct http_cache *hc, size_t slot)
{
    struct http_file *f = hc->slots[slot];
    hc->slots[slot] = NULL;
    if (f)
        drop(f);
}

void http_cache_free(struct http_cache *hc)
{
    if (!hc)
        return;
    for (size_t i = 0; i < hc->nslots; i++)
        evict(hc, i);
    free(hc);
}

/* FNV-1a of the path, started from the root's address: the same path
 * under two sites is two entries. */
static uint32_t path_hash(const struct http_root *r, const char *p, size_t len)
{
    uint32_t h = 2166136261u ^ (uint32_t)((uintptr_t)r >> 4);
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)p[i]) * 16777619u;
    return h;
}

static int errno_status(int err)
{
    switch (err) {
    /* A name longer than the file system allows names no file: 404, not
     * 414 (the request target itself was short enough to be read). */
    case ENOENT: case ENOTDIR: case ENAMETOOLONG: return 404;
    case EACCES: case EPERM: case ELOOP: return 403;
    default: return 500;
    }
}

/* Resolve root + path + suffix into real (which must stay under root).
 * 0 or -status. */
static int resolve(const struct http_root *r, const char *path, size_t len,
                   const char *suffix, char real[PATH_MAX])
{
    char full[PATH_MAX];
    int n = snprintf(full, sizeof full, "%.*s%.*s%s", (int)r->rootlen, r->root,
                     (int)len, path, suffix);
    if (n < 0 || (size_t)n >= sizeof full)
        return -404;                    /* longer than PATH_MAX: no such file */
    if (!realpath(full, real))
        return -errno_status(errno);
    if (strncmp(real, r->root, r->rootlen) != 0 ||
        (real[r->rootlen] != '/' && real[r->rootlen] != '\0'))
        return -403;
    return 0;
}

/* Open a resolved path: a regular file, never through a symlink (realpath
 * resolved them all; one made since is refused). fd or -status. */
static int open_real(const char *real, struct stat *st)
{
    int fd = open(real, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0)
        return -errno_status(errno);
    if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode)) {
        close(fd);
        return -403;
    }
    return fd;
}

/* Open the file a request path names, following the index for directories. */
static int open_target(const struct http_root *r, const char *path, size_t len,
                       struct stat *st)
{
    char real[PATH_MAX];
    int rc = resolve(r, path, len, "", real);
    if (rc == 0 && stat(real, st) != 0)
        rc = -errno_status(errno);
    if (rc == 0 && S_ISDIR(st->st_mode)) {
        if (path[len - 1] != '/')
            return -301;
        rc = resolve(r, path, len, r->index, real);
        if (rc == -404)
            return -HTTP_STATUS_NO_INDEX;
    }
    return rc < 0 ? rc : open_real(real, st);
}

int http_root_dir(const struct http_root *r, const char *path, char real[PATH_MAX])
{
    struct stat st;
    int rc = resolve(r, path, strlen(path), "", real);
    if (rc == 0 && stat(real, &st) != 0)
        rc = -errno_status(errno);
    return rc == 0 && !S_ISDIR(st.st_mode) ? -404 : rc;
}

/* Read a small file whole; the fd is closed either way. */
static int load_bytes(struct http_file *f, int fd)
{
    f->data = malloc(f->size ? f->size : 1);
    size_t got = 0;
    while (f->data && got < f->size) {
        ssize_t n = pread(fd, f->data + got, f->size - got, (off_t)got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    f->size = got;      /* a file that shrank meanwhile: what was there */
    return f->data ? 0 : -1;
}

/* A variant's tag names its coding too: never equal to the file's own. */
static void format_headers(struct http_file *f)
{
    http_date_format(f->mtime, f->lastmod);
    snprintf(f->etag, sizeof f->etag, "\"%llx-%llx%s%s\"", (unsigned long long)f->size,
             (unsigned long long)f->mtime, f->encoding ? "-" : "",
             f->encoding ? f->encoding : "");
    int n = snprintf(f->hdr, sizeof f->hdr,
                     "Content-Type: %s\r\nContent-Length: %llu\r\n%s%s%s"
                     "Last-Modified: %s\r\nETag: %s\r\nAccept-Ranges: bytes\r\n",
                     f->ctype, (unsigned long long)f->size,
                     f->encoding ? "Content-Encoding: " : "", f->encoding ? f->encoding : "",
                     f->encoding ? "\r\n" : "", f->lastmod, f->etag);
    f->hdrlen = n > 0 && (size_t)n < sizeof f->hdr ? (size_t)n : 0;
}

/* An entry for the open fd (closed on failure): small files are read whole. */
static struct http_file *file_new(int fd, const struct stat *st, const char *ctype,
                                  const char *encoding)
{
    struct http_file *f = calloc(1, sizeof *f);
    if (!f) {
        close(fd);
        return NULL;
    }
    f->fd = fd;
    f->size = (uint64_t)st->st_size;
    f->mtime = st->st_mtime;
    f->ctype = ctype;
    f->encoding = encoding;
    f->expires = -2;
    if (f->size <= HTTP_FILE_SMALL) {
        f->fd = -1;
        if (load_bytes(f, fd) != 0) {
            file_free(f);
            return NULL;
        }
    }
    format_headers(f);
    return f;
}

static struct http_file *file_load(const struct http_root *r, const char *path,
                                   size_t len, int64_t now_ms, int *status)
{
    struct stat st;
    int fd = open_target(r, path, len, &st);
    if (fd < 0) {
        *status = -fd;
        return NULL;
    }
    /* "/dir/" serves its index: the type comes from the index's name. */
    char *key = strndup(path, len);
    struct http_file *f = key ? file_new(fd, &st, mime_lookup(path[len - 1] == '/' ? r->index
                                                                                   : path), NULL)
                              : NULL;
    if (!f) {
        if (!key)
            close(fd);
        free(key);
        *status = 500;
        return NULL;
    }
    f->key = key;
    f->root = r;
    f->loaded_ms = now_ms;
    return f;
}

struct http_file *http_cache_get(struct http_cache *hc, const struct http_root *r,
                                 const char *path, size_t len, int64_t now_ms, int *status)
{
    uint32_t h = path_hash(r, path, len);
    size_t slot = h % hc->nslots;
    struct http_file *f = hc->slots[slot];
    if (f && f->hash == h && f->root == r && now_ms - f->loaded_ms < HTTP_FILE_TTL_MS &&
        strncmp(f->key, path, len) == 0 && f->key[len] == '\0')
        return f;
    evict(hc, slot);
    f = file_load(r, path, len, now_ms, status);
    if (f) {
        f->hash = h;
        hc->slots[slot] = f;
    }
    return f;
}

/* The variant of f beside the file it serves ("/dir/" serves the index). */
static struct http_file *variant_load(const struct http_file *f, enum http_enc enc)
{
    const struct http_root *r = f->root;
    size_t len = strlen(f->key);
    char name[PATH_MAX], real[PATH_MAX];
    int n = snprintf(name, sizeof name, "%s%s", f->key,
                     f->key[len - 1] == '/' ? r->index : "");
    if (n < 0 || (size_t)n >= sizeof name)
        return NULL;
    struct stat st;
    if (resolve(r, name, (size_t)n, encodings[enc].suffix, real) != 0 ||
        stat(real, &st) != 0 || !S_ISREG(st.st_mode) || st.st_mtime < f->mtime)
        return NULL;
    int fd = open_real(real, &st);
    if (fd < 0)
        return NULL;
    if (st.st_mtime < f->mtime) {       /* replaced between stat and open */
        close(fd);
        return NULL;
    }
    return file_new(fd, &st, f->ctype, encodings[enc].name);
}

struct http_file *http_file_variant(struct http_file *f, enum http_enc enc)
{
    uint8_t bit = (uint8_t)(1u << enc);
    if (!(f->variants_checked & bit)) {
        f->variants_checked |= bit;
        f->variant[enc] = variant_load(f, enc);
    }
    return f->variant[enc];
}

struct http_file *http_file_from_bytes(const char *data, size_t len, const char *ctype)
{
    struct http_file *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    f->size = len;
    f->ctype = ctype;
    f->expires = -1;
    f->refs = 1;
    f->dead = true;
    f->fd = -1;
    if (len <= HTTP_FILE_SMALL) {
        f->data = malloc(len ? len : 1);
        if (f->data) {
            memcpy(f->data, data, len);
            return f;
        }
    } else if ((f->fd = memfd_create("preforkd-listing", MFD_CLOEXEC)) >= 0) {
        size_t off = 0;
        while (off < len) {
            ssize_t n = write(f->fd, data + off, len - off);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                break;
            off += (size_t)n;
        }
        if (off == len)
            return f;
    }
    file_free(f);
    return NULL;
}
