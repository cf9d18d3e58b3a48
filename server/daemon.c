/* daemon: the pidfile is flock()ed for the master's whole life, so a stale
 * file left by a killed master is told apart from a live one. The starting
 * process waits on a pipe for "ok" or an error line from the daemon. */
#include "server/daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

int mkdir_parents(const char *path, mode_t mode)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    char *slash = strrchr(buf, '/');
    if (!slash || slash == buf)
        return 0;
    *slash = '\0';
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, mode) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    if (mkdir(buf, mode) != 0 && errno != EEXIST)
        return -1;
    return 0;
}

pid_t pidfile_read(const char *path)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return 0;
    long pid = 0;
    if (fscanf(f, "%ld", &pid) != 1)
        pid = 0;
    fclose(f);
    return (pid_t)pid;
}

int pidfile_lock(const char *path, char *err, size_t errlen)
{
    if (mkdir_parents(path, 0755) != 0) {
        snprintf(err, errlen, "pidfile %s: mkdir: %s", path, strerror(errno));
        return -1;
    }
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(err, errlen, "pidfile %s: %s", path, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        close(fd);
        if (e == EWOULDBLOCK)
            snprintf(err, errlen, "already running (pid %d, pidfile %s)",
                     (int)pidfile_read(path), path);
        else
            snprintf(err, errlen, "pidfile %s: flock: %s", path, strerror(e));
        return -1;
    }
    return fd;
}

int pidfile_write(int fd, pid_t pid)
{
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%d\n", (int)pid);
    if (ftruncate(fd, 0) != 0)
        return -1;
    if (pwrite(fd, buf, (size_t)n, 0) != n)
        return -1;
    return 0;
}

void pidfile_remove(const char *path, int fd)
{
    if (fd < 0)
        return;
    unlink(path);
    close(fd);
}

/* The starter: relay the daemon's verdict and exit with it. */
static __attribute__((noreturn)) void wait_for_ready(int fd)
{
    char buf[1024];
    size_t len = 0;
    ssize_t n;
    while (len < sizeof buf - 1 &&
           ((n = read(fd, buf + len, sizeof buf - 1 - len)) > 0 ||
            (n < 0 && errno == EINTR)))
        len += n > 0 ? (size_t)n : 0;
    buf[len] = '\0';
    if (strcmp(buf, "ok\n") == 0)
        _exit(0);
    fprintf(stderr, "preforkd: %s", len ? buf : "the master exited before it was ready\n");
    if (len && buf[len - 1] != '\n')
        fputc('\n', stderr);
    _exit(1);
}

int daemonize(int *ready_fd, char *err, size_t errlen)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) {
        snprintf(err, errlen, "pipe: %s", strerror(errno));
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(err, errlen, "fork: %s", strerror(errno));
        return -1;
    }
    if (pid > 0) {
        close(p[1]);
        wait_for_ready(p[0]);
    }
    close(p[0]);
    if (setsid() < 0)
        _exit(1);
    pid = fork();       /* not a session leader: never gets a terminal */
    if (pid < 0)
        _exit(1);
    if (pid > 0)
        _exit(0);
    umask(022);
    if (chdir("/") != 0)
        _exit(1);
    *ready_fd = p[1];
    return 0;
}

void daemon_ready(int fd, const char *why)
{
    if (fd < 0)
        return;
    char buf[1024];
    int n = why ? snprintf(buf, sizeof buf, "%s\n", why) : snprintf(buf, sizeof buf, "ok\n");
    ssize_t w = write(fd, buf, (size_t)n);
    (void)w;    /* the starter may already be gone */
    close(fd);
}

int daemon_redirect_stdio(int keep_stderr)
{
    int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = 0;
    if (dup2(fd, STDIN_FILENO) < 0 || dup2(fd, STDOUT_FILENO) < 0)
        rc = -1;
    if (!keep_stderr && dup2(fd, STDERR_FILENO) < 0)
        rc = -1;
    close(fd);
    return rc;
}
