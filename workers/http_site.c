/* http_site: a site lookup is a walk over a small array of names, exact
 * ones first, then wildcards longest first; nothing is allocated per
 * request. A request that names no site, and every request when there is
 * no site section, gets the default. */
#include "workers/http_site.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "server/log.h"
#include "workers/http_file.h"
#include "workers/http_log.h"
#include "workers/http_path.h"

struct host_name {
    const char *name;               /* lower case; a wildcard's from its '.' */
    size_t len;
    bool wildcard;
    size_t order;                   /* in the file */
    struct http_site *site;
};

static struct {
    struct http_site *v;            /* [0] the default */
    size_t n;
    struct host_name *names;
    size_t nnames;
} S;

static int site_init(struct http_site *s, const char *name, const char *root,
                     const char *index, const char *access_log, const struct site_opts *o)
{
    s->name = name;
    s->opts = o;
    s->root = http_root_new(root, index);
    if (!s->root) {
        log_error("%s%sroot %s: %s", name[0] ? "site " : "http.", name[0] ? name : "",
                  root, strerror(errno));
        return -1;
    }
    if (o->nexpires && !(s->expires = calloc(o->nexpires, sizeof *s->expires)))
        return -1;
    if (access_log[0] && !(s->log = http_log_open(access_log)))
        log_error("access log %s: %s; access logging is off%s%s", access_log,
                  strerror(errno), name[0] ? " for site " : "", name);
    return 0;
}

/* Exact names first, then wildcards by decreasing length; file order
 * otherwise (qsort is not stable: order decides). */
static int name_cmp(const void *x, const void *y)
{
    const struct host_name *a = x, *b = y;
    if (a->wildcard != b->wildcard)
        return a->wildcard ? 1 : -1;
    if (a->wildcard && a->len != b->len)
        return a->len > b->len ? -1 : 1;
    return a->order < b->order ? -1 : a->order > b->order;
}

int http_sites_init(const struct config *cfg)
{
    const struct http_conf *hc = &cfg->http;
    size_t nnames = 0;
    for (size_t i = 0; i < cfg->nsites; i++)
        nnames += cfg->sites[i].nserver_names;
    S.v = calloc(cfg->nsites + 1, sizeof *S.v);
    S.names = nnames ? calloc(nnames, sizeof *S.names) : NULL;
    if (!S.v || (nnames && !S.names)) {
        log_error("http: out of memory for the sites");
        return -1;
    }
    S.n = cfg->nsites + 1;
    if (site_init(&S.v[0], "", hc->root, hc->index, hc->access_log, &hc->opts) != 0)
        return -1;
    S.v[0].send_timeout = hc->send_timeout;
    for (size_t i = 0; i < cfg->nsites; i++) {
        const struct site_conf *sc = &cfg->sites[i];
        if (site_init(&S.v[i + 1], sc->name, sc->root, sc->index, sc->access_log,
                      &sc->opts) != 0)
            return -1;
        S.v[i + 1].send_timeout = sc->send_timeout ? sc->send_timeout : hc->send_timeout;
        S.v[i + 1].ssl_ctx = sc->ssl_ctx;
        for (size_t j = 0; j < sc->nserver_names; j++) {
            const char *n = sc->server_names[j];
            bool wild = n[0] == '*';
            S.names[S.nnames++] = (struct host_name){
                .name = wild ? n + 1 : n, .len = strlen(n) - wild, .wildcard = wild,
                .order = S.nnames, .site = &S.v[i + 1],
            };
        }
    }
    if (S.nnames)
        qsort(S.names, S.nnames, sizeof *S.names, name_cmp);
    return 0;
}

void http_sites_free(void)
{
    for (size_t i = 0; i < S.n; i++) {
        http_root_free(S.v[i].root);
        free(S.v[i].expires);
    }
    free(S.v);
    free(S.names);
    memset(&S, 0, sizeof S);
}

struct http_site *http_site_nth(size_t i)
{
    return i < S.n ? &S.v[i] : NULL;
}

struct http_site *http_site_default(void)
{
    return &S.v[0];
}

bool http_sites_virtual(void)
{
    return S.nnames > 0;
}

struct http_site *http_site_for_host(const char *h, size_t len)
{
    size_t n = 0;
    if (len && h[0] == '[') {           /* an IPv6 literal, up to its ']' */
        const char *end = memchr(h, ']', len);
        n = end ? (size_t)(end - h) + 1 : len;
    } else {
        while (n < len && h[n] != ':')
            n++;
        if (n > 1 && h[n - 1] == '.')
            n--;                        /* "example.org." is example.org */
    }
    for (size_t i = 0; i < S.nnames; i++) {
        const struct host_name *hn = &S.names[i];
        if (hn->wildcard ? n > hn->len && strncasecmp(h + n - hn->len, hn->name, hn->len) == 0
                         : n == hn->len && strncasecmp(h, hn->name, n) == 0)
            return hn->site;
    }
    return &S.v[0];
}

/* Does path (and index, when the path names a directory) end with suffix? */
static bool ends_with(const char *path, size_t len, const char *index,
                      const char *suffix, size_t slen)
{
    if (len && path[len - 1] == '/') {
        size_t ilen = strlen(index);
        if (slen <= ilen)
            return memcmp(index + ilen - slen, suffix, slen) == 0;
        return slen - ilen <= len && memcmp(path + len - (slen - ilen), suffix, slen - ilen) == 0 &&
               memcmp(index, suffix + slen - ilen, ilen) == 0;
    }
    return slen <= len && memcmp(path + len - slen, suffix, slen) == 0;
}

int http_expires_match(const struct site_opts *o, const char *path, size_t len,
                       const char *index)
{
    for (size_t i = 0; i < o->nexpires; i++) {
        const struct expires_rule *r = &o->expires[i];
        size_t plen = strlen(r->pattern);
        if (r->prefix ? plen <= len && memcmp(path, r->pattern, plen) == 0
                      : ends_with(path, len, index, r->pattern + 1, plen - 1))
            return (int)i;
    }
    return -1;
}

const struct http_expires_line *http_site_expires(struct http_site *s, int i, time_t now)
{
    struct http_expires_line *e = &s->expires[i];
    if (e->sec != now || !e->len) {
        long secs = s->opts->expires[i].seconds;
        char date[HTTP_DATE_LEN + 1];
        http_date_format(now + secs, date);
        int n = snprintf(e->text, sizeof e->text,
                         "Cache-Control: max-age=%ld\r\nExpires: %s\r\n", secs, date);
        e->len = n > 0 && (size_t)n < sizeof e->text ? (size_t)n : 0;
        e->sec = now;
    }
    return e;
}

const char *http_site_error_page(const struct http_site *s, int status)
{
    for (size_t i = 0; i < s->opts->nerror_pages; i++)
        if (s->opts->error_pages[i].status == status)
            return s->opts->error_pages[i].path;
    return NULL;
}
