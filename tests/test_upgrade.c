/* Hot binary upgrade (SIGUSR2, preforkctl upgrade) against the real
 * daemon: upgrades under load lose nothing and move the pidfile and the
 * control socket to the new master; a new binary that cannot start, or a
 * configuration it rejects, leaves the old master serving, with the reason,
 * and without a descriptor more. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/un.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/harness.h"

static struct server srv;
static int port;
static char out[1 << 16];
static char bin[PATH_MAX];          /* the binary the daemon runs: a copy */

static pid_t master_pid(void)
{
    char *t = h_read_file(srv.pidfile);
    pid_t p = t ? (pid_t)atoi(t) : 0;
    free(t);
    return p;
}

static void setup(void)
{
    server_init(&srv);
    port = h_free_port(SOCK_STREAM);
    /* A copy, so a test can put another "binary on disk" in its place. */
    snprintf(bin, sizeof bin, "%s/preforkd", srv.dir);
    cr_assert_eq(h_run(out, sizeof out, "cp %s %s", h_bin(), bin), 0, "%s", out);
}

/* The daemon is no child of ours (and after an upgrade, no child of its
 * starter either): stop it through its pidfile, then what is left. */
static void teardown(void)
{
    pid_t p = master_pid();
    if (p > 0) {
        h_remember_tree(&srv.tree, p);
        kill(p, SIGINT);
        WAIT_UNTIL(h_pid_gone(p), 3000);
        if (srv.tree.n < sizeof srv.tree.pid / sizeof srv.tree.pid[0])
            srv.tree.pid[srv.tree.n++] = p;
    }
    server_cleanup(&srv);
}

TestSuite(upgrade, .init = setup, .fini = teardown, .timeout = 120);

/* preforkctl with the build's binary (for status, signals); `start` runs
 * the copy, which is then "the binary on disk" of the daemon. */
static int ctl(const char *args)
{
    return h_run(out, sizeof out, "PREFORKD_BIN=%s %s/etc/preforkctl -c %s %s",
                 strcmp(args, "start") == 0 ? bin : h_bin(), h_root(), srv.conf, args);
}

static void start_http(void)
{
    FILE *f = fopen(strcat(strcpy(out, srv.dir), "/www/index.html"), "w");
    cr_assert(f);
    fputs("v-index\n", f);
    fclose(f);
    server_write_conf(&srv, "workers = 2\ngraceful_timeout = 5\n"
                      "listen { address = \"127.0.0.1:%d\" protocol = \"http\" }\n"
                      "http { root = \"www\" }\n", port);
    cr_assert_eq(ctl("start"), 0, "%s", out);
}

static int fd_count(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d)); )
        n += e->d_name[0] != '.';
    if (d)
        closedir(d);
    return n;
}

Test(upgrade, ten_upgrades_under_load_lose_nothing)
{
    SKIP_UNDER_VALGRIND("ten masters started in a row under load");
    start_http();
    struct h_load l, ka;
    h_load_start(&l, port, "GET / HTTP/1.0\r\n\r\n", "v-index");
    h_load_start(&ka, port, "GET / HTTP/1.1\r\nHost: t\r\n\r\n", "v-index");
    pid_t prev = master_pid();
    for (int i = 0; i < 10; i++) {
        cr_assert_eq(ctl("upgrade"), 0, "upgrade %d: %s", i, out);
        pid_t now = master_pid();
        char want[64];
        snprintf(want, sizeof want, "upgrade: applied, master %d", (int)now);
        cr_assert(strstr(out, want), "%s", out);
        cr_assert_neq(now, prev);
        cr_assert(WAIT_UNTIL(h_pid_gone(prev), 10000), "old master %d still there", (int)prev);
        prev = now;
    }
    h_load_stop(&l);
    h_load_stop(&ka);
    cr_assert_eq(l.failed, 0, "connection per request: %ld of %ld failed, last: %s",
                 (long)l.failed, (long)(l.ok + l.failed), l.last_failure);
    cr_assert_eq(ka.failed, 0, "keep-alive: %ld of %ld failed, last: %s", (long)ka.failed,
                 (long)(ka.ok + ka.failed), ka.last_failure);
    cr_assert_gt(l.ok, 100);
    cr_assert_gt(ka.ok, 100);
    fprintf(stderr, "upgrade: 10 upgrades, %ld requests a connection each and %ld keep-alive "
            "(%ld connections closed by the server), 0 failed\n", (long)l.ok, (long)ka.ok,
            (long)ka.reconnects);
    cr_assert_eq(ctl("status --json"), 0, "%s", out);
    char want[96];
    snprintf(want, sizeof want, "\"master_pid\":%d", (int)prev);
    cr_assert(strstr(out, want), "status answers from the new master: %s", out);
    cr_assert(strstr(out, "\"last_upgrade\":{\"time\":"), "%s", out);
    cr_assert(strstr(out, "\"result\":\"ok\",\"message\":\"upgraded from master "), "%s", out);
}

/* The binary on disk now exits at once: the old master keeps serving. */
Test(upgrade, a_binary_that_exits_is_no_upgrade)
{
    SKIP_UNDER_VALGRIND("valgrind's /proc/self/exe is the real binary, not the replaced copy");
    start_http();
    pid_t m = master_pid();
    int fds = fd_count(m);
    struct h_load l;
    h_load_start(&l, port, "GET / HTTP/1.0\r\n\r\n", "v-index");
    char tmp[PATH_MAX + 8];
    snprintf(tmp, sizeof tmp, "%s.new", bin);
    FILE *f = fopen(tmp, "w");
    fputs("#!/bin/sh\necho 'broken build' >&2\nexit 3\n", f);
    fclose(f);
    cr_assert_eq(h_run(out, sizeof out, "chmod +x %s && mv %s %s", tmp, tmp, bin), 0);
    cr_assert_eq(ctl("upgrade"), 1, "%s", out);
    cr_assert(strstr(out, "upgrade: failed: the new master exited with status 3 before it "
                     "was ready"), "%s", out);
    cr_assert_eq(master_pid(), m);
    h_load_stop(&l);
    cr_assert_eq(l.failed, 0, "%ld failed, last: %s", (long)l.failed, l.last_failure);
    cr_assert_eq(fd_count(m), fds, "the old master holds as many descriptors as before");
    cr_assert(strstr(h_http_body(port, "GET / HTTP/1.0\r\n\r\n", out, sizeof out, 5000),
                     "v-index"));
}

/* A configuration the new master rejects: FILE:LINE in the verdict. */
Test(upgrade, a_rejected_configuration_is_no_upgrade)
{
    start_http();
    pid_t m = master_pid();
    server_write_conf(&srv, "workers = 0\n"
                      "listen { address = \"127.0.0.1:%d\" protocol = \"http\" }\n", port);
    cr_assert_eq(ctl("upgrade"), 1, "%s", out);
    char want[PATH_MAX + 64];
    snprintf(want, sizeof want, "upgrade: failed: %s:5: workers:", srv.conf);
    cr_assert(strstr(out, want), "want %s in %s", want, out);
    cr_assert_eq(master_pid(), m);
    cr_assert_eq(h_run(out, sizeof out, "%s status -c %s", h_bin(), srv.conf), 0, "%s", out);
    cr_assert(strstr(out, "upgrade  ") && strstr(out, ": failed: "), "%s", out);
}

/* Under systemd the old master hands MAINPID= to the new one. */
Test(upgrade, systemd_learns_the_new_main_pid)
{
    char path[PATH_MAX];
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    snprintf(path, sizeof path, "%s/notify", srv.dir);
    cr_assert_lt(strlen(path), sizeof sun.sun_path);
    memcpy(sun.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sun, sizeof sun), 0);
    setenv("NOTIFY_SOCKET", path, 1);
    start_http();
    unsetenv("NOTIFY_SOCKET");
    cr_assert_eq(ctl("upgrade"), 0, "%s", out);
    char want[64], msg[512];
    snprintf(want, sizeof want, "MAINPID=%d\n", (int)master_pid());
    bool seen = false;
    int64_t end = h_now_ms() + 5000;
    while (!seen && h_now_ms() < end) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        if (poll(&p, 1, 100) == 1) {
            ssize_t n = recv(fd, msg, sizeof msg - 1, 0);
            msg[n > 0 ? n : 0] = '\0';
            seen = strstr(msg, want) != NULL;
        }
    }
    close(fd);
    cr_assert(seen, "no %s", want);
}

/* A second SIGUSR2 while a new master is still starting is refused. */
Test(upgrade, one_at_a_time)
{
    SKIP_UNDER_VALGRIND("the refusal needs the second signal within the first's 2 s");
    const char *capp = getenv("PREFORKD_CAPP") ? getenv("PREFORKD_CAPP") : "build/capp";
    server_write_conf(&srv, "workers = 1\n"
                      "app slow { command = {\"%s\"} workers = 1 ready = \"delay 2\"\n"
                      "  listen { address = \"127.0.0.1:%d\" } }\n", capp, port);
    cr_assert_eq(ctl("start"), 0, "%s", out);
    pid_t old = master_pid();
    cr_assert_eq(kill(old, SIGUSR2), 0);
    cr_assert(WAIT_UNTIL(h_file_count(srv.log, "upgrade: started the new master") == 1, 5000));
    cr_assert_eq(kill(old, SIGUSR2), 0);
    cr_assert(WAIT_UNTIL(h_file_count(srv.log, "upgrade refused: an upgrade is already in "
                                      "flight") == 1, 5000));
    cr_assert(WAIT_UNTIL(master_pid() != old && h_pid_gone(old), 15000), "no hand-over");
    cr_assert_eq(h_file_count(srv.log, "upgrade: started the new master"), 1);
}

/* The status listener goes to the new master with the listeners (the same
 * socket: not one /healthz request refused); the old master says 503
 * draining from the start of the upgrade; the new one says ok. */
struct healthz_poll {
    int port;
    _Atomic bool stop;
    _Atomic long ok, draining, refused, other;
};

static void *poll_healthz(void *arg)
{
    struct healthz_poll *h = arg;
    char buf[1024];
    while (!h->stop) {
        int fd = h_tcp_connect(h->port);
        if (fd < 0) {
            h->refused++;
            continue;
        }
        size_t len = 0;
        (void)!write(fd, "GET /healthz HTTP/1.0\r\n\r\n", 25);
        while (len + 1 < sizeof buf && h_read_some(fd, buf + len, sizeof buf - 1 - len,
                                                   5000, &len) == 0)
            ;
        buf[len] = '\0';
        close(fd);
        if (strncmp(buf, "HTTP/1.1 200", 12) == 0)
            h->ok++;
        else if (strncmp(buf, "HTTP/1.1 503", 12) == 0 && strstr(buf, "draining"))
            h->draining++;
        else
            h->other++;
    }
    return NULL;
}

Test(upgrade, status_listener_passes_to_the_new_master)
{
    int sport = h_free_port(SOCK_STREAM);
    server_write_conf(&srv, "workers = 1\nstatus_listen = \"127.0.0.1:%d\"\n"
                      "listen { address = \"127.0.0.1:%d\" protocol = \"echo\" }\n",
                      sport, port);
    cr_assert_eq(ctl("start"), 0, "%s", out);
    pid_t old = master_pid();
    struct healthz_poll h = { .port = sport };
    pthread_t t;
    pthread_create(&t, NULL, poll_healthz, &h);
    cr_assert(WAIT_UNTIL(h.ok > 0, 5000));
    cr_assert_eq(ctl("upgrade"), 0, "%s", out);
    cr_assert(WAIT_UNTIL(h_pid_gone(old), 10000));
    long ok_before = h.ok;
    cr_assert(WAIT_UNTIL(h.ok > ok_before + 5, 5000), "the new master does not say ok");
    h.stop = true;
    pthread_join(t, NULL);
    cr_assert_eq(h.refused, 0, "%ld /healthz connections refused", (long)h.refused);
    cr_assert_eq(h.other, 0, "%ld odd answers", (long)h.other);
    cr_assert_geq(h_file_count(srv.log, "adopted the socket passed in LISTEN_FDS"), 1);
    char *body = (char *)h_http_body(sport, "GET /status.json HTTP/1.0\r\n\r\n", out,
                                     sizeof out, 5000);
    char want[64];
    snprintf(want, sizeof want, "\"master_pid\":%d,", (int)master_pid());
    cr_assert(strstr(body, want), "%.300s", body);
    cr_log_info("/healthz during an upgrade: %ld ok, %ld draining, 0 refused",
                (long)h.ok, (long)h.draining);
}

/* An IPv6 listener passes too: the new master used to set IPV6_V6ONLY on
 * the socket it was handed (bound already: EINVAL) and refused to start,
 * "passed socket [::1]:PORT: Invalid argument". */
Test(upgrade, ipv6_listeners_pass_to_the_new_master)
{
    FILE *f = fopen(strcat(strcpy(out, srv.dir), "/www/index.html"), "w");
    cr_assert(f);
    fputs("v6-index\n", f);
    fclose(f);
    int echo_port = h_free_port(SOCK_STREAM);
    server_write_conf(&srv, "workers = 1\ngraceful_timeout = 5\n"
                      "listen { address = \"[::1]:%d\" protocol = \"http\" }\n"
                      "listen { address = \"[::1]:%d\" protocol = \"echo\" }\n"
                      "http { root = \"www\" }\n", port, echo_port);
    cr_assert_eq(ctl("start"), 0, "%s", out);
    pid_t old = master_pid();
    cr_assert_eq(ctl("upgrade"), 0, "%s", out);
    cr_assert(strstr(out, "upgrade: applied, master "), "%s", out);
    cr_assert_neq(master_pid(), old);
    cr_assert_eq(h_run(out, sizeof out, "curl -gsS --max-time 10 http://[::1]:%d/", port), 0,
                 "%s", out);
    cr_assert_str_eq(out, "v6-index\n");
}
