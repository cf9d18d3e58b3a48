/* capp: a small HTTP app for the app-pool tests and bench, written the way
 * a user's program would be: it takes its listeners from LISTEN_FDS (or
 * --fd N), tells preforkd it is ready through ipc/preforkd_notify.h and
 * answers every request with one line, then closes. Flags make it
 * misbehave on purpose (exit at start, never ready, flood, grow, hang). */
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "ipc/preforkd_notify.h"

#define MAX_FDS 16

struct opts {
    const char *answer;
    const char *exit_if_exists;     /* exit 4 at start while this file exists */
    int exit_at_start;              /* -1: no */
    int no_ready, report_fds, garbage, sd_notify, flood, hang_after, long_line;
    long grow_mb;
    int listen_port, procs;         /* on its own: bind, fork procs - 1 */
    int fds[MAX_FDS];
    unsigned nfds;
};

static volatile sig_atomic_t stop;

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}
static void on_term(int sig) { (void)sig; stop = 1; }

static void parse(int argc, char **argv, struct opts *o)
{
    *o = (struct opts){ .answer = "hello", .exit_at_start = -1, .hang_after = -1 };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
        if (!strcmp(a, "--answer")) { o->answer = v; i++; }
        else if (!strcmp(a, "--exit-at-start")) { o->exit_at_start = atoi(v); i++; }
        else if (!strcmp(a, "--fd") && o->nfds < MAX_FDS) { o->fds[o->nfds++] = atoi(v); i++; }
        else if (!strcmp(a, "--grow-mb")) { o->grow_mb = atol(v); i++; }
        else if (!strcmp(a, "--exit-if-exists")) { o->exit_if_exists = v; i++; }
        else if (!strcmp(a, "--listen")) { o->listen_port = atoi(v); i++; }
        else if (!strcmp(a, "--procs")) { o->procs = atoi(v); i++; }
        else if (!strcmp(a, "--hang-after")) { o->hang_after = atoi(v); i++; }
        else if (!strcmp(a, "--no-ready")) o->no_ready = 1;
        else if (!strcmp(a, "--report-fds")) o->report_fds = 1;
        else if (!strcmp(a, "--garbage")) o->garbage = 1;
        else if (!strcmp(a, "--sd-notify")) o->sd_notify = 1;
        else if (!strcmp(a, "--flood")) o->flood = 1;
        else if (!strcmp(a, "--long-line")) o->long_line = 1;
        else { fprintf(stderr, "capp: unknown argument %s\n", a); exit(2); }
    }
    const char *n = o->nfds ? NULL : getenv("LISTEN_FDS");
    for (int k = 0; n && k < atoi(n) && o->nfds < MAX_FDS; k++)
        o->fds[o->nfds++] = 3 + k;
}

/* sd_notify(3) by hand, as a program written for systemd does. */
static void sd_notify_send(const char *msg)
{
    const char *path = getenv("NOTIFY_SOCKET");
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    if (!path || !*path)
        return;
    size_t len = strlen(path);
    if (len >= sizeof sun.sun_path)
        return;
    memcpy(sun.sun_path, path, len);
    if (sun.sun_path[0] == '@')
        sun.sun_path[0] = '\0';
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    sendto(fd, msg, strlen(msg), 0, (struct sockaddr *)&sun,
           (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len));
    close(fd);
}

static void notify(const struct opts *o, const char *msg)
{
    if (o->sd_notify)
        sd_notify_send(msg);
    else
        preforkd_notify(msg);
}

/* The same program without preforkd, for the bench: one socket on port
 * (SO_REUSEPORT set, as a restartable server would), procs processes. */
static void listen_on_its_own(struct opts *o)
{
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)o->listen_port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    int one = 1, fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0 ||
        bind(fd, (struct sockaddr *)&sin, sizeof sin) != 0 || listen(fd, 511) != 0) {
        perror("capp: listen");
        exit(2);
    }
    o->fds[o->nfds++] = fd;
    for (int i = 1; i < o->procs; i++)
        if (fork() == 0) {
            prctl(PR_SET_PDEATHSIG, SIGTERM);   /* stopping the first stops all */
            return;
        }
}

/* "fds=0,1,2,3,5 listen_pid_ok=1 worker=0 ..." for the hygiene tests. */
static void describe_self(char *buf, size_t cap)
{
    size_t n = (size_t)snprintf(buf, cap, "fds=");
    DIR *d = opendir("/proc/self/fd");
    int self = d ? dirfd(d) : -1;
    for (struct dirent *e; d && (e = readdir(d)); ) {
        if (e->d_name[0] == '.' || atoi(e->d_name) == self)
            continue;
        n += (size_t)snprintf(buf + n, cap - n, "%s,", e->d_name);
    }
    if (d)
        closedir(d);
    const char *lp = getenv("LISTEN_PID");
    snprintf(buf + n, cap - n, " listen_pid_ok=%d listen_fds=%s names=%s worker=%s gen=%s "
             "workers=%s notify_fd=%s notify_socket=%s watchdog=%s nginx=%s uid=%d leak=%s",
             lp && atoi(lp) == (int)getpid(), getenv("LISTEN_FDS") ?: "-",
             getenv("LISTEN_FDNAMES") ?: "-", getenv("PREFORKD_WORKER") ?: "-",
             getenv("PREFORKD_GENERATION") ?: "-", getenv("PREFORKD_WORKERS") ?: "-",
             getenv("PREFORKD_NOTIFY_FD") ?: "-", getenv("NOTIFY_SOCKET") ? "yes" : "-",
             getenv("WATCHDOG_USEC") ?: "-", getenv("NGINX") ?: "-", (int)getuid(),
             getenv("PREFORKD_TEST_LEAK") ?: "-");
}

static void serve_one(const struct opts *o, int lfd, unsigned long served)
{
    int c = accept(lfd, NULL, NULL);
    if (c < 0)
        return;
    char req[4096], body[2048], resp[2600];
    ssize_t r = read(c, req, sizeof req);   /* one read: tests send small requests */
    (void)r;
    if (o->report_fds)
        describe_self(body, sizeof body);
    else
        snprintf(body, sizeof body, "%s", o->answer);
    int n = snprintf(resp, sizeof resp, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n%s\n", strlen(body) + 1, body);
    if (write(c, resp, (size_t)n) < 0)
        perror("capp: write");
    close(c);
    (void)served;
}

static void misbehave_after_ready(const struct opts *o)
{
    if (o->grow_mb > 0) {
        size_t n = (size_t)o->grow_mb << 20;
        char *p = malloc(n);
        if (p)
            memset(p, 1, n);        /* resident, and kept */
    }
    if (o->garbage) {
        char junk[6000];
        memset(junk, 'x', sizeof junk);
        junk[10] = '\x01';
        if (write(atoi(getenv("PREFORKD_NOTIFY_FD") ?: "-1"), "\x01\x02garbage\n=1\n", 13) < 0 ||
            write(atoi(getenv("PREFORKD_NOTIFY_FD") ?: "-1"), junk, 4000) < 0)
            perror("capp: garbage");
        junk[sizeof junk - 1] = '\0';
        sd_notify_send(junk);
        sd_notify_send("READY=yes\nNOEQUALS\nSTATUS=after garbage");
    }
}

static void flood(void)
{
    static unsigned long lines;
    char line[1024];
    memset(line, 'f', sizeof line - 1);
    line[sizeof line - 1] = '\0';
    for (int i = 0; i < 200 && lines < 20000; i++, lines++)
        printf("%s\n", line);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    struct opts o;
    parse(argc, argv, &o);
    setvbuf(stdout, NULL, _IOLBF, 0);
    /* No SA_RESTART: a blocking accept() that lost the race for a
     * connection to a sibling must see SIGTERM, not wait for the next one. */
    struct sigaction sa = { .sa_handler = on_term };
    sigaction(SIGTERM, &sa, NULL);
    printf("capp %d starting with %u listeners\n", (int)getpid(), o.nfds);
    if (o.long_line) {              /* 3000 bytes: logged in marked pieces */
        char line[3001];
        memset(line, 'L', sizeof line - 1);
        line[sizeof line - 1] = '\0';
        fprintf(stderr, "%s\n", line);
    }
    if (o.exit_at_start >= 0) {
        fprintf(stderr, "capp: failing at start on purpose (status %d)\n", o.exit_at_start);
        return o.exit_at_start;
    }
    if (o.exit_if_exists && access(o.exit_if_exists, F_OK) == 0) {
        fprintf(stderr, "capp: %s exists, exiting\n", o.exit_if_exists);
        return 4;
    }
    if (o.listen_port)
        listen_on_its_own(&o);
    if (o.nfds == 0) {
        fprintf(stderr, "capp: no listeners (LISTEN_FDS unset and no --fd)\n");
        return 2;
    }
    if (!o.no_ready)
        notify(&o, "READY=1\nSTATUS=serving");
    misbehave_after_ready(&o);
    struct pollfd pfd[MAX_FDS];
    unsigned long served = 0;
    /* WATCHDOG=1 at half of WATCHDOG_USEC, as sd_watchdog_enabled(3)
     * advises (else once a second, with REQUESTS=, not per request). */
    const char *wd = getenv("WATCHDOG_USEC");
    long long ping_ms = wd && atoll(wd) > 0 ? atoll(wd) / 2000 : 1000;
    long long ready_at = now_ms(), last_ping = 0;
    if (o.hang_after >= 0)
        signal(SIGABRT, SIG_IGN);   /* it will hang so badly that only SIGKILL ends it */
    while (!stop) {
        if (o.hang_after >= 0 && now_ms() - ready_at >= o.hang_after * 1000LL)
            for (;;)
                pause();            /* no more WATCHDOG=1 */
        if (now_ms() - last_ping >= ping_ms) {
            char msg[96];
            snprintf(msg, sizeof msg, "WATCHDOG=1\nREQUESTS=%lu\nACTIVE=0", served);
            notify(&o, msg);
            last_ping = now_ms();
        }
        if (o.flood)
            flood();
        for (unsigned i = 0; i < o.nfds; i++)
            pfd[i] = (struct pollfd){ .fd = o.fds[i], .events = POLLIN };
        if (poll(pfd, o.nfds, ping_ms < 200 ? (int)ping_ms : 200) <= 0)
            continue;
        for (unsigned i = 0; i < o.nfds; i++)
            if (pfd[i].revents & POLLIN)
                serve_one(&o, o.fds[i], served++);
    }
    notify(&o, "STOPPING=1");
    printf("capp %d stopping after %lu requests\n", (int)getpid(), served);
    return 0;
}
