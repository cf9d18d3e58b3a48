/* config: load and validate preforkd.conf (libconfuse) into struct config.
 * Errors come back as "FILE:LINE: message" in a caller's buffer; relative
 * paths are resolved against the configuration file's directory. */
#ifndef PREFORKD_CONFIG_H
#define PREFORKD_CONFIG_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

enum proto_kind { PROTO_HTTP, PROTO_ECHO, PROTO_CHAT };

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
};

struct http_conf {
    char root[PATH_MAX];             /* absolute */
    char index[256];
    char access_log[PATH_MAX];       /* absolute, or "" = off */
    int keepalive_timeout;           /* seconds */
    int header_timeout;              /* seconds */
    int max_header_size;             /* bytes */
};

struct config {
    char path[PATH_MAX];             /* the file, as given */
    char dir[PATH_MAX];              /* its absolute directory */
    int workers;                     /* resolved: "auto" = online CPUs */
    bool workers_auto;
    int worker_connections;
    long max_requests;               /* 0 = never */
    int worker_timeout;              /* seconds */
    int graceful_timeout;            /* seconds */
    char user[64];                   /* "" = do not switch */
    char pidfile[PATH_MAX];          /* absolute */
    char control_socket[PATH_MAX];   /* absolute */
    char error_log[PATH_MAX];        /* "stderr", "syslog" or absolute path */
    enum log_level log_level;
    struct listen_conf *listens;     /* heap array, nlistens >= 1 */
    size_t nlistens;
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

/* Name of a protocol ("http", "echo", "chat") and of a log level. */
const char *proto_name(enum proto_kind p);
const char *log_level_name(enum log_level l);

#endif
