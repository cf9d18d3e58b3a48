/* systemd without systemd as PID 1: the master's sd_notify messages caught
 * on a NOTIFY_SOCKET of the test's own (start, watchdog, reload applied and
 * rejected, stop), and socket activation through Debian's
 * systemd-socket-activate, which passes bound sockets in LISTEN_FDS. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/harness.h"

static struct server srv;
static int port;
static int notify_fd = -1;

static void setup(void)
{
    server_init(&srv);
    port = h_free_port(SOCK_STREAM);
}

static void teardown(void)
{
    server_cleanup(&srv);
    if (notify_fd >= 0)
        close(notify_fd);
    notify_fd = -1;
}

TestSuite(systemd, .init = setup, .fini = teardown, .timeout = 60);

/* A datagram socket in the test dir, as systemd's notify socket. */
static void listen_notify(char *path, size_t cap)
{
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    snprintf(path, cap, "%s/notify", srv.dir);
    cr_assert_lt(strlen(path), sizeof sun.sun_path);
    memcpy(sun.sun_path, path, strlen(path) + 1);
    notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    cr_assert_eq(bind(notify_fd, (struct sockaddr *)&sun, sizeof sun), 0);
}

/* The next message that contains want, within ms; skipped ones are lost. */
static bool next_message(const char *want, char *msg, size_t cap, int ms)
{
    int64_t end = h_now_ms() + ms;
    while (h_now_ms() < end) {
        struct pollfd p = { .fd = notify_fd, .events = POLLIN };
        if (poll(&p, 1, (int)(end - h_now_ms())) <= 0)
            return false;
        ssize_t n = recv(notify_fd, msg, cap - 1, 0);
        if (n <= 0)
            return false;
        msg[n] = '\0';
        if (strstr(msg, want))
            return true;
    }
    return false;
}

static void write_echo_conf(const char *extra)
{
    server_write_conf(&srv, "workers = 2\n%s\n"
                      "listen { address = \"127.0.0.1:%d\" protocol = \"echo\" }\n", extra, port);
}

Test(systemd, notify_start_watchdog_reload_stop)
{
    char path[PATH_MAX], env_sock[PATH_MAX + 16], msg[1024];
    listen_notify(path, sizeof path);
    snprintf(env_sock, sizeof env_sock, "NOTIFY_SOCKET=%s", path);
    char *env[] = { env_sock, "WATCHDOG_USEC=400000", NULL };
    write_echo_conf("");
    cr_assert_eq(server_start(&srv, env), 0);
    char ready[64];
    snprintf(ready, sizeof ready, "READY=1\nMAINPID=%d", (int)srv.pid);
    cr_assert(next_message(ready, msg, sizeof msg, 5000), "no %s", ready);
    cr_assert(next_message("STATUS=generation 1: 2 workers", msg, sizeof msg, 3000));
    int pings = 0;
    for (int i = 0; i < 3; i++)
        pings += next_message("WATCHDOG=1", msg, sizeof msg, 2000);
    cr_assert_eq(pings, 3, "WATCHDOG=1 at half of WATCHDOG_USEC");

    kill(srv.pid, SIGHUP);
    cr_assert(next_message("RELOADING=1\nMONOTONIC_USEC=", msg, sizeof msg, 5000));
    cr_assert(next_message("READY=1\nSTATUS=reload applied", msg, sizeof msg, 5000), "%s", msg);

    write_echo_conf("workers = 0");
    kill(srv.pid, SIGHUP);
    cr_assert(next_message("RELOADING=1", msg, sizeof msg, 5000));
    cr_assert(next_message("READY=1\nSTATUS=reload rejected: ", msg, sizeof msg, 5000), "%s", msg);
    cr_assert(strstr(msg, "preforkd.conf:6: workers:"), "FILE:LINE in the status: %s", msg);

    kill(srv.pid, SIGTERM);
    cr_assert(next_message("STOPPING=1", msg, sizeof msg, 5000));
}

/* systemd-socket-activate binds, waits for a first client, then execs
 * preforkd in its place with LISTEN_FDS; the unmatched socket is closed. */
Test(systemd, socket_activation_adopts_passed_sockets)
{
    if (access("/usr/bin/systemd-socket-activate", X_OK) != 0)
        cr_skip_test("systemd-socket-activate is not installed (make test installs systemd)");
    int other = h_free_port(SOCK_STREAM);
    write_echo_conf("");
    char listen1[64], listen2[64];
    snprintf(listen1, sizeof listen1, "127.0.0.1:%d", port);
    snprintf(listen2, sizeof listen2, "127.0.0.1:%d", other);
    pid_t pid = fork();
    if (pid == 0) {
        int out = open(srv.out, O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2(out, 1);
        dup2(out, 2);
        close_range(3, ~0u, 0);
        execl("/usr/bin/systemd-socket-activate", "systemd-socket-activate", "-l", listen1,
              "-l", listen2, h_bin(), "-f", "-c", srv.conf, (char *)NULL);
        _exit(127);
    }
    srv.pid = pid;                  /* it becomes preforkd: cleanup stops it */
    int fd = -1;
    cr_assert(WAIT_UNTIL((fd = h_tcp_connect(port)) >= 0, 5000), "nothing listens");
    unsigned char ping[4] = "ping", back[4];
    cr_assert_eq(h_echo_exchange(fd, ping, 4, back, 4, 10000), 0, "the first client is served");
    close(fd);
    cr_assert(WAIT_UNTIL(h_file_count(srv.log, "adopted the socket passed by socket "
                                      "activation (fd 3)") == 1, 5000));
    cr_assert_eq(h_file_count(srv.log, "passed fd 4 matches no listen entry; closing it"), 1);
    cr_assert(WAIT_UNTIL(h_tcp_connect(other) < 0, 5000), "the unmatched socket stays open");
    kill(srv.pid, SIGHUP);          /* a reload keeps the adopted socket */
    cr_assert(WAIT_UNTIL(h_status_number(&srv, "generation") == 2, 5000));
    fd = h_tcp_connect(port);
    cr_assert_eq(h_echo_exchange(fd, ping, 4, back, 4, 5000), 0);
    close(fd);
}

/* The shipped units load: systemd-analyze verify, with the binaries'
 * paths pointed at this build. */
Test(systemd, shipped_units_verify)
{
    if (access("/usr/bin/systemd-analyze", X_OK) != 0)
        cr_skip_test("systemd-analyze is not installed (make test installs systemd)");
    char out[8192];
    int rc = h_run(out, sizeof out,
                   "sed 's#/usr/local/sbin/preforkd#%s#g; s#/usr/local/sbin/preforkctl#%s/etc/preforkctl#g' "
                   "%s/etc/preforkd.service > %s/preforkd.service && "
                   "cp %s/etc/preforkd.socket %s/ && "
                   "systemd-analyze verify --man=no %s/preforkd.service %s/preforkd.socket",
                   h_bin(), h_root(), h_root(), srv.dir, h_root(), srv.dir, srv.dir, srv.dir);
    cr_assert_eq(rc, 0, "%s", out);
    cr_assert(!strstr(out, "preforkd"), "warnings: %s", out);
}
