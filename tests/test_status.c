/* Integration tests of status reporting: workers' pipes to the master, the
 * scoreboard, the control socket (text, JSON, Prometheus), the watchdog on
 * stuck workers, max_requests recycling, and control-socket abuse. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "server/status.h"
#include "tests/harness.h"

static struct server srv;
static int port;
static char out[1 << 16];

static void setup(void)
{
    server_init(&srv);
    port = h_free_port(SOCK_STREAM);
}

static void teardown(void) { server_cleanup(&srv); }

TestSuite(status, .init = setup, .fini = teardown, .timeout = 60);

static void start_echo(int workers, const char *extra)
{
    server_write_conf(&srv, "workers = %d\ngraceful_timeout = 5\n%s\n"
                      "listen { address = \"127.0.0.1:%d\" protocol = \"echo\" }\n",
                      workers, extra, port);
    cr_assert_eq(server_start(&srv, NULL), 0, "server did not become ready");
}

static int status(const char *flags)
{
    return h_run(out, sizeof out, "%s status -c %s %s", h_bin(), srv.conf, flags);
}

static double json_field(const char *key)
{
    return h_status_number(&srv, key);
}

/* One echo exchange of n bytes on a new connection; 0 when intact. */
static int echo_once(size_t n)
{
    unsigned char buf[4096], back[4096];
    memset(buf, 'e', n);
    int fd = h_tcp_connect(port);
    if (fd < 0)
        return -1;
    int rc = h_echo_exchange(fd, buf, n, back, n, 5000);
    close(fd);
    return rc == 0 && memcmp(buf, back, n) == 0 ? 0 : -1;
}

Test(status, table_json_and_prometheus)
{
    start_echo(4, "");
    cr_assert_eq(status(""), 0, "%s", out);
    cr_assert(strstr(out, "preforkd 0.1.0  master"), "%s", out);
    cr_assert(strstr(out, "generation 1"), "%s", out);
    cr_assert(strstr(out, "workers  4:"), "%s", out);
    cr_assert(strstr(out, "SLOT  PID"), "%s", out);
    cr_assert_eq(status("--json"), 0);
    cr_assert(h_json_valid(out), "invalid JSON: %s", out);
    cr_assert_eq(h_json_number(out, "workers_count"), 4);
    cr_assert_eq(h_json_number(out, "master_pid"), srv.pid);
    cr_assert_eq(status("--prometheus"), 0);
    const char *bad = NULL;
    cr_assert(h_prometheus_valid(out, &bad), "bad exposition line: %.80s", bad);
    cr_assert(strstr(out, "preforkd_workers{state=\"idle\"} 4"), "%s", out);
}

/* Totals equal what the client sent; workers show busy while it holds
 * connections. */
Test(status, totals_match_client_and_busy_shows)
{
    start_echo(4, "");
    int fds[8];
    for (int i = 0; i < 8; i++)
        fds[i] = h_tcp_connect(port);
    size_t sent = 0;
    for (int round = 0; round < 50; round++) {
        for (int i = 0; i < 8; i++) {
            unsigned char b[1000], r[1000];
            memset(b, 'a' + i, sizeof b);
            cr_assert_eq(h_echo_exchange(fds[i], b, sizeof b, r, sizeof b, 5000), 0);
            sent += sizeof b;
        }
    }
    cr_assert(WAIT_UNTIL(json_field("in") == (double)sent &&
                         json_field("out") == (double)sent, 4000),
              "totals in %.0f out %.0f, sent %zu", json_field("in"), json_field("out"), sent);
    cr_assert_eq(json_field("active"), 8);
    cr_assert_geq(json_field("busy"), 1);
    cr_assert_eq(json_field("accepted"), 8);
    for (int i = 0; i < 8; i++)
        close(fds[i]);
    cr_assert(WAIT_UNTIL(json_field("busy") == 0 && json_field("idle") == 4, 4000));
}

/* A stopped worker is shown unresponsive, then killed and replaced within
 * worker_timeout + 2 s. */
Test(status, stuck_worker_unresponsive_then_replaced)
{
    start_echo(2, "worker_timeout = 4");
    pid_t w[4];
    cr_assert(WAIT_UNTIL(h_children(&srv, srv.pid, w, 4) == 2, 5000));
    cr_assert_eq(kill(w[0], SIGSTOP), 0);
    int64_t t0 = h_now_ms();
    cr_assert(WAIT_UNTIL(json_field("unresponsive") == 1, 5000), "not shown unresponsive");
    cr_assert(WAIT_UNTIL(h_pid_gone(w[0]), 7000), "stuck worker not killed");
    pid_t now[4];
    cr_assert(WAIT_UNTIL(h_children(&srv, srv.pid, now, 4) == 2 &&
                         json_field("idle") == 2, 3000));
    cr_assert_leq(h_now_ms() - t0, 4000 + 2000 + 500, "took %lld ms",
                  (long long)(h_now_ms() - t0));
    cr_assert_eq(h_file_count(srv.log, "unresponsive: no heartbeat"), 1);
    cr_assert_eq(echo_once(100), 0);
}

/* The whole machine stalls (a VM paused on its host) for longer than
 * worker_timeout: master and workers stop together. When it thaws, the
 * master's own late wake-up shows the silence was not the workers' fault, and
 * none is killed as unresponsive. */
Test(status, machine_stall_kills_no_worker)
{
    start_echo(2, "worker_timeout = 3");
    pid_t w[4];
    cr_assert(WAIT_UNTIL(h_children(&srv, srv.pid, w, 4) == 2 && json_field("idle") == 2, 5000));
    int ctl = h_unix_connect(srv.sock);     /* connected now: no wait later */
    cr_assert_geq(ctl, 0);
    cr_assert_eq(kill(srv.pid, SIGSTOP), 0);
    cr_assert_eq(kill(w[0], SIGSTOP), 0);
    cr_assert_eq(kill(w[1], SIGSTOP), 0);
    h_sleep_ms(4500);               /* the stall itself: longer than worker_timeout */
    cr_assert_eq(kill(srv.pid, SIGCONT), 0);
    /* An answer proves the master ran its loop (and its watchdog) before the
     * workers thaw; the control socket directly, as the status client may
     * run under valgrind and take longer than worker_timeout to start. */
    char answer[256];
    cr_assert_eq(h_write_full(ctl, "status\n", 7), 0);
    cr_assert_eq(h_read_full(ctl, answer, 4, 5000), 0);
    close(ctl);
    cr_assert_eq(kill(w[0], SIGCONT), 0);
    cr_assert_eq(kill(w[1], SIGCONT), 0);
    cr_assert(WAIT_UNTIL(json_field("idle") == 2, 4000));
    cr_assert(!h_pid_gone(w[0]) && !h_pid_gone(w[1]), "a worker was killed after the stall");
    cr_assert_eq(h_file_count(srv.log, "unresponsive"), 0);
    cr_assert_geq(h_file_count(srv.log, "master held up for"), 1);
    cr_assert_eq(echo_once(100), 0);
}

/* max_requests: workers recycle, no exchange fails, restarts stay 0. */
Test(status, max_requests_recycles_without_loss)
{
    start_echo(2, "max_requests = 40");
    for (int i = 0; i < 400; i++)
        cr_assert_eq(echo_once(64), 0, "exchange %d failed", i);
    cr_assert_geq(h_file_count(srv.log, "recycling"), 4);
    cr_assert(WAIT_UNTIL(json_field("workers_count") == 2 && json_field("idle") == 2, 4000));
    cr_assert_eq(json_field("restarts"), 0);
    cr_assert(WAIT_UNTIL(json_field("requests") == 400, 3000), "requests %.0f",
              json_field("requests"));
}

/* The accept queue comes from the kernel: with every worker stopped, waiting
 * clients show in it. */
Test(status, listen_queue_counts_waiting_clients)
{
    start_echo(2, "worker_timeout = 60");
    pid_t w[4];
    cr_assert(WAIT_UNTIL(h_children(&srv, srv.pid, w, 4) == 2, 5000));
    kill(w[0], SIGSTOP);
    kill(w[1], SIGSTOP);
    int fds[5];
    for (int i = 0; i < 5; i++)
        fds[i] = h_tcp_connect(port);      /* completes in the kernel */
    cr_assert(WAIT_UNTIL(json_field("queue") == 5, 3000), "queue %.0f", json_field("queue"));
    cr_assert_eq(status(""), 0);
    cr_assert(strstr(out, "queue 5/511"), "%s", out);
    kill(w[0], SIGCONT);
    kill(w[1], SIGCONT);
    cr_assert(WAIT_UNTIL(json_field("queue") == 0, 3000));
    for (int i = 0; i < 5; i++)
        close(fds[i]);
}

static ssize_t read_all(int fd, char *buf, size_t cap)
{
    size_t len = 0;
    while (len < cap - 1) {
        char c;
        if (h_read_full(fd, &c, 1, 6000) != 0)
            break;
        buf[len++] = c;
    }
    buf[len] = '\0';
    return (ssize_t)len;
}

Test(status, control_socket_survives_garbage)
{
    start_echo(1, "");
    struct stat st;
    cr_assert_eq(stat(srv.sock, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0600, "mode %o", st.st_mode & 0777);
    /* Garbage: an error line. */
    int fd = h_unix_connect(srv.sock);
    cr_assert_eq(h_write_full(fd, "\x01\xff garbage\n", 11), 0);
    char buf[512];
    read_all(fd, buf, sizeof buf);
    cr_assert(strncmp(buf, "error: unknown command", 22) == 0, "%s", buf);
    close(fd);
    /* An endless line: cut off with an error, not buffered forever. */
    fd = h_unix_connect(srv.sock);
    static char big[100000];
    memset(big, 'x', sizeof big);
    (void)!write(fd, big, sizeof big);
    read_all(fd, buf, sizeof buf);
    cr_assert(strstr(buf, "longer than"), "%s", buf);
    close(fd);
    /* A client that connects and never sends nor reads: dropped later;
     * meanwhile status answers. */
    int idle = h_unix_connect(srv.sock);
    cr_assert_geq(idle, 0);
    cr_assert_eq(status(""), 0, "%s", out);
    cr_assert_eq(echo_once(10), 0);
    cr_assert(WAIT_UNTIL(h_file_count(srv.log, "did not finish") == 1, 8000));
    close(idle);
}

/* Only root or the master's own user may ask; others are refused even if
 * the socket's mode were opened up. Needs root to switch users. */
Test(status, non_owner_refused)
{
    if (geteuid() != 0)
        cr_skip_test("needs root to act as another user");
    struct passwd *nobody = getpwnam("nobody");
    cr_assert_not_null(nobody);
    start_echo(1, "");
    chmod(srv.sock, 0666);                  /* only SO_PEERCRED stands */
    chmod(srv.dir, 0755);
    char run[128];
    snprintf(run, sizeof run, "%s/run", srv.dir);
    chmod(run, 0755);
    pid_t pid = fork();
    if (pid == 0) {
        signal(SIGPIPE, SIG_IGN);   /* the master may close before our write */
        if (setgid(nobody->pw_gid) != 0 || setuid(nobody->pw_uid) != 0)
            _exit(10);
        int fd = h_unix_connect(srv.sock);
        if (fd < 0)
            _exit(11);
        (void)!write(fd, "status\n", 7);
        char buf[256];
        read_all(fd, buf, sizeof buf);
        _exit(strstr(buf, "permission denied") ? 0 : 12);
    }
    int st;
    waitpid(pid, &st, 0);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %d", WEXITSTATUS(st));
    cr_assert_eq(h_file_count(srv.log, "refused uid"), 1);
}

/* 64 workers: the master answers quickly (the figure is logged; the bound
 * here only catches pathologies, the target is checked in make bench). The
 * time is the master's, on the control socket: the client's own start-up
 * (seconds under valgrind) is not the master's to answer for. */
Test(status, answers_with_64_workers)
{
    start_echo(64, "");
    cr_assert(WAIT_UNTIL(json_field("idle") == 64, 10000));
    cr_assert_eq(status(""), 0);
    cr_assert(strstr(out, "workers  64:"), "%s", out);
    int fd = h_unix_connect(srv.sock);
    cr_assert_geq(fd, 0);
    int64_t t0 = h_now_ms();
    cr_assert_eq(h_write_full(fd, "status\n", 7), 0);
    char buf[16384];
    ssize_t n = read_all(fd, buf, sizeof buf);
    int64_t dt = h_now_ms() - t0;
    close(fd);
    cr_assert(n > 0 && strstr(buf, "workers  64:"), "%s", buf);
    cr_log_info("status with 64 workers: %lld ms on the control socket", (long long)dt);
    cr_assert_lt(dt, 1000);
}

/* A worker that writes garbage or an oversized frame into its status pipe
 * is logged and replaced; the master and the other workers keep serving. */
static void corrupt_pipe_replaced(const char *kind, const char *expect)
{
    char env[] = "PREFORKD_FAULT_HOOKS=1";
    char *envv[] = { env, NULL };
    server_write_conf(&srv, "workers = 2\n"
                      "listen { address = \"127.0.0.1:%d\" protocol = \"echo\" }\n", port);
    cr_assert_eq(server_start(&srv, envv), 0);
    pid_t before[4];
    cr_assert(WAIT_UNTIL(h_children(&srv, srv.pid, before, 4) == 2, 5000));
    char line[64];
    snprintf(line, sizeof line, "fault %s 0", kind);
    cr_assert_eq(control_request(srv.sock, line, out, sizeof out), 0);
    cr_assert(strstr(out, "ok: fault"), "%s", out);
    cr_assert(WAIT_UNTIL(h_file_count(srv.log, expect) == 1, 3000), "%s", h_read_file(srv.log));
    cr_assert(WAIT_UNTIL(json_field("idle") == 2, 5000));
    /* The killed worker still counts as idle until it is reaped, and may
     * even be alive for a moment: wait for the replacement itself. */
    pid_t after[4] = { 0 };
    bool replaced = WAIT_UNTIL(h_children(&srv, srv.pid, after, 4) == 2 &&
                               ((after[0] != before[0] && after[0] != before[1]) ||
                                (after[1] != before[0] && after[1] != before[1])), 3000);
    cr_assert(replaced, "no new worker: %d %d", (int)after[0], (int)after[1]);
    cr_assert_eq(echo_once(100), 0);
}

Test(status, worker_garbage_frame_replaced)
{
    corrupt_pipe_replaced("garbage", "bad frame type 65535");
}

Test(status, worker_oversized_frame_replaced)
{
    corrupt_pipe_replaced("oversized", "frame length 60000 exceeds");
}

/* A reload's drained workers are retirements, not restarts; a killed
 * worker is a restart, shown as the last one. */
Test(status, restarts_apart_from_retirements)
{
    start_echo(2, "");
    cr_assert_eq(kill(srv.pid, SIGHUP), 0);
    cr_assert(WAIT_UNTIL(h_status_number(&srv, "retirements") == 2 &&
                         h_status_number(&srv, "idle") == 2, 8000));
    cr_assert_eq(h_run(out, sizeof out, "%s status -c %s", h_bin(), srv.conf), 0);
    cr_assert(strstr(out, "restarts 0   retired 2 (last: pid "), "%s", out);
    cr_assert(strstr(out, " reload, "), "%s", out);
    cr_assert(!strstr(out, "restarts 0 (last"), "%s", out);
    pid_t w[4];
    cr_assert(WAIT_UNTIL(h_children(&srv, srv.pid, w, 4) == 2, 5000));
    kill(w[0], SIGKILL);
    cr_assert(WAIT_UNTIL(h_status_number(&srv, "restarts") == 1, 5000));
    cr_assert_eq(h_run(out, sizeof out, "%s status -c %s", h_bin(), srv.conf), 0);
    char want[64];
    snprintf(want, sizeof want, "restarts 1 (last: pid %d signal 9, ", (int)w[0]);
    cr_assert(strstr(out, want), "%s", out);
    cr_assert_eq(h_run(out, sizeof out, "%s status --json -c %s", h_bin(), srv.conf), 0);
    cr_assert(strstr(out, "\"last_retired\":{") && strstr(out, "\"reason\":\"reload\""), "%s", out);
    snprintf(want, sizeof want, "\"last_restart\":{\"pid\":%d,", (int)w[0]);
    cr_assert(strstr(out, want), "%s", out);
}

