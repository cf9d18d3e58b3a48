/* sdnotify: sd_notify(3) and sd_listen_fds(3) as the protocols describe
 * them: a datagram of KEY=VALUE lines to the socket named by NOTIFY_SOCKET
 * (a leading '@' is the abstract namespace), and fds 3.. when LISTEN_PID
 * names this process. Nothing here may block the master. */
#include "server/sdnotify.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "server/log.h"

#define SD_LISTEN_FDS_START 3
#define MAX_PASSED 64

int sdnotify_open(char *saved, size_t cap)
{
    const char *path = getenv("NOTIFY_SOCKET");
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    size_t len = path ? strlen(path) : 0;
    int fd = -1;
    snprintf(saved, cap, "%s", len < cap ? (path ? path : "") : "");
    if (len == 0 || len >= sizeof sun.sun_path || (path[0] != '/' && path[0] != '@')) {
        if (len)
            log_warn("NOTIFY_SOCKET \"%s\" is not a socket path; not notifying", path);
    } else {
        memcpy(sun.sun_path, path, len);
        if (sun.sun_path[0] == '@')
            sun.sun_path[0] = '\0';
        fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&sun, salen) != 0) {
            log_warn("NOTIFY_SOCKET %s: %s; not notifying", path, strerror(errno));
            close(fd);
            fd = -1;
        }
    }
    unsetenv("NOTIFY_SOCKET");
    return fd;
}

void sdnotify_send(int fd, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    if (fd < 0)
        return;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof msg)
        n = (int)strlen(msg);
    if (send(fd, msg, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
        log_debug("sd_notify: %s", strerror(errno));
}

int64_t sdnotify_watchdog_ms(void)
{
    const char *usec = getenv("WATCHDOG_USEC"), *pid = getenv("WATCHDOG_PID");
    if (!usec || (pid && atol(pid) != (long)getpid()))
        return 0;
    long long us = atoll(usec);
    return us > 0 ? us / 1000 : 0;
}

/* --- socket activation ---------------------------------------------------- */

static int passed[MAX_PASSED];
static size_t npassed;

void sdnotify_take_listen_fds(void)
{
    const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
    if (pid && fds && atol(pid) == (long)getpid()) {
        long n = atol(fds);
        for (long i = 0; i < n && npassed < MAX_PASSED; i++) {
            int fd = SD_LISTEN_FDS_START + (int)i;
            if (fcntl(fd, F_SETFD, FD_CLOEXEC) == 0)
                passed[npassed++] = fd;
        }
        if (npassed)
            log_info("socket activation: %zu sockets passed (LISTEN_FDS)", npassed);
    }
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
}

/* Is fd a socket of a's type bound to a's address? */
static int bound_to(int fd, const struct address *a)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int type = 0;
    socklen_t tlen = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tlen) != 0 || type != a->socktype ||
        getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return 0;
    struct address got = { .socktype = type, .sa = ss, .salen = len };
    if (ss.ss_family == AF_UNIX && a->sa.ss_family == AF_UNIX) {
        const struct sockaddr_un *x = (const void *)&ss, *y = (const void *)&a->sa;
        return strcmp(x->sun_path, y->sun_path) == 0;
    }
    return address_equal(&got, a);
}

int sdnotify_adopt(const struct address *a)
{
    for (size_t i = 0; i < npassed; i++) {
        if (!bound_to(passed[i], a))
            continue;
        int fd = passed[i];
        /* Keep the rest in fd order (sdnotify_adopt_all relies on it). */
        memmove(&passed[i], &passed[i + 1], (npassed - i - 1) * sizeof passed[0]);
        npassed--;
        return fd;
    }
    return -1;
}

int sdnotify_adopt_all(const struct address *a, int *fds, int max)
{
    int n = 0;
    size_t kept = 0;
    for (size_t i = 0; i < npassed; i++) {  /* passed[] is in fd order */
        if (n < max && bound_to(passed[i], a))
            fds[n++] = passed[i];
        else
            passed[kept++] = passed[i];
    }
    npassed = kept;
    return n;
}

void sdnotify_close_unadopted(void)
{
    for (size_t i = 0; i < npassed; i++) {
        log_warn("socket activation: passed fd %d matches no listen entry; closing it",
                 passed[i]);
        close(passed[i]);
    }
    npassed = 0;
}
