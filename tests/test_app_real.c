/* Real programs from Debian, unmodified, as app workers: gunicorn (takes
 * LISTEN_FDS itself, READY=1 over NOTIFY_SOCKET), lighttpd (systemd socket
 * activation) and uvicorn (--fd {fd}). Each serves through the shared
 * socket with two workers, deploys under load (gunicorn and lighttpd
 * without a failed request) and shows in status. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

/* server_cleanup stops the master and whatever it started, by pid. */
static void teardown(void)
{
    server_cleanup(&srv);
}

TestSuite(app_real, .init = setup, .fini = teardown, .timeout = 180);

static void require(const char *path)
{
    if (access(path, X_OK) != 0)
        cr_skip_test("%s is not installed (make test installs it)", path);
}

#define GET "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"

static const char *get_body(char *buf, size_t cap)
{
    return h_http_body(port, GET, buf, cap, 10000);
}

/* conf_fmt has one %s (the answer); the pool is "app". */
static void write_conf(const char *conf_fmt, const char *answer)
{
    char body[PATH_MAX + 2048];
    snprintf(body, sizeof body, conf_fmt, answer);
    server_write_conf(&srv, "graceful_timeout = 10\n%s", body);
}

/* Start, serve, deploy `deploys` times under load: after each verdict the
 * new answer is served, and nothing fails if strict (the program's own
 * graceful stop must not drop what it accepted). */
static void serve_and_deploy(const char *conf_fmt, int deploys, bool strict,
                             void (*before_deploy)(const char *answer))
{
    write_conf(conf_fmt, "v0");
    cr_assert_eq(server_start(&srv, NULL), 0, "did not start: %s", h_read_file(srv.log) ?: "");
    h_remember_tree(&srv.tree, srv.pid);
    char buf[2048];
    cr_assert(WAIT_UNTIL(strcmp(get_body(buf, sizeof buf), "v0\n") == 0, 10000), "%s", buf);
    struct h_load l;
    h_load_start(&l, port, GET, "v");
    for (int d = 1; d <= deploys; d++) {
        char answer[16], want[20];
        snprintf(answer, sizeof answer, "v%d", d);
        if (before_deploy)
            before_deploy(answer);
        write_conf(conf_fmt, answer);
        int rc = h_run(out, sizeof out, "%s/etc/preforkctl -c %s reload", h_root(), srv.conf);
        cr_assert_eq(rc, 0, "deploy %d: %s", d, out);
        h_remember_tree(&srv.tree, srv.pid);
        snprintf(want, sizeof want, "%s\n", answer);
        /* uvicorn notices SIGTERM on its next 0.1 s tick and accepts until
         * then: the new answer only, but shortly after the verdict. */
        if (!strict)
            cr_assert(WAIT_UNTIL(strcmp(get_body(buf, sizeof buf), want) == 0 &&
                                 strcmp(get_body(buf, sizeof buf), want) == 0, 5000));
        for (int k = 0; strict && k < 3; k++)
            cr_assert_str_eq(get_body(buf, sizeof buf), want, "deploy %d", d);
    }
    h_load_stop(&l);
    fprintf(stderr, "app_real: %d deploys, %ld requests, %ld failed\n", deploys,
            (long)l.ok, (long)l.failed);
    if (strict)
        cr_assert_eq(l.failed, 0, "%ld failed, last: %s", (long)l.failed, l.last_failure);
    cr_assert_eq(h_run(out, sizeof out, "%s status -c %s", h_bin(), srv.conf), 0);
    cr_assert(strstr(out, "app 2 workers gen"), "%s", out);
}

Test(app_real, gunicorn)
{
    SKIP_UNDER_VALGRIND("gunicorn's start-up is too slow under valgrind's master");
    require("/usr/bin/gunicorn");
    char fmt[1024];
    snprintf(fmt, sizeof fmt,
             "app app {\n"
             "  command = {\"/usr/bin/gunicorn\", \"-w\", \"1\", \"--graceful-timeout\", \"5\","
             " \"wsgi_app:app\"}\n"
             "  directory = \"%s/tests/apps\"\n"
             "  environment = {\"APP_ANSWER=%%s\"}\n"
             "  workers = 2\n  ready_timeout = 30\n"
             "  listen { address = \"127.0.0.1:%d\" }\n}\n", h_root(), port);
    serve_and_deploy(fmt, 5, true, NULL);
    cr_assert(strstr(out, "Gunicorn arbiter booted"), "gunicorn's STATUS= text: %s", out);
}

/* lighttpd answers with a file: a deploy puts the new answer there, whole
 * (written aside, then renamed over it, as a deploy of static files does). */
static void write_index(const char *answer)
{
    char index[PATH_MAX], tmp[PATH_MAX + 8];
    snprintf(index, sizeof index, "%s/www/index.txt", srv.dir);
    snprintf(tmp, sizeof tmp, "%s.new", index);
    FILE *f = fopen(tmp, "w");
    cr_assert(f);
    fprintf(f, "%s\n", answer);
    fclose(f);
    cr_assert_eq(rename(tmp, index), 0);
}

Test(app_real, lighttpd)
{
    SKIP_UNDER_VALGRIND("start-up timing");
    require("/usr/sbin/lighttpd");
    char path[PATH_MAX], fmt[PATH_MAX + 1024];
    snprintf(path, sizeof path, "%s/lighttpd.conf", srv.dir);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    fprintf(f, "server.document-root = \"%s/www\"\nserver.bind = \"127.0.0.1\"\n"
            "server.port = %d\nserver.systemd-socket-activation = \"enable\"\n"
            "index-file.names = (\"index.txt\")\nserver.errorlog = \"%s/lighttpd.log\"\n",
            srv.dir, port, srv.dir);
    fclose(f);
    snprintf(fmt, sizeof fmt,
             "app app {\n"
             "  command = {\"/usr/sbin/lighttpd\", \"-D\", \"-f\", \"%s\"}\n"
             "  environment = {\"DEPLOY=%%s\"}\n"
             "  workers = 2\n  ready = \"delay 0.5\"\n  stop_signal = \"INT\"\n"
             "  listen { address = \"127.0.0.1:%d\" }\n}\n", path, port);
    write_index("v0");
    serve_and_deploy(fmt, 3, true, write_index);
}

Test(app_real, uvicorn)
{
    SKIP_UNDER_VALGRIND("start-up timing");
    require("/usr/bin/uvicorn");
    char fmt[1024];
    snprintf(fmt, sizeof fmt,
             "app app {\n"
             "  command = {\"/usr/bin/uvicorn\", \"--fd\", \"{fd}\", \"--no-access-log\","
             " \"asgi_app:app\"}\n"
             "  directory = \"%s/tests/apps\"\n"
             "  environment = {\"APP_ANSWER=%%s\"}\n"
             "  handoff = \"nginx\"\n  workers = 2\n  ready = \"delay 1.5\"\n"
             "  listen { address = \"127.0.0.1:%d\" }\n}\n", h_root(), port);
    /* uvicorn 0.17's shutdown closes a connection it accepted but has not
     * read a request from yet (h11 cycle None): an empty answer now and
     * then during its deploys is its own, so only the count is printed. */
    serve_and_deploy(fmt, 3, false, NULL);
}
