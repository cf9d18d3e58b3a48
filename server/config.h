/* config: load and validate preforkd.conf (libconfuse) into struct config.
 * Errors come back as "FILE:LINE: message" in a caller's buffer; relative
 * paths are resolved against the configuration file's directory. */
#ifndef PREFORKD_CONFIG_H
#define PREFORKD_CONFIG_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>
#include <sys/socket.h>

#include "server/cidr.h"

/* PROTO_APP: a listener of an app pool; the user's program speaks on it. */
enum proto_kind { PROTO_HTTP, PROTO_ECHO, PROTO_CHAT, PROTO_APP };

enum log_level { LOG_LVL_ERROR, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };

/* One parsed listen address. */
struct address {
    char text[300];                  /* as written, e.g. "udp:[::1]:7007" */
    int socktype;                    /* SOCK_STREAM or SOCK_DGRAM */
    struct sockaddr_storage sa;      /* AF_INET, AF_INET6 or AF_UNIX */
    socklen_t salen;
};

/* accept = "shared" (one socket, every worker) or "per-cpu" (one
 * SO_REUSEPORT socket per allowed CPU; server/percpu.c). */
enum accept_mode { ACCEPT_SHARED, ACCEPT_PER_CPU };
/* tls { } in an http listen section; server/tlsctx.c turns it into an
 * SSL_CTX when the master loads the file (paths absolute; lines for its
 * messages). */
#define TLS_PROTO_12 1u
#define TLS_PROTO_13 2u
struct tls_conf {
    bool on;
    char certificate[PATH_MAX];
    char key[PATH_MAX];
    char chain[PATH_MAX];            /* "" = none */
    char ocsp_response[PATH_MAX];    /* DER OCSP response to staple, "" = none */
    char ciphers[512];               /* TLS 1.2 cipher list (1.3: OpenSSL's) */
    char curves[256];                /* groups, ":"-separated */
    unsigned protocols;              /* TLS_PROTO_* bits, >= 1 */
    bool log_cipher;                 /* access log lines end with protocol, cipher */
    int line;                        /* the tls section's closing brace */
    int certificate_line, key_line, chain_line, ocsp_line;
};

struct ssl_ctx_st;

#define PROXY_FROM_MAX 32

struct listen_conf {
    struct address addr;
    enum proto_kind protocol;
    int backlog;
    enum accept_mode accept;
    int line;                        /* line of the listen section */
    int app;                         /* index in config.apps, or -1: built-in */
    bool proxy_protocol;             /* a PROXY v1/v2 header comes first */
    struct cidr proxy_from[PROXY_FROM_MAX];    /* who may send one */
    size_t nproxy_from;
    struct tls_conf tls;
    struct ssl_ctx_st *ssl_ctx;      /* the master's, from tls (tlsctx_load); NULL: plain */
};

/* error_pages = {"404=/404.html"}: the page for a status, a path under
 * the site's root (served with that status; missing: the built-in body). */
struct error_page {
    int status;                      /* 403, 404, 405 or 500 */
    char path[256];                  /* starts with '/' */
};

/* expires = {"*.css=7d", "/assets/=30d"}: Cache-Control and Expires for
 * the paths that end with a suffix or start with a directory. */
struct expires_rule {
    char pattern[256];               /* as written: "*SUFFIX" or "/DIR/" */
    bool prefix;                     /* "/DIR/"; else the suffix after '*' */
    long seconds;                    /* 0..315360000 */
};

/* What a site does besides serving files; the same keys in http { } (the
 * default site) and in each site NAME { }. Lists are heap arrays. */
struct site_opts {
    bool precompressed;              /* file.br / file.gz beside the file */
    bool autoindex;                  /* list a directory without its index */
    struct error_page *error_pages;  /* one per status at most */
    size_t nerror_pages;
    struct expires_rule *expires;    /* in file order: the first match wins */
    size_t nexpires;
};

struct http_conf {
    char root[PATH_MAX];             /* absolute */
    char index[256];
    char access_log[PATH_MAX];       /* absolute, or "" = off */
    int keepalive_timeout;           /* seconds */
    int header_timeout;              /* seconds */
    int send_timeout;                /* seconds without the client taking a byte */
    int max_header_size;             /* bytes */
    struct site_opts opts;           /* of the default site */
};

#define SITE_NAME_MAX 64
#define SERVER_NAME_MAX 253          /* a DNS name's longest text form */

/* One `site NAME { }` section: a virtual host, chosen by the request's Host
 * among server_names (exact, or "*.example.org" for any name under it);
 * a request that names none of them goes to the http { } site. */
struct site_conf {
    char name[SITE_NAME_MAX + 1];    /* [A-Za-z0-9_.-]{1,64}, unique */
    char **server_names;             /* lower case, NULL-ended, heap; >= 1 */
    int *server_name_lines;          /* the line of each, for messages */
    size_t nserver_names;
    char root[PATH_MAX];             /* absolute, an existing directory */
    char index[256];
    char access_log[PATH_MAX];       /* absolute, or "" = off */
    struct site_opts opts;
    int send_timeout;                /* seconds; 0 = http { }'s */
    int line;                        /* line of "site NAME {" */
    /* tls { certificate key chain }: the certificate a TLS client that asks
     * for one of server_names (SNI) gets, on every tls listener; the
     * handshake's protocols and ciphers stay the listener's. */
    struct tls_conf tls;
    struct ssl_ctx_st *ssl_ctx;      /* the master's (tlsctx_load); NULL: none */
};

/* How an app finds its listeners besides fd 3.. (see workers/app.c). */
enum app_handoff {
    HANDOFF_SYSTEMD, HANDOFF_NGINX, HANDOFF_SERVER_STARTER, HANDOFF_UNICORN,
    HANDOFF_FPM, HANDOFF_EINHORN
};
enum app_ready { READY_NOTIFY, READY_EXEC, READY_DELAY };
enum app_reload { RELOAD_SMOOTH, RELOAD_FLEET };

#define APP_NAME_MAX 32
#define STATUS_ALLOW_MAX 64

/* One `app NAME { }` section: a pool that execs the user's program. Its
 * listeners are the entries of config.listens whose .app is its index, in
 * file order (the program sees them at fd 3, 4, ... in that order). */
struct app_conf {
    char name[APP_NAME_MAX + 1];     /* [A-Za-z0-9_-]{1,32}, unique */
    char **command;                  /* argv, NULL-ended, heap; ncommand >= 1 */
    size_t ncommand;
    int workers;                     /* resolved: "auto" = online CPUs */
    bool workers_auto;
    char directory[PATH_MAX];        /* absolute, an existing directory */
    char **environment;              /* "KEY=VALUE", heap; may be NULL */
    size_t nenvironment;
    char user[64];                   /* "" = the master's user */
    enum app_handoff handoff;
    enum app_ready ready;
    int ready_delay_ms;              /* READY_DELAY */
    int ready_timeout;               /* seconds, 1..3600 */
    int watchdog;                    /* seconds, 0 = off */
    int stop_signal;                 /* signal number */
    enum app_reload reload;
    unsigned long long max_rss;      /* bytes, 0 = off */
    int line;                        /* line of "app NAME {" */
};

/* chat { }: the bus that shares rooms across instances (server/chatbus.c). */
struct chat_conf {
    char bus[300];                   /* "redis://HOST[:PORT][/DB]" as written; "" = off */
    char bus_host[64];               /* HOST resolved to a numeric address */
    int bus_port;
    int bus_db;
    int bus_ttl;                     /* s: presence and nick claims expire after */
    int bus_queue;                   /* publishes waiting for Redis before drops */
};

/* rate_limit = "100r/s burst 200": at most burst requests at once from
 * an address, then one per interval. */
struct rate_limit {
    char text[64];                   /* as written; "" = off */
    uint64_t interval_us;            /* 0 = off */
    uint32_t burst;
};

struct config {
    char path[PATH_MAX];             /* the file, as given */
    char dir[PATH_MAX];              /* its absolute directory */
    int workers;                     /* resolved: "auto" = online CPUs */
    bool workers_auto;
    int worker_connections;
    long max_requests;               /* 0 = never */
    long worker_rlimit_nofile;       /* 0 = derive from worker_connections */
    int max_connections_per_ip;      /* across the pool; 0 = off */
    struct rate_limit rate_limit;    /* per client address */
    int worker_timeout;              /* seconds */
    int graceful_timeout;            /* seconds */
    char user[64];                   /* "" = do not switch */
    char pidfile[PATH_MAX];          /* absolute */
    char control_socket[PATH_MAX];   /* absolute */
    char error_log[PATH_MAX];        /* "stderr", "syslog" or absolute path */
    enum log_level log_level;
    struct listen_conf *listens;     /* heap array, nlistens >= 1; built-in
                                        and app listeners, in file order */
    size_t nlistens;
    struct app_conf *apps;           /* heap array, may be empty */
    size_t napps;
    struct http_conf http;
    struct site_conf *sites;         /* heap array, may be empty */
    size_t nsites;
    /* Live view: the master's own HTTP status listener */
    struct address status_listen;    /* text "" = off; else TCP host:port */
    struct cidr status_allow[STATUS_ALLOW_MAX];    /* clients it answers */
    size_t nstatus_allow;
    int graceful_stop_delay;         /* s between /healthz 503 and closing */
    struct chat_conf chat;
};

/* Parse and validate PATH into *cfg. 0 on success; -1 with err filled as
 * "PATH:LINE: message" (or "PATH: message" when no line applies). On
 * failure *cfg holds nothing to free. */
int config_load(const char *path, struct config *cfg, char *err, size_t errlen);

/* Read only the top-level path option `key` (pidfile, control_socket) of a
 * file that may fail validation, resolved as config_load would: how status
 * and the control script still find a master whose file was just broken. */
int config_peek_path(const char *path, const char *key, char *out, size_t outlen);

/* Release what config_load allocated; safe on a zeroed struct. */
void config_free(struct config *cfg);

/* Parse "host:port", "[v6]:port", "*:port", "unix:/path", "udp:host:port"
 * (relative unix paths against dir). 0 or -1 with err (no FILE:LINE). */
int address_parse(const char *text, const char *dir, struct address *out,
                  char *err, size_t errlen);

/* The same socket address (type, family, address, port or path). */
bool address_equal(const struct address *a, const struct address *b);

/* Name of a protocol ("http", "echo", "chat", "app") and of a log level. */
const char *proto_name(enum proto_kind p);
const char *app_handoff_name(enum app_handoff h);
/* Listeners of the built-in pool (protocol other than PROTO_APP). */
size_t config_builtin_listens(const struct config *cfg);
const char *log_level_name(enum log_level l);

#endif
