/* chat (worker side): per connection a small line buffer, a token bucket
 * against floods and a bounded output queue; a client that stops reading is
 * cut off alone. A local map room -> members turns one CHAT_DELIVER from the
 * master into a write per member. Closing is deferred to a zero-length timer
 * so that no member list is changed while it is being walked. */
#include "workers/chat.h"

#include <arpa/inet.h>
#include <errno.h>
#include <search.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "server/chat.h"
#include "server/log.h"

#define IN_BUF          2048            /* > CHAT_LINE_MAX + "\r\n" */
#define OUT_MAX         (64 * 1024)     /* queued output before a cut-off */
#define OUT_MIN_CAP     1024
#define SNDBUF_BYTES    (32 * 1024)     /* so a non-reader shows up early */
#define FLOOD_RATE      20              /* lines per second */
#define FLOOD_BURST     40
#define FLOOD_KICK      100             /* dropped lines per window: cut off */
#define FLOOD_WINDOW_MS 10000
#define LINGER_MS       10000           /* closing: time to flush a reason */

struct wroom {
    char name[CHAT_ROOM_MAX + 2];
    struct chat_conn **members;
    size_t n, cap;
};

struct chat_conn {
    uint32_t id;
    struct conn *c;
    bool skipping;                      /* discarding a too-long line */
    bool closing, dead, paused, bye_sent;
    size_t inlen;
    unsigned char *out;
    size_t ohead, olen, ocap;
    struct wroom *rooms[CHAT_ROOMS_PER_USER];   /* for local delivery */
    size_t nrooms;
    double tokens;
    int64_t refill_ms, window_ms;
    unsigned drops;
    bool flood_warned;
    char in[IN_BUF];
};

static void *conns_by_id, *rooms_by_name;
static uint32_t last_id;
static struct tlist *now_timer, *linger_timer;

static struct chat_conn *state_of(struct conn *c)
{
    return (struct chat_conn *)c->state;
}

static int cmp_id(const void *a, const void *b)
{
    uint32_t x = ((const struct chat_conn *)a)->id;
    uint32_t y = ((const struct chat_conn *)b)->id;
    return x < y ? -1 : x > y;
}

static int cmp_room(const void *a, const void *b)
{
    return strcasecmp(((const struct wroom *)a)->name, ((const struct wroom *)b)->name);
}

static int chat_init(struct worker *w)
{
    now_timer = worker_timer_list(w, 0);
    linger_timer = worker_timer_list(w, LINGER_MS);
    return now_timer && linger_timer ? 0 : -1;
}

/* ---- output ------------------------------------------------------------- */

/* Close on the next loop turn: callers may be walking a member list. */
static void close_soon(struct chat_conn *cc)
{
    conn_timer_set(cc->c, now_timer);
}

static uint32_t wanted_events(const struct chat_conn *cc)
{
    uint32_t ev = cc->olen ? EPOLLOUT : 0;
    if (!cc->closing && !cc->dead && !cc->paused)
        ev |= EPOLLIN;
    return ev;
}

static void update_interest(struct chat_conn *cc)
{
    if (!cc->dead && conn_set_interest(cc->c, wanted_events(cc)) != 0) {
        cc->dead = true;
        close_soon(cc);
    }
}

static void flush_out(struct chat_conn *cc)
{
    while (cc->olen > 0 && !cc->dead) {
        ssize_t n = write(cc->c->fd, cc->out + cc->ohead, cc->olen);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n <= 0) {
            cc->dead = true;
            close_soon(cc);
            return;
        }
        cc->ohead += (size_t)n;
        cc->olen -= (size_t)n;
        cc->c->w->stats.bytes_out += (uint64_t)n;
    }
    if (cc->olen == 0)
        cc->ohead = 0;
    if (cc->closing && cc->olen == 0)
        close_soon(cc);
    update_interest(cc);
}

/* Room for n more bytes; the queue never exceeds max. */
static int out_reserve(struct chat_conn *cc, size_t n, size_t max)
{
    if (cc->olen + n > max)
        return -1;
    if (cc->ohead > 0) {
        memmove(cc->out, cc->out + cc->ohead, cc->olen);
        cc->ohead = 0;
    }
    if (cc->olen + n <= cc->ocap)
        return 0;
    size_t cap = cc->ocap ? cc->ocap : OUT_MIN_CAP;
    while (cap < cc->olen + n)
        cap *= 2;
    unsigned char *p = realloc(cc->out, cap);
    if (!p)
        return -1;
    cc->out = p;
    cc->ocap = cap;
    return 0;
}

static void append(struct chat_conn *cc, const char *line, size_t len)
{
    memcpy(cc->out + cc->olen, line, len);
    memcpy(cc->out + cc->olen + len, "\r\n", 2);
    cc->olen += len + 2;
}

static void send_bye(struct chat_conn *cc)
{
    uint32_t id = cc->id;
    if (!cc->bye_sent && worker_send_master(cc->c->w, CHAT_BYE, &id, sizeof id) == 0)
        cc->bye_sent = true;
}

/* The client does not read: keep the line it is part-way through, replace
 * the rest with the reason, leave the rooms now, and close once flushed. */
static void cut_off(struct chat_conn *cc, const char *reason)
{
    unsigned char *nl = cc->olen ? memchr(cc->out + cc->ohead, '\n', cc->olen) : NULL;
    if (cc->ohead > 0 && nl)
        cc->olen = (size_t)(nl + 1 - (cc->out + cc->ohead));
    else
        cc->olen = 0;
    if (out_reserve(cc, strlen(reason) + 2, OUT_MAX + 256) == 0)
        append(cc, reason, strlen(reason));
    char ip[INET6_ADDRSTRLEN];
    log_info("chat connection %u from %s: %s", cc->id,
             peer_addr_text(&cc->c->peer, ip, sizeof ip), reason);
    cc->closing = true;
    send_bye(cc);
    conn_timer_set(cc->c, linger_timer);
    flush_out(cc);
}

/* Queue one line (CRLF added) and try to send it at once. */
static void put_line(struct chat_conn *cc, const char *line, size_t len)
{
    if (cc->closing || cc->dead)
        return;
    if (out_reserve(cc, len + 2, OUT_MAX) != 0) {
        cut_off(cc, "error: output queue full (you are not reading); disconnecting");
        return;
    }
    append(cc, line, len);
    flush_out(cc);
}

static void __attribute__((format(printf, 2, 3)))
put_fmt(struct chat_conn *cc, const char *fmt, ...)
{
    char line[CHAT_LINE_MAX + 128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n >= 0)
        put_line(cc, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

/* ---- local rooms -------------------------------------------------------- */

static struct wroom *room_find(const char *name, bool create)
{
    struct wroom key, *r;
    snprintf(key.name, sizeof key.name, "%s", name);
    void **p = tfind(&key, &rooms_by_name, cmp_room);
    if (p || !create)
        return p ? *p : NULL;
    if (!(r = calloc(1, sizeof *r)))
        return NULL;
    memcpy(r->name, key.name, sizeof r->name);
    if (!tsearch(r, &rooms_by_name, cmp_room)) {
        free(r);
        return NULL;
    }
    return r;
}

static int room_add(struct wroom *r, struct chat_conn *cc)
{
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 8;
        struct chat_conn **m = realloc(r->members, cap * sizeof *m);
        if (!m)
            return -1;
        r->members = m;
        r->cap = cap;
    }
    r->members[r->n++] = cc;
    return 0;
}

static void room_remove(struct wroom *r, struct chat_conn *cc)
{
    for (size_t i = 0; i < r->n; i++) {
        if (r->members[i] == cc) {
            r->members[i] = r->members[--r->n];
            break;
        }
    }
    if (r->n == 0) {
        tdelete(r, &rooms_by_name, cmp_room);
        free(r->members);
        free(r);
    }
}

static ssize_t conn_room(const struct chat_conn *cc, const struct wroom *r)
{
    for (size_t i = 0; i < cc->nrooms; i++)
        if (cc->rooms[i] == r)
            return (ssize_t)i;
    return -1;
}

static void conn_drop_room(struct chat_conn *cc, size_t i)
{
    struct wroom *r = cc->rooms[i];
    memmove(&cc->rooms[i], &cc->rooms[i + 1], (cc->nrooms - i - 1) * sizeof r);
    cc->nrooms--;
    room_remove(r, cc);
}

/* ---- from the master ---------------------------------------------------- */

static struct chat_conn *find_conn(uint32_t id)
{
    struct chat_conn key = { .id = id };
    void **p = tfind(&key, &conns_by_id, cmp_id);
    return p ? *p : NULL;
}

static void on_joined(struct chat_conn *cc, const char *name)
{
    struct wroom *r = room_find(name, true);
    ssize_t i = r ? conn_room(cc, r) : -1;
    if (!r)
        return log_error("chat: out of memory for room %s", name);
    if (i >= 0) {
        /* again: it becomes the current room */
        memmove(&cc->rooms[i], &cc->rooms[i + 1], (cc->nrooms - (size_t)i - 1) * sizeof r);
        cc->rooms[cc->nrooms - 1] = r;
        return;
    }
    if (cc->nrooms == CHAT_ROOMS_PER_USER || room_add(r, cc) != 0) {
        if (r->n == 0)
            room_remove(r, cc);
        return log_error("chat: connection %u cannot track room %s", cc->id, name);
    }
    cc->rooms[cc->nrooms++] = r;
}

static void on_deliver(struct worker *w, const char *name, const char *line)
{
    struct wroom *r = room_find(name, false);
    size_t len = strlen(line);
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++)
        put_line(r->members[i], line, len);
    (void)w;
}

static void chat_master_msg(struct worker *w, const struct ipc_msg *m)
{
    char buf[IPC_MAX_PAYLOAD + 2];
    const char *a, *b;
    uint32_t id;
    if (chat_parse(m, buf, sizeof buf, &id, &a, &b) != 0)
        return;
    if (m->hdr.type == CHAT_DELIVER)
        return on_deliver(w, a, b);
    struct chat_conn *cc = find_conn(id);
    if (!cc)
        return;                 /* closed meanwhile */
    switch (m->hdr.type) {
    case CHAT_REPLY:  put_line(cc, a, strlen(a)); break;
    case CHAT_JOINED: on_joined(cc, a); break;
    case CHAT_LEFT: {
        struct wroom *r = room_find(a, false);
        ssize_t i = r ? conn_room(cc, r) : -1;
        if (i >= 0)
            conn_drop_room(cc, (size_t)i);
        break;
    }
    default:
        log_warn("chat: unexpected frame type %u from the master", m->hdr.type);
    }
}

/* ---- commands ----------------------------------------------------------- */

static void relay(struct chat_conn *cc, uint16_t type, const char *a, const char *b)
{
    unsigned char buf[IPC_MAX_PAYLOAD];
    size_t len = chat_payload(buf, sizeof buf, cc->id, a, b);
    if (len == 0 || worker_send_master(cc->c->w, type, buf, len) != 0)
        put_fmt(cc, "error: server busy; try again");
}

static void cmd_help(struct chat_conn *cc)
{
    put_fmt(cc, "commands: /nick NAME, /join ROOM, /leave [ROOM], /rooms, "
                "/who [ROOM], /msg NICK TEXT, /quit; other lines go to your "
                "current room (the last joined); start a line with // to say /...");
}

static void cmd_room_arg(struct chat_conn *cc, uint16_t type, const char *arg)
{
    char room[CHAT_ROOM_MAX + 2] = "";
    if (!*arg && type == CHAT_JOIN)
        return put_fmt(cc, "error: usage: /join ROOM");
    /* No room named: the master knows the current one (it sees every
     * join in order; this worker hears of them only later). */
    if (*arg && chat_room_normalize(arg, room, sizeof room) != 0)
        return put_fmt(cc, "error: bad room name %s (#? and 1-%d of A-Z a-z 0-9 _ -)",
                       arg, CHAT_ROOM_MAX);
    relay(cc, type, room, NULL);
}

static void cmd_msg(struct chat_conn *cc, char *arg)
{
    char *text = strchr(arg, ' ');
    if (text)
        *text++ = '\0';
    if (!chat_nick_valid(arg) || !text || !*text)
        return put_fmt(cc, "error: usage: /msg NICK TEXT");
    relay(cc, CHAT_MSG, arg, text);
}

static void command(struct chat_conn *cc, char *line)
{
    char *arg = strchr(line, ' ');
    if (arg)
        *arg++ = '\0';
    else
        arg = line + strlen(line);
    while (*arg == ' ')
        arg++;
    if (strcmp(line, "/nick") == 0) {
        if (!chat_nick_valid(arg))
            return put_fmt(cc, "error: bad nick (1-%d of A-Z a-z 0-9 _ -)", CHAT_NICK_MAX);
        relay(cc, CHAT_NICK, arg, NULL);
    } else if (strcmp(line, "/join") == 0) {
        cmd_room_arg(cc, CHAT_JOIN, arg);
    } else if (strcmp(line, "/leave") == 0 || strcmp(line, "/part") == 0) {
        cmd_room_arg(cc, CHAT_LEAVE, arg);
    } else if (strcmp(line, "/who") == 0) {
        cmd_room_arg(cc, CHAT_WHO, arg);
    } else if (strcmp(line, "/rooms") == 0 || strcmp(line, "/list") == 0) {
        relay(cc, CHAT_ROOMS, NULL, NULL);
    } else if (strcmp(line, "/msg") == 0) {
        cmd_msg(cc, arg);
    } else if (strcmp(line, "/quit") == 0) {
        put_fmt(cc, "bye");
        send_bye(cc);
        cc->closing = true;
        flush_out(cc);
    } else if (strcmp(line, "/help") == 0) {
        cmd_help(cc);
    } else {
        put_fmt(cc, "error: unknown command %.32s (try /help)", line);
    }
}

/* ---- input -------------------------------------------------------------- */

/* UTF-8 without overlongs, surrogates or control characters (but tab). */
static bool text_valid(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned char b = s[i];
        size_t k = b < 0x80 ? 0 : b >= 0xc2 && b < 0xe0 ? 1 : b >= 0xe0 && b < 0xf0 ? 2
                 : b >= 0xf0 && b < 0xf5 ? 3 : 9;
        if (k == 9 || i + k >= n)
            return false;
        if (k == 0 && (b < 0x20 ? b != '\t' : b == 0x7f))
            return false;
        if (k >= 2 && ((b == 0xe0 && s[i + 1] < 0xa0) || (b == 0xed && s[i + 1] > 0x9f) ||
                       (b == 0xf0 && s[i + 1] < 0x90) || (b == 0xf4 && s[i + 1] > 0x8f)))
            return false;
        for (size_t j = 1; j <= k; j++)
            if ((s[i + j] & 0xc0) != 0x80)
                return false;
        i += k + 1;
    }
    return true;
}

/* Token bucket: FLOOD_RATE lines/s, FLOOD_BURST at once. false: drop it. */
static bool flood_ok(struct chat_conn *cc, int64_t now)
{
    cc->tokens += (double)(now - cc->refill_ms) * FLOOD_RATE / 1000.0;
    if (cc->tokens > FLOOD_BURST)
        cc->tokens = FLOOD_BURST;
    cc->refill_ms = now;
    if (cc->tokens >= 1.0) {
        cc->tokens -= 1.0;
        cc->flood_warned = false;
        return true;
    }
    if (now - cc->window_ms > FLOOD_WINDOW_MS) {
        cc->window_ms = now;
        cc->drops = 0;
    }
    if (++cc->drops >= FLOOD_KICK) {
        put_fmt(cc, "error: flooding; disconnecting");
        send_bye(cc);
        cc->closing = true;
        conn_timer_set(cc->c, linger_timer);
        flush_out(cc);
    } else if (!cc->flood_warned) {
        /* once per burst, so a flood does not come back doubled */
        put_fmt(cc, "error: flood limit (%d lines/s, burst %d); line dropped",
                FLOOD_RATE, FLOOD_BURST);
        cc->flood_warned = true;
    }
    return false;
}

static void handle_line(struct chat_conn *cc, char *line, size_t n)
{
    struct worker *w = cc->c->w;
    if (n > 0 && line[n - 1] == '\r')
        line[--n] = '\0';
    if (n == 0)
        return;
    w->stats.requests++;
    if (!flood_ok(cc, worker_now(w)))
        return;
    if (n > CHAT_LINE_MAX)
        return put_fmt(cc, "error: line too long (at most %d bytes)", CHAT_LINE_MAX);
    if (!text_valid((unsigned char *)line, n))
        return put_fmt(cc, "error: lines must be UTF-8 text without control characters");
    if (line[0] == '/' && line[1] != '/')
        return command(cc, line);
    if (line[0] == '/')
        line++;
    relay(cc, CHAT_SAY, "", line);     /* to the current room */
}

/* Take the complete lines in the buffer while the master keeps up. */
static void process_input(struct chat_conn *cc)
{
    size_t start = 0;
    char *nl = NULL;
    uint64_t handled = cc->c->w->stats.requests;
    while (!cc->closing && !cc->dead && !worker_uplink_congested(cc->c->w)) {
        if (!(nl = memchr(cc->in + start, '\n', cc->inlen - start)))
            break;
        size_t n = (size_t)(nl - (cc->in + start));
        *nl = '\0';
        if (cc->skipping)
            cc->skipping = false;
        else
            handle_line(cc, cc->in + start, n);
        start += n + 1;
    }
    if (!nl && (cc->skipping || cc->inlen - start > CHAT_LINE_MAX + 1)) {
        if (!cc->skipping)
            put_fmt(cc, "error: line too long (at most %d bytes); skipped", CHAT_LINE_MAX);
        cc->skipping = true;
        start = cc->inlen;
    }
    memmove(cc->in, cc->in + start, cc->inlen - start);
    cc->inlen -= start;
    cc->paused = worker_uplink_congested(cc->c->w);
    /* Timed per line: from this wakeup to its relay queued or answer put. */
    handled = cc->c->w->stats.requests - handled;
    if (handled)
        worker_lat_done(cc->c->ls, worker_now_ns(cc->c->w), (uint32_t)handled);
}

static void read_input(struct chat_conn *cc)
{
    if (cc->inlen == sizeof cc->in)
        return;                 /* lines wait for the master; not EOF */
    ssize_t n = read(cc->c->fd, cc->in + cc->inlen, sizeof cc->in - cc->inlen);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n < 0) {
        cc->dead = true;        /* reset: nothing more can be sent */
        close_soon(cc);
        return;
    }
    if (n == 0) {
        /* The client finished sending (nc at end of input): answers to
         * what it sent still go out before the close. */
        send_bye(cc);
        cc->closing = true;
        conn_timer_set(cc->c, linger_timer);
        flush_out(cc);
        return;
    }
    cc->inlen += (size_t)n;
    cc->c->w->stats.bytes_in += (uint64_t)n;
    process_input(cc);
}

/* ---- connection life ---------------------------------------------------- */

static void chat_open(struct conn *c)
{
    struct chat_conn *cc = state_of(c);
    int sndbuf = SNDBUF_BYTES;
    cc->c = c;
    cc->id = ++last_id;
    cc->tokens = FLOOD_BURST;
    cc->refill_ms = cc->window_ms = worker_now(c->w);
    if (setsockopt(c->fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf) != 0)
        log_debug("chat: SO_SNDBUF: %s", strerror(errno));
    if (!tsearch(cc, &conns_by_id, cmp_id) ||
        worker_send_master(c->w, CHAT_HELLO, &cc->id, sizeof cc->id) != 0) {
        static const char busy[] = "error: server busy; try again later\r\n";
        ssize_t n = write(c->fd, busy, sizeof busy - 1);
        (void)n;                /* best effort: closing anyway */
        cc->bye_sent = true;
        conn_close(c);
        return;
    }
    char ip[INET6_ADDRSTRLEN];
    log_debug("chat connection %u from %s", cc->id, peer_addr_text(&c->peer, ip, sizeof ip));
    update_interest(cc);
}

static void chat_event(struct conn *c, uint32_t events)
{
    struct chat_conn *cc = state_of(c);
    if (cc->dead)
        return;
    if (events & EPOLLOUT)
        flush_out(cc);
    if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && !cc->closing && !cc->dead) {
        if (worker_uplink_congested(c->w))
            cc->paused = true;  /* back-pressure: the master is behind */
        else
            read_input(cc);
    }
    update_interest(cc);
}

static void chat_timeout(struct conn *c)
{
    conn_close(c);
}

static void chat_close(struct conn *c)
{
    struct chat_conn *cc = state_of(c);
    while (cc->nrooms > 0)
        conn_drop_room(cc, cc->nrooms - 1);
    tdelete(cc, &conns_by_id, cmp_id);
    send_bye(cc);
    free(cc->out);
    cc->out = NULL;
}

/* The master caught up: paused connections read (and parse) again. */
static void chat_uplink_ready(struct worker *w)
{
    for (struct conn *c = w->all; c && !worker_uplink_congested(w); c = c->anext) {
        struct chat_conn *cc = state_of(c);
        if (c->proto != &chat_proto || !cc->paused)
            continue;
        cc->paused = false;
        process_input(cc);
        update_interest(cc);
    }
}

/* Draining keeps chat connections (they are long-lived by nature) until
 * they quit or graceful_timeout ends the worker; then they get a notice. */
static void chat_drain(struct conn *c)
{
    (void)c;
}

static void chat_exit(struct worker *w)
{
    static const char bye[] = "notice: server is shutting down; disconnecting\r\n";
    for (struct conn *c = w->all; c; c = c->anext) {
        if (c->proto != &chat_proto)
            continue;
        ssize_t n = write(c->fd, bye, sizeof bye - 1);
        (void)n;                /* best effort: the process exits next */
    }
}

const struct proto chat_proto = {
    .name = "chat",
    .state_size = sizeof(struct chat_conn),
    .init = chat_init,
    .on_open = chat_open,
    .on_event = chat_event,
    .on_timeout = chat_timeout,
    .on_drain = chat_drain,
    .on_close = chat_close,
    .on_exit = chat_exit,
    .on_master_msg = chat_master_msg,
    .on_uplink_ready = chat_uplink_ready,
};
