/* http_file: the per-worker open-file cache of the HTTP handler. A path
 * maps to an entry with its fd (or, for small files, its bytes), size,
 * validators and a preformatted block of entity headers; an entry is
 * trusted for HTTP_FILE_TTL_MS, then resolved and stat'd again. */
#ifndef PREFORKD_HTTP_FILE_H
#define PREFORKD_HTTP_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define HTTP_FILE_SMALL   16384     /* files up to this are kept in memory */
#define HTTP_FILE_TTL_MS  1000

struct http_file {
    char *key;                  /* normalised request path */
    uint32_t hash;
    int fd;                     /* -1 when data holds the whole file */
    unsigned char *data;
    uint64_t size;
    time_t mtime;
    const char *ctype;
    char etag[48];              /* with the quotes */
    char lastmod[32];
    char hdr[384];              /* Content-Type .. Accept-Ranges, CRLF each */
    size_t hdrlen;
    int64_t loaded_ms;
    int refs;                   /* responses still sending from it */
    bool dead;                  /* evicted while referenced */
};

struct http_cache;

/* root must be a directory; slots bounds the entries (and open fds). */
struct http_cache *http_cache_new(const char *root, const char *index, size_t slots);
void http_cache_free(struct http_cache *hc);

/* The regular file for a normalised path (directory paths ending in '/'
 * give their index file). NULL with *status: 301 (a directory named
 * without its trailing slash), 403, 404 or 500. The entry stays
 * valid until the next call unless held. */
struct http_file *http_cache_get(struct http_cache *hc, const char *path,
                                 size_t len, int64_t now_ms, int *status);
void http_file_hold(struct http_file *f);
void http_file_release(struct http_file *f);

#endif
