/* chatload: fan-out benchmark for the chat protocol. N clients join one
 * room; S of them send R lines/s each (under the flood limit) for D seconds,
 * each line carrying its send time; every client reads everything. Prints
 * deliveries per second and delivery latency percentiles. Bounded in time.
 * -p takes one port or several ("7001,7002,7003": instances sharing the
 * room through the chat bus); clients, senders too, go round-robin. */
#include <errno.h>
#include <stdbool.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUF 8192

struct cl {
    int fd;
    bool joined, eof;
    char nick[32];
    size_t len;
    char buf[BUF];
};

static struct cl *cls;
static int nclients = 1000, nsenders = 10, rate = 20, seconds = 5;
static int ports[16], nports;
static uint32_t *lat_us;
static size_t nlat, cap_lat, joined, cutoff;

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void die(const char *what)
{
    fprintf(stderr, "chatload: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void on_line(struct cl *c, char *line)
{
    char *t;
    if (!c->nick[0] && sscanf(line, "welcome to preforkd chat; you are %31s", c->nick) == 1) {
        c->nick[strcspn(c->nick, ";")] = '\0';
        return;
    }
    char mine[64];
    line[strcspn(line, "\r")] = '\0';
    snprintf(mine, sizeof mine, "* %s joined", c->nick);
    if (!c->joined && c->nick[0] && strstr(line, mine) &&
        strlen(strstr(line, mine)) == strlen(mine)) {
        c->joined = true;
        joined++;
    } else if ((t = strstr(line, ": t ")) && nlat < cap_lat) {
        lat_us[nlat++] = (uint32_t)(now_us() - strtoll(t + 4, NULL, 10));
    } else if (strstr(line, "error: output queue full")) {
        cutoff++;
    }
}

static void on_readable(struct cl *c)
{
    ssize_t n = read(c->fd, c->buf + c->len, BUF - 1 - c->len);
    if (n <= 0) {
        if (n == 0 || (errno != EAGAIN && errno != EINTR))
            c->eof = true;
        return;
    }
    c->len += (size_t)n;
    c->buf[c->len] = '\0';
    char *p = c->buf, *nl;
    while ((nl = strchr(p, '\n'))) {
        *nl = '\0';
        on_line(c, p);
        p = nl + 1;
    }
    c->len -= (size_t)(p - c->buf);
    memmove(c->buf, p, c->len);
    if (c->len == BUF - 1)
        c->len = 0;             /* a line longer than ours: not from us */
}

static void poll_once(int ep, int ms)
{
    struct epoll_event ev[256];
    int n = epoll_wait(ep, ev, 256, ms);
    for (int i = 0; i < n; i++) {
        struct cl *c = ev[i].data.ptr;
        if (c->eof) {
            epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
            continue;
        }
        on_readable(c);
    }
}

static void connect_all(int ep)
{
    struct sockaddr_in sin = { .sin_family = AF_INET,
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    for (int i = 0; i < nclients; i++) {
        struct cl *c = &cls[i];
        sin.sin_port = htons((uint16_t)ports[i % nports]);
        c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sin, sizeof sin) != 0)
            die("connect");
        if (write(c->fd, "/join #bench\n", 13) != 13)
            die("write");
        struct epoll_event ee = { .events = EPOLLIN, .data.ptr = c };
        if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ee) != 0)
            die("epoll_ctl");
        poll_once(ep, 0);
    }
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static void send_round(int k)
{
    char line[64];
    for (int s = 0; s < nsenders; s++) {
        int n = snprintf(line, sizeof line, "t %lld %d\n", (long long)now_us(), k);
        if (write(cls[s].fd, line, (size_t)n) != n)
            die("send");
    }
}

int main(int argc, char **argv)
{
    int opt;
    while ((opt = getopt(argc, argv, "p:c:s:r:d:")) != -1) {
        int v = atoi(optarg);
        switch (opt) {
        case 'p':
            for (char *t = strtok(optarg, ","); t && nports < 16; t = strtok(NULL, ","))
                ports[nports++] = atoi(t);
            break;
        case 'c': nclients = v; break;
        case 's': nsenders = v; break;
        case 'r': rate = v; break;
        case 'd': seconds = v; break;
        default:
            fprintf(stderr, "usage: chatload -p PORT[,PORT...] [-c clients] [-s senders] "
                            "[-r lines/s per sender] [-d seconds]\n");
            return 2;
        }
    }
    for (int i = 0; i < nports; i++)
        if (ports[i] <= 0 || ports[i] > 65535)
            nports = 0;
    if (nports == 0 || nclients < 1 || nsenders < 1 || nsenders > nclients || rate < 1 ||
        rate > 20 || seconds < 1 || seconds > 60) {
        fprintf(stderr, "chatload: bad arguments (rate at most 20: the flood limit)\n");
        return 2;
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)nclients + 64) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    size_t expect = (size_t)nsenders * (size_t)rate * (size_t)seconds * (size_t)nclients;
    cls = calloc((size_t)nclients, sizeof *cls);
    cap_lat = expect;
    lat_us = malloc(cap_lat * sizeof *lat_us);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (!cls || !lat_us || ep < 0)
        die("set-up");
    connect_all(ep);
    int64_t end = now_us() + 30 * 1000000LL;
    while (joined < (size_t)nclients && now_us() < end)
        poll_once(ep, 10);
    if (joined < (size_t)nclients) {
        fprintf(stderr, "chatload: only %zu of %d clients joined\n", joined, nclients);
        return 1;
    }
    int64_t start = now_us(), step = 1000000 / rate;
    int rounds = rate * seconds;
    for (int k = 0; k < rounds; k++) {
        while (now_us() < start + k * step)
            poll_once(ep, 1);
        send_round(k);
    }
    end = now_us() + 10 * 1000000LL;
    while (nlat < expect && now_us() < end)
        poll_once(ep, 10);
    double secs = (double)(now_us() - start) / 1e6;
    if (nlat == 0) {
        fprintf(stderr, "chatload: nothing delivered\n");
        return 1;
    }
    qsort(lat_us, nlat, sizeof *lat_us, cmp_u32);
    printf("chat fan-out: %d clients over %d instance%s in one room, "
           "%d senders x %d lines/s x %d s\n", nclients, nports, nports > 1 ? "s" : "",
           nsenders, rate, seconds);
    printf("delivered %zu of %zu lines in %.2f s: %.0f deliveries/s; cut off %zu\n",
           nlat, expect, secs, (double)nlat / secs, cutoff);
    printf("latency: p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
           lat_us[nlat / 2] / 1000.0, lat_us[nlat * 99 / 100] / 1000.0,
           lat_us[nlat - 1] / 1000.0);
    return nlat == expect ? 0 : 1;
}
