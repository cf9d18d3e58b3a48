/* log: timestamped, levelled lines with pid and role, written whole with a
 * single write() so that master and workers sharing a file never interleave
 * within a line. The level is checked before anything is formatted. */
#include "server/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

enum log_target { TARGET_STDERR, TARGET_SYSLOG, TARGET_FILE };

static struct {
    enum log_target target;
    enum log_level level;
    int fd;
    char path[4096];
    char role[32];
} lg = { TARGET_STDERR, LOG_LVL_INFO, STDERR_FILENO, "", "master" };

static const int syslog_prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };

static int open_log_file(const char *path)
{
    return open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
}

int log_open(const char *target, enum log_level level, char *err, size_t errlen)
{
    lg.level = level;
    if (strcmp(target, "stderr") == 0) {
        lg.target = TARGET_STDERR;
        lg.fd = STDERR_FILENO;
    } else if (strcmp(target, "syslog") == 0) {
        lg.target = TARGET_SYSLOG;
        lg.fd = -1;
        openlog("preforkd", LOG_PID | LOG_NDELAY, LOG_DAEMON);
    } else {
        int fd = open_log_file(target);
        if (fd < 0) {
            snprintf(err, errlen, "error_log %s: %s", target, strerror(errno));
            return -1;
        }
        if (lg.target == TARGET_FILE && lg.fd >= 0)
            close(lg.fd);
        lg.target = TARGET_FILE;
        lg.fd = fd;
        snprintf(lg.path, sizeof lg.path, "%s", target);
    }
    return 0;
}

int log_reopen(void)
{
    if (lg.target != TARGET_FILE)
        return 0;
    int fd = open_log_file(lg.path);
    if (fd < 0) {
        log_error("reopen %s: %s (keeping the old file)", lg.path, strerror(errno));
        return -1;
    }
    /* dup2 keeps the descriptor number, so stderr redirections stay valid. */
    if (dup2(fd, lg.fd) < 0) {
        close(fd);
        return -1;
    }
    close(fd);
    return 0;
}

void log_set_role(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(lg.role, sizeof lg.role, fmt, ap);
    va_end(ap);
}

int log_enabled(enum log_level level)
{
    return level <= lg.level;
}

int log_fd(void)
{
    return lg.fd;
}

static size_t format_prefix(char *buf, size_t cap, enum log_level level)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(buf, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    int m = snprintf(buf + n, cap - n, ".%03ldZ [%s] %s %d: ",
                     ts.tv_nsec / 1000000, log_level_name(level), lg.role,
                     (int)getpid());
    return n + (m > 0 ? (size_t)m : 0);
}

void log_vmsg(enum log_level level, const char *fmt, va_list ap)
{
    if (!log_enabled(level))
        return;
    int saved_errno = errno;
    char line[2048];
    if (lg.target == TARGET_SYSLOG) {
        int n = snprintf(line, sizeof line, "%s: ", lg.role);
        vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
        syslog(syslog_prio[level], "%s", line);
        errno = saved_errno;
        return;
    }
    size_t n = format_prefix(line, sizeof line, level);
    int m = vsnprintf(line + n, sizeof line - n - 1, fmt, ap);
    n += (m < 0) ? 0 : ((size_t)m < sizeof line - n - 1 ? (size_t)m : sizeof line - n - 2);
    line[n++] = '\n';
    /* A failed log write has nowhere to be reported; ignore it. */
    ssize_t w = write(lg.fd, line, n);
    (void)w;
    errno = saved_errno;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vmsg(level, fmt, ap);
    va_end(ap);
}
