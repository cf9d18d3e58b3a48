/* harness: helpers for integration tests that run the real build/preforkd
 * in a temporary directory on ephemeral ports, poll with deadlines instead
 * of sleeping, and stop only the processes they started. */
#ifndef PREFORKD_HARNESS_H
#define PREFORKD_HARNESS_H

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <openssl/ssl.h>

/* Pids a test started, directly or not (apps fork their own), killed
 * at cleanup: processes it started, by pid. */
struct h_pids {
    pid_t pid[512];
    size_t n;
};
/* Add every descendant of parent to the set. */
void h_remember_tree(struct h_pids *set, pid_t parent);

struct server {
    char dir[64];               /* temp dir, removed by server_cleanup */
    char conf[PATH_MAX];
    char pidfile[PATH_MAX];
    char sock[PATH_MAX];        /* control socket */
    char log[PATH_MAX];         /* error_log */
    char out[PATH_MAX];         /* the binary's own stdout+stderr */
    pid_t pid;                  /* master, when started with -f by us */
    pid_t known_workers[256];   /* every worker pid seen, for cleanup */
    struct h_pids tree;         /* the master's descendants, any command:
                                   h_remember_tree(&s->tree, s->pid) */
    size_t nknown;
};

/* Poll cond every 10 ms until true or ms elapse; evaluates to the result. */
#define WAIT_UNTIL(cond, ms) ({                                           \
    int64_t _end = h_now_ms() + (ms); bool _ok;                           \
    while (!(_ok = (cond)) && h_now_ms() < _end) h_sleep_ms(10);          \
    _ok; })

int64_t h_now_ms(void);
void h_sleep_ms(int ms);
const char *h_bin(void);            /* $PREFORKD_BIN */
const char *h_root(void);           /* $PREFORKD_ROOT */
/* `make check-valgrind` runs the suite with the binary under memcheck
 * ($PREFORKD_VALGRIND set); a test that cannot hold there skips, saying why. */
#define SKIP_UNDER_VALGRIND(why) do { \
        if (getenv("PREFORKD_VALGRIND")) cr_skip_test("under valgrind: %s", why); \
    } while (0)

/* A port no one listens on now (bind to 0, read, close). */
int h_free_port(int socktype);

/* Make the temp dir; write conf from the body (listen sections etc.) after
 * the standard header (pidfile, control_socket, error_log inside dir). */
void server_init(struct server *s);
void server_write_conf(struct server *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Fork+exec `preforkd -f -c conf` with extra environment ("K=V", NULL
 * ended); wait until the pidfile names it (ready). 0, or -1 if it exited. */
int server_start(struct server *s, char *const *env);
/* Send sig, wait up to ms for exit. Returns the wait status or -1. */
int server_stop(struct server *s, int sig, int ms);
/* Kill what is left (master and every worker seen), remove the dir. */
void server_cleanup(struct server *s);

/* Live (non-zombie) children of pid; returns the count, fills pids. */
size_t h_children(struct server *s, pid_t parent, pid_t *pids, size_t cap);
/* Gone: no /proc entry, or a zombie. */
bool h_pid_gone(pid_t pid);
/* Count of socket descriptors a process holds. */
int h_count_sockets(pid_t pid);
/* CPU time (user+system) of a process in clock ticks. */
long h_cpu_ticks(pid_t pid);
/* Whether the file contains needle; count of occurrences. */
int h_file_count(const char *path, const char *needle);
char *h_read_file(const char *path);    /* malloc'd, NUL-ended, or NULL */

int h_tcp_connect(int port);                 /* 127.0.0.1, blocking */
/* Send all of out while reading back len bytes into in, through poll. */
int h_echo_exchange(int fd, const unsigned char *out, size_t len,
                    unsigned char *in, size_t chunk, int ms);
/* Read exactly len bytes within ms. 0 or -1. */
int h_read_full(int fd, void *buf, size_t len, int ms);
int h_read_some(int fd, void *buf, size_t cap, int ms, size_t *len);
int h_write_full(int fd, const void *buf, size_t len);
/* Run a command line via /bin/sh, capture stdout+stderr; returns exit code. */
int h_run(char *out, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* TLS test certificates, made by the openssl CLI in DIR: a CA (ca.pem,
 * ca.key), then NAME.pem / NAME.key for common name CN and SAN (e.g.
 * "DNS:localhost,IP:127.0.0.1") signed by it. 0, or openssl's status with
 * its output in out. */
int h_make_test_ca(const char *dir, char *out, size_t cap);
int h_make_tls_cert(const char *dir, const char *name, const char *cn, const char *san,
                    char *out, size_t cap);


/* Strict JSON syntax check of a whole document: true when valid. */
bool h_json_valid(const char *text);
/* The number after the first "key": at or after from; -1 if none. */
double h_json_number(const char *text, const char *key);
/* Prometheus text format check; on failure *bad points at the line. */
bool h_prometheus_valid(const char *text, const char **bad);

/* A number from `preforkd status --json` of s (stderr ignored); -1 when the
 * master does not answer or the JSON is invalid. */
double h_status_number(const struct server *s, const char *key);
/* Connect to a Unix stream socket; -1 on failure. */
int h_unix_connect(const char *path);

/* SIGKILL the members still alive (zombies count as gone). */
void h_kill_remembered(struct h_pids *set);
/* Make this test process the reaper of its orphans: a daemon it starts,
 * or the new master of an upgrade whose old master exited, becomes its
 * child instead of PID 1's, so h_kill_descendants finds it by pid. */
void h_adopt_orphans(void);
/* SIGKILL every descendant of this process and reap them, again until
 * none is left (a master killed mid-fork leaves a child that comes to us);
 * false if some still lived after ms. */
bool h_kill_descendants(int ms);

/* Send request on a new connection to 127.0.0.1:port, read to EOF within
 * ms into buf; the body after the header, or "" on failure. */
const char *h_http_body(int port, const char *request, char *buf, size_t cap, int ms);

/* Clients asking port in a loop until stopped, each reading whole
 * responses (Content-Length): a 200 whose body starts with `good` counts
 * as ok; a refused connection, a reset, EOF mid-response or another status
 * as failed. A request without "Connection: close" keeps the connection
 * until the server closes it (then the client reconnects: not a failure). */
struct h_load {
    int port;
    const char *request, *good;
    _Atomic bool stop;
    _Atomic long ok, failed, reconnects;
    char last_failure[200];
    pthread_t threads[4];
    int nthreads;
    SSL_CTX *tls;                   /* h_load_start_tls: HTTPS clients */
};
void h_load_start(struct h_load *l, int port, const char *request, const char *good);
/* The same with n (1..4) client threads. */
void h_load_start_n(struct h_load *l, int n, int port, const char *request, const char *good);
void h_load_start_tls(struct h_load *l, int n, int port, const char *cafile,
                      const char *request, const char *good);
void h_load_stop(struct h_load *l);
/* A TLS connection to 127.0.0.1:port (SNI localhost; 10 s socket
 * timeouts), handshake done; NULL on failure. *fd: its socket. */
SSL *h_tls_connect(SSL_CTX *ctx, int port, int *fd);

/* One HTTP response, as read by h_read_resp (head kept whole, body malloc'd). */
struct h_resp {
    int status;
    char head[8192];
    char *body;
    size_t body_len;
};
/* Value of a header in r->head (case-sensitive name) into out, or NULL. */
const char *h_resp_header(const struct h_resp *r, const char *name, char *out, size_t cap);
/* Read one response from fd: the head byte by byte (so pipelined responses
 * stay apart), then Content-Length bytes of body (none with no_body: after
 * HEAD, or for 304). 0, or -1 on a short or malformed answer. */
int h_read_resp(int fd, struct h_resp *r, bool no_body);
/* Send the request on a new connection to port and read the response into
 * r (no body after HEAD). 0, or -1 with r->status 0. */
int h_request(int port, struct h_resp *r, const char *req, size_t len);
/* Whether the peer closed fd within ms (EOF, nothing more to read). */
bool h_closed_by_peer(int fd, int ms);

#endif
