/* Chat across instances: two or three real preforkd instances on loopback
 * sharing rooms through a real redis-server that each test starts on an
 * ephemeral port (and kills, stops or restarts by pid); real clients on
 * real sockets. No fixed sleeps: everything polls with a deadline. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "server/config.h"
#include "tests/chatclient.h"
#include "tests/harness.h"

#define NINST       3
#define MAX_CLIENTS 32


static struct server inst[NINST];
static int ports[NINST], ninst;
static pid_t redis_pid;
static int redis_port;
static struct client cl[MAX_CLIENTS];
static size_t ncl;

/* ---- redis-server, started and stopped by pid --------------------------- */

static bool redis_answers(int port)
{
    char buf[64];
    int fd = h_tcp_connect(port);
    size_t n = 0;
    bool ok = fd >= 0 && h_write_full(fd, "PING\r\n", 6) == 0 &&
              h_read_some(fd, buf, sizeof buf - 1, 1000, &n) == 0 && n >= 5 &&
              strncmp(buf, "+PONG", 5) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

static pid_t redis_spawn(int port)
{
    char p[16], log[PATH_MAX];
    snprintf(p, sizeof p, "%d", port);
    snprintf(log, sizeof log, "%s/redis.log", inst[0].dir);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execlp("redis-server", "redis-server", "--port", p, "--bind", "127.0.0.1",
               "--save", "", "--appendonly", "no", "--daemonize", "no", (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* On port (0: a free one, retried on a collision). */
static void redis_start(int port)
{
    for (int attempt = 0; attempt < 5; attempt++) {
        int p = port ? port : h_free_port(SOCK_STREAM);
        pid_t pid = redis_spawn(p);
        cr_assert_gt(pid, 0);
        bool up = WAIT_UNTIL(redis_answers(p) || waitpid(pid, NULL, WNOHANG) == pid, 10000);
        if (up && redis_answers(p)) {
            redis_pid = pid;
            redis_port = p;
            return;
        }
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    cr_assert_fail("redis-server did not start");
}

static void redis_kill(void)
{
    if (redis_pid > 0) {
        kill(redis_pid, SIGCONT);
        kill(redis_pid, SIGKILL);
        waitpid(redis_pid, NULL, 0);
    }
    redis_pid = 0;
}

/* One inline command; the first line of the answer into out. */
static void redis_cmd(const char *cmd, char *out, size_t cap)
{
    int fd = h_tcp_connect(redis_port);
    size_t n = 0;
    cr_assert_geq(fd, 0);
    cr_assert_eq(h_write_full(fd, cmd, strlen(cmd)), 0);
    cr_assert_eq(h_read_some(fd, out, cap - 1, 5000, &n), 0);
    out[n] = '\0';
    close(fd);
}

/* ---- instances ---------------------------------------------------------- */

static void setup(void)
{
    ncl = 0;
    ninst = 0;
    redis_pid = 0;
    for (int i = 0; i < NINST; i++)
        server_init(&inst[i]);
}

static void teardown(void)
{
    chat_clients_close(cl, ncl);
    for (int i = NINST - 1; i >= 0; i--)
        server_cleanup(&inst[i]);      /* inst[0].dir holds redis.log */
    redis_kill();
}

TestSuite(chatbus, .init = setup, .fini = teardown, .timeout = 120);

static void start_instance(int i, const char *chat_extra)
{
    ports[i] = h_free_port(SOCK_STREAM);
    server_write_conf(&inst[i], "workers = 2\ngraceful_timeout = 2\n"
                      "listen { address = \"127.0.0.1:%d\" protocol = \"chat\" }\n"
                      "chat {\n  bus = \"redis://127.0.0.1:%d/0\"  # the shared bus\n%s}\n",
                      ports[i], redis_port, chat_extra ? chat_extra : "");
    cr_assert_eq(server_start(&inst[i], NULL), 0, "instance %d did not start", i);
    if (i >= ninst)
        ninst = i + 1;
}

static bool bus_connected(int i)
{
    char out[65536];
    if (h_run(out, sizeof out, "%s status --json -c %s 2>/dev/null", h_bin(), inst[i].conf) != 0)
        return false;
    return strstr(out, "\"connected\":true") != NULL;
}

/* n instances on one fresh redis, each connected to it. */
static void start_all(int n, const char *chat_extra)
{
    redis_start(0);
    for (int i = 0; i < n; i++)
        start_instance(i, chat_extra);
    for (int i = 0; i < n; i++)
        cr_assert(WAIT_UNTIL(bus_connected(i), 15000), "instance %d not on the bus", i);
}

/* ---- clients ------------------------------------------------------------ */

static void pump(int ms)
{
    chat_pump(cl, ncl, ms);
}

static struct client *connect_to(int i)
{
    cr_assert_lt(ncl, MAX_CLIENTS);
    struct client *c = &cl[ncl++];
    chat_client_open(c, h_tcp_connect(ports[i]));
    cr_assert_geq(c->fd, 0);
    cr_assert(PUMP_UNTIL(chat_has(c, "welcome"), 10000), "no greeting");
    return c;
}

/* A user named nick on instance i, in the rooms listed (NULL-ended). */
static struct client *user(int i, const char *nick, ...)
{
    char ok[96];
    struct client *c = connect_to(i);
    chat_say(c, "/nick %s\n", nick);
    snprintf(ok, sizeof ok, "you are now %s\r\n", nick);
    cr_assert(PUMP_UNTIL(chat_has(c, ok), 10000), "nick %s: %s", nick, c->data);
    va_list ap;
    va_start(ap, nick);
    for (const char *room; (room = va_arg(ap, const char *));) {
        chat_say(c, "/join %s\n", room);
        snprintf(ok, sizeof ok, "[%s] * %s joined", room, nick);
        cr_assert(PUMP_UNTIL(chat_has(c, ok), 10000), "join %s: %s", room, c->data);
    }
    va_end(ap);
    return c;
}

static void expect(struct client *c, const char *s, int ms)
{
    cr_assert(PUMP_UNTIL(chat_has(c, s), ms), "waited for \"%s\"; got:\n%s", s, c->data);
}

/* Send line every half second until the answer has want (state that
 * travels between instances settles a moment after the event). */
static void ask_until(struct client *c, const char *line, const char *want, int ms)
{
    bool ok = false;
    for (int64_t end = h_now_ms() + ms; !ok && h_now_ms() < end;) {
        chat_say(c, "%s\n", line);
        ok = PUMP_UNTIL(chat_has(c, want), 500);
    }
    cr_assert(ok, "%s: never \"%s\"; got:\n%s", line, want, c->data);
}

/* ---- tests -------------------------------------------------------------- */

Test(chatbus, two_instances_share_rooms_who_and_private_lines)
{
    start_all(2, NULL);
    struct client *a = user(0, "alice", "#x", NULL), *b = user(1, "bob", "#x", NULL);
    struct client *c = user(0, "carol", NULL);
    expect(a, "[#x] * bob joined", 10000);
    chat_say(a, "hello from one\n");
    expect(b, "[#x] alice: hello from one\r\n", 10000);
    chat_say(b, "hello from two\n/who #x\n/rooms\n");
    expect(a, "[#x] bob: hello from two\r\n", 10000);
    expect(b, "who #x: bob, alice\r\n", 10000);
    expect(b, "rooms: #x (2)\r\n", 10000);
    chat_say(b, "/msg carol the secret\n/msg nobody hi\n");
    expect(c, "[private] bob: the secret\r\n", 10000);
    expect(b, "[private -> carol] the secret", 10000);
    expect(b, "error: no such nick nobody", 10000);
    cr_assert(!chat_has(a, "secret"), "alice saw carol's private line");
    cr_assert_eq(chat_count(a, "hello from two"), 1);
    cr_assert_gt(h_status_number(&inst[0], "published"), 0);
    cr_assert_gt(h_status_number(&inst[1], "received"), 0);
    char out[65536];
    const char *bad = NULL;
    cr_assert_eq(h_run(out, sizeof out, "%s status --prometheus -c %s 2>/dev/null", h_bin(),
                       inst[0].conf), 0);
    cr_assert(h_prometheus_valid(out, &bad), "bad line: %.80s", bad ? bad : "");
    cr_assert(strstr(out, "\npreforkd_chat_bus_connected 1\n"), "%s", out);
    cr_assert_eq(h_run(out, sizeof out, "%s status -c %s 2>/dev/null", h_bin(), inst[0].conf), 0);
    cr_assert(strstr(out, "chat bus redis://") && strstr(out, " connected "), "%s", out);
}

/* Six users on three instances, each sending 30 lines at once: every user
 * gets every line once, and each sender's lines in the order sent. */
Test(chatbus, three_instances_burst_exactly_once_in_order)
{
    enum { USERS = 6, LINES = 30 };
    char nick[16], mark[64];
    start_all(3, NULL);
    struct client *u[USERS];
    for (int i = 0; i < USERS; i++) {
        snprintf(nick, sizeof nick, "u%d", i);
        u[i] = user(i % 3, nick, "#burst", NULL);
    }
    for (int i = 0; i < USERS; i++) {
        snprintf(mark, sizeof mark, "* u%d joined", USERS - 1);
        expect(u[i], mark, 10000);
    }
    for (int k = 0; k < LINES; k++)
        for (int i = 0; i < USERS; i++)
            chat_say(u[i], "m %d from u%d\n", k, i);
    for (int i = 0; i < USERS; i++) {
        cr_assert(PUMP_UNTIL(chat_count(u[i], ": m ") >= USERS * LINES, 30000),
                  "u%d got %d lines", i, chat_count(u[i], ": m "));
        for (int s = 0; s < USERS; s++) {
            const char *prev = u[i]->data;
            for (int k = 0; k < LINES; k++) {
                snprintf(mark, sizeof mark, "] u%d: m %d from u%d\r\n", s, k, s);
                const char *at = strstr(u[i]->data, mark);
                cr_assert(at && at >= prev, "u%d: %s missing or out of order", i, mark);
                cr_assert_eq(chat_count(u[i], mark), 1, "u%d: %s more than once", i, mark);
                prev = at;
            }
        }
    }
    pump(200);
    for (int i = 0; i < USERS; i++)
        cr_assert_eq(chat_count(u[i], ": m "), USERS * LINES, "u%d: extra lines", i);
}

Test(chatbus, nick_unique_across_instances)
{
    char out[256];
    start_all(2, NULL);
    struct client *a = user(0, "alice", NULL);
    struct client *b = connect_to(1);
    chat_say(b, "/nick alice\n");
    expect(b, "error: nick alice is taken", 10000);
    /* A nick held in Redis by an instance this one has never heard of. */
    redis_cmd("SET preforkd:0:nick:dave 0123456789abcdef EX 600\r\n", out, sizeof out);
    cr_assert_eq(strncmp(out, "+OK", 3), 0, "%s", out);
    chat_say(b, "/nick Dave\n");
    expect(b, "error: nick Dave is taken", 10000);
    redis_cmd("GET preforkd:0:nick:alice\r\n", out, sizeof out);
    cr_assert(strstr(out, "$16"), "alice's claim is not in Redis: %s", out);
    /* alice quits: her nick is free on the other instance at once. */
    chat_say(a, "/quit\n");
    cr_assert(PUMP_UNTIL(a->eof, 10000));
    ask_until(b, "/nick alice", "you are now alice", 10000);
}

Test(chatbus, redis_restart_mid_conversation)
{
    start_all(2, NULL);
    struct client *a = user(0, "alice", "#x", NULL), *a2 = user(0, "amy", "#x", NULL);
    struct client *b = user(1, "bob", "#x", NULL);
    expect(a, "[#x] * bob joined", 10000);
    int port = redis_port;
    redis_kill();
    expect(a, "notice: other instances are unreachable", 15000);
    expect(b, "notice: other instances are unreachable", 15000);
    chat_say(a, "while redis is away\n");
    expect(a2, "[#x] alice: while redis is away", 10000);    /* local chat goes on */
    chat_say(b, "/join #y\n");
    expect(b, "[#y] * bob joined", 10000);
    redis_start(port);
    expect(a, "notice: other instances are reachable again", 20000);
    expect(b, "notice: other instances are reachable again", 20000);
    for (int i = 0; i < 2; i++)
        cr_assert(WAIT_UNTIL(bus_connected(i), 15000));
    chat_say(a, "after the restart\n");
    expect(b, "[#x] alice: after the restart", 10000);
    ask_until(a, "/rooms", "rooms: #x (3), #y (1)", 10000);    /* state sent again */
    cr_assert_eq(chat_count(a, "unreachable"), 1);
    cr_assert_eq(chat_count(b, "reachable again"), 1);
    cr_assert(!chat_has(b, "while redis is away"));
}

/* SIGKILL: no goodbye; the others notice the silence after bus_ttl. */
Test(chatbus, killed_instance_users_leave_every_room)
{
    start_all(2, "  bus_ttl = 2\n");
    struct client *a = user(0, "alice", "#x", "#y", NULL);
    user(1, "bob", "#x", "#y", NULL);
    expect(a, "[#y] * bob joined", 10000);
    cr_assert_eq(kill(inst[1].pid, SIGKILL), 0);
    expect(a, "[#x] * bob left (instance lost)", 20000);
    expect(a, "[#y] * bob left (instance lost)", 20000);
    chat_say(a, "/who #x\n");
    expect(a, "who #x: alice\r\n", 10000);
    /* Its nick claims expire too. */
    struct client *c = connect_to(0);
    ask_until(c, "/nick bob", "you are now bob", 20000);
}

/* Redis stops answering (SIGSTOP): publishes wait in a bounded queue, the
 * rest is dropped and the sender told; local members get every line. */
Test(chatbus, slow_redis_bounded_queue_drops_and_says_so)
{
    start_all(2, "  bus_queue = 16\n");
    struct client *a = user(0, "alice", "#x", NULL), *a2 = user(0, "amy", "#x", NULL);
    struct client *b = user(1, "bob", "#x", NULL);
    expect(a, "[#x] * bob joined", 10000);
    cr_assert_eq(kill(redis_pid, SIGSTOP), 0);
    for (int k = 0; k < 35; k++)
        chat_say(a, "burst %d\n", k);
    expect(a, "notice: the chat bus is behind", 10000);
    cr_assert(PUMP_UNTIL(chat_count(a2, "alice: burst") == 35, 10000), "amy: %s", a2->data);
    cr_assert_eq(chat_count(a, "the chat bus is behind"), 1);
    cr_assert_gt(h_status_number(&inst[0], "dropped"), 0);
    cr_assert_eq(kill(redis_pid, SIGCONT), 0);
    expect(b, "alice: burst 0\r\n", 15000);     /* what was queued goes out */
    chat_say(a, "caught up\n");
    expect(b, "alice: caught up", 15000);
    cr_assert_lt(chat_count(b, "alice: burst"), 35);
}

/* Nothing listens where the bus points yet: the instance starts (the
 * connection is asynchronous), serves chat locally, says others are
 * unreachable, and joins once Redis is there. */
Test(chatbus, redis_absent_at_start_then_joined)
{
    redis_port = h_free_port(SOCK_STREAM);
    start_instance(0, NULL);
    struct client *a = connect_to(0);
    expect(a, "other instances are unreachable right now", 5000);
    struct client *a2 = user(0, "amy", "#x", NULL);
    chat_say(a, "/nick alice\n/join #x\nlocal line\n");
    expect(a2, "[#x] alice: local line", 10000);
    redis_start(redis_port);
    cr_assert(WAIT_UNTIL(bus_connected(0), 20000), "never joined the bus");
    expect(a, "notice: other instances are reachable again", 10000);
    start_instance(1, NULL);
    cr_assert(WAIT_UNTIL(bus_connected(1), 15000));
    struct client *b = user(1, "bob", "#x", NULL);
    ask_until(b, "/who #x", "who #x: bob, ", 10000);
    cr_assert(strstr(b->data, "alice") && strstr(b->data, "amy"), "%s", b->data);
    chat_say(b, "hello\n");
    expect(a, "[#x] bob: hello", 10000);
}

/* A graceful stop: its users leave at once (not after bus_ttl, which is a
 * minute here), and the instance says goodbye. */
Test(chatbus, stopped_instance_users_leave_at_once)
{
    start_all(2, "  bus_ttl = 60\n");
    struct client *a = user(0, "alice", "#x", NULL);
    user(1, "bob", "#x", NULL);
    expect(a, "[#x] * bob joined", 10000);
    cr_assert_eq(kill(inst[1].pid, SIGTERM), 0);
    expect(a, "[#x] * bob left", 30000);
    chat_say(a, "/who #x\n");
    expect(a, "who #x: alice\r\n", 10000);
    cr_assert(WAIT_UNTIL(h_status_number(&inst[0], "peers") == 0, 20000),
              "the stopped instance is still a peer");
}

/* A reload that turns the bus on: the rooms in use join it, and the users
 * already there reach the other instance. A bad bus at reload is refused. */
Test(chatbus, reload_joins_the_bus)
{
    char out[4096];
    redis_start(0);
    ports[0] = h_free_port(SOCK_STREAM);
    server_write_conf(&inst[0], "workers = 2\n"
                      "listen { address = \"127.0.0.1:%d\" protocol = \"chat\" }\n", ports[0]);
    cr_assert_eq(server_start(&inst[0], NULL), 0);
    ninst = 1;
    struct client *a = user(0, "alice", "#x", NULL);
    start_instance(1, NULL);
    cr_assert(WAIT_UNTIL(bus_connected(1), 15000));
    struct client *b = user(1, "bob", "#x", NULL);
    server_write_conf(&inst[0], "workers = 2\n"
                      "listen { address = \"127.0.0.1:%d\" protocol = \"chat\" }\n"
                      "chat { bus = \"redis:/nowhere\" }\n", ports[0]);
    cr_assert_eq(kill(inst[0].pid, SIGHUP), 0);
    cr_assert(WAIT_UNTIL(h_status_number(&inst[0], "reloads") == 1, 10000));
    cr_assert_eq(h_run(out, sizeof out, "%s status --json -c %s 2>/dev/null", h_bin(),
                       inst[0].conf), 0);
    cr_assert(strstr(out, "\"rejected\"") && strstr(out, "chat.bus"), "%s", out);
    server_write_conf(&inst[0], "workers = 2\n"
                      "listen { address = \"127.0.0.1:%d\" protocol = \"chat\" }\n"
                      "chat { bus = \"redis://127.0.0.1:%d\" }\n", ports[0], redis_port);
    cr_assert_eq(kill(inst[0].pid, SIGHUP), 0);
    cr_assert(WAIT_UNTIL(bus_connected(0), 15000), "the reload did not join the bus");
    expect(b, "[#x] * alice joined", 10000);     /* news to the other instance */
    chat_say(b, "hi alice\n");
    expect(a, "[#x] bob: hi alice", 10000);
    chat_say(a, "hi bob\n");
    expect(b, "[#x] alice: hi bob", 10000);
}

Test(chatbus, config_keys_checked)
{
    struct config c;
    char err[512], path[PATH_MAX];
    snprintf(path, sizeof path, "%s/bad.conf", inst[0].dir);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    fprintf(f, "listen { address = \"127.0.0.1:1\" protocol = \"chat\" }\n"
               "chat {\n  # a comment\n  bus = \"http://127.0.0.1\"\n}\n");
    fclose(f);
    cr_assert_eq(config_load(path, &c, err, sizeof err), -1);
    cr_assert(strstr(err, "bad.conf:4: chat.bus: must be"), "%s", err);
    f = fopen(path, "w");
    fprintf(f, "listen { address = \"127.0.0.1:1\" protocol = \"chat\" }\n"
               "chat { bus = \"redis://localhost/3\" # db 3\n bus_ttl = 0 }\n");
    fclose(f);
    cr_assert_eq(config_load(path, &c, err, sizeof err), -1);
    cr_assert(strstr(err, "bad.conf:3: chat.bus_ttl"), "%s", err);
    f = fopen(path, "w");
    fprintf(f, "listen { address = \"127.0.0.1:1\" protocol = \"chat\" }\n"
               "chat { bus = \"redis://localhost/3\" }\n");
    fclose(f);
    cr_assert_eq(config_load(path, &c, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(c.chat.bus_host, "127.0.0.1");
    cr_assert_eq(c.chat.bus_port, 6379);
    cr_assert_eq(c.chat.bus_db, 3);
    cr_assert_eq(c.chat.bus_ttl, 15);
    config_free(&c);
}
