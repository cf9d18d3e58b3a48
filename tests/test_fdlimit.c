/* Descriptors for worker_connections: the master raises RLIMIT_NOFILE
 * (workers inherit it), and says by how much it falls short when the
 * hard limit does not allow it (at start, in status, in `preforkd -t`). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
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

TestSuite(fdlimit, .init = setup, .fini = teardown, .timeout = 60);

/* "Max open files" soft limit of pid, from /proc/PID/limits. */
static long soft_nofile(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/limits", (int)pid);
    char *t = h_read_file(path), *l = t ? strstr(t, "Max open files") : NULL;
    long v = l ? strtol(l + strlen("Max open files"), NULL, 10) : -1;
    free(t);
    return v;
}

static void write_conf(int connections)
{
    server_write_conf(&srv, "workers = 1\nworker_connections = %d\n"
                      "listen { address = \"127.0.0.1:%d\" protocol = \"echo\" }\n",
                      connections, port);
}

/* This test process's limit is the one the server inherits (Criterion
 * runs each test in a process of its own). */
Test(fdlimit, raised_for_worker_connections)
{
    SKIP_UNDER_VALGRIND("valgrind reserves descriptors at the top of RLIMIT_NOFILE for itself");
    struct rlimit rl;
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_max < 3000 + 64)
        cr_skip_test("the hard limit here is %llu", (unsigned long long)rl.rlim_max);
    rl.rlim_cur = 256;
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
    write_conf(3000);
    cr_assert_eq(server_start(&srv, NULL), 0);
    pid_t w;
    cr_assert(WAIT_UNTIL(h_children(&srv, srv.pid, &w, 1) == 1, 5000));
    cr_assert_geq(soft_nofile(srv.pid), 3064, "master");
    cr_assert_geq(soft_nofile(w), 3064, "worker");
    cr_assert_eq(h_status_number(&srv, "short_by"), 0);
    cr_assert_eq(h_file_count(srv.log, "descriptors:"), 0);
}

/* Where the limit cannot be raised (no CAP_SYS_RESOURCE: run as nobody
 * when root), `preforkd -t` says by how much it falls short. */
Test(fdlimit, shortfall_is_said_by_configtest)
{
    SKIP_UNDER_VALGRIND("nobody cannot write valgrind's log files");
    struct rlimit rl = { .rlim_cur = 512, .rlim_max = 512 };
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
    write_conf(4096);
    const char *as = "";
    if (geteuid() == 0) {
        chmod(srv.dir, 0755);
        chmod(srv.conf, 0644);
        as = "setpriv --reuid=65534 --regid=65534 --clear-groups ";
    }
    int rc = h_run(out, sizeof out, "%s%s -t -c %s", as, h_bin(), srv.conf);
    cr_assert_eq(rc, 0, "a warning, not an error: %s", out);
    cr_assert(strstr(out, "configuration OK"), "%s", out);
    cr_assert(strstr(out, "warning: descriptors: worker_connections needs 4160 descriptors "
                     "per worker, the limit is 512 (hard 512): short by 3648"), "%s", out);
}
