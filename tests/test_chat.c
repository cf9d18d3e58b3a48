/* Chat integration tests: real clients on real sockets against the real
 * binary with several workers; which worker holds a client is read from
 * /proc (socket inodes), so cross-worker paths are exercised on purpose. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/chatclient.h"
#include "tests/harness.h"

#define MAX_CLIENTS 128


static struct server srv;
static int port;
static struct client cl[MAX_CLIENTS];
static size_t ncl;

static void setup(void)
{
    server_init(&srv);
    port = h_free_port(SOCK_STREAM);
    ncl = 0;
}

static void teardown(void)
{
    chat_clients_close(cl, ncl);
    server_cleanup(&srv);
}

TestSuite(chat, .init = setup, .fini = teardown, .timeout = 60);

static void start_chat(int workers)
{
    server_write_conf(&srv, "workers = %d\ngraceful_timeout = 2\n"
                      "listen { address = \"127.0.0.1:%d\" protocol = \"chat\" }\n",
                      workers, port);
    cr_assert_eq(server_start(&srv, NULL), 0, "server did not become ready");
}

/* Read what is there on every open client, waiting at most ms for the first. */
static void pump(int ms)
{
    chat_pump(cl, ncl, ms);
}

static bool wait_for(struct client *c, const char *s, int ms)
{
    return PUMP_UNTIL(chat_has(c, s), ms);
}

/* Connect, wait for the greeting, take a nick. rcvbuf > 0: set it first. */
static struct client *join_as(const char *nick, int rcvbuf)
{
    cr_assert_lt(ncl, MAX_CLIENTS);
    struct client *c = &cl[ncl];
    chat_client_open(c, socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (rcvbuf > 0)
        setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    cr_assert_eq(connect(c->fd, (struct sockaddr *)&sin, sizeof sin), 0);
    ncl++;
    cr_assert(wait_for(c, "welcome", 5000), "no greeting");
    if (nick) {
        char ok[64];
        chat_say(c, "/nick %s\n", nick);
        snprintf(ok, sizeof ok, "you are now %s\r\n", nick);
        cr_assert(wait_for(c, ok, 5000), "nick %s refused: %s", nick, c->data);
    }
    return c;
}

static void join_room(struct client *c, const char *nick, const char *room)
{
    char ok[96];
    chat_say(c, "/join %s\n", room);
    snprintf(ok, sizeof ok, "[#%s] * %s joined", room, nick);
    cr_assert(wait_for(c, ok, 5000), "join %s: %s", room, c->data);
}

/* The worker pid holding the server side of c's connection, via /proc. */
static unsigned long server_inode(const struct client *c)
{
    struct sockaddr_in me;
    socklen_t len = sizeof me;
    getsockname(c->fd, (struct sockaddr *)&me, &len);
    FILE *f = fopen("/proc/net/tcp", "r");
    char line[512];
    unsigned long inode = 0;
    while (f && fgets(line, sizeof line, f)) {
        unsigned lport, rport;
        unsigned long ino;
        if (sscanf(line, " %*d: %*x:%x %*x:%x %*x %*s %*s %*s %*d %*d %lu",
                   &lport, &rport, &ino) == 3 &&
            lport == (unsigned)port && rport == ntohs(me.sin_port))
            inode = ino;
    }
    if (f)
        fclose(f);
    return inode;
}

static pid_t worker_of(const struct client *c, const pid_t *pids, size_t n)
{
    char want[64], path[64], link[64];
    snprintf(want, sizeof want, "socket:[%lu]", server_inode(c));
    for (size_t i = 0; i < n; i++) {
        snprintf(path, sizeof path, "/proc/%d/fd", (int)pids[i]);
        DIR *d = opendir(path);
        struct dirent *de;
        while (d && (de = readdir(d))) {
            char fdp[340];
            snprintf(fdp, sizeof fdp, "%s/%s", path, de->d_name);
            ssize_t k = readlink(fdp, link, sizeof link - 1);
            if (k > 0 && (link[k] = '\0', strcmp(link, want) == 0)) {
                closedir(d);
                return pids[i];
            }
        }
        if (d)
            closedir(d);
    }
    return 0;
}

static size_t workers(pid_t *pids, size_t cap)
{
    return h_children(&srv, srv.pid, pids, cap);
}

/* 100 clients, 10 rooms, 4 workers: each gets exactly its room's lines,
 * each sender's in the order sent. */
Test(chat, rooms_fan_out_in_order_across_workers)
{
    enum { N = 100, ROOMS = 10, PER = 5 };
    start_chat(4);
    pid_t pids[8];
    cr_assert(WAIT_UNTIL(workers(pids, 8) == 4, 5000));
    char nick[32], room[32], mark[128];
    for (int i = 0; i < N; i++) {
        snprintf(nick, sizeof nick, "u%d", i);
        snprintf(room, sizeof room, "r%d", i % ROOMS);
        join_room(join_as(nick, 0), nick, room);
    }
    size_t on[8] = { 0 }, used = 0;
    for (int i = 0; i < N; i++) {
        pid_t w = worker_of(&cl[i], pids, 4);
        for (size_t k = 0; k < 4; k++)
            on[k] += pids[k] == w;
    }
    for (size_t k = 0; k < 4; k++)
        used += on[k] > 0;
    cr_assert_geq(used, 2, "all 100 clients on one worker");
    for (int k = 0; k < PER; k++)
        for (int i = 0; i < N; i++)
            chat_say(&cl[i], "m %d from u%d\n", k, i);
    for (int i = 0; i < N; i++) {
        cr_assert(PUMP_UNTIL((chat_count(&cl[i], ": m ") == PER * N / ROOMS), 15000),
                  "u%d got %d lines", i, chat_count(&cl[i], ": m "));
        snprintf(room, sizeof room, "[#r%d] ", i % ROOMS);
        for (const char *p = cl[i].data; (p = strstr(p, "\n[#")); p++)
            cr_assert_eq(strncmp(p + 1, room, strlen(room)), 0, "u%d got %.40s", i, p + 1);
        for (int s = i % ROOMS; s < N; s += ROOMS) {
            const char *prev = cl[i].data;
            for (int k = 0; k < PER; k++) {
                snprintf(mark, sizeof mark, "u%d: m %d from u%d\r\n", s, k, s);
                const char *at = strstr(cl[i].data, mark);
                cr_assert(at && at >= prev, "u%d: %s missing or out of order", i, mark);
                prev = at;
            }
        }
    }
}

Test(chat, private_message_reaches_only_target)
{
    start_chat(2);
    struct client *a = join_as("alice", 0), *b = join_as("bob", 0), *c = join_as("carol", 0);
    chat_say(a, "/msg bob the secret\n/msg carol marker\n");
    cr_assert(wait_for(b, "[private] alice: the secret", 5000));
    cr_assert(wait_for(c, "[private] alice: marker", 5000));
    cr_assert(wait_for(a, "[private -> bob] the secret", 5000));
    cr_assert(!chat_has(c, "secret"), "carol saw bob's message");
    chat_say(a, "/msg nobody hi\n");
    cr_assert(wait_for(a, "error: no such nick nobody", 5000));
}

/* Two clients on different workers ask for the same nick at once. */
Test(chat, nick_unique_across_workers)
{
    start_chat(2);
    pid_t pids[4];
    cr_assert(WAIT_UNTIL(workers(pids, 4) == 2, 5000));
    struct client *first = join_as(NULL, 0), *other = NULL;
    pid_t w0 = worker_of(first, pids, 2);
    for (int i = 0; i < 40 && !other; i++) {
        struct client *c = join_as(NULL, 0);
        if (worker_of(c, pids, 2) != w0)
            other = c;
    }
    cr_assert_not_null(other, "no client landed on the second worker");
    for (int round = 0; round < 5; round++) {
        char cmd[32], ok[48], taken[64];
        int n = snprintf(cmd, sizeof cmd, "/nick racer%d\n", round);
        snprintf(ok, sizeof ok, "you are now racer%d\r\n", round);
        snprintf(taken, sizeof taken, "nick racer%d is taken", round);
        cr_assert_eq(write(first->fd, cmd, (size_t)n), n);
        cr_assert_eq(write(other->fd, cmd, (size_t)n), n);
        cr_assert(PUMP_UNTIL(((chat_has(first, ok) || chat_has(first, taken)) &&
                                       (chat_has(other, ok) || chat_has(other, taken))), 5000));
        cr_assert_eq(chat_has(first, ok) + chat_has(other, ok), 1, "round %d: %s | %s", round,
                     first->data, other->data);
    }
}

/* A member that never reads is cut off with a reason; the room flows on. */
Test(chat, slow_reader_cut_off_others_continue)
{
    enum { SENDERS = 20, LINES = 30 };
    start_chat(2);
    struct client *slow = join_as("slow", 4096);
    join_room(slow, "slow", "s");
    size_t first = ncl;
    char nick[16], text[451];
    memset(text, 'x', sizeof text - 1);
    text[sizeof text - 1] = '\0';
    for (int i = 0; i < SENDERS; i++) {
        snprintf(nick, sizeof nick, "s%d", i);
        join_room(join_as(nick, 0), nick, "s");
    }
    slow->eof = true;           /* pump() leaves it alone: it never reads */
    size_t base[SENDERS];
    for (int i = 0; i < SENDERS; i++)
        base[i] = cl[first + (size_t)i].lines;
    /* The readers keep up round by round (as live clients would, and so a
     * slow test process under ASan does not get them cut off too); only the
     * non-reader falls behind. */
    for (int k = 0; k < LINES; k++) {
        for (int i = 0; i < SENDERS; i++)
            chat_say(&cl[first + (size_t)i], "%d %s\n", k, text);
        size_t want = (size_t)(k + 1) * SENDERS;
        for (int i = 0; i < SENDERS; i++) {
            struct client *c = &cl[first + (size_t)i];
            cr_assert(PUMP_UNTIL(c->eof || c->lines - base[i] >= want, 15000),
                      "s%d has %zu of %zu lines of round %d", i, c->lines - base[i], want, k);
        }
    }
    for (size_t i = first; i < ncl; i++) {
        cr_assert(PUMP_UNTIL((chat_count(&cl[i], " xxxx") == SENDERS * LINES), 15000),
                  "s%zu got %d lines; log: %d cut off, %d flood, %d lagging", i - first,
                  chat_count(&cl[i], " xxxx"), h_file_count(srv.log, "output queue full"),
                  h_file_count(srv.log, "flood"), h_file_count(srv.log, "keeping up"));
        cr_assert(wait_for(&cl[i], "* slow left", 5000), "no leave announced");
    }
    slow->eof = false;
    cr_assert(PUMP_UNTIL((slow->eof), 15000), "slow reader not disconnected");
    cr_assert(chat_has(slow, "error: output queue full"), "no reason given");
    cr_assert_lt(chat_count(slow, " xxxx"), SENDERS * LINES);
}

/* SIGKILL a worker: members elsewhere see its users leave. */
Test(chat, killed_worker_users_leave_rooms)
{
    enum { N = 24 };
    start_chat(3);
    pid_t pids[4], where[N];
    cr_assert(WAIT_UNTIL(workers(pids, 4) == 3, 5000));
    char nick[16];
    for (int i = 0; i < N; i++) {
        snprintf(nick, sizeof nick, "k%d", i);
        join_room(join_as(nick, 0), nick, "k");
        where[i] = worker_of(&cl[i], pids, 3);
    }
    pid_t victim = where[0];
    int gone = 0;
    for (int i = 0; i < N; i++)
        gone += where[i] == victim;
    cr_assert_lt(gone, N, "every client on one worker");
    cr_assert_eq(kill(victim, SIGKILL), 0);
    for (int i = 0; i < N; i++) {
        if (where[i] == victim)
            continue;
        cr_assert(PUMP_UNTIL((chat_count(&cl[i], "left (connection lost)") == gone), 5000),
                  "k%d saw %d of %d departures", i, chat_count(&cl[i], "left (connection lost)"), gone);
        for (int j = 0; j < N; j++) {
            char line[64];
            snprintf(line, sizeof line, "* k%d left (connection lost)", j);
            cr_assert_eq(chat_has(&cl[i], line), where[j] == victim);
        }
    }
}

Test(chat, limits_line_nick_room)
{
    start_chat(1);
    struct client *c = join_as("lim", 0);
    char big[700];
    memset(big, 'y', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    chat_say(c, "%s\n", big);
    cr_assert(wait_for(c, "error: line too long", 5000));
    chat_say(c, "/nick bad!nick\n/nick %s\n", "n23456789012345678901234567");
    cr_assert(PUMP_UNTIL((chat_count(c, "error: bad nick") == 2), 5000));
    chat_say(c, "/join #no way\n/join #%s\n", "r2345678901234567890123456789012345");
    cr_assert(PUMP_UNTIL((chat_count(c, "error: bad room name") == 2), 5000));
    for (int i = 0; i < 16; i++)
        chat_say(c, "/join r%d\n", i);
    chat_say(c, "/join onemore\n");
    cr_assert(wait_for(c, "error: too many rooms", 5000));
    chat_say(c, "still here\n");
    cr_assert(wait_for(c, "[#r15] lim: still here", 5000), "%s", c->data);
}

Test(chat, flood_limit_then_disconnect)
{
    start_chat(1);
    struct client *c = join_as("fl", 0);
    join_room(c, "fl", "f");
    char burst[60 * 16], *p = burst;
    for (int i = 0; i < 60; i++)
        p += sprintf(p, "f %d\n", i);
    cr_assert_eq(h_write_full(c->fd, burst, (size_t)(p - burst)), 0);
    cr_assert(wait_for(c, "error: flood limit", 5000));
    cr_assert(wait_for(c, "[#f] fl: f 35\r\n", 5000));
    cr_assert(!chat_has(c, "[#f] fl: f 59\r\n"), "the whole burst went through");
    cr_assert(!c->eof);
    char flood[300 * 16];
    p = flood;
    for (int i = 0; i < 300; i++)
        p += sprintf(p, "g %d\n", i);
    cr_assert_eq(h_write_full(c->fd, flood, (size_t)(p - flood)), 0);
    cr_assert(PUMP_UNTIL((c->eof), 5000), "flooder not disconnected");
    cr_assert(chat_has(c, "error: flooding; disconnecting"));
}
