/* preforkd_notify.h: for programs run as preforkd app workers. One call
 * tells the master about this worker over its native status pipe:
 *     preforkd_notify("READY=1");
 *     preforkd_notify("STATUS=warming cache\nREQUESTS=120\nACTIVE=3");
 * Header-only, no dependencies; a no-op outside preforkd. */
#ifndef PREFORKD_NOTIFY_APP_H
#define PREFORKD_NOTIFY_APP_H

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Send one message: KEY=VALUE lines (READY=1, STATUS=text, WATCHDOG=1,
 * STOPPING=1, REQUESTS=n, ACTIVE=n). One write() of at most PIPE_BUF bytes,
 * so messages from several processes never interleave. Returns 0 when
 * sent, 1 when not under preforkd, -1 with errno (EMSGSIZE: too long;
 * EAGAIN: the pipe is full, the message is lost). */
static inline int preforkd_notify(const char *msg)
{
    const char *env = getenv("PREFORKD_NOTIFY_FD");
    char buf[PIPE_BUF];
    size_t n = strlen(msg);
    char *end;
    long fd;

    if (!env || !*env)
        return 1;
    fd = strtol(env, &end, 10);
    if (*end || fd < 0 || fd > INT_MAX) {
        errno = EBADF;
        return -1;
    }
    if (n + 1 > sizeof buf) {
        errno = EMSGSIZE;
        return -1;
    }
    memcpy(buf, msg, n);
    if (n == 0 || buf[n - 1] != '\n')
        buf[n++] = '\n';
    for (;;) {
        ssize_t w = write((int)fd, buf, n);
        if (w == (ssize_t)n)
            return 0;
        if (w < 0 && errno == EINTR)
            continue;
        if (w >= 0)
            errno = EIO;            /* a pipe write of <= PIPE_BUF is whole */
        return -1;
    }
}

#endif
