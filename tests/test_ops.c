/* Integration tests of operations: SIGHUP reload (good, bad, listeners
 * added and removed, zero failures under load), log reopening, dropping
 * privileges, and which descriptors a worker and the master hold. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>

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

TestSuite(ops, .init = setup, .fini = teardown, .timeout = 90);

static void write_echo_conf(int workers, const char *extra)
{
    server_write_conf(&srv, "workers = %d\ngraceful_timeout = 5\n%s\n"
                      "listen { address = \"127.0.0.1:%d\" protocol = \"echo\" }\n",
                      workers, extra, port);
}

static double json_field(const char *key)
{
    return h_status_number(&srv, key);
}

static int echo_on(int p)
{
    int fd = h_tcp_connect(p);
    if (fd < 0)
        return -1;
    unsigned char b[32] = "0123456789abcdef0123456789abcdef", r[32];
    int rc = h_echo_exchange(fd, b, sizeof b, r, sizeof b, 5000);
    close(fd);
    return rc == 0 && memcmp(b, r, sizeof b) == 0 ? 0 : -1;
}

static void reload_and_wait(double reloads_before)
{
    cr_assert_eq(kill(srv.pid, SIGHUP), 0);
    cr_assert(WAIT_UNTIL(json_field("reloads") == reloads_before + 1, 5000), "no verdict");
    /* Callers read the verdict from out. */
    cr_assert_eq(h_run(out, sizeof out, "%s status --json -c %s 2>/dev/null", h_bin(), srv.conf), 0);
}

Test(ops, reload_good_file_new_generation)
{
    write_echo_conf(2, "");
    cr_assert_eq(server_start(&srv, NULL), 0);
    pid_t old[8];
    cr_assert(WAIT_UNTIL(h_children(&srv, srv.pid, old, 8) == 2, 5000));
    write_echo_conf(3, "");
    reload_and_wait(0);
    cr_assert(strstr(out, "\"result\":\"ok\""), "%s", out);
    cr_assert_eq(json_field("generation"), 2);
    for (int i = 0; i < 2; i++)
        cr_assert(WAIT_UNTIL(h_pid_gone(old[i]), 8000), "old worker %d still running", old[i]);
    cr_assert(WAIT_UNTIL(json_field("idle") == 3 && json_field("workers_count") == 3, 5000));
    cr_assert_eq(echo_on(port), 0);
}

Test(ops, reload_bad_file_keeps_serving)
{
    write_echo_conf(2, "");
    cr_assert_eq(server_start(&srv, NULL), 0);
    write_echo_conf(2, "# comment\nworker_connections = 0");
    reload_and_wait(0);
    char want[PATH_MAX + 128];
    snprintf(want, sizeof want, "\"result\":\"rejected\",\"message\":\"%s:8: worker_connections",
             srv.conf);
    cr_assert(strstr(out, want), "want %s in %s", want, out);
    cr_assert_eq(json_field("generation"), 1);
    cr_assert_eq(echo_on(port), 0);
    cr_assert_eq(h_run(out, sizeof out, "%s status -c %s", h_bin(), srv.conf), 0);
    cr_assert(strstr(out, "rejected: "), "%s", out);
}

Test(ops, reload_adds_and_removes_listeners)
{
    int port2 = h_free_port(SOCK_STREAM);
    write_echo_conf(2, "");
    cr_assert_eq(server_start(&srv, NULL), 0);
    server_write_conf(&srv, "workers = 2\ngraceful_timeout = 5\n"
                      "listen { address = \"127.0.0.1:%d\" protocol = \"echo\" }\n", port2);
    reload_and_wait(0);
    cr_assert(strstr(out, "\"result\":\"ok\""), "%s", out);
    cr_assert_eq(echo_on(port2), 0, "new listener not served");
    cr_assert(WAIT_UNTIL(h_tcp_connect(port) < 0, 8000), "removed listener still open");
}

struct load { atomic_int stop, ok, failed; int port; };

static void *echo_load(void *arg)
{
    struct load *l = arg;
    while (!atomic_load(&l->stop)) {
        if (echo_on(l->port) == 0)
            atomic_fetch_add(&l->ok, 1);
        else
            atomic_fetch_add(&l->failed, 1);
    }
    return NULL;
}

/* 20 reloads in a row under connection-per-request load: nothing fails. */
/* 20 reloads under echo load: no exchange fails. */
static void echo_reloads_under_load(void)
{
    write_echo_conf(2, "");
    cr_assert_eq(server_start(&srv, NULL), 0);
    static struct load l;
    l = (struct load){ .port = port };
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&th[i], NULL, echo_load, &l);
    for (int r = 0; r < 20; r++) {
        write_echo_conf(2 + r % 2, "");
        reload_and_wait(r);
    }
    int before = atomic_load(&l.ok);
    cr_assert(WAIT_UNTIL(atomic_load(&l.ok) > before + 50, 5000));
    atomic_store(&l.stop, 1);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    cr_log_info("20 reloads: %d exchanges ok, %d failed", l.ok, l.failed);
    cr_assert_eq(atomic_load(&l.failed), 0, "%d of %d exchanges failed", l.failed, l.ok + l.failed);
    cr_assert_eq(json_field("generation"), 21);
}

/* logrotate: rename, SIGUSR1, and both master and workers write to the new
 * file. */
Test(ops, usr1_reopens_logs_in_master_and_workers)
{
    write_echo_conf(2, "");
    cr_assert_eq(server_start(&srv, NULL), 0);
    char rotated[PATH_MAX + 8];
    snprintf(rotated, sizeof rotated, "%s.1", srv.log);
    cr_assert_eq(rename(srv.log, rotated), 0);
    cr_assert_eq(kill(srv.pid, SIGUSR1), 0);
    cr_assert(WAIT_UNTIL(h_file_count(srv.log, "master") >= 1 &&
                         h_file_count(srv.log, "worker 0") >= 1 &&
                         h_file_count(srv.log, "worker 1") >= 1, 5000),
              "new log lacks lines: %s", h_read_file(srv.log));
    int old_lines = h_file_count(rotated, "\n");
    kill(srv.pid, SIGTTIN);
    cr_assert(WAIT_UNTIL(h_file_count(srv.log, "worker count now 3") == 1, 3000));
    cr_assert_eq(h_file_count(rotated, "\n"), old_lines, "old file still written");
}

static int proc_uid(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    char *t = h_read_file(path);
    char *u = t ? strstr(t, "\nUid:") : NULL;
    int uid = u ? atoi(u + 5) : -1;
    free(t);
    return uid;
}

Test(ops, workers_drop_to_user)
{
    if (geteuid() != 0)
        cr_skip_test("needs root to switch users");
    struct passwd *pw = getpwnam("nobody");
    cr_assert_not_null(pw);
    int low = 0;
    for (int p = 1000; p < 1024 && !low; p++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)p),
                                   .sin_addr.s_addr = htonl(0x7f000001) };
        if (bind(fd, (struct sockaddr *)&sin, sizeof sin) == 0)
            low = p;
        close(fd);
    }
    cr_assert_gt(low, 0, "no free port below 1024");
    port = low;
    chmod(srv.dir, 0755);       /* workers as nobody reopen the log in it */
    write_echo_conf(2, "user = \"nobody\"");
    cr_assert_eq(server_start(&srv, NULL), 0);
    pid_t w[4];
    cr_assert(WAIT_UNTIL(h_children(&srv, srv.pid, w, 4) == 2, 5000));
    cr_assert(WAIT_UNTIL(proc_uid(w[0]) == (int)pw->pw_uid, 3000), "uid %d", proc_uid(w[0]));
    cr_assert_eq(proc_uid(w[1]), (int)pw->pw_uid);
    cr_assert_eq(proc_uid(srv.pid), 0, "the master keeps root for reloads");
    cr_assert_eq(echo_on(low), 0, "privileged port not served");
    cr_assert_eq(h_file_count(srv.log, "running as root without"), 0);
    /* Workers running as nobody can still reopen the log after rotation. */
    char rotated[PATH_MAX + 8];
    snprintf(rotated, sizeof rotated, "%s.1", srv.log);
    rename(srv.log, rotated);
    kill(srv.pid, SIGUSR1);
    cr_assert(WAIT_UNTIL(h_file_count(srv.log, "worker 1") >= 1, 3000));
    cr_assert(WAIT_UNTIL(h_file_count(srv.log, "worker 0") >= 1, 3000));
    cr_assert_eq(h_file_count(srv.log, "Permission denied"), 0);
    cr_assert_eq(h_file_count(rotated, "Permission denied"), 0);
}

Test(ops, root_without_user_warns)
{
    if (geteuid() != 0)
        cr_skip_test("only meaningful as root");
    write_echo_conf(1, "");
    cr_assert_eq(server_start(&srv, NULL), 0);
    cr_assert_eq(h_file_count(srv.log, "running as root without `user`"), 1);
}

/* What a descriptor of pid points to: "socket:[..]", "pipe:[..]", a path. */
static int list_fds(pid_t pid, char links[][256], int cap)
{
    char dir[64];
    snprintf(dir, sizeof dir, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL && n < cap) {
        if (de->d_name[0] == '.')
            continue;
        char p[512];
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        ssize_t len = readlink(p, links[n], 255);
        if (len > 0) {
            links[n][len] = '\0';
            n++;
        }
    }
    if (d)
        closedir(d);
    return n;
}

static int count_prefix(char links[][256], int n, const char *prefix)
{
    int c = 0;
    for (int i = 0; i < n; i++)
        c += strncmp(links[i], prefix, strlen(prefix)) == 0;
    return c;
}

/* A worker holds its listeners, two pipes, one epoll, the log and stdio:
 * nothing of the master's (pidfile, signalfd, control socket, siblings'
 * pipes). */
Test(ops, worker_holds_only_its_descriptors)
{
    SKIP_UNDER_VALGRIND("valgrind holds descriptors of its own in the process");
    int uport = h_free_port(SOCK_DGRAM);
    server_write_conf(&srv, "workers = 3\n"
                      "listen { address = \"127.0.0.1:%d\" protocol = \"echo\" }\n"
                      "listen { address = \"udp:127.0.0.1:%d\" protocol = \"echo\" }\n",
                      port, uport);
    cr_assert_eq(server_start(&srv, NULL), 0);
    pid_t w[4];
    cr_assert(WAIT_UNTIL(h_children(&srv, srv.pid, w, 4) == 3, 5000));
    static char links[64][256];
    int n = list_fds(w[2], links, 64);
    int sockets = count_prefix(links, n, "socket:"), pipes = count_prefix(links, n, "pipe:");
    int epolls = count_prefix(links, n, "anon_inode:[eventpoll]");
    int logs = 0, stdio = 0;
    for (int i = 0; i < n; i++) {
        logs += strcmp(links[i], srv.log) == 0;
        stdio += strcmp(links[i], srv.out) == 0 || strcmp(links[i], "/dev/null") == 0;
    }
    for (int i = 0; i < n; i++)
        cr_log_info("worker fd -> %s", links[i]);
    cr_assert_eq(sockets, 2, "listeners only");
    cr_assert_eq(pipes, 2, "its own status and command pipes only");
    cr_assert_eq(epolls, 1);
    cr_assert_eq(logs, 1);
    cr_assert_eq(sockets + pipes + epolls + logs + stdio, n, "unexpected descriptors");
}

/* Every descriptor the master opened is close-on-exec. */
Test(ops, master_descriptors_are_cloexec)
{
    SKIP_UNDER_VALGRIND("valgrind holds descriptors of its own in the process");
    write_echo_conf(2, "");
    cr_assert_eq(server_start(&srv, NULL), 0);
    char dir[64];
    snprintf(dir, sizeof dir, "/proc/%d/fdinfo", (int)srv.pid);
    DIR *d = opendir(dir);
    cr_assert_not_null(d);
    struct dirent *de;
    int checked = 0;
    while ((de = readdir(d)) != NULL) {
        int fd = atoi(de->d_name);
        if (de->d_name[0] == '.' || fd <= 2)
            continue;
        char p[512];
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        char *info = h_read_file(p);
        char *flags = info ? strstr(info, "flags:") : NULL;
        long f = flags ? strtol(flags + 6, NULL, 8) : 0;
        free(info);
        cr_assert(f & 02000000, "master fd %d lacks O_CLOEXEC (flags %lo)", fd, f);
        checked++;
    }
    closedir(d);
    cr_assert_geq(checked, 6);
}

/* --- HTTP under reloads ------------------------------------------------- */

static void http_conf(int workers)
{
    server_write_conf(&srv, "workers = %d\ngraceful_timeout = 5\nlog_level = \"info\"\n"
                      "listen { address = \"127.0.0.1:%d\" protocol = \"http\" }\n"
                      "http { root = \"www\" }\n", workers, port);
}

/* 20 reloads under one kind of load, after `done` earlier reloads. */
static void reloads_under_http_load(bool keepalive, int done)
{
    static struct h_load l;
    const char *what = keepalive ? "keep-alive" : "connection per request";
    h_load_start_n(&l, 4, port, keepalive ? "GET /1k.bin HTTP/1.1\r\nHost: t\r\n\r\n"
                   : "GET /1k.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", "");
    for (int r = 0; r < 20; r++) {
        http_conf(2 + r % 2);
        reload_and_wait(done + r);
        cr_assert(strstr(out, "\"result\":\"ok\""), "%s", out);
    }
    long before = l.ok;
    cr_assert(WAIT_UNTIL(l.ok > before + 100, 5000));
    h_load_stop(&l);
    cr_log_info("20 reloads, %s: %ld requests ok, %ld failed, %ld connections closed by the server",
                what, (long)l.ok, (long)l.failed, (long)l.reconnects);
    cr_assert_eq(l.failed, 0, "%s: %ld of %ld requests failed; last: %s", what, (long)l.failed,
                 (long)(l.ok + l.failed), l.last_failure);
    cr_assert_eq(json_field("generation"), done + 21);
}

/* 20 reloads under HTTP keep-alive load, then 20 under a connection per
 * request: no request fails. */
static void http_reloads_under_load(void)
{
    char file[PATH_MAX];
    snprintf(file, sizeof file, "%s/www/1k.bin", srv.dir);
    FILE *f = fopen(file, "w");
    for (int i = 0; i < 1024; i++)
        fputc('a' + i % 26, f);
    fclose(f);
    http_conf(2);
    cr_assert_eq(server_start(&srv, NULL), 0);
    reloads_under_http_load(true, 0);
    reloads_under_http_load(false, 20);
    /* A drain command and a listener wake-up in one epoll batch once made
     * the worker accept() on the listener it had just closed. */
    cr_assert_eq(h_file_count(srv.log, "accept:"), 0, "a worker logged an accept error");
}

/* The three reload-under-load scenarios, one after the other in one test:
 * run side by side as separate tests, two of them at a time froze this
 * 2-core VM for up to a minute (see tests/bench/RESULTS.md, Tests). */
Test(ops, twenty_reloads_under_load_lose_nothing)
{
    SKIP_UNDER_VALGRIND("twenty generations of workers under valgrind outlast the test's time limit");
    echo_reloads_under_load();
    cr_assert_geq(server_stop(&srv, SIGTERM, 10000), 0, "echo server did not stop");
    http_reloads_under_load();
}

/* Reloads faster than drains: each old generation is held draining by an
 * active echo client; beyond 3 x workers draining, the oldest are stopped
 * once they have drained for 2 s. */
struct dripper { int fd; };

static void *drip_thread(void *arg)
{
    struct dripper *d = arg;
    char c = 'd', r;
    /* Never quiet for 500 ms, so the echo drain never sees it idle. */
    while (h_write_full(d->fd, &c, 1) == 0 && h_read_full(d->fd, &r, 1, 3000) == 0)
        h_sleep_ms(100);
    return NULL;
}

/* One echo worker whose generations stay draining for a minute. */
static void start_drain_target(void)
{
    signal(SIGPIPE, SIG_IGN);       /* clients of stopped workers see EPIPE */
    write_echo_conf(1, "graceful_timeout = 60");
    cr_assert_eq(server_start(&srv, NULL), 0);
}

/* The clients of generations from + 1 .. to were cut off: their worker was
 * stopped, so their drip threads ended. */
static void expect_cut_off(pthread_t *th, int from, int to)
{
    for (int r = from; r < to; r++)
        cr_assert(WAIT_UNTIL(pthread_tryjoin_np(th[r], NULL) == 0, 5000),
                  "client %d of a stopped worker still served", r);
}

/* n reloads, each old generation (one worker) held draining by a dripping
 * client; returns when the first reload was sent. */
static int64_t hold_generations(int n, struct dripper *d, pthread_t *th)
{
    int64_t t0 = 0;
    for (int r = 0; r < n; r++) {
        d[r].fd = h_tcp_connect(port);          /* served by generation r + 1 */
        char c = 'x', back;
        cr_assert_eq(h_write_full(d[r].fd, &c, 1), 0);
        cr_assert_eq(h_read_full(d[r].fd, &back, 1, 3000), 0);
        pthread_create(&th[r], NULL, drip_thread, &d[r]);
        if (r == 0)
            t0 = h_now_ms();
        reload_and_wait(r);
        cr_assert(WAIT_UNTIL(json_field("idle") + json_field("busy") >= 1, 3000));
    }
    return t0;
}

static void release_generations(int n, int stopped, struct dripper *d, pthread_t *th)
{
    for (int r = 0; r < n; r++)
        shutdown(d[r].fd, SHUT_RDWR);
    for (int r = 0; r < n; r++) {
        if (r >= stopped)
            pthread_join(th[r], NULL);
        close(d[r].fd);
    }
}

Test(ops, draining_workers_are_capped)
{
    SKIP_UNDER_VALGRIND("the reloads must outpace the drains, which valgrind's start-up time prevents");
    start_drain_target();
    static struct dripper d[6];
    pthread_t th[6];
    int64_t t0 = hold_generations(6, d, th);
    /* None is stopped before the oldest has drained for 2 s: a burst of
     * reloads must not cut off requests a moment's drain would finish. */
    double draining = json_field("draining");
    int64_t age = h_now_ms() - t0;
    cr_assert(draining == 6 || age >= 2000, "%.0f draining after %lld ms", draining,
              (long long)age);
    cr_assert(WAIT_UNTIL(json_field("draining") == 3, 5000), "draining %.0f",
              json_field("draining"));
    /* The oldest went: their clients' connections are closed. */
    expect_cut_off(th, 0, 3);
    cr_assert_geq(h_file_count(srv.log, "stopping the oldest"), 3);
    cr_assert_eq(json_field("generation"), 7);
    release_generations(6, 3, d, th);
}

/* A reload storm: beyond 16 x workers draining, the oldest go at once,
 * however young. */
Test(ops, draining_hard_cap_applies_at_once)
{
    SKIP_UNDER_VALGRIND("the reloads must outpace the drains, which valgrind's start-up time prevents");
    start_drain_target();
    static struct dripper d[18];
    pthread_t th[18];
    int64_t t0 = hold_generations(18, d, th);
    double draining = json_field("draining");
    int64_t age = h_now_ms() - t0;
    cr_log_info("18 reloads in %lld ms: %.0f draining", (long long)age, draining);
    cr_assert_leq(draining, 16);
    /* Before 2 s only the hard cap can have stopped anyone. */
    if (age < 2000)
        cr_assert_eq(h_file_count(srv.log, "(cap 16)"), 2);
    expect_cut_off(th, 0, 2);
    /* Then, at 2 s, the soft cap: down to 3 x workers. */
    cr_assert(WAIT_UNTIL(json_field("draining") == 3, 5000), "draining %.0f",
              json_field("draining"));
    expect_cut_off(th, 2, 15);
    release_generations(18, 15, d, th);
}
