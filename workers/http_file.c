/* http_file: a direct-mapped cache (one entry per slot, a colliding path
 * replaces it) so its size is fixed. Paths are resolved with realpath and
 * must stay under the root's own real path: symlinks out of it are 403. */
#include "workers/http_file.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "server/log.h"
#include "workers/http_path.h"
#include "workers/mime.h"

struct http_cache {
    char root[PATH_MAX];        /* real path, no trailing slash */
    size_t rootlen;
    char index[256];
    size_t nslots;
    struct http_file *slots[];
};

struct http_cache *http_cache_new(const char *root, const char *index, size_t slots)
{
    struct http_cache *hc = calloc(1, sizeof *hc + slots * sizeof hc->slots[0]);
    if (!hc)
        return NULL;
    if (!realpath(root, hc->root)) {
        int err = errno;
        free(hc);
        errno = err;
        return NULL;
    }
    hc->rootlen = strlen(hc->root);
    if (hc->rootlen == 1)
        hc->rootlen = 0;        /* root is "/": every path is under it */
    snprintf(hc->index, sizeof hc->index, "%s", index);
    hc->nslots = slots;
    return hc;
}

static void file_free(struct http_file *f)
{
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
    if (!f)
        return;
    if (f->refs > 0)
        f->dead = true;
    else
        file_free(f);
}

void http_cache_free(struct http_cache *hc)
{
    if (!hc)
        return;
    for (size_t i = 0; i < hc->nslots; i++)
        evict(hc, i);
    free(hc);
}

static uint32_t path_hash(const char *p, size_t len)
{
    uint32_t h = 2166136261u;
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

/* Resolve root + path into real (which must stay under root). 0 or -status. */
static int resolve(const struct http_cache *hc, const char *path, const char *suffix,
                   char real[PATH_MAX])
{
    char full[PATH_MAX];
    int n = snprintf(full, sizeof full, "%.*s%s%s", (int)hc->rootlen, hc->root,
                     path, suffix);
    if (n < 0 || (size_t)n >= sizeof full)
        return -404;                    /* longer than PATH_MAX: no such file */
    if (!realpath(full, real))
        return -errno_status(errno);
    if (strncmp(real, hc->root, hc->rootlen) != 0 ||
        (real[hc->rootlen] != '/' && real[hc->rootlen] != '\0'))
        return -403;
    return 0;
}

/* Open the file a request path names, following the index for directories. */
static int open_target(const struct http_cache *hc, const char *path, size_t len,
                       struct stat *st)
{
    char real[PATH_MAX];
    int r = resolve(hc, path, "", real);
    if (r == 0 && stat(real, st) != 0)
        r = -errno_status(errno);
    if (r == 0 && S_ISDIR(st->st_mode)) {
        if (path[len - 1] != '/')
            return -301;
        r = resolve(hc, path, hc->index, real);
        if (r == -404)
            return -403;        /* a directory without its index */
    }
    if (r < 0)
        return r;
    int fd = open(real, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0)
        return -errno_status(errno);
    if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode)) {
        close(fd);
        return -403;
    }
    return fd;
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

static void format_headers(struct http_file *f)
{
    http_date_format(f->mtime, f->lastmod);
    snprintf(f->etag, sizeof f->etag, "\"%llx-%llx\"",
             (unsigned long long)f->size, (unsigned long long)f->mtime);
    int n = snprintf(f->hdr, sizeof f->hdr,
                     "Content-Type: %s\r\nContent-Length: %llu\r\n"
                     "Last-Modified: %s\r\nETag: %s\r\nAccept-Ranges: bytes\r\n",
                     f->ctype, (unsigned long long)f->size, f->lastmod, f->etag);
    f->hdrlen = n > 0 && (size_t)n < sizeof f->hdr ? (size_t)n : 0;
}

static struct http_file *file_load(const struct http_cache *hc, const char *path,
                                   size_t len, int64_t now_ms, int *status)
{
    struct stat st;
    int fd = open_target(hc, path, len, &st);
    if (fd < 0) {
        *status = -fd;
        return NULL;
    }
    struct http_file *f = calloc(1, sizeof *f);
    char *key = f ? strndup(path, len) : NULL;
    if (!key) {
        free(f);
        close(fd);
        *status = 500;
        return NULL;
    }
    f->key = key;
    f->fd = fd;
    f->size = (uint64_t)st.st_size;
    f->mtime = st.st_mtime;
    f->loaded_ms = now_ms;
    /* "/dir/" serves its index: the type comes from the index's name. */
    f->ctype = mime_lookup(path[len - 1] == '/' ? hc->index : path);
    if (f->size <= HTTP_FILE_SMALL) {
        f->fd = -1;
        if (load_bytes(f, fd) != 0) {
            file_free(f);
            *status = 500;
            return NULL;
        }
    }
    format_headers(f);
    return f;
}

struct http_file *http_cache_get(struct http_cache *hc, const char *path,
                                 size_t len, int64_t now_ms, int *status)
{
    uint32_t h = path_hash(path, len);
    size_t slot = h % hc->nslots;
    struct http_file *f = hc->slots[slot];
    if (f && f->hash == h && now_ms - f->loaded_ms < HTTP_FILE_TTL_MS &&
        strncmp(f->key, path, len) == 0 && f->key[len] == '\0')
        return f;
    evict(hc, slot);
    f = file_load(hc, path, len, now_ms, status);
    if (f) {
        f->hash = h;
        hc->slots[slot] = f;
    }
    return f;
}
