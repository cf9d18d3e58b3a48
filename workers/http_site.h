/* http_site: the sites of the HTTP handler (the http { } section, the
 * default, and each site NAME { }): their roots, access logs and options,
 * the choice of one by the request's Host, and the answers' Cache-Control
 * and Expires lines (expires). Built once per worker from the config. */
#ifndef PREFORKD_HTTP_SITE_H
#define PREFORKD_HTTP_SITE_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "server/config.h"

struct http_root;
struct http_log;
struct tlist;

struct http_expires_line {
    time_t sec;                     /* Expires is computed from this second */
    size_t len;
    char text[96];                  /* "Cache-Control: ...\r\nExpires: ...\r\n" */
};

struct http_site {
    const char *name;               /* "" for the default site */
    struct http_root *root;
    const struct site_opts *opts;
    struct http_log *log;           /* NULL: no access log */
    struct http_expires_line *expires;  /* one per opts->expires rule */
    int send_timeout;               /* seconds (the site's, else http's) */
    struct tlist *send_tl;          /* its timer list (workers/http.c sets it) */
    struct ssl_ctx_st *ssl_ctx;     /* its certificate for TLS clients (SNI), or NULL */
};

/* Build the sites of cfg (the default first). 0, or -1 with the reason in
 * the error log. */
int http_sites_init(const struct config *cfg);
void http_sites_free(void);
struct http_site *http_site_default(void);
/* Site i (0: the default), NULL past the last: for walking them all. */
struct http_site *http_site_nth(size_t i);
/* Whether any site NAME { } exists: without one, no lookup is needed. */
bool http_sites_virtual(void);

/* The site for a Host value or an absolute-form target's authority (port
 * and one trailing dot ignored, case ignored): an exact server name first,
 * then the longest "*." wildcard that matches; the default otherwise. */
struct http_site *http_site_for_host(const char *host, size_t len);

/* The first expires rule of o that matches a normalised request path ("/a/"
 * serves index, so suffixes are matched against the index's name), or -1. */
int http_expires_match(const struct site_opts *o, const char *path, size_t len,
                       const char *index);
/* The Cache-Control and Expires lines of rule i of s, for now. */
const struct http_expires_line *http_site_expires(struct http_site *s, int i, time_t now);

/* The page for an error status (a path under the root), or NULL. */
const char *http_site_error_page(const struct http_site *s, int status);

#endif
