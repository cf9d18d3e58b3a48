/* latprobe: the bystander of `make check-attacks` (tests/attacks.sh). One
 * new-connection GET at a time against HOST:PORT PATH for SECONDS seconds,
 * each timed from connect() to the end of the response; prints
 * "n N fail F p50 P p99 P max M" (milliseconds) at the end.
 *
 *   build/latprobe HOST PORT PATH SECONDS */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define IO_TIMEOUT_MS 5000      /* a probe slower than this counts as failed */
#define MAX_SAMPLES   200000

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int wait_fd(int fd, short ev, double deadline)
{
    struct pollfd p = { .fd = fd, .events = ev };
    int left = (int)(deadline - now_ms());
    return left > 0 && poll(&p, 1, left) == 1 ? 0 : -1;
}

/* One GET on a fresh connection, read until the server closes (the
 * request says Connection: close). 0 or -1. */
static int probe_once(const struct sockaddr_in *sa, const char *req, size_t reqlen)
{
    double deadline = now_ms() + IO_TIMEOUT_MS;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int rc = -1;
    if (connect(fd, (const struct sockaddr *)sa, sizeof *sa) != 0 && errno != EINPROGRESS)
        goto out;
    if (wait_fd(fd, POLLOUT, deadline) != 0 || send(fd, req, reqlen, MSG_NOSIGNAL) != (ssize_t)reqlen)
        goto out;
    char buf[16384];
    size_t total = 0;
    for (;;) {
        if (wait_fd(fd, POLLIN, deadline) != 0)
            goto out;
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n == 0)
            break;
        if (n < 0 && errno != EAGAIN && errno != EINTR)
            goto out;
        if (n > 0) {
            if (total == 0 && (n < 12 || memcmp(buf + 9, "200", 3) != 0))
                goto out;
            total += (size_t)n;
        }
    }
    rc = total > 0 ? 0 : -1;
out:
    close(fd);
    return rc;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: latprobe HOST PORT PATH SECONDS\n");
        return 2;
    }
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2])) };
    if (inet_pton(AF_INET, argv[1], &sa.sin_addr) != 1) {
        fprintf(stderr, "latprobe: bad address %s\n", argv[1]);
        return 2;
    }
    char req[512];
    int reqlen = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: %s\r\n"
                          "Connection: close\r\n\r\n", argv[3], argv[1]);
    static double lat[MAX_SAMPLES];
    size_t n = 0, fail = 0;
    double end = now_ms() + atof(argv[4]) * 1e3;
    while (now_ms() < end && n < MAX_SAMPLES) {
        double t0 = now_ms();
        if (probe_once(&sa, req, (size_t)reqlen) == 0)
            lat[n++] = now_ms() - t0;
        else
            fail++;
        usleep(10000);          /* about 100 probes a second at most */
    }
    qsort(lat, n, sizeof *lat, cmp_double);
    printf("n %zu fail %zu p50 %.2f p99 %.2f max %.2f\n", n, fail,
           n ? lat[n / 2] : -1.0, n ? lat[(n * 99) / 100 - (n >= 100 ? 0 : 0)] : -1.0,
           n ? lat[n - 1] : -1.0);
    return 0;
}
