/* The system calls an HTTP worker makes per request, traced with strace on
 * the real worker: issue 5 asks for "no per-request syscalls that can be
 * avoided", and a change that adds one (a setsockopt per connection, an
 * epoll_ctl per request, a read that only finds EAGAIN) fails here long
 * before a benchmark would show it. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/harness.h"

#define REQUESTS 20

static struct server srv;
static int port;
static pid_t tracer = -1;

static void setup(void)
{
    server_init(&srv);
    port = h_free_port(SOCK_STREAM);
}

static void teardown(void)
{
    if (tracer > 0) {
        kill(tracer, SIGTERM);
        waitpid(tracer, NULL, 0);
        tracer = -1;
    }
    server_cleanup(&srv);
}

TestSuite(syscalls, .init = setup, .fini = teardown, .timeout = 60);

/* strace every syscall of pid into path; it dies with the test process. */
static void trace_start(pid_t pid, const char *path)
{
    char pidarg[32];
    snprintf(pidarg, sizeof pidarg, "%d", (int)pid);
    tracer = fork();
    cr_assert_geq(tracer, 0);
    if (tracer == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0)
            dup2(devnull, STDERR_FILENO);
        execlp("strace", "strace", "-qq", "-o", path, "-p", pidarg, (char *)NULL);
        _exit(127);
    }
}

static void trace_stop(void)
{
    cr_assert_eq(kill(tracer, SIGTERM), 0);
    cr_assert_eq(waitpid(tracer, NULL, 0), tracer);
    tracer = -1;
}

/* One request on fd and its whole response (the file is 1 KiB). */
static void exchange(int fd, const char *target, bool close_after)
{
    char req[256], resp[4096];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: t\r\n%s\r\n", target,
                     close_after ? "Connection: close\r\n" : "");
    cr_assert_eq(h_write_full(fd, req, (size_t)n), 0);
    size_t got = 0;
    const char *head_end = NULL;
    while (!head_end || got < (size_t)(head_end + 4 - resp) + 1024) {
        cr_assert_eq(h_read_some(fd, resp + got, sizeof resp - 1 - got, 5000, &got), 0,
                     "no response to %s", target);
        resp[got] = '\0';
        head_end = strstr(resp, "\r\n\r\n");
    }
    cr_assert(strncmp(resp, "HTTP/1.1 200 ", 13) == 0, "%s: %.40s", target, resp);
}

static void one_close_request(const char *target)
{
    int fd = h_tcp_connect(port);
    cr_assert_geq(fd, 0);
    exchange(fd, target, true);
    close(fd);
}

/* Send marker requests until the trace shows one (strace is attached). */
static bool trace_sees(const char *path, const char *marker)
{
    char *text = h_read_file(path);
    bool seen = text && strstr(text, marker);
    free(text);
    return seen;
}

struct tally {
    int calls;          /* every syscall line */
    int conn_ctl;       /* epoll_ctl on an accepted socket */
    int reads_eagain;   /* read()s that found nothing */
};

/* Count the syscall lines of text between the lines holding `from` and
 * `to` (both exclusive). Accepted fds are learnt from accept4's results. */
static struct tally tally_between(const char *text, const char *from, const char *to)
{
    struct tally t = { 0 };
    bool conn_fd[4096] = { false };
    const char *p = strstr(text, from), *end = strstr(text, to);
    cr_assert(p && end && p < end, "markers %s, %s in the trace", from, to);
    p = strchr(p, '\n') + 1;
    end = memrchr(text, '\n', (size_t)(end - text));
    for (; p && p < end; p = strchr(p, '\n') + 1) {
        char line[512];
        int fd;
        snprintf(line, sizeof line, "%.*s", (int)strcspn(p, "\n"), p);
        t.calls++;
        /* accept4(5, {sa_family=AF_INET, sin_port=htons(..), ...}, [..], ..) = 7:
         * the address has parentheses of its own, so read the result after
         * the last " = ". */
        const char *res = strrchr(line, '=');
        if (strncmp(line, "accept4(", 8) == 0 && res && sscanf(res, "= %d", &fd) == 1 &&
            fd >= 0 && fd < 4096)
            conn_fd[fd] = true;
        else if (sscanf(line, "epoll_ctl(%*d, EPOLL_CTL_%*[A-Z], %d,", &fd) == 1 &&
                 fd >= 0 && fd < 4096 && conn_fd[fd])
            t.conn_ctl++;
        else if (strncmp(line, "read(", 5) == 0 && strstr(line, "EAGAIN"))
            t.reads_eagain++;
    }
    return t;
}

/* Connection: close costs accept4, read, writev, close and a share of
 * epoll_pwait: the request came with the accept (TCP_DEFER_ACCEPT), so the
 * socket never joins epoll. Keep-alive costs read and writev per request
 * and one epoll_ctl per connection. */
Test(syscalls, per_request_costs)
{
    SKIP_UNDER_VALGRIND("strace would trace valgrind's own syscalls, not the worker's");
    char page[1024], path[PATH_MAX];
    memset(page, 'x', sizeof page);
    snprintf(path, sizeof path, "%s/www/f", srv.dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(page, 1, sizeof page, f), sizeof page);
    fclose(f);
    server_write_conf(&srv, "workers = 1\n"
                      "listen { address = \"127.0.0.1:%d\" protocol = \"http\" }\n"
                      "http { root = \"www\" }\n", port);
    cr_assert_eq(server_start(&srv, NULL), 0, "server did not become ready");
    pid_t worker;
    cr_assert(WAIT_UNTIL(h_children(&srv, srv.pid, &worker, 1) == 1, 5000));

    char trace[PATH_MAX];
    snprintf(trace, sizeof trace, "%s/trace", srv.dir);
    trace_start(worker, trace);
    int64_t deadline = h_now_ms() + 10000;
    do
        one_close_request("/f?begin");
    while (!trace_sees(trace, "/f?begin") && h_now_ms() < deadline);
    cr_assert(trace_sees(trace, "/f?begin"), "strace attached to the worker");

    for (int i = 0; i < REQUESTS; i++)
        one_close_request("/f?close");
    one_close_request("/f?mid");
    int fd = h_tcp_connect(port);
    cr_assert_geq(fd, 0);
    for (int i = 0; i < REQUESTS; i++)
        exchange(fd, "/f?keep-alive", false);
    close(fd);
    one_close_request("/f?end");
    cr_assert(WAIT_UNTIL(trace_sees(trace, "/f?end"), 5000));
    trace_stop();

    char *text = h_read_file(trace);
    cr_assert_not_null(text);
    struct tally c = tally_between(text, "/f?begin", "/f?mid");
    struct tally k = tally_between(text, "/f?mid", "/f?end");
    cr_log_info("close: %d calls for %d requests; keep-alive: %d calls for %d", c.calls,
                REQUESTS + 1, k.calls, REQUESTS + 1);
    cr_expect_eq(c.conn_ctl, 0, "epoll_ctl on %d of %d Connection: close sockets", c.conn_ctl,
                 REQUESTS + 1);
    /* Per Connection: close request at most epoll_pwait, accept4, read,
     * send, close and the accept4 that finds the queue empty. */
    int close_max = 6 * (REQUESTS + 1) + 4;
    cr_expect_leq(c.calls, close_max, "%d syscalls for %d Connection: close requests", c.calls,
                  REQUESTS + 1);
    /* Per keep-alive request epoll_pwait, read, send; besides, mid's send and
     * close, the keep-alive socket's accept4, epoll_ctl, EOF and close, end's
     * accept4, and a few accept4s that find the queue empty. */
    int keep_alive_max = 3 * REQUESTS + 12;
    cr_expect_eq(k.conn_ctl, 1, "epoll_ctl on the keep-alive socket: %d", k.conn_ctl);
    cr_expect_leq(k.calls, keep_alive_max, "%d syscalls for %d keep-alive requests", k.calls,
                  REQUESTS);
    cr_expect_eq(c.reads_eagain + k.reads_eagain, 0, "reads that found nothing");
    if (c.conn_ctl || c.calls > close_max || k.conn_ctl != 1 || k.calls > keep_alive_max ||
        c.reads_eagain + k.reads_eagain)
        fprintf(stderr, "%s\n", text);
    free(text);
}
