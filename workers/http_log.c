/* http_log: one buffer per worker process; a failed write is reported once
 * in the error log and the buffered lines are dropped, never retried
 * forever (a full disk must not stop the server). */
#include "workers/http_log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "server/log.h"

#define LOG_BUF (64 * 1024)

static struct {
    int fd;
    char path[PATH_MAX];
    size_t len;
    bool warned;
    time_t time_sec;
    char time_str[40];
    char buf[LOG_BUF];
} L = { .fd = -1 };

int http_log_open(const char *path)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    snprintf(L.path, sizeof L.path, "%s", path);
    L.fd = fd;
    L.len = 0;
    return 0;
}

bool http_log_enabled(void)
{
    return L.fd >= 0;
}

void http_log_flush(void)
{
    size_t off = 0;
    while (L.fd >= 0 && off < L.len) {
        ssize_t n = write(L.fd, L.buf + off, L.len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (!L.warned)
                log_error("access log %s: %s; dropping lines", L.path,
                          n < 0 ? strerror(errno) : "short write");
            L.warned = true;
            break;
        }
        off += (size_t)n;
    }
    L.len = 0;
}

char *http_log_reserve(size_t len)
{
    if (L.fd < 0 || len > LOG_BUF)
        return NULL;
    if (LOG_BUF - L.len < len)
        http_log_flush();
    return L.buf + L.len;
}

void http_log_commit(size_t used)
{
    L.len += used;
}

const char *http_log_time(void)
{
    time_t now = time(NULL);
    if (now != L.time_sec) {
        struct tm tm;
        L.time_sec = now;
        if (!localtime_r(&now, &tm) ||
            strftime(L.time_str, sizeof L.time_str, "[%d/%b/%Y:%H:%M:%S %z]", &tm) == 0)
            snprintf(L.time_str, sizeof L.time_str, "[-]");
    }
    return L.time_str;
}

int http_log_reopen(void)
{
    if (L.fd < 0)
        return 0;
    http_log_flush();
    int fd = open(L.path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        log_error("reopen access log %s: %s", L.path, strerror(errno));
        return -1;          /* keep writing to the old file */
    }
    close(L.fd);
    L.fd = fd;
    L.warned = false;
    return 0;
}

void http_log_close(void)
{
    if (L.fd < 0)
        return;
    http_log_flush();
    close(L.fd);
    L.fd = -1;
}
