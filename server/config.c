/* config: load preforkd.conf (built-in listeners, app pools) with libconfuse
 * into struct config. Every option is checked by a validation callback while
 * libconfuse still knows its line, so errors read "FILE:LINE: option: problem".
 * Comments are blanked out before libconfuse sees the text: 3.3 miscounts
 * lines after them (upstream #150). */
#include "server/config.h"

#include <arpa/inet.h>
#include <confuse.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_CONF_BYTES (1 << 20)      /* a configuration, not a data file */

/* SEC_APP_LISTEN: a listen section inside an app section. */
enum section { SEC_ROOT, SEC_HTTP, SEC_LISTEN, SEC_APP, SEC_APP_LISTEN, SEC_SITE, SEC_CHAT,
                SEC_LISTEN_TLS, SEC_SITE_TLS };

struct load_ctx;
struct rule;
typedef int (*apply_fn)(struct load_ctx *ctx, const struct rule *r,
                        const char *text, void *field);

/* One option: where it lives, its default as written in a file, and the
 * function that checks the text and stores it at offset/size. */
struct rule {
    enum section section;
    const char *name;
    const char *def;                 /* NULL: no default, must be given */
    apply_fn apply;
    long min, max;                   /* range, for numeric options */
    size_t offset, size;             /* in struct config, struct listen_conf
                                        or struct app_conf: see rule_base() */
};

/* Lines of sections in file order: libconfuse reports only a section's
 * closing brace, so a scan of the text finds where each one opens. */
struct line_list {
    int *v;
    size_t n, cap;
};

/* State of one config_load(); libconfuse callbacks take no user pointer. */
struct load_ctx {
    const char *path;                /* as given, for messages */
    struct config *out;
    char *err;
    size_t errlen;
    bool failed;                     /* first error wins */
    char msg[512];                   /* an apply function's complaint */
    int line;                        /* line being applied; 0 = default */
    int root_line;                   /* where http.root was set */
    int nlines;                      /* lines in the file */
    cfg_t *root;                     /* libconfuse's tree, while parsing */
    struct listen_conf pending;      /* listen section being parsed */
    enum section pending_section;    /* SEC_LISTEN or SEC_APP_LISTEN */
    bool pending_open, pending_has_address;
    struct line_list listen_lines;   /* each "listen {", top-level or in an app */
    struct line_list app_lines;      /* each "app NAME {" */
    struct line_list command_lines;  /* per app: its last "command =", or 0 */
    struct app_conf app;             /* app section being parsed; its lists
                                        are copied only when it is complete */
    bool app_open;
    struct line_list site_lines;     /* each "site NAME {" */
    struct line_list names_lines;    /* per site: its last "server_names =", or 0 */
    struct site_conf site;           /* site section being parsed, as app */
    bool site_open;
    struct line_list name_lines;     /* its server_names' lines, word by word */
};

/* libconfuse is not reentrant (its lexer is global), so neither is this. */
static struct load_ctx *loading;

static bool report_duplicate_title(struct load_ctx *ctx, const char *name, int line);
static int add_line(struct load_ctx *ctx, struct line_list *list, int line);

static const char *const section_prefix[] = {
    "", "http.", "listen.", "app.", "app.listen.", "site.", "chat.", "listen.tls.", "site.tls."
};
static const char *const section_path[] = {
    "", "http|", "listen|", "app|", "app|listen|", "site|", "chat|", "listen|tls|", "site|tls|"
};

/* ---- error reporting ---- */

__attribute__((format(printf, 3, 4)))
static int report(struct load_ctx *ctx, int line, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    if (ctx->failed)
        return -1;
    ctx->failed = true;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (ctx->err && ctx->errlen > 0) {
        if (line > 0)
            snprintf(ctx->err, ctx->errlen, "%s:%d: %s", ctx->path, line, msg);
        else
            snprintf(ctx->err, ctx->errlen, "%s: %s", ctx->path, msg);
    }
    return -1;
}

/* An apply function's complaint; the caller adds FILE:LINE and the name. */
__attribute__((format(printf, 2, 3)))
static int bad(struct load_ctx *ctx, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(ctx->msg, sizeof ctx->msg, fmt, ap);
    va_end(ap);
    return -1;
}

__attribute__((format(printf, 3, 4)))
static int msgf(char *msg, size_t msglen, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, msglen, fmt, ap);
    va_end(ap);
    return -1;
}

/* libconfuse's own errors (syntax, unknown options) go to the caller's
 * buffer, never to stderr; cfg->line is right because comments are gone. */
static void on_confuse_error(cfg_t *cc, const char *fmt, va_list ap)
{
    char msg[512];
    int line = cc ? cc->line : 0;

    if (!loading)
        return;
    if (line > loading->nlines)     /* at EOF, after the last newline */
        line = loading->nlines;
    if (strcmp(fmt, "found duplicate title '%s'") == 0) {
        va_list copy;
        bool done;

        va_copy(copy, ap);
        done = report_duplicate_title(loading, va_arg(copy, const char *), line);
        va_end(copy);
        if (done)
            return;
    }
    vsnprintf(msg, sizeof msg, fmt, ap);
    report(loading, line, "%s", msg);
}

/* ---- names ---- */

const char *proto_name(enum proto_kind p)
{
    switch (p) {
    case PROTO_HTTP: return "http";
    case PROTO_ECHO: return "echo";
    case PROTO_CHAT: return "chat";
    case PROTO_APP:  return "app";
    }
    return "?";
}

const char *app_handoff_name(enum app_handoff h)
{
    switch (h) {
    case HANDOFF_SYSTEMD:        return "systemd";
    case HANDOFF_NGINX:          return "nginx";
    case HANDOFF_SERVER_STARTER: return "server_starter";
    case HANDOFF_UNICORN:        return "unicorn";
    case HANDOFF_FPM:            return "fpm";
    case HANDOFF_EINHORN:        return "einhorn";
    }
    return "?";
}

const char *log_level_name(enum log_level l)
{
    switch (l) {
    case LOG_LVL_ERROR: return "error";
    case LOG_LVL_WARN:  return "warn";
    case LOG_LVL_INFO:  return "info";
    case LOG_LVL_DEBUG: return "debug";
    }
    return "?";
}

/* ---- paths ---- */

static bool is_dir(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* TEXT as is when absolute, else DIR/TEXT. */
static int join_path(const char *dir, const char *text, char *out, size_t outlen)
{
    int n = text[0] == '/' ? snprintf(out, outlen, "%s", text)
                           : snprintf(out, outlen, "%s/%s", dir, text);

    return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

/* Canonicalise the longest existing leading part of absolute PATH with
 * realpath(); the rest is kept as written, since it may be created later
 * (build/run appears at start-up). */
static int canonical_prefix(const char *path, char *out, size_t outlen)
{
    char head[PATH_MAX], real[PATH_MAX];
    const char *tail;
    int n;

    if (snprintf(head, sizeof head, "%s", path) >= (int)sizeof head)
        return -1;
    while (!realpath(head, real)) {
        char *cut = strrchr(head, '/');
        if (errno != ENOENT && errno != ENOTDIR)
            return snprintf(out, outlen, "%s", path) >= (int)outlen ? -1 : 0;
        if (!cut || cut == head) {
            snprintf(head, sizeof head, "/");
            snprintf(real, sizeof real, "/");
            break;
        }
        *cut = '\0';
    }
    tail = path + strlen(head);
    if (!*tail)
        n = snprintf(out, outlen, "%s", real);
    else
        n = snprintf(out, outlen, "%s%s%s", strcmp(real, "/") ? real : "",
                     *tail == '/' ? "" : "/", tail);
    return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

/* JOINED (absolute) with its directory canonicalised; the file name itself
 * is kept, so that a symlinked pidfile or log stays what it is. */
static int canonical_file(const char *joined, char *out, size_t outlen)
{
    const char *base = strrchr(joined, '/') + 1;
    size_t dirlen = (size_t)(base - 1 - joined);
    char dir[PATH_MAX], canon[PATH_MAX];
    int n;

    while (dirlen > 0 && joined[dirlen - 1] == '/')     /* "run//x.pid" */
        dirlen--;
    if (dirlen >= sizeof dir)
        return -1;
    memcpy(dir, joined, dirlen);
    dir[dirlen] = '\0';
    if (canonical_prefix(dirlen ? dir : "/", canon, sizeof canon) < 0)
        return -1;
    n = snprintf(out, outlen, "%s/%s", strcmp(canon, "/") ? canon : "", base);
    return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

/* An absolute path for a file that need not exist yet: TEXT against the
 * configuration directory, its directory canonicalised. With need_dir that
 * directory must exist: logs are opened in place, nobody creates their dirs. */
static int resolve_file(struct load_ctx *ctx, const char *text, bool need_dir,
                        char *out, size_t outlen)
{
    char joined[PATH_MAX];
    const char *base;

    if (!*text)
        return bad(ctx, "must not be empty");
    if (join_path(ctx->out->dir, text, joined, sizeof joined) < 0)
        return bad(ctx, "path too long: \"%s\"", text);
    base = strrchr(joined, '/') + 1;
    if (!*base || strcmp(base, ".") == 0 || strcmp(base, "..") == 0)
        return bad(ctx, "must name a file, got \"%s\"", text);
    if (canonical_file(joined, out, outlen) < 0)
        return bad(ctx, "path too long: \"%s\"", text);
    if (need_dir) {
        int dirlen = (int)(strrchr(out, '/') - out);
        char dir[PATH_MAX];

        snprintf(dir, sizeof dir, "%.*s", dirlen, out);
        if (dirlen > 0 && !is_dir(dir))         /* "/" always is */
            return bad(ctx, "directory \"%s\" does not exist", dir);
    }
    return 0;
}

/* ---- addresses ---- */

/* Strict decimal port: digits only, 0..65535. */
static int parse_port(const char *s, in_port_t *port)
{
    unsigned long v = 0;

    if (!*s || strlen(s) > 5)
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        v = v * 10 + (unsigned long)(*s - '0');
    }
    if (v > 65535)
        return -1;
    *port = (in_port_t)v;
    return 0;
}

/* "unix:PATH": relative paths are taken against dir, and the directory is
 * canonicalised so that "unix:s.sock" and "unix:./s.sock" compare equal. */
static int parse_unix(const char *path, const char *dir, struct address *out,
                      char *msg, size_t msglen)
{
    struct sockaddr_un *sun = (struct sockaddr_un *)&out->sa;
    char joined[PATH_MAX], canon[PATH_MAX];
    size_t len;

    if (!*path || path[strlen(path) - 1] == '/')
        return msgf(msg, msglen, "unix socket path must name a file in \"%s\"", out->text);
    if (path[0] != '/' && !dir)         /* nothing to resolve against */
        snprintf(canon, sizeof canon, "%s", path);
    else if (join_path(dir, path, joined, sizeof joined) < 0 ||
             canonical_file(joined, canon, sizeof canon) < 0)
        return msgf(msg, msglen, "path too long in \"%s\"", out->text);
    len = strlen(canon);
    if (len >= sizeof sun->sun_path)
        return msgf(msg, msglen, "unix socket path longer than %zu bytes in \"%s\"",
                    sizeof sun->sun_path - 1, out->text);
    memcpy(sun->sun_path, canon, len + 1);
    sun->sun_family = AF_UNIX;
    out->socktype = SOCK_STREAM;
    out->salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
    return 0;
}

/* Split "host:port" or "[v6]:port"; host goes to a caller buffer. */
static int split_host_port(const char *s, const struct address *out, char *host,
                           size_t hostlen, const char **port, bool *bracketed,
                           char *msg, size_t msglen)
{
    const char *end, *colon;

    *bracketed = s[0] == '[';
    if (*bracketed) {
        s++;
        end = strchr(s, ']');
        if (!end)
            return msgf(msg, msglen, "missing ']' in \"%s\"", out->text);
        if (end[1] != ':')
            return msgf(msg, msglen, "missing :port after ']' in \"%s\"", out->text);
        colon = end + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon)
            return msgf(msg, msglen, "missing :port in \"%s\"", out->text);
        end = colon;
        if (memchr(s, ':', (size_t)(end - s)))
            return msgf(msg, msglen, "IPv6 address needs brackets, as in "
                        "\"[::1]:8080\", in \"%s\"", out->text);
    }
    if (end == s)
        return msgf(msg, msglen, "missing host in \"%s\" (\"*:PORT\" means any; in quotes: "
                    "libconfuse drops an unquoted '*')", out->text);
    if ((size_t)(end - s) >= hostlen)
        return msgf(msg, msglen, "host name too long in \"%s\"", out->text);
    memcpy(host, s, (size_t)(end - s));
    host[end - s] = '\0';
    *port = colon + 1;
    return 0;
}

/* Numeric literal or name (first getaddrinfo answer); "*" is 0.0.0.0. */
static int resolve_host(const char *host, bool bracketed, struct address *out,
                        char *msg, size_t msglen)
{
    struct addrinfo hints = { .ai_socktype = out->socktype }, *res;
    int rc;

    if (!bracketed && strcmp(host, "*") == 0) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&out->sa;
        sin->sin_family = AF_INET;
        sin->sin_addr.s_addr = htonl(INADDR_ANY);
        out->salen = sizeof *sin;
        return 0;
    }
    hints.ai_family = bracketed ? AF_INET6 : AF_UNSPEC;
    hints.ai_flags = bracketed ? AI_NUMERICHOST : 0;
    rc = getaddrinfo(host, NULL, &hints, &res);
    if (rc != 0 && bracketed)
        return msgf(msg, msglen, "bad IPv6 address in \"%s\"", out->text);
    if (rc != 0)
        return msgf(msg, msglen, "cannot resolve \"%s\" in \"%s\": %s", host, out->text,
                    rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
    if (res->ai_addrlen > sizeof out->sa) {
        freeaddrinfo(res);
        return msgf(msg, msglen, "unexpected address size for \"%s\"", out->text);
    }
    memcpy(&out->sa, res->ai_addr, res->ai_addrlen);
    out->salen = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

static int parse_inet(const char *s, struct address *out, char *msg, size_t msglen)
{
    char host[256];
    const char *port_text = "";
    bool bracketed;
    in_port_t port;

    if (split_host_port(s, out, host, sizeof host, &port_text, &bracketed,
                        msg, msglen) < 0)
        return -1;
    if (parse_port(port_text, &port) < 0)
        return msgf(msg, msglen, "bad port in \"%s\"", out->text);
    if (resolve_host(host, bracketed, out, msg, msglen) < 0)
        return -1;
    if (out->sa.ss_family == AF_INET)
        ((struct sockaddr_in *)&out->sa)->sin_port = htons(port);
    else if (out->sa.ss_family == AF_INET6)
        ((struct sockaddr_in6 *)&out->sa)->sin6_port = htons(port);
    else
        return msgf(msg, msglen, "\"%s\" is neither IPv4 nor IPv6", out->text);
    return 0;
}

/* address_parse without the "address: " prefix, for config messages. */
static int parse_address(const char *text, const char *dir, struct address *out,
                         char *msg, size_t msglen)
{
    size_t len = strlen(text);

    memset(out, 0, sizeof *out);
    if (len >= sizeof out->text)
        return msgf(msg, msglen, "longer than %zu bytes", sizeof out->text - 1);
    memcpy(out->text, text, len + 1);
    if (len == 0)
        return msgf(msg, msglen, "must not be empty");
    if (strncmp(text, "unix:", 5) == 0)
        return parse_unix(text + 5, dir, out, msg, msglen);
    out->socktype = SOCK_STREAM;
    if (strncmp(text, "udp:", 4) == 0) {
        out->socktype = SOCK_DGRAM;
        text += 4;
        if (strncmp(text, "unix:", 5) == 0)
            return msgf(msg, msglen, "udp takes host:port, not a unix path, in \"%s\"",
                        out->text);
    }
    return parse_inet(text, out, msg, msglen);
}

int address_parse(const char *text, const char *dir, struct address *out,
                  char *err, size_t errlen)
{
    char msg[512];

    if (parse_address(text, dir, out, msg, sizeof msg) == 0)
        return 0;
    if (err && errlen > 0)
        snprintf(err, errlen, "address: %s", msg);
    return -1;
}

static in_port_t address_port(const struct address *a)
{
    if (a->sa.ss_family == AF_INET)
        return ((const struct sockaddr_in *)&a->sa)->sin_port;
    if (a->sa.ss_family == AF_INET6)
        return ((const struct sockaddr_in6 *)&a->sa)->sin6_port;
    return 1;                        /* unix: never "kernel-chosen" */
}

bool address_equal(const struct address *a, const struct address *b)
{
    return a->socktype == b->socktype && a->salen == b->salen &&
           memcmp(&a->sa, &b->sa, a->salen) == 0;
}

/* Same socket twice is an error; port 0 means a fresh kernel-chosen port
 * each time, so those never collide. */
static const struct listen_conf *find_same_address(const struct config *c,
                                                   const struct address *a)
{
    if (address_port(a) == 0)
        return NULL;
    for (size_t i = 0; i < c->nlistens; i++) {
        if (address_equal(&c->listens[i].addr, a))
            return &c->listens[i];
    }
    return NULL;
}

/* ---- option checks: each stores the value or explains in ctx->msg ---- */

static void store_number(void *field, size_t size, long v)
{
    if (size == sizeof(long))
        *(long *)field = v;
    else
        *(int *)field = (int)v;
}

/* Strict decimal: optional '-', digits, nothing else, no overflow. */
static int parse_long(const char *s, long *v)
{
    char *end;

    if (!((s[0] >= '0' && s[0] <= '9') || (s[0] == '-' && s[1] >= '0' && s[1] <= '9')))
        return -1;
    errno = 0;
    *v = strtol(s, &end, 10);
    return errno || *end ? -1 : 0;
}

static int apply_number(struct load_ctx *ctx, const struct rule *r,
                        const char *text, void *field)
{
    long v;

    if (parse_long(text, &v) < 0 || v < r->min || v > r->max) {
        if (r->max == LONG_MAX)
            return bad(ctx, "must be an integer >= %ld, got \"%s\"", r->min, text);
        return bad(ctx, "must be between %ld and %ld, got \"%s\"", r->min, r->max, text);
    }
    store_number(field, r->size, v);
    return 0;
}

/* "N r/s" or "N r/m", then optionally "burst B" (default: N): nginx's
 * limit_req rate and burst in one string. */
static int apply_rate_limit(struct load_ctx *ctx, const struct rule *r,
                            const char *text, void *field)
{
    struct rate_limit *rl = field;
    long n = 0, burst = 0;
    char unit = 0, word[8] = "", extra = 0;
    (void)r;
    memset(rl, 0, sizeof *rl);
    if (!text[0])
        return 0;
    int got = sscanf(text, " %ld r/%c %7s %ld %c", &n, &unit, word, &burst, &extra);
    if (!(got == 2 || (got == 4 && strcmp(word, "burst") == 0)) ||
        (unit != 's' && unit != 'm') || n < 1 || n > 1000000 ||
        (got == 4 && (burst < 1 || burst > 1000000)) || strlen(text) >= sizeof rl->text)
        return bad(ctx, "must be \"N r/s\" or \"N r/m\" (N 1..1000000), optionally "
                   "followed by \"burst B\" (B 1..1000000), got \"%s\"", text);
    snprintf(rl->text, sizeof rl->text, "%s", text);
    rl->interval_us = (unit == 's' ? 1000000u : 60000000u) / (uint64_t)n;
    if (rl->interval_us == 0)
        rl->interval_us = 1;
    rl->burst = (uint32_t)(got == 4 ? burst : n);
    return 0;
}

static int apply_workers(struct load_ctx *ctx, const struct rule *r,
                         const char *text, void *field)
{
    bool *is_auto = r->section == SEC_APP ? &ctx->app.workers_auto
                                          : &ctx->out->workers_auto;
    long v;

    *is_auto = strcmp(text, "auto") == 0;
    if (*is_auto) {
        v = sysconf(_SC_NPROCESSORS_ONLN);
        v = v < 1 ? 1 : v > r->max ? r->max : v;    /* -1 if unknown */
    } else if (parse_long(text, &v) < 0 || v < r->min || v > r->max) {
        return bad(ctx, "must be \"auto\" or between %ld and %ld, got \"%s\"",
                   r->min, r->max, text);
    }
    store_number(field, r->size, v);
    return 0;
}

static int copy_text(struct load_ctx *ctx, const char *text, void *field, size_t size)
{
    if (strlen(text) >= size)
        return bad(ctx, "longer than %zu bytes", size - 1);
    memcpy(field, text, strlen(text) + 1);
    return 0;
}

static int apply_user(struct load_ctx *ctx, const struct rule *r,
                      const char *text, void *field)
{
    if (*text) {
        errno = 0;
        if (!getpwnam(text))
            return errno && errno != ENOENT && errno != ESRCH
                   ? bad(ctx, "cannot look up \"%s\": %s", text, strerror(errno))
                   : bad(ctx, "no such user \"%s\"", text);
    }
    return copy_text(ctx, text, field, r->size);
}

static int apply_file_path(struct load_ctx *ctx, const struct rule *r,
                           const char *text, void *field)
{
    return resolve_file(ctx, text, false, field, r->size);
}

static int apply_socket_path(struct load_ctx *ctx, const struct rule *r,
                             const char *text, void *field)
{
    struct sockaddr_un sun;

    if (resolve_file(ctx, text, false, field, r->size) < 0)
        return -1;
    /* A hot upgrade's new master binds PATH.new first (server/control.c). */
    if (strlen(field) + strlen(".new") >= sizeof sun.sun_path)
        return bad(ctx, "\"%s\" is longer than a unix socket path may be (%zu bytes, "
                   "4 of them kept for the \".new\" a binary upgrade binds first)",
                   (char *)field, sizeof sun.sun_path - 1);
    return 0;
}

static int apply_error_log(struct load_ctx *ctx, const struct rule *r,
                           const char *text, void *field)
{
    if (strcmp(text, "stderr") == 0 || strcmp(text, "syslog") == 0)
        return copy_text(ctx, text, field, r->size);
    if (!*text)
        return bad(ctx, "must be \"stderr\", \"syslog\" or a file path, got \"\"");
    return resolve_file(ctx, text, true, field, r->size);
}

/* "" turns the log off. */
static int apply_log_path(struct load_ctx *ctx, const struct rule *r,
                          const char *text, void *field)
{
    if (!*text)
        return copy_text(ctx, text, field, r->size);
    return resolve_file(ctx, text, true, field, r->size);
}

/* TEXT against the configuration directory, canonical as far as it exists. */
static int resolve_dir(struct load_ctx *ctx, const char *text, char *out, size_t outlen)
{
    char joined[PATH_MAX];

    if (!*text)
        return bad(ctx, "must not be empty");
    if (join_path(ctx->out->dir, text, joined, sizeof joined) < 0 ||
        canonical_prefix(joined, out, outlen) < 0)
        return bad(ctx, "path too long: \"%s\"", text);
    return 0;
}

/* Existence is checked after parsing: it only matters with an http listener. */
static int apply_dir_path(struct load_ctx *ctx, const struct rule *r,
                          const char *text, void *field)
{
    if (resolve_dir(ctx, text, field, r->size) < 0)
        return -1;
    ctx->root_line = ctx->line;
    return 0;
}

/* An app's working directory: it must be there when the app starts. */
static int apply_app_dir(struct load_ctx *ctx, const struct rule *r,
                         const char *text, void *field)
{
    if (resolve_dir(ctx, text, field, r->size) < 0)
        return -1;
    if (!is_dir(field))
        return bad(ctx, "\"%s\" is not an existing directory", (char *)field);
    return 0;
}

static int apply_index(struct load_ctx *ctx, const struct rule *r,
                       const char *text, void *field)
{
    if (!*text || strchr(text, '/') || strcmp(text, ".") == 0 || strcmp(text, "..") == 0)
        return bad(ctx, "must be a file name without '/', got \"%s\"", text);
    return copy_text(ctx, text, field, r->size);
}

/* libconfuse's boolean words; our options are strings, so ours to read. */
static int apply_bool(struct load_ctx *ctx, const struct rule *r,
                      const char *text, void *field)
{
    static const char *const yes[] = { "true", "yes", "on" }, *const no[] = { "false", "no", "off" };

    (void)r;
    for (size_t i = 0; i < 3; i++) {
        if (strcmp(text, yes[i]) == 0 || strcmp(text, no[i]) == 0) {
            *(bool *)field = strcmp(text, yes[i]) == 0;
            return 0;
        }
    }
    return bad(ctx, "must be true or false, got \"%s\"", text);
}

/* A site's root: it must be there now, unlike http.root (which matters only
 * with an http listener, and has a default). */
static int apply_site_root(struct load_ctx *ctx, const struct rule *r,
                           const char *text, void *field)
{
    if (resolve_dir(ctx, text, field, r->size) < 0)
        return -1;
    if (!is_dir(field))
        return bad(ctx, "\"%s\" is not an existing directory", (char *)field);
    return 0;
}

static int apply_log_level(struct load_ctx *ctx, const struct rule *r,
                           const char *text, void *field)
{
    (void)r;
    for (enum log_level l = LOG_LVL_ERROR; l <= LOG_LVL_DEBUG; l++) {
        if (strcmp(text, log_level_name(l)) == 0) {
            *(enum log_level *)field = l;
            return 0;
        }
    }
    return bad(ctx, "must be error, warn, info or debug, got \"%s\"", text);
}

static int apply_protocol(struct load_ctx *ctx, const struct rule *r,
                          const char *text, void *field)
{
    (void)r;
    for (enum proto_kind p = PROTO_HTTP; p <= PROTO_CHAT; p++) {
        if (strcmp(text, proto_name(p)) == 0) {
            *(enum proto_kind *)field = p;
            return 0;
        }
    }
    return bad(ctx, "must be http, echo or chat, got \"%s\"", text);
}

static int apply_accept(struct load_ctx *ctx, const struct rule *r,
                        const char *text, void *field)
{
    (void)r;
    if (strcmp(text, "shared") == 0)
        *(enum accept_mode *)field = ACCEPT_SHARED;
    else if (strcmp(text, "per-cpu") == 0)
        *(enum accept_mode *)field = ACCEPT_PER_CPU;
    else
        return bad(ctx, "must be \"shared\" or \"per-cpu\", got \"%s\"", text);
    return 0;
}

static int apply_address(struct load_ctx *ctx, const struct rule *r,
                         const char *text, void *field)
{
    (void)r;
    if (parse_address(text, ctx->out->dir, field, ctx->msg, sizeof ctx->msg) < 0)
        return -1;
    ctx->pending_has_address = true;
    return 0;
}

/* "" = off; else a TCP host:port (the master's own status listener). */
static int apply_status_listen(struct load_ctx *ctx, const struct rule *r,
                               const char *text, void *field)
{
    struct address *a = field;
    (void)r;
    memset(a, 0, sizeof *a);
    if (!*text)
        return 0;
    if (parse_address(text, ctx->out->dir, a, ctx->msg, sizeof ctx->msg) < 0)
        return -1;
    if (a->socktype != SOCK_STREAM || a->sa.ss_family == AF_UNIX)
        return bad(ctx, "must be \"\" (off) or a TCP host:port such as "
                   "\"127.0.0.1:9100\", got \"%s\"", text);
    return 0;
}

/* chat.bus: "" (off) or redis://HOST[:PORT][/DB], HOST resolved now so
 * that the master never waits for a name lookup when it (re)connects. */
static int apply_chat_bus(struct load_ctx *ctx, const struct rule *r,
                          const char *text, void *field)
{
    struct chat_conf *cc = &ctx->out->chat;
    struct address a;
    char hostport[300], *slash, *end;
    long db = 0;

    if (copy_text(ctx, text, field, r->size) < 0 || !*text)
        return *text ? -1 : 0;
    if (strncmp(text, "redis://", 8) != 0 || !text[8])
        return bad(ctx, "must be \"\" (off) or redis://HOST[:PORT][/DB], got \"%s\"", text);
    snprintf(hostport, sizeof hostport, "%s", text + 8);
    if ((slash = strchr(hostport, '/'))) {
        *slash = '\0';
        db = strtol(slash + 1, &end, 10);
        if (!slash[1] || *end || db < 0 || db > 9999)
            return bad(ctx, "database must be a number from 0 to 9999, got \"%s\"", slash + 1);
    }
    if (!strchr(hostport, ']') ? !strchr(hostport, ':') : hostport[strlen(hostport) - 1] == ']')
        strncat(hostport, ":6379", sizeof hostport - strlen(hostport) - 1);
    if (parse_address(hostport, ctx->out->dir, &a, ctx->msg, sizeof ctx->msg) < 0)
        return -1;
    if (a.sa.ss_family != AF_INET && a.sa.ss_family != AF_INET6)
        return bad(ctx, "must name a TCP host, got \"%s\"", text);
    cc->bus_port = ntohs(address_port(&a));
    cc->bus_db = (int)db;
    if (getnameinfo((struct sockaddr *)&a.sa, a.salen, cc->bus_host, sizeof cc->bus_host,
                    NULL, 0, NI_NUMERICHOST) != 0 || cc->bus_port == 0)
        return bad(ctx, "cannot use the address of \"%s\"", text);
    return 0;
}

/* ---- option checks of app sections ---- */

static int apply_app_protocol(struct load_ctx *ctx, const struct rule *r,
                              const char *text, void *field)
{
    (void)r, (void)text, (void)field;
    return bad(ctx, "not allowed here: an app speaks its own protocol on its listeners");
}

static int apply_handoff(struct load_ctx *ctx, const struct rule *r,
                         const char *text, void *field)
{
    (void)r;
    for (enum app_handoff h = HANDOFF_SYSTEMD; h <= HANDOFF_EINHORN; h++) {
        if (strcmp(text, app_handoff_name(h)) == 0) {
            *(enum app_handoff *)field = h;
            return 0;
        }
    }
    return bad(ctx, "must be systemd, nginx, server_starter, unicorn, fpm or einhorn, "
               "got \"%s\"", text);
}

/* Decimal seconds with at most three decimals ("1.5") as milliseconds, up
 * to 3600 s; -1 for anything else. */
static int parse_ms(const char *s, long *ms)
{
    long whole = 0, frac = 0, scale = 1000;

    if (!isdigit((unsigned char)*s))
        return -1;
    for (; isdigit((unsigned char)*s); s++)
        if ((whole = whole * 10 + (*s - '0')) > 3600)
            return -1;
    if (*s == '.') {
        s++;
        if (!isdigit((unsigned char)*s))
            return -1;
    }
    for (; isdigit((unsigned char)*s); s++) {
        if (scale == 1)
            return -1;
        scale /= 10;
        frac += (*s - '0') * scale;
    }
    *ms = whole * 1000 + frac;
    return *s || *ms > 3600 * 1000 ? -1 : 0;
}

/* "notify", "exec" or "delay SECONDS"; the delay goes to ready_delay_ms. */
static int apply_ready(struct load_ctx *ctx, const struct rule *r,
                       const char *text, void *field)
{
    enum app_ready *ready = field;
    long ms;

    (void)r;
    if (strcmp(text, "notify") == 0 || strcmp(text, "exec") == 0) {
        *ready = strcmp(text, "notify") == 0 ? READY_NOTIFY : READY_EXEC;
        return 0;
    }
    if (strncmp(text, "delay", 5) == 0 && (text[5] == ' ' || text[5] == '\t') &&
        parse_ms(text + 5 + strspn(text + 5, " \t"), &ms) == 0 && ms > 0) {
        *ready = READY_DELAY;
        ctx->app.ready_delay_ms = (int)ms;
        return 0;
    }
    return bad(ctx, "must be notify, exec or \"delay SECONDS\" (0 < SECONDS <= 3600, "
               "at most 3 decimals), got \"%s\"", text);
}

static const struct { const char *name; int number; } stop_signals[] = {
    { "TERM", SIGTERM }, { "INT", SIGINT }, { "QUIT", SIGQUIT }, { "HUP", SIGHUP },
    { "USR1", SIGUSR1 }, { "USR2", SIGUSR2 }, { "WINCH", SIGWINCH }, { "KILL", SIGKILL },
    { "ABRT", SIGABRT }, { "ALRM", SIGALRM },
};
#define NSTOP_SIGNALS (sizeof stop_signals / sizeof stop_signals[0])

/* A signal name, with or without "SIG": "TERM", "SIGQUIT". */
static int apply_stop_signal(struct load_ctx *ctx, const struct rule *r,
                             const char *text, void *field)
{
    const char *name = strncmp(text, "SIG", 3) == 0 ? text + 3 : text;
    char names[128] = "";

    (void)r;
    for (size_t i = 0; i < NSTOP_SIGNALS; i++) {
        if (strcmp(name, stop_signals[i].name) == 0) {
            *(int *)field = stop_signals[i].number;
            return 0;
        }
        snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s",
                 i == 0 ? "" : i + 1 < NSTOP_SIGNALS ? ", " : " or ", stop_signals[i].name);
    }
    return bad(ctx, "must be %s (SIG prefix optional), got \"%s\"", names, text);
}

static int apply_reload(struct load_ctx *ctx, const struct rule *r,
                        const char *text, void *field)
{
    (void)r;
    if (strcmp(text, "smooth") == 0 || strcmp(text, "fleet") == 0) {
        *(enum app_reload *)field = strcmp(text, "smooth") == 0 ? RELOAD_SMOOTH
                                                                 : RELOAD_FLEET;
        return 0;
    }
    return bad(ctx, "must be smooth or fleet, got \"%s\"", text);
}

/* Digits and an optional K, M or G (powers of 1024, either case) as bytes. */
static int parse_size(const char *s, unsigned long long *bytes)
{
    static const char units[] = "KMG";
    unsigned long long v = 0;
    const char *unit;
    int shift = 0;

    if (!isdigit((unsigned char)*s))
        return -1;
    for (; isdigit((unsigned char)*s); s++) {
        if (v > (ULLONG_MAX - 9) / 10)
            return -1;
        v = v * 10 + (unsigned long long)(*s - '0');
    }
    if (*s && !s[1] && (unit = strchr(units, toupper((unsigned char)*s)))) {
        shift = 10 * (int)(unit - units + 1);
        s++;
    }
    if (*s || v > ULLONG_MAX >> shift)
        return -1;
    *bytes = v << shift;
    return 0;
}

/* "0" = off. */
static int apply_max_rss(struct load_ctx *ctx, const struct rule *r,
                         const char *text, void *field)
{
    (void)r;
    if (parse_size(text, field) < 0)
        return bad(ctx, "must be \"0\" or a size such as \"256M\" (K, M, G: powers of "
                   "1024), got \"%s\"", text);
    return 0;
}

/* certificate, key, chain: absolute paths; master reads them (tlsctx). */
static int apply_tls_file(struct load_ctx *ctx, const struct rule *r,
                          const char *text, void *field)
{
    struct tls_conf *t = r->section == SEC_SITE_TLS ? &ctx->site.tls : &ctx->pending.tls;
    bool optional = r->def && !*r->def;     /* chain, ocsp_response: "" = none */
    int *line = strcmp(r->name, "key") == 0 ? &t->key_line
              : strcmp(r->name, "chain") == 0 ? &t->chain_line
              : strcmp(r->name, "ocsp_response") == 0 ? &t->ocsp_line : &t->certificate_line;

    *line = ctx->line;
    if (!*text && optional) {
        *(char *)field = '\0';
        return 0;
    }
    return resolve_file(ctx, text, false, field, r->size);
}

/* An OpenSSL list (ciphers, curves): its own check is the master's. */
static int apply_tls_list(struct load_ctx *ctx, const struct rule *r,
                          const char *text, void *field)
{
    if (!*text)
        return bad(ctx, "must not be empty");
    if (strspn(text, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_:+!@=")
        != strlen(text))
        return bad(ctx, "\"%s\" is not an OpenSSL list (names separated by ':')", text);
    return copy_text(ctx, text, field, r->size);
}

#define IN_CONFIG(m) offsetof(struct config, m), sizeof(((struct config *)0)->m)
#define IN_LISTEN(m) offsetof(struct listen_conf, m), sizeof(((struct listen_conf *)0)->m)
#define IN_APP(m) offsetof(struct app_conf, m), sizeof(((struct app_conf *)0)->m)
#define IN_SITE(m) offsetof(struct site_conf, m), sizeof(((struct site_conf *)0)->m)

/* Every option, with its default and accepted range. The ranges are there
 * to catch typos rather than to obey them: workers 1..1024 or "auto" (one
 * per online CPU); worker_connections 1..1000000 (the fd limit bites first);
 * max_requests >= 0 (0 = never recycle); worker_timeout 1..86400 s;
 * graceful_timeout 0..3600 s; backlog 1..65535 (the kernel caps it at
 * somaxconn); keepalive_timeout 0..3600 s (0 = no keep-alive); header_timeout
 * 1..3600 s; max_header_size 1 KiB..1 MiB. In app sections: ready_timeout
 * 1..3600 s, watchdog 0..3600 s (0 = off); command and environment are
 * lists, checked word by word by on_app_list(). A site's root has no default:
 * it must be given; its lists (server_names, error_pages, expires, the last
 * two in http too) are checked word by word by on_site_list() and
 * on_http_list(). */
/* Mozilla's "intermediate" TLS 1.2 list: forward secrecy and AEAD only. */
#define TLS_CIPHERS_DEFAULT "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:" \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:" \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

static const struct rule rules[] = {
    { SEC_ROOT, "workers", "auto", apply_workers, 1, 1024, IN_CONFIG(workers) },
    { SEC_ROOT, "worker_connections", "1024", apply_number, 1, 1000000,
      IN_CONFIG(worker_connections) },
    { SEC_ROOT, "max_requests", "0", apply_number, 0, LONG_MAX, IN_CONFIG(max_requests) },
    { SEC_ROOT, "worker_rlimit_nofile", "0", apply_number, 0, 1048576,
      IN_CONFIG(worker_rlimit_nofile) },
    { SEC_ROOT, "max_connections_per_ip", "0", apply_number, 0, 1000000,
      IN_CONFIG(max_connections_per_ip) },
    { SEC_ROOT, "rate_limit", "", apply_rate_limit, 0, 0, IN_CONFIG(rate_limit) },
    { SEC_ROOT, "worker_timeout", "30", apply_number, 1, 86400, IN_CONFIG(worker_timeout) },
    { SEC_ROOT, "graceful_timeout", "30", apply_number, 0, 3600,
      IN_CONFIG(graceful_timeout) },
    { SEC_ROOT, "user", "", apply_user, 0, 0, IN_CONFIG(user) },
    { SEC_ROOT, "pidfile", "../build/run/preforkd.pid", apply_file_path, 0, 0,
      IN_CONFIG(pidfile) },
    { SEC_ROOT, "control_socket", "../build/run/preforkd.sock", apply_socket_path, 0, 0,
      IN_CONFIG(control_socket) },
    { SEC_ROOT, "error_log", "stderr", apply_error_log, 0, 0, IN_CONFIG(error_log) },
    { SEC_ROOT, "log_level", "info", apply_log_level, 0, 0, IN_CONFIG(log_level) },
    { SEC_ROOT, "status_listen", "", apply_status_listen, 0, 0, IN_CONFIG(status_listen) },
    { SEC_ROOT, "graceful_stop_delay", "0", apply_number, 0, 3600,
      IN_CONFIG(graceful_stop_delay) },
    { SEC_HTTP, "root", "www", apply_dir_path, 0, 0, IN_CONFIG(http.root) },
    { SEC_HTTP, "index", "index.html", apply_index, 0, 0, IN_CONFIG(http.index) },
    { SEC_HTTP, "access_log", "", apply_log_path, 0, 0, IN_CONFIG(http.access_log) },
    { SEC_HTTP, "keepalive_timeout", "5", apply_number, 0, 3600,
      IN_CONFIG(http.keepalive_timeout) },
    { SEC_HTTP, "header_timeout", "10", apply_number, 1, 3600,
      IN_CONFIG(http.header_timeout) },
    { SEC_HTTP, "send_timeout", "60", apply_number, 1, 3600,
      IN_CONFIG(http.send_timeout) },
    { SEC_HTTP, "max_header_size", "8192", apply_number, 1024, 1048576,
      IN_CONFIG(http.max_header_size) },
    { SEC_HTTP, "precompressed", "false", apply_bool, 0, 0, IN_CONFIG(http.opts.precompressed) },
    { SEC_HTTP, "autoindex", "false", apply_bool, 0, 0, IN_CONFIG(http.opts.autoindex) },
    { SEC_LISTEN, "address", NULL, apply_address, 0, 0, IN_LISTEN(addr) },
    { SEC_LISTEN, "protocol", "http", apply_protocol, 0, 0, IN_LISTEN(protocol) },
    { SEC_LISTEN, "backlog", "511", apply_number, 1, 65535, IN_LISTEN(backlog) },
    { SEC_LISTEN, "accept", "shared", apply_accept, 0, 0, IN_LISTEN(accept) },
    { SEC_LISTEN, "proxy_protocol", "false", apply_bool, 0, 0, IN_LISTEN(proxy_protocol) },
    { SEC_LISTEN_TLS, "certificate", NULL, apply_tls_file, 0, 0, IN_LISTEN(tls.certificate) },
    { SEC_LISTEN_TLS, "key", NULL, apply_tls_file, 0, 0, IN_LISTEN(tls.key) },
    { SEC_LISTEN_TLS, "chain", "", apply_tls_file, 0, 0, IN_LISTEN(tls.chain) },
    { SEC_LISTEN_TLS, "ocsp_response", "", apply_tls_file, 0, 0, IN_LISTEN(tls.ocsp_response) },
    { SEC_LISTEN_TLS, "ciphers", TLS_CIPHERS_DEFAULT, apply_tls_list, 0, 0,
      IN_LISTEN(tls.ciphers) },
    { SEC_LISTEN_TLS, "curves", "X25519:P-256:P-384", apply_tls_list, 0, 0,
      IN_LISTEN(tls.curves) },
    { SEC_LISTEN_TLS, "log_cipher", "false", apply_bool, 0, 0, IN_LISTEN(tls.log_cipher) },
    { SEC_APP, "workers", "auto", apply_workers, 1, 1024, IN_APP(workers) },
    { SEC_APP, "directory", ".", apply_app_dir, 0, 0, IN_APP(directory) },
    { SEC_APP, "user", "", apply_user, 0, 0, IN_APP(user) },
    { SEC_APP, "handoff", "systemd", apply_handoff, 0, 0, IN_APP(handoff) },
    { SEC_APP, "ready", "notify", apply_ready, 0, 0, IN_APP(ready) },
    { SEC_APP, "ready_timeout", "30", apply_number, 1, 3600, IN_APP(ready_timeout) },
    { SEC_APP, "watchdog", "0", apply_number, 0, 3600, IN_APP(watchdog) },
    { SEC_APP, "stop_signal", "TERM", apply_stop_signal, 0, 0, IN_APP(stop_signal) },
    { SEC_APP, "reload", "smooth", apply_reload, 0, 0, IN_APP(reload) },
    { SEC_APP, "max_rss", "0", apply_max_rss, 0, 0, IN_APP(max_rss) },
    { SEC_APP_LISTEN, "address", NULL, apply_address, 0, 0, IN_LISTEN(addr) },
    { SEC_APP_LISTEN, "backlog", "511", apply_number, 1, 65535, IN_LISTEN(backlog) },
    { SEC_APP_LISTEN, "protocol", NULL, apply_app_protocol, 0, 0, IN_LISTEN(protocol) },
    { SEC_SITE, "root", NULL, apply_site_root, 0, 0, IN_SITE(root) },
    { SEC_SITE, "index", "index.html", apply_index, 0, 0, IN_SITE(index) },
    { SEC_SITE, "access_log", "", apply_log_path, 0, 0, IN_SITE(access_log) },
    { SEC_SITE, "precompressed", "false", apply_bool, 0, 0, IN_SITE(opts.precompressed) },
    { SEC_SITE, "autoindex", "false", apply_bool, 0, 0, IN_SITE(opts.autoindex) },
    { SEC_SITE, "send_timeout", "0", apply_number, 0, 3600, IN_SITE(send_timeout) },
    { SEC_SITE_TLS, "certificate", NULL, apply_tls_file, 0, 0, IN_SITE(tls.certificate) },
    { SEC_SITE_TLS, "key", NULL, apply_tls_file, 0, 0, IN_SITE(tls.key) },
    { SEC_SITE_TLS, "chain", "", apply_tls_file, 0, 0, IN_SITE(tls.chain) },
    { SEC_SITE_TLS, "ocsp_response", "", apply_tls_file, 0, 0, IN_SITE(tls.ocsp_response) },
    { SEC_CHAT, "bus", "", apply_chat_bus, 0, 0, IN_CONFIG(chat.bus) },
    { SEC_CHAT, "bus_ttl", "15", apply_number, 1, 3600, IN_CONFIG(chat.bus_ttl) },
    { SEC_CHAT, "bus_queue", "10000", apply_number, 16, 1000000, IN_CONFIG(chat.bus_queue) },
};
#define NRULES (sizeof rules / sizeof rules[0])

/* The struct that a rule's offset is in. */
static char *rule_base(struct load_ctx *ctx, enum section section)
{
    switch (section) {
    case SEC_ROOT:
    case SEC_CHAT:
    case SEC_HTTP:       return (char *)ctx->out;
    case SEC_LISTEN:
    case SEC_LISTEN_TLS:
    case SEC_APP_LISTEN: return (char *)&ctx->pending;
    case SEC_APP:        return (char *)&ctx->app;
    case SEC_SITE:
    case SEC_SITE_TLS:   return (char *)&ctx->site;
    }
    return NULL;
}

static int apply_rule(struct load_ctx *ctx, const struct rule *r, const char *text,
                      int line)
{
    ctx->line = line;
    if (r->apply(ctx, r, text, rule_base(ctx, r->section) + r->offset) == 0)
        return 0;
    return report(ctx, line, "%s%s: %s", section_prefix[r->section], r->name, ctx->msg);
}

static int apply_defaults(struct load_ctx *ctx, enum section section)
{
    for (size_t i = 0; i < NRULES; i++)
        if (rules[i].section == section && rules[i].def &&
            apply_rule(ctx, &rules[i], rules[i].def, 0) < 0)
            return -1;
    return 0;
}

/* ---- listen sections ---- */

/* proxy_from's default: the balancer on this machine. */
#define PROXY_FROM_DEFAULT "127.0.0.1"

/* libconfuse has no hook at a section's opening brace, so a section begins
 * at its first callback: one of its options or its closing brace. */
static int begin_listen(struct load_ctx *ctx, enum section section)
{
    if (ctx->pending_open)
        return 0;
    memset(&ctx->pending, 0, sizeof ctx->pending);
    ctx->pending.app = -1;
    ctx->pending_section = section;
    ctx->pending_has_address = false;
    ctx->pending_open = true;
    if (section == SEC_LISTEN &&
        cidr_parse(PROXY_FROM_DEFAULT, &ctx->pending.proxy_from[ctx->pending.nproxy_from++],
                   ctx->msg, sizeof ctx->msg) < 0)
        return report(ctx, 0, "listen.proxy_from: %s", ctx->msg);
    ctx->pending.tls.protocols = TLS_PROTO_12 | TLS_PROTO_13;
    if (section == SEC_LISTEN && apply_defaults(ctx, SEC_LISTEN_TLS) < 0)
        return -1;
    return apply_defaults(ctx, section);
}

/* status_allow's default, as libconfuse and config.status_allow have it. */
#define STATUS_ALLOW_DEFAULT "{\"127.0.0.1\", \"::1\"}"
static const char *const status_allow_default[] = { "127.0.0.1", "::1" };

/* Defaults first; the file's values then overwrite them one by one. */
static int load_defaults(struct load_ctx *ctx)
{
    struct config *c = ctx->out;

    for (size_t i = 0; i < sizeof status_allow_default / sizeof *status_allow_default; i++)
        if (cidr_parse(status_allow_default[i], &c->status_allow[c->nstatus_allow++],
                       ctx->msg, sizeof ctx->msg) < 0)
            return report(ctx, 0, "status_allow: %s", ctx->msg);
    return apply_defaults(ctx, SEC_ROOT) < 0 || apply_defaults(ctx, SEC_CHAT) < 0 ? -1
           : apply_defaults(ctx, SEC_HTTP);
}

/* Line I of LIST, or FALLBACK when the scan found fewer sections. */
static int line_at(const struct line_list *list, size_t i, int fallback)
{
    return i < list->n ? list->v[i] : fallback;
}

/* Listeners are appended as their sections close, so the one closing is
 * number nlistens in file order. An app's listener belongs to the app being
 * parsed (number napps) and may be of any socket type: the app decides. */
static int finish_listen(struct load_ctx *ctx, int fallback_line)
{
    struct listen_conf *l = &ctx->pending, *grown;
    const struct listen_conf *dup;
    struct config *c = ctx->out;
    bool in_app = ctx->pending_section == SEC_APP_LISTEN;
    const char *what = in_app ? "app.listen" : "listen";
    int line = line_at(&ctx->listen_lines, c->nlistens, fallback_line);

    ctx->pending_open = false;
    l->line = line;
    if (in_app) {
        l->protocol = PROTO_APP;
        l->app = (int)c->napps;
    }
    if (!ctx->pending_has_address)
        return report(ctx, line, "%s: address is required", what);
    if (l->tls.on && l->protocol != PROTO_HTTP)
        return report(ctx, l->tls.line, "listen.tls: only http listeners speak TLS "
                      "(this one is \"%s\")", proto_name(l->protocol));
    if (!in_app && l->addr.socktype == SOCK_DGRAM && l->protocol != PROTO_ECHO)
        return report(ctx, line, "listen: protocol \"%s\" needs a stream address, "
                      "\"%s\" is udp (only echo speaks udp)",
                      proto_name(l->protocol), l->addr.text);
    /* Per-CPU sockets are a TCP reuseport group: a unix socket has none,
     * and a UDP echo listener has no accept queue to split. */
    if (l->accept == ACCEPT_PER_CPU && (l->addr.socktype != SOCK_STREAM ||
                                        l->addr.sa.ss_family == AF_UNIX))
        return report(ctx, line, "listen: accept \"per-cpu\" needs a TCP address, "
                      "\"%s\" is %s", l->addr.text,
                      l->addr.socktype == SOCK_DGRAM ? "udp" : "a unix socket");
    if (l->proxy_protocol && l->addr.socktype != SOCK_STREAM)
        return report(ctx, line, "listen: proxy_protocol needs a stream address, "
                      "\"%s\" is udp", l->addr.text);
    dup = find_same_address(c, &l->addr);
    if (dup)
        return report(ctx, line, "%s: duplicate address \"%s\" (also at line %d)",
                      what, l->addr.text, dup->line);
    grown = realloc(c->listens, (c->nlistens + 1) * sizeof *grown);
    if (!grown)
        return report(ctx, line, "%s: %s", what, strerror(errno));
    c->listens = grown;
    c->listens[c->nlistens++] = *l;
    return 0;
}

/* ---- app sections ---- */

/* The titled section of this kind being parsed: the last one opened. */
static cfg_t *last_section(struct load_ctx *ctx, const char *kind)
{
    unsigned int n = cfg_size(ctx->root, kind);

    return n > 0 ? cfg_getnsec(ctx->root, kind, n - 1) : NULL;
}

#define TITLE_CHARS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"

/* A section title: 1 to max characters of `allowed` (described as
 * `shown`); stored in out. */
static int check_title(struct load_ctx *ctx, const char *kind, const char *name, int line,
                       size_t max, const char *allowed, const char *shown, char *out)
{
    size_t len = strlen(name);

    if (len == 0 || len > max || strspn(name, allowed) != len)
        return report(ctx, line, "%s \"%s\": a name is 1 to %zu characters from %s",
                      kind, name, max, shown);
    memcpy(out, name, len + 1);
    return 0;
}

/* Like a listen section, an app section begins at its first callback. It
 * will be number napps in config.apps: apps are appended when complete. */
static int begin_app(struct load_ctx *ctx)
{
    cfg_t *sec;
    const char *title;

    if (ctx->app_open)
        return 0;
    sec = last_section(ctx, "app");
    title = sec ? cfg_title(sec) : NULL;
    memset(&ctx->app, 0, sizeof ctx->app);
    ctx->app_open = true;
    ctx->app.line = line_at(&ctx->app_lines, ctx->out->napps, sec ? sec->line : 0);
    if (check_title(ctx, "app", title ? title : "", ctx->app.line, APP_NAME_MAX,
                    TITLE_CHARS, "A-Z a-z 0-9 _ -", ctx->app.name) < 0)
        return -1;
    return apply_defaults(ctx, SEC_APP);
}

static bool report_duplicate_app(struct load_ctx *ctx, const char *name, int line)
{
    const struct config *c = ctx->out;

    for (size_t i = 0; i < c->napps; i++)
        if (strcmp(c->apps[i].name, name) == 0) {
            report(ctx, line_at(&ctx->app_lines, c->napps, line),
                   "app %s: duplicate name (also at line %d)", name, c->apps[i].line);
            return true;
        }
    return false;
}

static bool report_duplicate_site(struct load_ctx *ctx, const char *name, int line)
{
    const struct config *c = ctx->out;

    for (size_t i = 0; i < c->nsites; i++)
        if (strcmp(c->sites[i].name, name) == 0) {
            report(ctx, line_at(&ctx->site_lines, c->nsites, line),
                   "site %s: duplicate name (also at line %d)", name, c->sites[i].line);
            return true;
        }
    return false;
}

/* libconfuse refuses a second section with one title (CFGF_NO_TITLE_DUPES)
 * before any callback of ours runs, and without saying which kind; say so
 * our way, with both lines. The section being opened is the app or site
 * whose opening line (from our scan) is the later one at or before LINE.
 * False when NAME is no app or site of ours, to leave libconfuse's message. */
static bool report_duplicate_title(struct load_ctx *ctx, const char *name, int line)
{
    int app_at = line_at(&ctx->app_lines, ctx->out->napps, 0);
    int site_at = line_at(&ctx->site_lines, ctx->out->nsites, 0);
    bool site_first = site_at > 0 && site_at <= line &&
                      (app_at == 0 || app_at > line || site_at > app_at);

    if (site_first)
        return report_duplicate_site(ctx, name, line) || report_duplicate_app(ctx, name, line);
    return report_duplicate_app(ctx, name, line) || report_duplicate_site(ctx, name, line);
}

/* The next "{fd}" or "{fd:ADDRESS}" in command word WORD from *P on: 1 with
 * *p past it and [*addr, *addr + *len) its ADDRESS (*len 0 for "{fd}"), 0
 * when none is left, -1 with ctx->msg when one is malformed. */
static int next_placeholder(struct load_ctx *ctx, const char *word, const char **p,
                            const char **addr, size_t *len)
{
    const char *open = strstr(*p, "{fd"), *close;

    if (!open)
        return 0;
    close = strchr(open, '}');
    if (!close)
        return bad(ctx, "unterminated placeholder in \"%s\" (write {fd} or {fd:ADDRESS})",
                   word);
    if (open[3] != '}' && (open[3] != ':' || close == open + 4))
        return bad(ctx, "unknown placeholder \"%.*s\" in \"%s\" (write {fd} or "
                   "{fd:ADDRESS})", (int)(close - open + 1), open, word);
    *addr = open + 4;
    *len = open[3] == ':' ? (size_t)(close - *addr) : 0;
    *p = close + 1;
    return 1;
}

/* Word I of the command; its {fd:ADDRESS} are checked in finish_app(), when
 * all the app's listen sections are known. */
static int check_command_word(struct load_ctx *ctx, const char *word, unsigned int i)
{
    const char *p = word, *addr;
    size_t len;
    int rc;

    if (i == 0 && !*word)
        return bad(ctx, "the first word, the program, must not be empty");
    while ((rc = next_placeholder(ctx, word, &p, &addr, &len)) > 0)
        continue;
    return rc;
}

/* What preforkd sets in every app worker's environment (SPEC "App pools"),
 * besides anything named PREFORKD_*. */
static const char *const reserved_env[] = {
    "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET", "WATCHDOG_USEC",
    "WATCHDOG_PID",
};

static bool is_reserved_env(const char *key, size_t len)
{
    if (len >= 9 && strncmp(key, "PREFORKD_", 9) == 0)
        return true;
    for (size_t i = 0; i < sizeof reserved_env / sizeof reserved_env[0]; i++)
        if (strlen(reserved_env[i]) == len && strncmp(key, reserved_env[i], len) == 0)
            return true;
    return false;
}

/* Word I of OPT, "KEY=VALUE": a portable KEY, not preforkd's, not set by an
 * earlier word (those were checked when they came). */
static int check_env_word(struct load_ctx *ctx, cfg_opt_t *opt, unsigned int i)
{
    static const char key_chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                    "abcdefghijklmnopqrstuvwxyz0123456789_";
    const char *word = cfg_opt_getnstr(opt, i), *eq = strchr(word, '=');
    int len = eq ? (int)(eq - word) : 0;

    if (!eq)
        return bad(ctx, "\"%s\" is not KEY=VALUE", word);
    if (len == 0 || isdigit((unsigned char)word[0]) || (int)strspn(word, key_chars) < len)
        return bad(ctx, "bad variable name \"%.*s\" in \"%s\" (letters, digits and _, "
                   "not starting with a digit)", len, word, word);
    if (is_reserved_env(word, (size_t)len))
        return bad(ctx, "%.*s is set by preforkd itself", len, word);
    for (unsigned int j = 0; j < i; j++)
        if (strncmp(cfg_opt_getnstr(opt, j), word, (size_t)len + 1) == 0)
            return bad(ctx, "%.*s is set twice", len, word);
    return 0;
}

/* Is there a listener of the app being finished written ADDR (LEN bytes),
 * or with ADDR NULL, any listener of it? */
static bool app_has_listener(const struct load_ctx *ctx, const char *addr, size_t len)
{
    const struct config *c = ctx->out;

    for (size_t i = 0; i < c->nlistens; i++) {
        const char *text = c->listens[i].addr.text;
        if (c->listens[i].app == (int)c->napps &&
            (!addr || (strlen(text) == len && memcmp(text, addr, len) == 0)))
            return true;
    }
    return false;
}

/* {fd:ADDRESS} must name one of the app's own listen addresses as written. */
static int check_fd_addresses(struct load_ctx *ctx, cfg_t *sec, int line)
{
    for (unsigned int i = 0; i < cfg_size(sec, "command"); i++) {
        const char *word = cfg_getnstr(sec, "command", i), *p = word, *addr;
        size_t len;

        while (next_placeholder(ctx, word, &p, &addr, &len) > 0)
            if (len > 0 && !app_has_listener(ctx, addr, len))
                return report(ctx, line, "app.command: {fd:%.*s}: app %s has no listen "
                              "address \"%.*s\"", (int)len, addr, ctx->app.name,
                              (int)len, addr);
    }
    return 0;
}

static void free_words(char **words)
{
    for (char **w = words; w && *w; w++)
        free(*w);
    free(words);
}

/* List option NAME of SEC as a heap array ending in NULL; NULL when empty. */
static int copy_words(cfg_t *sec, const char *name, char ***out, size_t *n)
{
    size_t count = cfg_size(sec, name);
    char **words = count ? calloc(count + 1, sizeof *words) : NULL;

    *out = NULL;
    *n = 0;
    if (count && !words)
        return -1;
    for (size_t i = 0; i < count; i++) {
        if (!(words[i] = strdup(cfg_getnstr(sec, name, i)))) {
            free_words(words);
            return -1;
        }
    }
    *out = words;
    *n = count;
    return 0;
}

/* At the closing brace: the checks that need the whole section, then the
 * app joins config.apps with copies of its lists (libconfuse's tree goes
 * when parsing ends). */
static int finish_app(struct load_ctx *ctx, cfg_t *sec)
{
    struct config *c = ctx->out;
    struct app_conf *a = &ctx->app, *grown;

    ctx->app_open = false;
    if (cfg_size(sec, "command") == 0)
        return report(ctx, a->line, "app %s: command is required", a->name);
    if (!app_has_listener(ctx, NULL, 0))
        return report(ctx, a->line, "app %s: at least one listen section is required",
                      a->name);
    if (check_fd_addresses(ctx, sec, line_at(&ctx->command_lines, c->napps, a->line)) < 0)
        return -1;
    grown = realloc(c->apps, (c->napps + 1) * sizeof *grown);
    if (!grown)
        return report(ctx, a->line, "app %s: %s", a->name, strerror(errno));
    c->apps = grown;
    if (copy_words(sec, "command", &a->command, &a->ncommand) < 0 ||
        copy_words(sec, "environment", &a->environment, &a->nenvironment) < 0) {
        free_words(a->command);
        a->command = NULL;
        return report(ctx, a->line, "app %s: %s", a->name, strerror(ENOMEM));
    }
    c->apps[c->napps++] = *a;
    return 0;
}

/* ---- site sections and the site options of http ---- */

/* As an app section, a site section begins at its first callback. */
static int begin_site(struct load_ctx *ctx)
{
    cfg_t *sec;
    const char *title;

    if (ctx->site_open)
        return 0;
    sec = last_section(ctx, "site");
    title = sec ? cfg_title(sec) : NULL;
    memset(&ctx->site, 0, sizeof ctx->site);
    ctx->site_open = true;
    ctx->name_lines.n = 0;
    ctx->site.line = line_at(&ctx->site_lines, ctx->out->nsites, sec ? sec->line : 0);
    if (check_title(ctx, "site", title ? title : "", ctx->site.line, SITE_NAME_MAX,
                    TITLE_CHARS ".", "A-Z a-z 0-9 _ - .", ctx->site.name) < 0)
        return -1;
    if (apply_defaults(ctx, SEC_SITE_TLS) < 0)
        return -1;
    return apply_defaults(ctx, SEC_SITE);
}

/* A host name as Host would carry it, without the port: dot-separated
 * labels of letters, digits, '-' and '_', or an IPv6 literal in brackets;
 * "*." before a name stands for any name under it. */
static int check_server_name(struct load_ctx *ctx, const char *word)
{
    const char *host = strncmp(word, "*.", 2) == 0 ? word + 2 : word;
    size_t len = strlen(host);
    char v6[INET6_ADDRSTRLEN];
    unsigned char addr[16];

    if (strlen(word) > SERVER_NAME_MAX)
        return bad(ctx, "\"%s\" is longer than %d bytes", word, SERVER_NAME_MAX);
    if (host[0] == '[' && host == word) {
        if (len < 3 || host[len - 1] != ']' || len - 2 >= sizeof v6)
            return bad(ctx, "\"%s\" is not an IPv6 address in brackets", word);
        memcpy(v6, host + 1, len - 2);
        v6[len - 2] = '\0';
        if (inet_pton(AF_INET6, v6, addr) != 1)
            return bad(ctx, "\"%s\" is not an IPv6 address in brackets", word);
        return 0;
    }
    if (strchr(host, ':') && host[0] != '[')
        return bad(ctx, "\"%s\": a server name has no port (any port matches)", word);
    for (const char *p = host;; p++) {
        size_t label = strspn(p, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                 "0123456789-_");
        if (label == 0 || (p[label] != '.' && p[label] != '\0'))
            return bad(ctx, "\"%s\" is not a host name (labels of letters, digits, - and _ "
                       "between dots, or \"*.\" and such a name)", word);
        p += label;
        if (!*p)
            return 0;
    }
}

/* Server name I of OPT: well formed, not earlier in the list, not a name of
 * an earlier site (names compare without case, as hosts do). */
static int check_server_name_word(struct load_ctx *ctx, cfg_opt_t *opt, unsigned int i)
{
    const struct config *c = ctx->out;
    const char *word = cfg_opt_getnstr(opt, i);

    if (check_server_name(ctx, word) < 0)
        return -1;
    for (unsigned int j = 0; j < i; j++)
        if (strcasecmp(cfg_opt_getnstr(opt, j), word) == 0)
            return bad(ctx, "\"%s\" is given twice", word);
    for (size_t s = 0; s < c->nsites; s++)
        for (size_t j = 0; j < c->sites[s].nserver_names; j++)
            if (strcasecmp(c->sites[s].server_names[j], word) == 0)
                return bad(ctx, "\"%s\" is also a server name of site %s (line %d)", word,
                           c->sites[s].name, c->sites[s].server_name_lines[j]);
    return 0;
}

/* Word after word, libconfuse calls back with the list's new size, and once
 * more with the same size at its closing brace: the line of word N is the
 * line of the first callback with size N. A size that shrank is a new
 * assignment of the list ("server_names = " again). */
static int note_name_line(struct load_ctx *ctx, unsigned int n, int line)
{
    struct line_list *l = &ctx->name_lines;

    if (n > l->n)
        return add_line(ctx, l, line);
    if (n < l->n) {
        l->n = n;
        l->v[n - 1] = line;
    }
    return 0;
}

/* Segments of a path under a root: not empty, not "." nor "..". */
static bool clean_path(const char *path)
{
    for (const char *p = path; *p == '/'; ) {
        size_t n = strcspn(p + 1, "/");
        if (n == 0 || (n == 1 && p[1] == '.') || (n == 2 && p[1] == '.' && p[2] == '.'))
            return false;
        p += 1 + n;
    }
    return true;
}

/* "STATUS=/PATH" into *page, or -1 with ctx->msg. The statuses are those a
 * request for a file can end with (a malformed request gets the built-in
 * answer: it has no site yet). */
static int parse_error_page(struct load_ctx *ctx, const char *word, struct error_page *page)
{
    const char *eq = strchr(word, '=');
    const char *path = eq ? eq + 1 : "";
    long status = 0;

    if (!eq || eq - word != 3 || !isdigit((unsigned char)word[0]) ||
        !isdigit((unsigned char)word[1]) || !isdigit((unsigned char)word[2]))
        return bad(ctx, "\"%s\" is not STATUS=/PATH (\"404=/404.html\")", word);
    status = strtol(word, NULL, 10);
    if (status != 403 && status != 404 && status != 405 && status != 500)
        return bad(ctx, "\"%s\": the status must be 403, 404, 405 or 500", word);
    if (path[0] != '/' || path[strlen(path) - 1] == '/' || !clean_path(path) ||
        strpbrk(path, "?#"))
        return bad(ctx, "\"%s\": the page must be a file under the root, as a path that "
                   "starts with '/' (no \".\", \"..\", \"//\", '?' or '#')", word);
    if (strlen(path) >= sizeof page->path)
        return bad(ctx, "\"%s\": the page's path is longer than %zu bytes", word,
                   sizeof page->path - 1);
    page->status = (int)status;
    memcpy(page->path, path, strlen(path) + 1);
    return 0;
}

#define EXPIRES_MAX_S 315360000L        /* 3650 days */

/* "*SUFFIX=TIME" or "/DIR/=TIME" into *rule; TIME is digits and a unit, s,
 * m, h or d (seconds without one). */
static int parse_expires(struct load_ctx *ctx, const char *word, struct expires_rule *rule)
{
    const char *eq = strrchr(word, '=');
    size_t plen = eq ? (size_t)(eq - word) : 0;
    const char *t = eq ? eq + 1 : "";
    long v = 0, unit = 1;

    if (!eq || plen == 0)
        return bad(ctx, "\"%s\" is not PATTERN=TIME (\"*.css=7d\", \"/assets/=30d\")", word);
    if (plen >= sizeof rule->pattern)
        return bad(ctx, "\"%s\": the pattern is longer than %zu bytes", word,
                   sizeof rule->pattern - 1);
    if (memchr(word + 1, '*', plen - 1) ||
        !((word[0] == '*' && plen > 1) ||
          (word[0] == '/' && word[plen - 1] == '/')))
        return bad(ctx, "\"%s\": the pattern must be *SUFFIX (\"*.css\") or a directory "
                   "/DIR/ (\"/assets/\")", word);
    if (!isdigit((unsigned char)*t))
        v = -1;
    for (; v >= 0 && isdigit((unsigned char)*t); t++)
        if ((v = v * 10 + (*t - '0')) > EXPIRES_MAX_S)
            v = -1;
    if (*t && !t[1] && strchr("smhd", *t)) {
        unit = *t == 's' ? 1 : *t == 'm' ? 60 : *t == 'h' ? 3600 : 86400;
        t++;
    }
    if (v < 0 || *t || v > EXPIRES_MAX_S / unit)
        return bad(ctx, "\"%s\": the time must be a number and a unit, s, m, h or d "
                   "(\"7d\"), at most 3650d", word);
    memcpy(rule->pattern, word, plen);
    rule->pattern[plen] = '\0';
    rule->prefix = word[0] == '/';
    rule->seconds = v * unit;
    return 0;
}

/* Word I of error_pages or expires: well formed, and not a status or a
 * pattern that an earlier word gave already. */
static int check_site_opt_word(struct load_ctx *ctx, cfg_opt_t *opt, unsigned int i)
{
    const char *word = cfg_opt_getnstr(opt, i);

    if (strcmp(cfg_opt_name(opt), "error_pages") == 0) {
        struct error_page page, earlier;
        if (parse_error_page(ctx, word, &page) < 0)
            return -1;
        for (unsigned int j = 0; j < i; j++)
            if (parse_error_page(ctx, cfg_opt_getnstr(opt, j), &earlier) == 0 &&
                earlier.status == page.status)
                return bad(ctx, "status %d is given twice", page.status);
        return 0;
    }
    struct expires_rule rule, earlier;
    if (parse_expires(ctx, word, &rule) < 0)
        return -1;
    for (unsigned int j = 0; j < i; j++)
        if (parse_expires(ctx, cfg_opt_getnstr(opt, j), &earlier) == 0 &&
            strcmp(earlier.pattern, rule.pattern) == 0)
            return bad(ctx, "\"%s\" is given twice", rule.pattern);
    return 0;
}

static void free_site_opts(struct site_opts *o)
{
    free(o->error_pages);
    free(o->expires);
    o->error_pages = NULL;
    o->expires = NULL;
    o->nerror_pages = o->nexpires = 0;
}

/* error_pages and expires of SEC (checked word by word already) into *o. */
static int copy_site_opts(struct load_ctx *ctx, cfg_t *sec, struct site_opts *o)
{
    size_t np = cfg_size(sec, "error_pages"), nx = cfg_size(sec, "expires");

    o->error_pages = np ? calloc(np, sizeof *o->error_pages) : NULL;
    o->expires = nx ? calloc(nx, sizeof *o->expires) : NULL;
    if ((np && !o->error_pages) || (nx && !o->expires)) {
        free_site_opts(o);
        return -1;
    }
    for (size_t i = 0; i < np; i++)
        parse_error_page(ctx, cfg_getnstr(sec, "error_pages", i), &o->error_pages[i]);
    for (size_t i = 0; i < nx; i++)
        parse_expires(ctx, cfg_getnstr(sec, "expires", i), &o->expires[i]);
    o->nerror_pages = np;
    o->nexpires = nx;
    return 0;
}

static void free_site(struct site_conf *s)
{
    free_words(s->server_names);
    free(s->server_name_lines);
    s->server_names = NULL;
    s->server_name_lines = NULL;
    s->nserver_names = 0;
    free_site_opts(&s->opts);
}

/* At the closing brace: root and server_names are required; then the site
 * joins config.sites with copies of its lists. */
static int finish_site(struct load_ctx *ctx, cfg_t *sec)
{
    struct config *c = ctx->out;
    struct site_conf *s = &ctx->site, *grown;
    int names_line = line_at(&ctx->names_lines, c->nsites, 0);

    ctx->site_open = false;
    if (!s->root[0])
        return report(ctx, s->line, "site %s: root is required", s->name);
    if (cfg_size(sec, "server_names") == 0)
        return names_line ? report(ctx, names_line, "site.server_names: must name at least "
                                   "one host")
                          : report(ctx, s->line, "site %s: server_names is required", s->name);
    grown = realloc(c->sites, (c->nsites + 1) * sizeof *grown);
    if (!grown)
        return report(ctx, s->line, "site %s: %s", s->name, strerror(errno));
    c->sites = grown;
    if (copy_words(sec, "server_names", &s->server_names, &s->nserver_names) < 0 ||
        !(s->server_name_lines = calloc(s->nserver_names, sizeof *s->server_name_lines)) ||
        copy_site_opts(ctx, sec, &s->opts) < 0) {
        free_site(s);
        return report(ctx, s->line, "site %s: %s", s->name, strerror(ENOMEM));
    }
    for (size_t i = 0; i < s->nserver_names; i++) {
        for (char *p = s->server_names[i]; *p; p++)
            *p = (char)tolower((unsigned char)*p);
        s->server_name_lines[i] = i < ctx->name_lines.n ? ctx->name_lines.v[i] : s->line;
    }
    c->sites[c->nsites++] = *s;
    return 0;
}

/* ---- libconfuse callbacks ---- */

static enum section section_of(cfg_t *sec)
{
    const char *name = cfg_name(sec);

    if (name && strcmp(name, "http") == 0)
        return SEC_HTTP;
    if (name && strcmp(name, "listen") == 0)
        return SEC_LISTEN;
    if (name && strcmp(name, "app") == 0)
        return SEC_APP;
    if (name && strcmp(name, "site") == 0)
        return SEC_SITE;
    if (name && strcmp(name, "chat") == 0)
        return SEC_CHAT;
    if (name && strcmp(name, "tls") == 0)
        return SEC_LISTEN_TLS;
    return SEC_ROOT;
}

/* Sections begin at their first callback (see begin_listen). */
static int begin_section(struct load_ctx *ctx, enum section section)
{
    if ((section == SEC_APP || section == SEC_APP_LISTEN) && begin_app(ctx) < 0)
        return -1;
    if (section == SEC_SITE || section == SEC_SITE_TLS)
        return begin_site(ctx);
    if (section == SEC_LISTEN || section == SEC_APP_LISTEN)
        return begin_listen(ctx, section);
    if (section == SEC_LISTEN_TLS)
        return begin_listen(ctx, SEC_LISTEN);
    return 0;
}

/* Runs right after libconfuse stored a value, while sec->line is its line. */
static int apply_option(enum section section, cfg_t *sec, cfg_opt_t *opt)
{
    const char *name = cfg_opt_name(opt), *text = cfg_opt_getnstr(opt, 0);

    if (!loading || !name || begin_section(loading, section) < 0)
        return -1;
    for (size_t i = 0; i < NRULES; i++)
        if (rules[i].section == section && strcmp(rules[i].name, name) == 0)
            return apply_rule(loading, &rules[i], text ? text : "", sec->line);
    return report(loading, sec->line, "%s: no rule for this option", name);
}

static int on_option(cfg_t *sec, cfg_opt_t *opt)
{
    return apply_option(section_of(sec), sec, opt);
}

/* A listen section in an app is named "listen" too: its own callback. */
static int on_app_listen_option(cfg_t *sec, cfg_opt_t *opt)
{
    return apply_option(SEC_APP_LISTEN, sec, opt);
}

/* Runs after each word of a list and again at its closing brace, so only
 * the newest word needs a look. */
static int on_app_list(cfg_t *sec, cfg_opt_t *opt)
{
    struct load_ctx *ctx = loading;
    const char *name = cfg_opt_name(opt);
    unsigned int n = cfg_opt_size(opt);
    int rc;

    if (!ctx || !name || begin_app(ctx) < 0)
        return -1;
    if (n == 0)
        return 0;
    if (strcmp(name, "command") == 0)
        rc = check_command_word(ctx, cfg_opt_getnstr(opt, n - 1), n - 1);
    else
        rc = check_env_word(ctx, opt, n - 1);
    return rc < 0 ? report(ctx, sec->line, "app.%s: %s", name, ctx->msg) : 0;
}

/* status_allow: the whole list again after each word (`+=` appends to the
 * default), into config.status_allow. */
static int on_status_allow(cfg_t *sec, cfg_opt_t *opt)
{
    struct load_ctx *ctx = loading;
    unsigned int n = cfg_opt_size(opt);
    struct config *c;

    if (!ctx)
        return -1;
    c = ctx->out;
    if (n > STATUS_ALLOW_MAX)
        return report(ctx, sec->line, "status_allow: at most %d entries", STATUS_ALLOW_MAX);
    for (unsigned int i = 0; i < n; i++)
        if (cidr_parse(cfg_opt_getnstr(opt, i), &c->status_allow[i], ctx->msg,
                       sizeof ctx->msg) < 0)
            return report(ctx, sec->line, "status_allow: %s", ctx->msg);
    c->nstatus_allow = n;
    return 0;
}

/* proxy_from: the whole list again after each word (as status_allow), into
 * the listen section being parsed. */
static int on_proxy_from(cfg_t *sec, cfg_opt_t *opt)
{
    struct load_ctx *ctx = loading;
    unsigned int n = cfg_opt_size(opt);

    if (!ctx || begin_listen(ctx, SEC_LISTEN) < 0)
        return -1;
    if (n > PROXY_FROM_MAX)
        return report(ctx, sec->line, "listen.proxy_from: at most %d entries", PROXY_FROM_MAX);
    for (unsigned int i = 0; i < n; i++)
        if (cidr_parse(cfg_opt_getnstr(opt, i), &ctx->pending.proxy_from[i], ctx->msg,
                       sizeof ctx->msg) < 0)
            return report(ctx, sec->line, "listen.proxy_from: %s", ctx->msg);
    ctx->pending.nproxy_from = n;
    return 0;
}

/* Runs at a listen section's closing brace; libconfuse then knows only the
 * line of that brace, so the section's first line comes from our own scan. */
static int on_listen_end(cfg_t *parent, cfg_opt_t *opt)
{
    (void)opt;
    if (!loading || begin_listen(loading, SEC_LISTEN) < 0)
        return -1;
    return finish_listen(loading, parent->line);
}

/* listen.tls.protocols: the whole list again after each word. */
static int on_tls_protocols(cfg_t *sec, cfg_opt_t *opt)
{
    struct load_ctx *ctx = loading;
    unsigned int n = cfg_opt_size(opt), bits = 0;

    if (!ctx || begin_listen(ctx, SEC_LISTEN) < 0)
        return -1;
    for (unsigned int i = 0; i < n; i++) {
        const char *w = cfg_opt_getnstr(opt, i);
        if (strcmp(w, "TLSv1.2") == 0)
            bits |= TLS_PROTO_12;
        else if (strcmp(w, "TLSv1.3") == 0)
            bits |= TLS_PROTO_13;
        else
            return report(ctx, sec->line, "listen.tls.protocols: \"%s\": only \"TLSv1.2\" "
                          "and \"TLSv1.3\" (older versions are broken)", w);
    }
    if (n > 0)
        ctx->pending.tls.protocols = bits;
    return 0;
}

/* A tls section closed: it needs its certificate and key. */
static int on_tls_end(cfg_t *parent, cfg_opt_t *opt)
{
    struct load_ctx *ctx = loading;
    struct tls_conf *t;

    (void)opt;
    if (!ctx || begin_listen(ctx, SEC_LISTEN) < 0)
        return -1;
    t = &ctx->pending.tls;
    if (t->on)
        return report(ctx, parent->line, "listen.tls: one tls section per listen section");
    t->on = true;
    t->line = parent->line;
    if (!t->certificate[0])
        return report(ctx, t->line, "listen.tls: certificate is required");
    if (!t->key[0])
        return report(ctx, t->line, "listen.tls: key is required");
    return 0;
}

/* An option of a site's tls section ("tls" alone does not say whose). */
static int on_site_tls_option(cfg_t *sec, cfg_opt_t *opt)
{
    return apply_option(SEC_SITE_TLS, sec, opt);
}

/* A site's tls section closed: a certificate and its key. */
static int on_site_tls_end(cfg_t *parent, cfg_opt_t *opt)
{
    struct load_ctx *ctx = loading;
    struct tls_conf *t;

    (void)opt;
    if (!ctx || begin_site(ctx) < 0)
        return -1;
    t = &ctx->site.tls;
    if (t->on)
        return report(ctx, parent->line, "site.tls: one tls section per site");
    t->on = true;
    t->line = parent->line;
    t->protocols = TLS_PROTO_12 | TLS_PROTO_13;     /* the listener's rule */
    if (!t->certificate[0])
        return report(ctx, t->line, "site.tls: certificate is required");
    if (!t->key[0])
        return report(ctx, t->line, "site.tls: key is required");
    return 0;
}

static int on_app_listen_end(cfg_t *parent, cfg_opt_t *opt)
{
    (void)opt;
    if (!loading || begin_section(loading, SEC_APP_LISTEN) < 0)
        return -1;
    return finish_listen(loading, parent->line);
}

static int on_app_end(cfg_t *parent, cfg_opt_t *opt)
{
    (void)parent, (void)opt;
    if (!loading || begin_app(loading) < 0)
        return -1;
    return finish_app(loading, last_section(loading, "app"));
}

/* A word of a site's lists (as on_app_list: after each word, and again at
 * the closing brace). */
static int on_site_list(cfg_t *sec, cfg_opt_t *opt)
{
    struct load_ctx *ctx = loading;
    const char *name = cfg_opt_name(opt);
    unsigned int n = cfg_opt_size(opt);
    int rc;

    if (!ctx || !name || begin_site(ctx) < 0)
        return -1;
    if (n == 0)
        return 0;
    if (strcmp(name, "server_names") == 0)
        rc = note_name_line(ctx, n, sec->line) < 0 ? -1
             : check_server_name_word(ctx, opt, n - 1);
    else
        rc = check_site_opt_word(ctx, opt, n - 1);
    return rc < 0 ? report(ctx, sec->line, "site.%s: %s", name, ctx->msg) : 0;
}

static int on_http_list(cfg_t *sec, cfg_opt_t *opt)
{
    struct load_ctx *ctx = loading;
    const char *name = cfg_opt_name(opt);
    unsigned int n = cfg_opt_size(opt);

    if (!ctx || !name)
        return -1;
    if (n > 0 && check_site_opt_word(ctx, opt, n - 1) < 0)
        return report(ctx, sec->line, "http.%s: %s", name, ctx->msg);
    return 0;
}

static int on_site_end(cfg_t *parent, cfg_opt_t *opt)
{
    (void)parent, (void)opt;
    if (!loading || begin_site(loading) < 0)
        return -1;
    return finish_site(loading, last_section(loading, "site"));
}

/* The http section closed: its lists join config.http.opts (again, should
 * a second http section add to the first). */
static int on_http_end(cfg_t *parent, cfg_opt_t *opt)
{
    struct site_opts *o;

    (void)opt;
    if (!loading)
        return -1;
    o = &loading->out->http.opts;
    free_site_opts(o);
    if (copy_site_opts(loading, cfg_getsec(parent, "http"), o) < 0)
        return report(loading, parent->line, "http: %s", strerror(ENOMEM));
    return 0;
}

/* ---- reading the text: comments out, lines kept ---- */

/* P is at a quote; returns just past its closing quote, or NULL when the
 * string never ends. Backslash escapes anything, as in libconfuse's lexer;
 * newlines inside count towards *line. */
static const char *skip_quoted(const char *p, int *line)
{
    char quote = *p++;

    for (; *p && *p != quote; p++) {
        if (*p == '\\' && p[1])
            p++;
        if (*p == '\n')
            ++*line;
    }
    return *p ? p + 1 : NULL;
}

/* "//" and "/ *" open a comment only at the start of a token, as in
 * libconfuse ("/srv//www" is a path); "#" opens one anywhere. */
static bool token_starts(const char *text, const char *p)
{
    return p == text || strchr(" \t\r\n={}(),+", p[-1]);
}

static char *blank_to_eol(char *p)
{
    for (; *p && *p != '\n'; p++)
        *p = ' ';
    return p;
}

/* Blank a C comment at P, keeping its newlines; NULL if it never closes. */
static char *blank_block(char *p, int *line)
{
    for (p[0] = p[1] = ' ', p += 2; *p; p++) {
        if (p[0] == '*' && p[1] == '/') {
            p[0] = p[1] = ' ';
            return p + 2;
        }
        if (*p == '\n')
            ++*line;
        else
            *p = ' ';
    }
    return NULL;
}

/* Replace every comment with spaces, keeping every newline, so that
 * libconfuse 3.3 counts lines right (it adds phantom lines after comments).
 * Returns NULL, or what is wrong with *line set to where it starts. */
static const char *blank_comments(char *text, int *line)
{
    char *p = text;

    *line = 1;
    while (*p) {
        int start = *line;

        if (*p == '\n') {
            ++*line;
            p++;
        } else if (*p == '"' || *p == '\'') {
            const char *end = skip_quoted(p, line);
            if (!end) {
                *line = start;
                return "unterminated string";
            }
            p += end - p;
        } else if (*p == '#' || (p[0] == '/' && p[1] == '/' && token_starts(text, p))) {
            p = blank_to_eol(p);
        } else if (p[0] == '/' && p[1] == '*' && token_starts(text, p)) {
            p = blank_block(p, line);
            if (!p) {
                *line = start;
                return "unterminated /* comment";
            }
        } else {
            p++;
        }
    }
    return NULL;
}

static int add_line(struct load_ctx *ctx, struct line_list *list, int line)
{
    if (list->n == list->cap) {
        size_t cap = list->cap ? 2 * list->cap : 8;
        int *grown = realloc(list->v, cap * sizeof *grown);
        if (!grown)
            return report(ctx, 0, "%s", strerror(errno));
        list->v = grown;
        list->cap = cap;
    }
    list->v[list->n++] = line;
    return 0;
}

/* Is P the keyword WORD at the start of a token, followed (after blanks)
 * by one of the characters of NEXT? "listen {", "command =", "command +=". */
static bool is_keyword(const char *text, const char *p, const char *word,
                       const char *next)
{
    size_t len = strlen(word);

    if (!token_starts(text, p) || strncmp(p, word, len) != 0)
        return false;
    p += len;
    p += strspn(p, " \t\r\n");
    return *p && strchr(next, *p);
}

/* Is P the keyword WORD ("app", "site"), a title and "{"? Returns the end
 * of the title, so that a title such as "listen" is not taken for a keyword,
 * or NULL. A bare title ends where libconfuse's unquoted strings do;
 * "${VAR}" is one token. */
static const char *title_end(const char *text, const char *p, const char *word)
{
    const char *title, *end;
    size_t len = strlen(word);
    int lines = 0;

    if (!token_starts(text, p) || strncmp(p, word, len) != 0)
        return NULL;
    title = p + len + strspn(p + len, " \t\r\n");
    if (*title == '"' || *title == '\'')
        end = skip_quoted(title, &lines);
    else if (title > p + len && strncmp(title, "${", 2) == 0)
        end = strchr(title, '}') ? strchr(title, '}') + 1 : NULL;
    else if (title > p + len)
        end = title + strcspn(title, " \t\r\n#\"'={}()+,");
    else
        return NULL;                /* "apple" */
    if (!end || end == title)
        return NULL;
    return end[strspn(end, " \t\r\n")] == '{' ? end : NULL;
}

/* The titled sections. */
enum titled { T_NONE, T_APP, T_SITE };

/* Where the scan of the text is. */
struct scan {
    int line, depth;
    enum titled in;                  /* what the depth-1 section is */
    enum titled next;                /* what the next "{" opens */
};

/* At P, outside strings: record what opens here. Returns the last character
 * looked at (past an app's or a site's title), or NULL when memory runs out. */
static const char *scan_word(struct load_ctx *ctx, const char *text, const char *p,
                             struct scan *s)
{
    bool in_app = s->depth == 1 && s->in == T_APP;
    bool in_site = s->depth == 1 && s->in == T_SITE;
    const char *end = NULL;

    if (s->depth == 0 && (end = title_end(text, p, "app"))) {
        if (add_line(ctx, &ctx->app_lines, s->line) < 0 ||
            add_line(ctx, &ctx->command_lines, 0) < 0)
            return NULL;
        s->next = T_APP;
    } else if (s->depth == 0 && (end = title_end(text, p, "site"))) {
        if (add_line(ctx, &ctx->site_lines, s->line) < 0 ||
            add_line(ctx, &ctx->names_lines, 0) < 0)
            return NULL;
        s->next = T_SITE;
    }
    if (end) {
        for (; p < end; p++)
            s->line += *p == '\n';
        return end - 1;
    }
    if ((s->depth == 0 || in_app) && is_keyword(text, p, "listen", "{"))
        return add_line(ctx, &ctx->listen_lines, s->line) < 0 ? NULL : p;
    if (in_app && is_keyword(text, p, "command", "=+"))
        ctx->command_lines.v[ctx->command_lines.n - 1] = s->line;
    if (in_site && is_keyword(text, p, "server_names", "=+"))
        ctx->names_lines.v[ctx->names_lines.n - 1] = s->line;
    return p;
}

/* Record, in file order (the order libconfuse parses them in), the line of
 * every listen section (top-level or in an app), of every app section and
 * of each app's last command, of every site section and of each site's last
 * server_names. TEXT has no comments left. */
/* Sections nest two deep at most; a deeper '{' is libconfuse's to refuse. */
#define MAX_OPEN_BRACES 16

static int find_section_lines(struct load_ctx *ctx, const char *text)
{
    struct scan s = { .line = 1 };
    int open_line[MAX_OPEN_BRACES];

    for (const char *p = text; *p; p++) {
        if (*p == '"' || *p == '\'') {
            p = skip_quoted(p, &s.line);
            if (!p)
                break;
            p--;
        } else if (*p == '\n') {
            s.line++;
        } else if (*p == '{') {
            if (s.depth >= 0 && s.depth < MAX_OPEN_BRACES)
                open_line[s.depth] = s.line;
            if (s.depth++ == 0)
                s.in = s.next;
            s.next = T_NONE;
        } else if (*p == '}') {
            s.depth--;
        } else if (!(p = scan_word(ctx, text, p, &s))) {
            return -1;
        }
    }
    /* libconfuse 3.3 takes end of file as the end of an open section. */
    if (s.depth > 0)
        return report(ctx, open_line[s.depth <= MAX_OPEN_BRACES ? s.depth - 1 : 0],
                      "'{' is never closed (missing '}')");
    return 0;
}

static int read_all(int fd, char *buf, size_t cap, size_t *len)
{
    ssize_t n;

    *len = 0;
    while (*len < cap) {
        n = read(fd, buf + *len, cap - *len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        *len += (size_t)n;
    }
    return 0;
}

/* The whole file, NUL-terminated, or NULL with the error reported. */
static char *read_file(struct load_ctx *ctx, size_t *len)
{
    struct stat st;
    char *buf = NULL;
    int fd = open(ctx->path, O_RDONLY | O_CLOEXEC);

    if (fd < 0) {
        report(ctx, 0, "cannot open: %s", strerror(errno));
        return NULL;
    }
    if (fstat(fd, &st) < 0)
        report(ctx, 0, "cannot stat: %s", strerror(errno));
    else if (!S_ISREG(st.st_mode))
        report(ctx, 0, "not a regular file");
    else if (st.st_size > MAX_CONF_BYTES)
        report(ctx, 0, "larger than %d bytes", MAX_CONF_BYTES);
    else if (!(buf = malloc((size_t)st.st_size + 1)))
        report(ctx, 0, "%s", strerror(errno));
    else if (read_all(fd, buf, (size_t)st.st_size, len) < 0)
        report(ctx, 0, "cannot read: %s", strerror(errno));
    if (close(fd) < 0)
        report(ctx, 0, "cannot close: %s", strerror(errno));
    if (ctx->failed) {
        free(buf);
        return NULL;
    }
    buf[*len] = '\0';
    return buf;
}

/* The file with comments blanked, or NULL with the error reported. */
static char *read_clean_text(struct load_ctx *ctx, size_t *len)
{
    const char *problem;
    char *text = read_file(ctx, len), *nul;
    int line;

    if (!text)
        return NULL;
    ctx->nlines = *len > 0 && text[*len - 1] != '\n';
    for (const char *p = text; (p = memchr(p, '\n', *len - (size_t)(p - text))); p++)
        ctx->nlines++;
    nul = memchr(text, '\0', *len);
    if (nul) {
        line = 1;
        for (const char *p = text; p < nul; p++)
            line += *p == '\n';
        report(ctx, line, "NUL byte in the file");
    } else if ((problem = blank_comments(text, &line))) {
        report(ctx, line, "%s", problem);
    }
    if (ctx->failed) {
        free(text);
        return NULL;
    }
    return text;
}

/* ---- the parser ---- */

static size_t section_opts(enum section section, cfg_opt_t *opts)
{
    size_t n = 0;

    for (size_t i = 0; i < NRULES; i++)
        if (rules[i].section == section)
            opts[n++] = (cfg_opt_t)CFG_STR(rules[i].name, rules[i].def,
                                           rules[i].def ? CFGF_NONE : CFGF_NODEFAULT);
    return n;
}

static void set_callbacks(cfg_t *cc)
{
    char name[64];

    cfg_set_error_function(cc, on_confuse_error);
    for (size_t i = 0; i < NRULES; i++) {
        snprintf(name, sizeof name, "%s%s", section_path[rules[i].section], rules[i].name);
        cfg_set_validate_func(cc, name, rules[i].section == SEC_APP_LISTEN ? on_app_listen_option
                                        : rules[i].section == SEC_SITE_TLS ? on_site_tls_option
                                        : on_option);
    }
    cfg_set_validate_func(cc, "listen", on_listen_end);
    cfg_set_validate_func(cc, "listen|tls", on_tls_end);
    cfg_set_validate_func(cc, "listen|tls|protocols", on_tls_protocols);
    cfg_set_validate_func(cc, "app|command", on_app_list);
    cfg_set_validate_func(cc, "app|environment", on_app_list);
    cfg_set_validate_func(cc, "app|listen", on_app_listen_end);
    cfg_set_validate_func(cc, "app", on_app_end);
    cfg_set_validate_func(cc, "http|error_pages", on_http_list);
    cfg_set_validate_func(cc, "http|expires", on_http_list);
    cfg_set_validate_func(cc, "http", on_http_end);
    cfg_set_validate_func(cc, "site|server_names", on_site_list);
    cfg_set_validate_func(cc, "site|error_pages", on_site_list);
    cfg_set_validate_func(cc, "site|expires", on_site_list);
    cfg_set_validate_func(cc, "site|tls", on_site_tls_end);
    cfg_set_validate_func(cc, "site", on_site_end);
    cfg_set_validate_func(cc, "status_allow", on_status_allow);
    cfg_set_validate_func(cc, "listen|proxy_from", on_proxy_from);
}

/* Options are all strings: `workers = 4` and `workers = "4"` lex the same,
 * and our own strict checks give one message style for every option. Two
 * apps of one name are refused (CFGF_NO_TITLE_DUPES), not merged. */
static cfg_t *new_parser(void)
{
    cfg_opt_t root[NRULES + 7], http[NRULES + 3], listen[NRULES + 3];
    cfg_opt_t app[NRULES + 4], app_listen[NRULES + 1], site[NRULES + 4], chat[NRULES + 1];
    cfg_opt_t tls[NRULES + 2], site_tls[NRULES + 1];
    size_t n = section_opts(SEC_ROOT, root), a = section_opts(SEC_APP, app);
    size_t h = section_opts(SEC_HTTP, http), s = section_opts(SEC_SITE, site);
    cfg_t *cc;

    http[h++] = (cfg_opt_t)CFG_STR_LIST("error_pages", NULL, CFGF_NODEFAULT);
    http[h++] = (cfg_opt_t)CFG_STR_LIST("expires", NULL, CFGF_NODEFAULT);
    http[h] = (cfg_opt_t)CFG_END();
    site[s++] = (cfg_opt_t)CFG_STR_LIST("server_names", NULL, CFGF_NODEFAULT);
    site[s++] = (cfg_opt_t)CFG_STR_LIST("error_pages", NULL, CFGF_NODEFAULT);
    site[s++] = (cfg_opt_t)CFG_STR_LIST("expires", NULL, CFGF_NODEFAULT);
    site_tls[section_opts(SEC_SITE_TLS, site_tls)] = (cfg_opt_t)CFG_END();
    site[s++] = (cfg_opt_t)CFG_SEC("tls", site_tls, CFGF_NONE);
    site[s] = (cfg_opt_t)CFG_END();
    size_t t = section_opts(SEC_LISTEN_TLS, tls), l = section_opts(SEC_LISTEN, listen);
    listen[l++] = (cfg_opt_t)CFG_STR_LIST("proxy_from", "{\"" PROXY_FROM_DEFAULT "\"}", CFGF_NONE);
    tls[t++] = (cfg_opt_t)CFG_STR_LIST("protocols", "{\"TLSv1.2\", \"TLSv1.3\"}", CFGF_NONE);
    tls[t] = (cfg_opt_t)CFG_END();
    listen[l++] = (cfg_opt_t)CFG_SEC("tls", tls, CFGF_NONE);
    listen[l] = (cfg_opt_t)CFG_END();
    app_listen[section_opts(SEC_APP_LISTEN, app_listen)] = (cfg_opt_t)CFG_END();
    chat[section_opts(SEC_CHAT, chat)] = (cfg_opt_t)CFG_END();
    app[a++] = (cfg_opt_t)CFG_STR_LIST("command", NULL, CFGF_NODEFAULT);
    app[a++] = (cfg_opt_t)CFG_STR_LIST("environment", NULL, CFGF_NODEFAULT);
    app[a++] = (cfg_opt_t)CFG_SEC("listen", app_listen, CFGF_MULTI);
    app[a] = (cfg_opt_t)CFG_END();
    root[n++] = (cfg_opt_t)CFG_STR_LIST("status_allow", STATUS_ALLOW_DEFAULT, CFGF_NONE);
    root[n++] = (cfg_opt_t)CFG_SEC("listen", listen, CFGF_MULTI);
    root[n++] = (cfg_opt_t)CFG_SEC("http", http, CFGF_NONE);
    root[n++] = (cfg_opt_t)CFG_SEC("chat", chat, CFGF_NONE);
    root[n++] = (cfg_opt_t)CFG_SEC("app", app, CFGF_MULTI | CFGF_TITLE | CFGF_NO_TITLE_DUPES);
    root[n++] = (cfg_opt_t)CFG_SEC("site", site, CFGF_MULTI | CFGF_TITLE | CFGF_NO_TITLE_DUPES);
    root[n] = (cfg_opt_t)CFG_END();
    cc = cfg_init(root, CFGF_NONE);     /* copies the arrays */
    if (cc)
        set_callbacks(cc);
    return cc;
}

static int parse_text(struct load_ctx *ctx, char *text, size_t len)
{
    cfg_t *cc = new_parser();
    FILE *fp = NULL;
    int rc = CFG_SUCCESS;

    if (!cc)
        return report(ctx, 0, "cannot set up libconfuse: %s", strerror(errno));
    free(cc->filename);
    cc->filename = strdup(ctx->path);   /* cfg_parse_fp would say "FILE" */
    if (!cc->filename)
        report(ctx, 0, "%s", strerror(errno));
    else if (len > 0 && !(fp = fmemopen(text, len, "r")))
        report(ctx, 0, "fmemopen: %s", strerror(errno));
    if (fp) {
        ctx->root = cc;
        loading = ctx;
        rc = cfg_parse_fp(cc, fp);
        loading = NULL;
        ctx->root = NULL;
        fclose(fp);                     /* read-only memory stream */
    }
    cfg_free(cc);
    if (rc != CFG_SUCCESS)
        report(ctx, 0, "syntax error");  /* only if nothing more precise came */
    return ctx->failed ? -1 : 0;
}

/* ---- whole-file checks and entry points ---- */

static int check_whole(struct load_ctx *ctx)
{
    const struct config *c = ctx->out;

    if (c->nlistens == 0)
        return report(ctx, 0, "listen: at least one listen section is required");
    if (c->status_listen.text[0]) {
        const struct listen_conf *dup = find_same_address(c, &c->status_listen);
        if (dup)
            return report(ctx, dup->line, "listen: address \"%s\" is also status_listen",
                          dup->addr.text);
    }
    for (size_t i = 0; i < c->nlistens; i++)
        if (c->listens[i].protocol == PROTO_HTTP && !is_dir(c->http.root))
            return report(ctx, ctx->root_line, "http.root: \"%s\" is not an existing directory",
                          c->http.root);
    return 0;
}

/* Store PATH as given and the absolute directory it lives in. */
static int set_paths(struct load_ctx *ctx, const char *path)
{
    struct config *c = ctx->out;
    const char *slash = strrchr(path, '/');
    char dir[PATH_MAX];

    if (snprintf(c->path, sizeof c->path, "%s", path) >= (int)sizeof c->path)
        return report(ctx, 0, "path too long");
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == path)
        snprintf(dir, sizeof dir, "/");
    else
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    if (!realpath(dir, c->dir))
        return report(ctx, 0, "directory \"%s\": %s", dir, strerror(errno));
    return 0;
}

int config_load(const char *path, struct config *cfg, char *err, size_t errlen)
{
    struct load_ctx ctx = { .path = path, .out = cfg, .err = err, .errlen = errlen };
    char *text = NULL;
    size_t len = 0;

    memset(cfg, 0, sizeof *cfg);
    if (err && errlen > 0)
        err[0] = '\0';
    text = read_clean_text(&ctx, &len);
    if (text && set_paths(&ctx, path) == 0 && find_section_lines(&ctx, text) == 0 &&
        load_defaults(&ctx) == 0 && parse_text(&ctx, text, len) == 0)
        check_whole(&ctx);
    free(text);
    free(ctx.listen_lines.v);
    free(ctx.app_lines.v);
    free(ctx.command_lines.v);
    free(ctx.site_lines.v);
    free(ctx.names_lines.v);
    free(ctx.name_lines.v);
    if (ctx.failed) {
        config_free(cfg);
        memset(cfg, 0, sizeof *cfg);
        return -1;
    }
    return 0;
}

size_t config_builtin_listens(const struct config *cfg)
{
    size_t n = 0;

    for (size_t i = 0; i < cfg->nlistens; i++)
        n += cfg->listens[i].protocol != PROTO_APP;
    return n;
}

void config_free(struct config *cfg)
{
    for (size_t i = 0; i < cfg->napps; i++) {
        free_words(cfg->apps[i].command);
        free_words(cfg->apps[i].environment);
    }
    free(cfg->apps);
    cfg->apps = NULL;
    cfg->napps = 0;
    for (size_t i = 0; i < cfg->nsites; i++)
        free_site(&cfg->sites[i]);
    free(cfg->sites);
    cfg->sites = NULL;
    cfg->nsites = 0;
    free_site_opts(&cfg->http.opts);
    free(cfg->listens);
    cfg->listens = NULL;
    cfg->nlistens = 0;
}

/* ---- lenient read of one path, for status and the control script ---- */

/* The value of a top-level `key = value` in comment-blanked text, or NULL. */
static const char *find_top_level(char *text, const char *key, char *val, size_t cap)
{
    int depth = 0;
    size_t klen = strlen(key);
    for (char *p = text; *p; p++) {
        if (*p == '{' || *p == '}') {
            depth += *p == '{' ? 1 : -1;
            continue;
        }
        if (depth != 0 || strncmp(p, key, klen) != 0 ||
            (p > text && (isalnum((unsigned char)p[-1]) || p[-1] == '_')))
            continue;
        char *q = p + klen;
        q += strspn(q, " \t");
        if (*q != '=')
            continue;
        q += 1 + strspn(q + 1, " \t");
        char quote = (*q == '"' || *q == '\'') ? *q++ : 0;
        size_t n = quote ? strcspn(q, quote == '"' ? "\"\n" : "'\n") : strcspn(q, " \t\n");
        snprintf(val, cap, "%.*s", (int)n, q);
        return val;
    }
    return NULL;
}

int config_peek_path(const char *path, const char *key, char *out, size_t outlen)
{
    struct config cfg;
    char err[512], value[PATH_MAX];
    struct load_ctx ctx = { .path = path, .out = &cfg, .err = err, .errlen = sizeof err };
    const char *def = NULL;
    size_t len;

    memset(&cfg, 0, sizeof cfg);
    for (size_t i = 0; i < NRULES; i++)
        if (rules[i].section == SEC_ROOT && strcmp(rules[i].name, key) == 0)
            def = rules[i].def;
    if (!def)
        return -1;
    char *text = read_clean_text(&ctx, &len);
    if (!text || set_paths(&ctx, path) != 0) {
        free(text);
        return -1;
    }
    const char *v = find_top_level(text, key, value, sizeof value);
    int rc = resolve_file(&ctx, v ? v : def, false, out, outlen);
    free(text);
    return rc < 0 || ctx.failed ? -1 : 0;
}
