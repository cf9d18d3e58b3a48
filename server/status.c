/* status: client side of the control socket. The master answers every
 * request itself, so status works when every worker is busy or stopped. */
#include "server/status.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "server/config.h"

#define CONTROL_TIMEOUT_MS 5000

static int connect_unix(const char *path)
{
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof sun.sun_path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    strcpy(sun.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&sun, sizeof sun) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static int read_answer(int fd, char *buf, size_t cap)
{
    size_t len = 0;
    struct pollfd pfd = { .fd = fd, .events = POLLIN };
    for (;;) {
        int r = poll(&pfd, 1, CONTROL_TIMEOUT_MS);
        if (r == 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        if (r < 0 && errno != EINTR)
            return -1;
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n < 0 && errno != EINTR)
            return -1;
        if (n == 0 || len + (size_t)(n > 0 ? n : 0) >= cap - 1) {
            len += n > 0 ? (size_t)n : 0;
            break;
        }
        len += n > 0 ? (size_t)n : 0;
    }
    buf[len] = '\0';
    return 0;
}

int control_request(const char *sock_path, const char *line, char *buf, size_t cap)
{
    int fd = connect_unix(sock_path);
    if (fd < 0)
        return -1;
    size_t len = strlen(line);
    int rc = -1;
    if (write(fd, line, len) == (ssize_t)len && write(fd, "\n", 1) == 1)
        rc = read_answer(fd, buf, cap);
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

int status_client(const char *conf_path, enum status_format fmt)
{
    struct config cfg;
    char err[1024];
    if (config_load(conf_path, &cfg, err, sizeof err) != 0) {
        fprintf(stderr, "preforkd: %s\n", err);
        return 1;
    }
    static const char *const cmds[] = { "status", "status json", "status prometheus" };
    static char answer[4 << 20];
    int rc = control_request(cfg.control_socket, cmds[fmt], answer, sizeof answer);
    int e = errno;
    if (rc != 0) {
        fprintf(stderr, "preforkd: %s: %s\n", cfg.control_socket, strerror(e));
        config_free(&cfg);
        return (e == ENOENT || e == ECONNREFUSED) ? 3 : 1;
    }
    config_free(&cfg);
    fputs(answer, stdout);
    return strncmp(answer, "error", 5) == 0 ? 1 : 0;
}
