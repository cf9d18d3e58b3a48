/* http_index: readdir, one fstatat per entry (realpath for symlinks), a
 * sort, and the page built in a growing buffer. Only autoindex requests
 * come here; nothing is cached. */
#include "workers/http_index.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

struct entry {
    char *name;
    bool dir;
    uint64_t size;
    time_t mtime;
};

struct buf {
    char *p;
    size_t len, cap;
    bool failed;
};

static void put(struct buf *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->failed = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void puts_(struct buf *b, const char *s)
{
    put(b, s, strlen(s));
}

/* Text for an HTML element or a quoted attribute. */
static void put_html(struct buf *b, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&': puts_(b, "&amp;"); break;
        case '<': puts_(b, "&lt;"); break;
        case '>': puts_(b, "&gt;"); break;
        case '"': puts_(b, "&quot;"); break;
        case '\'': puts_(b, "&#39;"); break;
        default: put(b, s, 1);
        }
    }
}

/* A path segment for a relative link: every byte but the unreserved ones
 * percent-encoded (so "a:b" cannot read as a scheme, nor '"' end it). */
static void put_url(struct buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
            (*p >= '0' && *p <= '9') || strchr("-._~", *p)) {
            put(b, (const char *)p, 1);
        } else {
            char e[3] = { '%', hex[*p >> 4], hex[*p & 15] };
            put(b, e, 3);
        }
    }
}

static int entry_cmp(const void *x, const void *y)
{
    const struct entry *a = x, *b = y;
    if (a->dir != b->dir)
        return a->dir ? -1 : 1;
    return strcmp(a->name, b->name);
}

/* A symlink is listed when it resolves under root. */
static bool inside(const char *root, const char *dir, const char *name)
{
    char full[PATH_MAX], real[PATH_MAX];
    size_t rlen = strlen(root);
    if (rlen == 1)
        rlen = 0;
    if (snprintf(full, sizeof full, "%s/%s", dir, name) >= (int)sizeof full ||
        !realpath(full, real))
        return false;
    return strncmp(real, root, rlen) == 0 && (real[rlen] == '/' || real[rlen] == '\0');
}

static void free_entries(struct entry *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i].name);
    free(v);
}

/* The listed entries of dir, or NULL (*n 0 and errno 0 for an empty one). */
static struct entry *read_entries(const char *root, const char *dir, size_t *n)
{
    DIR *d = opendir(dir);
    struct entry *v = NULL;
    size_t cap = 0;
    *n = 0;
    if (!d)
        return NULL;
    errno = 0;
    for (struct dirent *de; (de = readdir(d)); errno = 0) {
        struct stat st;
        if (de->d_name[0] == '.' ||
            fstatat(dirfd(d), de->d_name, &st, 0) != 0 ||
            (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode)) ||
            ((de->d_type == DT_LNK || de->d_type == DT_UNKNOWN) &&
             !inside(root, dir, de->d_name)))
            continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 64;
            struct entry *grown = realloc(v, cap * sizeof *v);
            if (!grown)
                goto fail;
            v = grown;
        }
        if (!(v[*n].name = strdup(de->d_name)))
            goto fail;
        v[*n].dir = S_ISDIR(st.st_mode);
        v[*n].size = (uint64_t)st.st_size;
        v[(*n)++].mtime = st.st_mtime;
    }
    if (errno)
        goto fail;
    closedir(d);
    errno = 0;
    return v;
fail: {
        int err = errno ? errno : ENOMEM;
        free_entries(v, *n);
        closedir(d);
        *n = 0;
        errno = err;
        return NULL;
    }
}

static void put_row(struct buf *b, const struct entry *e)
{
    char cell[64];
    struct tm tm;
    puts_(b, "<tr><td><a href=\"");
    put_url(b, e->name);
    puts_(b, e->dir ? "/\">" : "\">");
    put_html(b, e->name);
    puts_(b, e->dir ? "/</a></td><td>-</td><td>" : "</a></td><td>");
    if (!e->dir) {
        snprintf(cell, sizeof cell, "%llu</td><td>", (unsigned long long)e->size);
        puts_(b, cell);
    }
    if (gmtime_r(&e->mtime, &tm) && strftime(cell, sizeof cell, "%Y-%m-%d %H:%M", &tm))
        puts_(b, cell);
    puts_(b, "</td></tr>\n");
}

char *http_index_html(const char *root, const char *dir, const char *path, size_t *len)
{
    size_t n;
    struct entry *v = read_entries(root, dir, &n);
    if (!v && errno)
        return NULL;
    if (n)
        qsort(v, n, sizeof *v, entry_cmp);
    struct buf b = { 0 };
    puts_(&b, "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Index of ");
    put_html(&b, path);
    puts_(&b, "</title></head>\n<body><h1>Index of ");
    put_html(&b, path);
    puts_(&b, "</h1>\n<table>\n<tr><th>Name</th><th>Size</th><th>Modified (UTC)</th></tr>\n");
    if (strcmp(path, "/") != 0)
        puts_(&b, "<tr><td><a href=\"../\">../</a></td><td>-</td><td></td></tr>\n");
    for (size_t i = 0; i < n; i++)
        put_row(&b, &v[i]);
    puts_(&b, "</table>\n</body></html>\n");
    put(&b, "", 1);
    free_entries(v, n);
    if (b.failed) {
        free(b.p);
        errno = ENOMEM;
        return NULL;
    }
    *len = b.len - 1;
    return b.p;
}
