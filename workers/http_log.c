/* http_log: a short list of open logs per worker process; a failed write is
 * reported once in the error log and the buffered lines are dropped, never
 * retried forever (a full disk must not stop the server). */
#include "workers/http_log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "server/log.h"

#define LOG_BUF (64 * 1024)

struct http_log {
    struct http_log *next;
    int fd;
    char path[PATH_MAX];
    size_t len;
    bool warned;
    char buf[LOG_BUF];
};

static struct http_log *logs;

static struct {
    time_t sec;
    char str[40];
} T;

struct http_log *http_log_open(const char *path)
{
    for (struct http_log *l = logs; l; l = l->next)
        if (strcmp(l->path, path) == 0)
            return l;
    struct http_log *l = malloc(sizeof *l);
    if (!l)
        return NULL;
    l->fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (l->fd < 0) {
        int err = errno;
        free(l);
        errno = err;
        return NULL;
    }
    snprintf(l->path, sizeof l->path, "%s", path);
    l->len = 0;
    l->warned = false;
    l->next = logs;
    logs = l;
    return l;
}

static void flush(struct http_log *l)
{
    size_t off = 0;
    while (l->fd >= 0 && off < l->len) {
        ssize_t n = write(l->fd, l->buf + off, l->len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (!l->warned)
                log_error("access log %s: %s; dropping lines", l->path,
                          n < 0 ? strerror(errno) : "short write");
            l->warned = true;
            break;
        }
        off += (size_t)n;
    }
    l->len = 0;
}

void http_log_flush_all(void)
{
    for (struct http_log *l = logs; l; l = l->next)
        flush(l);
}

char *http_log_reserve(struct http_log *l, size_t len)
{
    if (l->fd < 0 || len > LOG_BUF)
        return NULL;
    if (LOG_BUF - l->len < len)
        flush(l);
    return l->buf + l->len;
}

void http_log_commit(struct http_log *l, size_t used)
{
    l->len += used;
}

const char *http_log_time(void)
{
    time_t now = time(NULL);
    if (now != T.sec) {
        struct tm tm;
        T.sec = now;
        if (!localtime_r(&now, &tm) ||
            strftime(T.str, sizeof T.str, "[%d/%b/%Y:%H:%M:%S %z]", &tm) == 0)
            snprintf(T.str, sizeof T.str, "[-]");
    }
    return T.str;
}

void http_log_reopen_all(void)
{
    for (struct http_log *l = logs; l; l = l->next) {
        flush(l);
        int fd = open(l->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) {
            log_error("reopen access log %s: %s", l->path, strerror(errno));
            continue;           /* keep writing to the old file */
        }
        close(l->fd);
        l->fd = fd;
        l->warned = false;
    }
}

void http_log_close_all(void)
{
    while (logs) {
        struct http_log *l = logs;
        logs = l->next;
        flush(l);
        close(l->fd);
        free(l);
    }
}
