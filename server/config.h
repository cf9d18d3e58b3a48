/* config: load and validate preforkd.conf (libconfuse) into struct config.
 * Errors come back as "FILE:LINE: message" in a caller's buffer; relative
 * paths are resolved against the configuration file's directory. */
#ifndef PREFORKD_CONFIG_H
#define PREFORKD_CONFIG_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

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

struct listen_conf {
    struct address addr;
    enum proto_kind protocol;
    int backlog;
    int line;                        /* line of the listen section */
    int app;                         /* index in config.apps, or -1: built-in */
};

struct http_conf {
    char root[PATH_MAX];             /* absolute */
    char index[256];
    char access_log[PATH_MAX];       /* absolute, or "" = off */
    int keepalive_timeout;           /* seconds */
    int header_timeout;              /* seconds */
    int max_header_size;             /* bytes */
};

/* How an app finds its listeners besides fd 3.. (see workers/app.c). */
enum app_handoff {
    HANDOFF_SYSTEMD, HANDOFF_NGINX, HANDOFF_SERVER_STARTER, HANDOFF_UNICORN,
    HANDOFF_FPM, HANDOFF_EINHORN
};
enum app_ready { READY_NOTIFY, READY_EXEC, READY_DELAY };
enum app_reload { RELOAD_SMOOTH, RELOAD_FLEET };

#define APP_NAME_MAX 32

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

struct config {
    char path[PATH_MAX];             /* the file, as given */
    char dir[PATH_MAX];              /* its absolute directory */
    int workers;                     /* resolved: "auto" = online CPUs */
    bool workers_auto;
    int worker_connections;
    long max_requests;               /* 0 = never */
    long worker_rlimit_nofile;       /* 0 = derive from worker_connections */
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
