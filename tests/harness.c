/* harness: process, file and socket helpers for the integration tests.
 * Criterion aborts a failing test, so cleanup lives in fixtures' fini. */
#include "tests/harness.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int64_t h_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void h_sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

const char *h_bin(void)
{
    const char *b = getenv("PREFORKD_BIN");
    return b ? b : "build/preforkd";
}

const char *h_root(void)
{
    const char *r = getenv("PREFORKD_ROOT");
    return r ? r : ".";
}

int h_free_port(int socktype)
{
    int fd = socket(AF_INET, socktype | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = { .sin_family = AF_INET,
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof sin;
    if (fd < 0 || bind(fd, (struct sockaddr *)&sin, sizeof sin) != 0 ||
        getsockname(fd, (struct sockaddr *)&sin, &len) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    return ntohs(sin.sin_port);
}

void server_init(struct server *s)
{
    memset(s, 0, sizeof *s);
    snprintf(s->dir, sizeof s->dir, "/tmp/preforkd-test-XXXXXX");
    if (!mkdtemp(s->dir))
        abort();
    snprintf(s->conf, sizeof s->conf, "%s/preforkd.conf", s->dir);
    snprintf(s->pidfile, sizeof s->pidfile, "%s/run/preforkd.pid", s->dir);
    snprintf(s->sock, sizeof s->sock, "%s/run/preforkd.sock", s->dir);
    snprintf(s->log, sizeof s->log, "%s/error.log", s->dir);
    snprintf(s->out, sizeof s->out, "%s/stdout.log", s->dir);
    char www[80];
    snprintf(www, sizeof www, "%s/www", s->dir);
    mkdir(www, 0755);
}

void server_write_conf(struct server *s, const char *fmt, ...)
{
    FILE *f = fopen(s->conf, "w");
    if (!f)
        abort();
    fprintf(f, "pidfile = \"run/preforkd.pid\"\n"
               "control_socket = \"run/preforkd.sock\"\n"
               "error_log = \"error.log\"\n"
               "log_level = \"debug\"\n");
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fclose(f);
}

static bool is_our_preforkd(pid_t pid);

static pid_t read_pidfile(const char *path)
{
    char *t = h_read_file(path);
    pid_t pid = t ? (pid_t)atoi(t) : 0;
    free(t);
    return pid;
}

int server_start(struct server *s, char *const *env)
{
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int null = open("/dev/null", O_RDONLY);
        if (null >= 0)
            dup2(null, 0);
        int fd = open(s->out, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        for (size_t i = 0; env && env[i]; i++)
            putenv(env[i]);
        /* Criterion's own pipes must not leak into the server under test. */
        close_range(3, ~0u, 0);
        /* If the test process dies (a crash, a timeout), so does its server. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() == 1)
            _exit(127);
        execl(h_bin(), "preforkd", "-f", "-c", s->conf, (char *)NULL);
        _exit(127);
    }
    s->pid = pid;
    /* valgrind: a master starting beside a busy valgrinded test (50 reloads
     * under load) took more than 15 s to be ready */
    int start_ms = getenv("PREFORKD_VALGRIND") ? 60000 : 15000;
    bool ready = WAIT_UNTIL(read_pidfile(s->pidfile) == pid ||
                            waitpid(pid, NULL, WNOHANG) == pid, start_ms);
    if (!ready || read_pidfile(s->pidfile) != pid) {
        s->pid = 0;
        return -1;
    }
    pid_t w[256];
    h_children(s, pid, w, 256);     /* remember the workers for cleanup */
    return 0;
}

int server_stop(struct server *s, int sig, int ms)
{
    if (s->pid <= 0)
        return -1;
    kill(s->pid, sig);
    int status = -1;
    pid_t r = 0;
    WAIT_UNTIL((r = waitpid(s->pid, &status, WNOHANG)) == s->pid, ms);
    if (r != s->pid)
        return -1;
    s->pid = 0;
    return status;
}

static void remove_tree(const char *path)
{
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    if (system(cmd) != 0)
        fprintf(stderr, "cleanup: %s failed\n", cmd);
}

void server_cleanup(struct server *s)
{
    if (s->pid > 0)
        h_remember_tree(&s->tree, s->pid);
    if (s->pid > 0 && server_stop(s, SIGINT, 3000) < 0) {
        kill(s->pid, SIGKILL);
        waitpid(s->pid, NULL, 0);
    }
    for (size_t i = 0; i < s->nknown; i++)
        if (is_our_preforkd(s->known_workers[i]))
            kill(s->known_workers[i], SIGKILL);
    h_kill_remembered(&s->tree);
    if (s->dir[0] && !getenv("PREFORKD_KEEP_TEST_DIRS"))
        remove_tree(s->dir);
}

/* Fields of /proc/PID/stat after the command name: state, ppid, ... */
static int read_stat(pid_t pid, char *comm, size_t ccap, char *state,
                     pid_t *ppid, long *ticks)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    char *open_paren = strchr(buf, '('), *close_paren = strrchr(buf, ')');
    if (!open_paren || !close_paren)
        return -1;
    if (comm)
        snprintf(comm, ccap, "%.*s", (int)(close_paren - open_paren - 1), open_paren + 1);
    long utime = 0, stime = 0;
    int pp = 0;
    char st = '?';
    if (sscanf(close_paren + 2, "%c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %ld %ld",
               &st, &pp, &utime, &stime) != 4)
        return -1;
    if (state) *state = st;
    if (ppid) *ppid = pp;
    if (ticks) *ticks = utime + stime;
    return 0;
}

bool h_pid_gone(pid_t pid)
{
    char st;
    return read_stat(pid, NULL, 0, &st, NULL, NULL) != 0 || st == 'Z' || st == 'X';
}

static bool is_our_preforkd(pid_t pid)
{
    char comm[64], st;
    /* Under `make check-valgrind` the processes are valgrind's tool. */
    static const char *under_valgrind = "memcheck-amd64-";
    return read_stat(pid, comm, sizeof comm, &st, NULL, NULL) == 0 && st != 'Z' &&
           (strcmp(comm, "preforkd") == 0 ||
            (getenv("PREFORKD_VALGRIND") && strcmp(comm, under_valgrind) == 0));
}

static void remember_worker(struct server *s, pid_t pid)
{
    for (size_t i = 0; i < s->nknown; i++)
        if (s->known_workers[i] == pid)
            return;
    if (s->nknown < sizeof s->known_workers / sizeof s->known_workers[0])
        s->known_workers[s->nknown++] = pid;
}

size_t h_children(struct server *s, pid_t parent, pid_t *pids, size_t cap)
{
    DIR *d = opendir("/proc");
    if (!d)
        return 0;
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        pid_t pid = (pid_t)atoi(de->d_name);
        pid_t ppid;
        char st;
        if (pid <= 0 || read_stat(pid, NULL, 0, &st, &ppid, NULL) != 0 ||
            ppid != parent || st == 'Z' || !is_our_preforkd(pid))
            continue;
        if (s)
            remember_worker(s, pid);
        if (n < cap)
            pids[n] = pid;
        n++;
    }
    closedir(d);
    return n;
}

long h_cpu_ticks(pid_t pid)
{
    long t = -1;
    read_stat(pid, NULL, 0, NULL, NULL, &t);
    return t;
}

int h_count_sockets(pid_t pid)
{
    char path[64], link[128];
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        char p[PATH_MAX];
        snprintf(p, sizeof p, "%s/%s", path, de->d_name);
        ssize_t len = readlink(p, link, sizeof link - 1);
        if (len > 0) {
            link[len] = '\0';
            n += strncmp(link, "socket:", 7) == 0;
        }
    }
    closedir(d);
    return n;
}

char *h_read_file(const char *path)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return NULL;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    size_t n;
    while (buf && (n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (len + 1 == cap)
            buf = realloc(buf, cap *= 2);
    }
    fclose(f);
    if (buf)
        buf[len] = '\0';
    return buf;
}

int h_file_count(const char *path, const char *needle)
{
    char *t = h_read_file(path);
    int n = 0;
    for (char *p = t; p && (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    free(t);
    return n;
}

int h_tcp_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&sin, sizeof sin) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int h_write_full(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Whatever is there (at least one byte, within ms), added to *len. */
int h_read_some(int fd, void *buf, size_t cap, int ms, size_t *len)
{
    int64_t end = h_now_ms() + ms;
    for (;;) {
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        int64_t left = end - h_now_ms();
        if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
            return -1;
        ssize_t n = read(fd, buf, cap);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        *len += (size_t)n;
        return 0;
    }
}

int h_read_full(int fd, void *buf, size_t len, int ms)
{
    int64_t end = h_now_ms() + ms;
    size_t got = 0;
    while (got < len) {
        int64_t left = end - h_now_ms();
        if (left <= 0 || h_read_some(fd, (char *)buf + got, len - got, (int)left, &got) != 0)
            return -1;
    }
    return 0;
}

/* Full duplex: a client that only wrote would deadlock against a server
 * with back-pressure once both sides' buffers fill. */
int h_echo_exchange(int fd, const unsigned char *out, size_t len,
                    unsigned char *in, size_t chunk, int ms)
{
    size_t sent = 0, got = 0;
    int64_t end = h_now_ms() + ms;
    while (got < len) {
        struct pollfd pfd = { .fd = fd, .events = POLLIN | (sent < len ? POLLOUT : 0) };
        int64_t left = end - h_now_ms();
        if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
            return -1;
        if ((pfd.revents & POLLOUT) && sent < len) {
            size_t n = len - sent < chunk ? len - sent : chunk;
            ssize_t w = send(fd, out + sent, n, MSG_DONTWAIT);
            if (w < 0 && errno != EAGAIN && errno != EINTR)
                return -1;
            sent += w > 0 ? (size_t)w : 0;
        }
        if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t r = recv(fd, in + got, len - got, MSG_DONTWAIT);
            if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
                return -1;
            got += r > 0 ? (size_t)r : 0;
        }
    }
    return 0;
}

int h_run(char *out, size_t cap, const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    char full[4200];
    snprintf(full, sizeof full, "(%s) 2>&1", cmd);
    FILE *p = popen(full, "r");
    if (!p)
        return -1;
    size_t len = fread(out, 1, cap - 1, p);
    out[len] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

double h_status_number(const struct server *s, const char *key)
{
    static char json[1 << 16];
    if (h_run(json, sizeof json, "%s status --json -c %s 2>/dev/null", h_bin(), s->conf) != 0 ||
        !h_json_valid(json))
        return -1;
    return h_json_number(json, key);
}

int h_unix_connect(const char *path)
{
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof sun.sun_path)
        return -1;
    memcpy(sun.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sun, sizeof sun) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static pid_t parent_of(pid_t pid)
{
    pid_t ppid = 0;
    char st;
    return read_stat(pid, NULL, 0, &st, &ppid, NULL) == 0 ? ppid : 0;
}

static void remember_pid(struct h_pids *set, pid_t pid)
{
    for (size_t i = 0; i < set->n; i++)
        if (set->pid[i] == pid)
            return;
    if (set->n < sizeof set->pid / sizeof set->pid[0])
        set->pid[set->n++] = pid;
}

void h_remember_tree(struct h_pids *set, pid_t parent)
{
    DIR *d = opendir("/proc");
    for (struct dirent *de; d && (de = readdir(d)); ) {
        pid_t pid = (pid_t)atoi(de->d_name);
        if (pid <= 0 || parent_of(pid) != parent)
            continue;
        remember_pid(set, pid);
        h_remember_tree(set, pid);
    }
    if (d)
        closedir(d);
}

void h_kill_remembered(struct h_pids *set)
{
    for (size_t i = 0; i < set->n; i++)
        if (!h_pid_gone(set->pid[i]))
            kill(set->pid[i], SIGKILL);
    set->n = 0;
}

void h_adopt_orphans(void)
{
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0)
        fprintf(stderr, "PR_SET_CHILD_SUBREAPER: %s\n", strerror(errno));
}

bool h_kill_descendants(int ms)
{
    struct h_pids set;
    int64_t end = h_now_ms() + ms;
    for (;;) {
        set.n = 0;
        h_remember_tree(&set, getpid());
        bool none = true;
        for (size_t i = 0; i < set.n; i++)
            none = none && h_pid_gone(set.pid[i]);
        for (size_t i = 0; i < set.n; i++)
            if (parent_of(set.pid[i]) == getpid())
                waitpid(set.pid[i], NULL, WNOHANG);     /* ours to reap */
        if (none || h_now_ms() >= end)
            return none;
        h_kill_remembered(&set);
        h_sleep_ms(10);
    }
}

int h_make_test_ca(const char *dir, char *out, size_t cap)
{
    return h_run(out, cap, "cd '%s' && openssl req -x509 -newkey ec -pkeyopt "
                 "ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -days 2 "
                 "-subj '/CN=preforkd test CA' 2>&1", dir);
}

int h_make_tls_cert(const char *dir, const char *name, const char *cn, const char *san,
                    char *out, size_t cap)
{
    return h_run(out, cap,
                 "cd '%1$s' && printf 'subjectAltName=%4$s\\n' > %2$s.ext && "
                 "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
                 "-keyout %2$s.key -out %2$s.csr -subj /CN=%3$s 2>&1 && "
                 "openssl x509 -req -in %2$s.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
                 "-days 2 -extfile %2$s.ext -out %2$s.pem 2>&1", dir, name, cn, san);
}

const char *h_http_body(int port, const char *request, char *buf, size_t cap, int ms)
{
    int fd = h_tcp_connect(port);
    size_t len = 0;                 /* h_read_some adds to it */
    if (fd >= 0 && h_write_full(fd, request, strlen(request)) == 0)
        while (len + 1 < cap && h_read_some(fd, buf + len, cap - 1 - len, ms, &len) == 0)
            ;
    if (fd >= 0)
        close(fd);
    buf[len] = '\0';
    const char *body = strstr(buf, "\r\n\r\n");
    return body ? body + 4 : "";
}

/* Appends what one read returns at buf (cap bytes free) to *len: 0, or -1
 * on EOF, error or 10 s of silence. */
typedef int (*read_some_fn)(void *io, char *buf, size_t cap, size_t *len);

static int fd_read_some(void *io, char *buf, size_t cap, size_t *len)
{
    return h_read_some(*(int *)io, buf, cap, 10000, len);
}

/* One response on io: 1 ok and the connection stays, 0 ok and the server
 * closes it, -1 a failure. One request at a time: nothing follows it. */
static int read_response(void *io, read_some_fn read_some, const char *good, char *buf,
                         size_t cap)
{
    size_t len = 0;
    char *end;
    buf[0] = '\0';
    while (!(end = memmem(buf, len, "\r\n\r\n", 4))) {
        if (len == cap - 1 || read_some(io, buf + len, cap - 1 - len, &len) != 0)
            return -1;
        buf[len] = '\0';
    }
    size_t head = (size_t)(end - buf) + 4;
    const char *cl = strcasestr(buf, "\r\nContent-Length:");
    size_t body = cl && cl < end ? (size_t)atol(cl + 17) : 0;
    if (strncmp(buf + 9, "200", 3) != 0 || body >= cap - head)
        return -1;
    while (len < head + body)
        if (read_some(io, buf + len, head + body - len, &len) != 0)
            return -1;
    buf[len] = '\0';
    if (strncmp(buf + head, good, strlen(good)) != 0)
        return -1;
    const char *conn = strcasestr(buf, "\r\nConnection: close");
    return (conn && conn < end) || strncmp(buf, "HTTP/1.0", 8) == 0 ? 0 : 1;
}

static void *load_loop(void *arg)
{
    struct h_load *l = arg;
    char buf[8192];
    int fd = -1;
    while (!l->stop) {
        if (fd < 0)
            fd = h_tcp_connect(l->port);
        int rc = fd >= 0 && h_write_full(fd, l->request, strlen(l->request)) == 0
                 ? read_response(&fd, fd_read_some, l->good, buf, sizeof buf) : -1;
        if (rc < 0) {
            snprintf(l->last_failure, sizeof l->last_failure, "%s: %.150s",
                     fd < 0 ? "connect" : "response", buf);
            l->failed++;
        } else {
            l->ok++;
        }
        if (rc <= 0 && fd >= 0) {
            close(fd);
            fd = -1;
            l->reconnects++;
        }
    }
    if (fd >= 0)
        close(fd);
    return NULL;
}

void h_load_start_n(struct h_load *l, int n, int port, const char *request, const char *good)
{
    memset(l, 0, sizeof *l);
    l->port = port;
    l->request = request;
    l->good = good;
    l->nthreads = n < 1 ? 1 : n > 4 ? 4 : n;
    for (int i = 0; i < l->nthreads; i++)
        pthread_create(&l->threads[i], NULL, load_loop, l);
}

void h_load_start(struct h_load *l, int port, const char *request, const char *good)
{
    h_load_start_n(l, 2, port, request, good);
}

void h_load_stop(struct h_load *l)
{
    l->stop = true;
    for (int i = 0; i < l->nthreads; i++)
        pthread_join(l->threads[i], NULL);
    SSL_CTX_free(l->tls);
    l->tls = NULL;
}

/* --- TLS clients (h_load_start_tls, h_tls_connect) --------------------- */

SSL *h_tls_connect(SSL_CTX *ctx, int port, int *fdp)
{
    struct timeval tv = { .tv_sec = 10 };
    int fd = h_tcp_connect(port);
    SSL *ssl = fd >= 0 ? SSL_new(ctx) : NULL;
    if (ssl && setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0 &&
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) == 0 &&
        SSL_set_fd(ssl, fd) == 1 && SSL_set_tlsext_host_name(ssl, "localhost") == 1 &&
        SSL_connect(ssl) == 1) {
        *fdp = fd;
        return ssl;
    }
    SSL_free(ssl);
    if (fd >= 0)
        close(fd);
    return NULL;
}

static int tls_read_some(void *io, char *buf, size_t cap, size_t *len)
{
    int n = SSL_read(io, buf, (int)cap);
    if (n <= 0)
        return -1;
    *len += (size_t)n;
    return 0;
}

static void tls_close(SSL *ssl, int fd)
{
    SSL_free(ssl);
    close(fd);
}

/* load_loop's TLS twin: a full handshake per connection, no resumption
 * (the clients of a reload test are new clients). */
static void *load_loop_tls(void *arg)
{
    struct h_load *l = arg;
    char buf[8192];
    SSL *ssl = NULL;
    int fd = -1;
    while (!l->stop) {
        if (!ssl)
            ssl = h_tls_connect(l->tls, l->port, &fd);
        int len = (int)strlen(l->request);
        int rc = ssl && SSL_write(ssl, l->request, len) == len
                 ? read_response(ssl, tls_read_some, l->good, buf, sizeof buf) : -1;
        if (rc < 0) {
            snprintf(l->last_failure, sizeof l->last_failure, "%s: %.150s",
                     ssl ? "response" : "connect or handshake", ssl ? buf : "");
            l->failed++;
        } else {
            l->ok++;
        }
        if (rc <= 0 && ssl) {
            tls_close(ssl, fd);
            ssl = NULL;
            l->reconnects++;
        }
    }
    if (ssl)
        tls_close(ssl, fd);
    return NULL;
}

void h_load_start_tls(struct h_load *l, int n, int port, const char *cafile,
                      const char *request, const char *good)
{
    memset(l, 0, sizeof *l);
    l->port = port;
    l->request = request;
    l->good = good;
    l->tls = SSL_CTX_new(TLS_client_method());
    if (!l->tls || SSL_CTX_load_verify_locations(l->tls, cafile, NULL) != 1)
        return;             /* no threads: the caller's checks fail */
    SSL_CTX_set_verify(l->tls, SSL_VERIFY_PEER, NULL);
    l->nthreads = n < 1 ? 1 : n > 4 ? 4 : n;
    for (int i = 0; i < l->nthreads; i++)
        pthread_create(&l->threads[i], NULL, load_loop_tls, l);
}

const char *h_resp_header(const struct h_resp *r, const char *name, char *out, size_t cap)
{
    char pat[128];
    snprintf(pat, sizeof pat, "\r\n%s: ", name);
    const char *p = strstr(r->head, pat);
    if (!p)
        return NULL;
    p += strlen(pat);
    size_t n = strcspn(p, "\r");
    snprintf(out, cap, "%.*s", (int)(n < cap ? n : cap - 1), p);
    return out;
}

int h_read_resp(int fd, struct h_resp *r, bool no_body)
{
    size_t n = 0;
    memset(r, 0, sizeof *r);
    while (n + 1 < sizeof r->head) {
        if (h_read_full(fd, r->head + n, 1, 5000) != 0)
            return -1;
        n++;
        r->head[n] = '\0';
        if (n >= 4 && memcmp(r->head + n - 4, "\r\n\r\n", 4) == 0)
            break;
    }
    if (sscanf(r->head, "HTTP/1.1 %d", &r->status) != 1)
        return -1;
    char v[64];
    r->body_len = h_resp_header(r, "Content-Length", v, sizeof v) ? strtoull(v, NULL, 10) : 0;
    if (no_body || r->status == 304)
        r->body_len = 0;
    r->body = malloc(r->body_len + 1);
    if (!r->body || (r->body_len && h_read_full(fd, r->body, r->body_len, 10000) != 0))
        return -1;
    r->body[r->body_len] = '\0';
    return 0;
}

bool h_closed_by_peer(int fd, int ms)
{
    struct pollfd p = { .fd = fd, .events = POLLIN };
    char c;
    return poll(&p, 1, ms) == 1 && read(fd, &c, 1) <= 0;
}

int h_request(int port, struct h_resp *r, const char *req, size_t len)
{
    int fd = h_tcp_connect(port), rc = -1;
    memset(r, 0, sizeof *r);
    if (fd >= 0 && h_write_full(fd, req, len) == 0)
        rc = h_read_resp(fd, r, strncmp(req, "HEAD ", 5) == 0);
    if (fd >= 0)
        close(fd);
    return rc;
}
