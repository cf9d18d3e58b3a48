/* Real programs from Debian, unmodified, as app workers: gunicorn (takes
 * LISTEN_FDS itself, READY=1 over NOTIFY_SOCKET), lighttpd (systemd socket
 * activation) and uvicorn (--fd {fd}). Each serves through the shared
 * socket with two workers, deploys under load (gunicorn and lighttpd
 * without a failed request) and shows in status. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
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
static pid_t tree[512];
static size_t ntree;

/* Every descendant of parent: gunicorn and lighttpd fork their own. */
static void remember_tree(pid_t parent)
{
    DIR *d = opendir("/proc");
    for (struct dirent *de; d && (de = readdir(d)); ) {
        char path[64], buf[512];
        pid_t pid = (pid_t)atoi(de->d_name);
        FILE *f;
        if (pid <= 0)
            continue;
        snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
        if (!(f = fopen(path, "r")))
            continue;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = '\0';
        char *rp = strrchr(buf, ')');
        int ppid = 0;
        if (!rp || sscanf(rp + 2, "%*c %d", &ppid) != 1 || ppid != parent)
            continue;
        bool known = false;
        for (size_t i = 0; i < ntree; i++)
            known = known || tree[i] == pid;
        if (!known && ntree < sizeof tree / sizeof tree[0])
            tree[ntree++] = pid;
        remember_tree(pid);
    }
    if (d)
        closedir(d);
}

static void setup(void)
{
    server_init(&srv);
    port = h_free_port(SOCK_STREAM);
    ntree = 0;
}

static void teardown(void)
{
    if (srv.pid > 0)
        remember_tree(srv.pid);
    server_cleanup(&srv);
    for (size_t i = 0; i < ntree; i++)
        if (!h_pid_gone(tree[i]))
            kill(tree[i], SIGKILL);
}

TestSuite(app_real, .init = setup, .fini = teardown, .timeout = 180);

static void require(const char *path)
{
    if (access(path, X_OK) != 0)
        cr_skip_test("%s is not installed (make test installs it)", path);
}

static const char *get_body(char *buf, size_t cap)
{
    int fd = h_tcp_connect(port);
    buf[0] = '\0';
    if (fd < 0)
        return buf;
    static const char req[] = "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    size_t len = 0;             /* h_read_some adds to it */
    if (h_write_full(fd, req, sizeof req - 1) == 0)
        while (len + 1 < cap && h_read_some(fd, buf + len, cap - 1 - len, 10000, &len) == 0)
            ;
    close(fd);
    buf[len] = '\0';
    const char *body = strstr(buf, "\r\n\r\n");
    return body ? body + 4 : "";
}

struct load {
    atomic_bool stop;
    atomic_long ok, failed;
    char last_failure[200];
};

static void *load_loop(void *arg)
{
    struct load *l = arg;
    char buf[2048];
    while (!atomic_load(&l->stop)) {
        const char *body = get_body(buf, sizeof buf);
        if (body[0] == 'v') {
            atomic_fetch_add(&l->ok, 1);
        } else {
            snprintf(l->last_failure, sizeof l->last_failure, "%.150s", buf);
            atomic_fetch_add(&l->failed, 1);
        }
    }
    return NULL;
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
static void serve_and_deploy(const char *conf_fmt, int deploys, bool strict)
{
    write_conf(conf_fmt, "v0");
    cr_assert_eq(server_start(&srv, NULL), 0, "did not start: %s", h_read_file(srv.log) ?: "");
    remember_tree(srv.pid);
    char buf[2048];
    cr_assert(WAIT_UNTIL(strcmp(get_body(buf, sizeof buf), "v0\n") == 0, 10000), "%s", buf);
    struct load l = { 0 };
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, load_loop, &l);
    for (int d = 1; d <= deploys; d++) {
        char answer[16], want[20];
        snprintf(answer, sizeof answer, "v%d", d);
        write_conf(conf_fmt, answer);
        int rc = h_run(out, sizeof out, "%s/etc/preforkctl -c %s reload", h_root(), srv.conf);
        cr_assert_eq(rc, 0, "deploy %d: %s", d, out);
        remember_tree(srv.pid);
        snprintf(want, sizeof want, "%s\n", answer);
        /* uvicorn notices SIGTERM on its next 0.1 s tick and accepts until
         * then: the new answer only, but shortly after the verdict. */
        if (!strict)
            cr_assert(WAIT_UNTIL(strcmp(get_body(buf, sizeof buf), want) == 0 &&
                                 strcmp(get_body(buf, sizeof buf), want) == 0, 5000));
        for (int k = 0; strict && k < 3; k++)
            cr_assert_str_eq(get_body(buf, sizeof buf), want, "deploy %d", d);
    }
    atomic_store(&l.stop, true);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    fprintf(stderr, "app_real: %d deploys, %ld requests, %ld failed\n", deploys,
            atomic_load(&l.ok), atomic_load(&l.failed));
    if (strict)
        cr_assert_eq(atomic_load(&l.failed), 0, "%ld failed, last: %s",
                     atomic_load(&l.failed), l.last_failure);
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
    serve_and_deploy(fmt, 5, true);
    cr_assert(strstr(out, "Gunicorn arbiter booted"), "gunicorn's STATUS= text: %s", out);
}

Test(app_real, lighttpd)
{
    SKIP_UNDER_VALGRIND("start-up timing");
    require("/usr/sbin/lighttpd");
    char path[PATH_MAX], fmt[PATH_MAX + 1024];
    snprintf(path, sizeof path, "%s/lighttpd.conf", srv.dir);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    /* The answer is a file the deploy rewrites: v%s in www/index.txt. */
    fprintf(f, "server.document-root = \"%s/www\"\nserver.bind = \"127.0.0.1\"\n"
            "server.port = %d\nserver.systemd-socket-activation = \"enable\"\n"
            "index-file.names = (\"index.txt\")\nserver.errorlog = \"%s/lighttpd.log\"\n",
            srv.dir, port, srv.dir);
    fclose(f);
    snprintf(fmt, sizeof fmt,
             "app app {\n"
             "  command = {\"/usr/sbin/lighttpd\", \"-D\", \"-f\", \"%s\"}\n"
             "  environment = {\"UNUSED=%%s\"}\n"
             "  workers = 2\n  ready = \"delay 0.5\"\n  stop_signal = \"INT\"\n"
             "  listen { address = \"127.0.0.1:%d\" }\n}\n", path, port);
    char index[PATH_MAX];
    snprintf(index, sizeof index, "%s/www/index.txt", srv.dir);
    f = fopen(index, "w");
    fprintf(f, "v0\n");
    fclose(f);
    write_conf(fmt, "v0");
    cr_assert_eq(server_start(&srv, NULL), 0, "did not start: %s", h_read_file(srv.log) ?: "");
    remember_tree(srv.pid);
    char buf[2048];
    cr_assert_str_eq(get_body(buf, sizeof buf), "v0\n", "%s", buf);
    struct load l = { 0 };
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, load_loop, &l);
    for (int d = 1; d <= 3; d++) {
        char answer[16];
        snprintf(answer, sizeof answer, "v%d", d);
        write_conf(fmt, answer);
        cr_assert_eq(h_run(out, sizeof out, "%s/etc/preforkctl -c %s reload", h_root(),
                           srv.conf), 0, "%s", out);
        remember_tree(srv.pid);
    }
    atomic_store(&l.stop, true);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    cr_assert_eq(atomic_load(&l.failed), 0, "%ld failed, last: %s", atomic_load(&l.failed),
                 l.last_failure);
    cr_assert_gt(atomic_load(&l.ok), 10);
    cr_assert_eq(h_run(out, sizeof out, "%s status -c %s", h_bin(), srv.conf), 0);
    cr_assert(strstr(out, "app 2 workers gen 4"), "%s", out);
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
    serve_and_deploy(fmt, 3, false);
}
