/* http_file: the per-worker open-file cache of the HTTP handler. A site's
 * root and a path map to an entry with its fd (or, for small files, its
 * bytes), size, validators and a preformatted block of entity headers; an
 * entry is trusted for HTTP_FILE_TTL_MS, then resolved and stat'd again.
 * Sites share one cache, so its size bounds the open fds of the worker. */
#ifndef PREFORKD_HTTP_FILE_H
#define PREFORKD_HTTP_FILE_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define HTTP_FILE_SMALL   16384     /* files up to this are kept in memory */
#define HTTP_FILE_TTL_MS  1000

/* A directory without its index: 403, unless the site lists it. */
#define HTTP_STATUS_NO_INDEX 1403

/* Precompressed variants (file.br, file.gz beside the file), in the order
 * of preference when the client takes both equally. */
enum http_enc { HTTP_ENC_BR, HTTP_ENC_GZIP, HTTP_ENC_COUNT };

struct http_root;

struct http_file {
    char *key;                  /* normalised request path */
    const struct http_root *root;
    uint32_t hash;
    int fd;                     /* -1 when data holds the whole file */
    unsigned char *data;
    uint64_t size;
    time_t mtime;
    const char *ctype;
    const char *encoding;       /* a variant's Content-Encoding, or NULL */
    char etag[56];              /* with the quotes */
    char lastmod[32];
    char hdr[416];              /* Content-Type .. Accept-Ranges, CRLF each */
    size_t hdrlen;
    int64_t loaded_ms;
    int refs;                   /* responses still sending from it */
    bool dead;                  /* evicted while referenced */
    uint8_t variants_checked;   /* bit per enum http_enc */
    int32_t expires;            /* the site's expires rule: -2 not looked
                                   up yet, -1 none (set by the handler) */
    struct http_file *variant[HTTP_ENC_COUNT];
};

struct http_cache;

/* A site's files: root must be a directory, index a file name. NULL with
 * errno. */
struct http_root *http_root_new(const char *root, const char *index);
void http_root_free(struct http_root *r);
const char *http_root_index(const struct http_root *r);
const char *http_root_path(const struct http_root *r);     /* real */
/* The real path of the directory a normalised path ending in '/' names,
 * for a listing: 0, or -status (403, 404, 500). */
int http_root_dir(const struct http_root *r, const char *path, char real[PATH_MAX]);

/* slots bounds the entries (and open fds). */
struct http_cache *http_cache_new(size_t slots);
void http_cache_free(struct http_cache *hc);

/* The regular file for a normalised path under r (directory paths ending
 * in '/' give their index file). NULL with *status: 301 (a directory named
 * without its trailing slash), 403, HTTP_STATUS_NO_INDEX, 404 or 500. The
 * entry stays valid until the next call unless held. */
struct http_file *http_cache_get(struct http_cache *hc, const struct http_root *r,
                                 const char *path, size_t len, int64_t now_ms, int *status);
/* f's precompressed variant (its name plus ".br" or ".gz", a regular file
 * under the root and not older than f), or NULL; looked up once per entry,
 * so once per HTTP_FILE_TTL_MS at most. Valid as long as f is. */
struct http_file *http_file_variant(struct http_file *f, enum http_enc enc);
void http_file_hold(struct http_file *f);
void http_file_release(struct http_file *f);

/* A file of bytes made now (a directory listing), not in any cache: held
 * once; the release that drops the last hold frees it. NULL on failure. */
struct http_file *http_file_from_bytes(const char *data, size_t len, const char *ctype);

#endif
