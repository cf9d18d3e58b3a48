/* idleconns: benchmark helper for `make bench` (tests/bench.sh). Opens N
 * TCP connections to HOST:PORT, sends one keep-alive GET PATH on each and
 * reads the whole response, so the server has allocated its per-connection
 * state; then prints "ready N" on stdout and holds every connection open,
 * idle, until SIGTERM/SIGINT or HOLD seconds have passed. Before exiting it
 * prints "open K" (connections the server has not closed meanwhile).
 *
 *   build/idleconns HOST PORT PATH N HOLD
 *
 * Exit 0 when all N exchanges succeeded; otherwise "failed after K of N",
 * the reason on stderr, and exit 1 at once. */
#include <errno.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define IO_TIMEOUT_S 5

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static int connect_to(const struct sockaddr_in *sa)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = { .tv_sec = IO_TIMEOUT_S };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, (const struct sockaddr *)sa, sizeof *sa) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Reads one response: headers, then Content-Length bytes of body.
 * 0 on a complete 2xx response, -1 otherwise (with a message). */
static int read_response(int fd, size_t idx)
{
    char buf[16384];
    size_t have = 0;
    char *end = NULL;
    while (!end) {
        if (have == sizeof buf - 1) {
            fprintf(stderr, "idleconns: conn %zu: header too large\n", idx);
            return -1;
        }
        ssize_t n = read(fd, buf + have, sizeof buf - 1 - have);
        if (n <= 0) {
            fprintf(stderr, "idleconns: conn %zu: read: %s\n", idx,
                    n == 0 ? "closed by server" : strerror(errno));
            return -1;
        }
        have += (size_t)n;
        buf[have] = '\0';
        end = strstr(buf, "\r\n\r\n");
    }
    int status = 0;
    if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1 || status < 200 || status > 299) {
        fprintf(stderr, "idleconns: conn %zu: bad status line: %.40s\n", idx, buf);
        return -1;
    }
    long long clen = 0;
    for (char *line = strstr(buf, "\r\n"); line && line < end; line = strstr(line + 2, "\r\n"))
        if (strncasecmp(line + 2, "Content-Length:", 15) == 0)
            clen = atoll(line + 2 + 15);
    long long body = (long long)(have - (size_t)(end + 4 - buf));
    while (body < clen) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n <= 0) {
            fprintf(stderr, "idleconns: conn %zu: body: %s\n", idx,
                    n == 0 ? "closed by server" : strerror(errno));
            return -1;
        }
        body += n;
    }
    return 0;
}

/* Connections the server has not closed: no readable EOF/error pending. */
static size_t count_open(const int *fds, size_t n)
{
    size_t open = 0;
    for (size_t i = 0; i < n; i++) {
        struct pollfd p = { .fd = fds[i], .events = POLLIN | POLLRDHUP };
        if (poll(&p, 1, 0) == 0)
            open++;
    }
    return open;
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: idleconns HOST PORT PATH N HOLD_SECONDS\n");
        return 2;
    }
    struct sockaddr_in sa = { .sin_family = AF_INET,
                              .sin_port = htons((uint16_t)atoi(argv[2])) };
    if (inet_pton(AF_INET, argv[1], &sa.sin_addr) != 1) {
        fprintf(stderr, "idleconns: bad IPv4 address %s\n", argv[1]);
        return 2;
    }
    const char *path = argv[3];
    long n = atol(argv[4]), hold = atol(argv[5]);
    if (n <= 0 || hold <= 0) {
        fprintf(stderr, "idleconns: N and HOLD must be positive\n");
        return 2;
    }
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    signal(SIGALRM, on_signal);
    signal(SIGPIPE, SIG_IGN);

    char req[1024];
    int reqlen = snprintf(req, sizeof req,
                          "GET %s HTTP/1.1\r\nHost: %s:%s\r\n"
                          "Connection: keep-alive\r\n\r\n", path, argv[1], argv[2]);
    int *fds = calloc((size_t)n, sizeof *fds);
    if (!fds || reqlen <= 0 || (size_t)reqlen >= sizeof req) {
        fprintf(stderr, "idleconns: out of memory or path too long\n");
        return 2;
    }
    alarm((unsigned)hold);
    size_t nfds = 0, ok = 0;        /* opened; completed an exchange */
    for (long i = 0; i < n && !stop; i++) {
        int fd = connect_to(&sa);
        if (fd < 0) {
            fprintf(stderr, "idleconns: conn %ld: connect: %s\n", i, strerror(errno));
            break;
        }
        fds[nfds++] = fd;
        if (write(fd, req, (size_t)reqlen) != reqlen) {
            fprintf(stderr, "idleconns: conn %ld: write: %s\n", i, strerror(errno));
            break;
        }
        if (read_response(fd, (size_t)i) != 0)
            break;
        ok++;
    }
    if (ok != (size_t)n) {
        printf("failed after %zu of %ld\n", ok, n);
        return 1;
    }
    printf("ready %zu\n", ok);
    fflush(stdout);
    while (!stop)
        pause();
    printf("open %zu\n", count_open(fds, nfds));
    fflush(stdout);
    for (size_t i = 0; i < nfds; i++)
        close(fds[i]);
    free(fds);
    return 0;
}
