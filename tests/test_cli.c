/* Integration tests of the command line: -t, -v, refusing a bad file or a
 * taken port with a clear message, daemon mode and the pidfile lock. */
#include <criterion/criterion.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/harness.h"

static struct server srv;
static char out[8192];

static void setup(void) { server_init(&srv); }

static void teardown(void)
{
    /* A daemon is not our child: stop it by the pid it wrote. */
    char *p = h_read_file(srv.pidfile);
    pid_t pid = p ? (pid_t)atoi(p) : 0;
    free(p);
    if (pid > 0 && !h_pid_gone(pid)) {
        kill(pid, SIGTERM);
        WAIT_UNTIL(h_pid_gone(pid), 5000);
    }
    server_cleanup(&srv);
}

TestSuite(cli, .init = setup, .fini = teardown, .timeout = 60);

Test(cli, version_and_help)
{
    cr_assert_eq(h_run(out, sizeof out, "%s -v", h_bin()), 0);
    cr_assert(strstr(out, "preforkd 0.1.0"), "%s", out);
    cr_assert_eq(h_run(out, sizeof out, "%s -h", h_bin()), 0);
    cr_assert(strstr(out, "usage:"));
    cr_assert_eq(h_run(out, sizeof out, "%s --bogus", h_bin()), 1);
}

Test(cli, configtest_good_file)
{
    server_write_conf(&srv, "listen { address = \"127.0.0.1:1\" protocol = \"echo\" }\n");
    cr_assert_eq(h_run(out, sizeof out, "%s -t -c %s", h_bin(), srv.conf), 0, "%s", out);
    cr_assert_str_eq(out, "configuration OK\n");
}

Test(cli, configtest_bad_file_names_file_and_line)
{
    server_write_conf(&srv, "# a comment\n// another\n/* and\n   another */\n"
                      "workers = 0\n"
                      "listen { address = \"127.0.0.1:1\" protocol = \"echo\" }\n");
    cr_assert_eq(h_run(out, sizeof out, "%s -t -c %s", h_bin(), srv.conf), 1);
    char want[PATH_MAX + 64];
    snprintf(want, sizeof want, "%s:9: workers", srv.conf);
    cr_assert(strstr(out, want), "expected '%s' in: %s", want, out);
}

Test(cli, start_refuses_bad_file)
{
    server_write_conf(&srv, "worker_connections = -5\n"
                      "listen { address = \"127.0.0.1:1\" protocol = \"echo\" }\n");
    cr_assert_eq(h_run(out, sizeof out, "%s -f -c %s", h_bin(), srv.conf), 1);
    char want[PATH_MAX + 64];
    snprintf(want, sizeof want, "%s:5: worker_connections", srv.conf);
    cr_assert(strstr(out, want), "expected '%s' in: %s", want, out);
}

Test(cli, start_refuses_taken_port)
{
    int port = h_free_port(SOCK_STREAM);
    server_write_conf(&srv, "listen { address = \"127.0.0.1:%d\" protocol = \"echo\" }\n", port);
    cr_assert_eq(server_start(&srv, NULL), 0);
    struct server second;
    server_init(&second);
    server_write_conf(&second, "listen { address = \"127.0.0.1:%d\" protocol = \"echo\" }\n", port);
    int rc = h_run(out, sizeof out, "%s -c %s", h_bin(), second.conf);
    bool left_pidfile = access(second.pidfile, F_OK) == 0;
    server_cleanup(&second);
    cr_assert_not(left_pidfile, "a failed start left its pidfile behind");
    cr_assert_eq(rc, 1);
    cr_assert(strstr(out, "Address already in use"), "%s", out);
}

Test(cli, daemon_starts_ready_and_locks_pidfile)
{
    int port = h_free_port(SOCK_STREAM);
    server_write_conf(&srv, "workers = 2\n"
                      "listen { address = \"127.0.0.1:%d\" protocol = \"echo\" }\n", port);
    cr_assert_eq(h_run(out, sizeof out, "%s -c %s", h_bin(), srv.conf), 0, "%s", out);
    /* Ready means the pidfile is written and the port answers at once. */
    char *p = h_read_file(srv.pidfile);
    cr_assert_not_null(p);
    pid_t pid = (pid_t)atoi(p);
    free(p);
    cr_assert_gt(pid, 0);
    int fd = h_tcp_connect(port);
    cr_assert_geq(fd, 0);
    char r[2];
    cr_assert_eq(h_write_full(fd, "hi", 2), 0);
    cr_assert_eq(h_read_full(fd, r, 2, 3000), 0);
    close(fd);
    /* Detached: cwd /, not a session leader, stdin /dev/null. */
    char link[64], target[256];
    snprintf(link, sizeof link, "/proc/%d/cwd", (int)pid);
    ssize_t n = readlink(link, target, sizeof target - 1);
    cr_assert_gt(n, 0);
    target[n] = '\0';
    cr_assert_str_eq(target, "/");
    cr_assert_neq(getsid(pid), pid, "the daemon must not be a session leader");
    cr_assert_neq(getsid(pid), getsid(0), "the daemon must leave our session");
    snprintf(link, sizeof link, "/proc/%d/fd/0", (int)pid);
    n = readlink(link, target, sizeof target - 1);
    target[n > 0 ? n : 0] = '\0';
    cr_assert_str_eq(target, "/dev/null");
    cr_assert_eq(h_run(out, sizeof out, "%s -c %s", h_bin(), srv.conf), 1);
    cr_assert(strstr(out, "already running"), "%s", out);
    kill(pid, SIGTERM);
    cr_assert(WAIT_UNTIL(access(srv.pidfile, F_OK) != 0, 8000), "pidfile not removed");
}
