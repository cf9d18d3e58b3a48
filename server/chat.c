/* chat (master side): registry of users, nicks and rooms. One process owns
 * them, so "is this nick free" and "who is in #room" have one answer without
 * cross-worker races. Lookups go through glibc's tsearch trees; a room keeps
 * a member count per worker so a line goes once to each worker with members. */
#include "server/chat.h"

#include <search.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "server/log.h"
#include "server/master.h"

#define LIST_MAX_ENTRIES 200    /* /rooms and /who list at most this many */
#define LIST_LINE_BYTES  400    /* and pack them into lines of about this */

struct room_worker {
    pid_t pid;
    size_t members;
};

struct chat_room {
    char name[CHAT_ROOM_MAX + 2];
    size_t members;
    struct room_worker *workers;
    size_t nworkers, cap;
};

struct chat_user {
    pid_t pid;
    uint32_t conn;
    char nick[CHAT_NICK_MAX + 1];
    struct chat_room *rooms[CHAT_ROOMS_PER_USER];   /* in join order */
    size_t nrooms;
    size_t idx;                 /* position in chat.users */
    char pending[CHAT_NICK_MAX + 1];    /* nick asked of the bus, "" none */
    unsigned warned;            /* bus episode the user was last told of */
};

struct chat {
    void *by_id, *by_nick, *rooms;  /* tsearch trees */
    struct chat_user **users;
    size_t nusers, cap, nrooms;
    unsigned long guest_seq;
    pid_t gone_pid;             /* being removed: send it nothing */
};

/* ---- syntax and payloads (shared with workers/chat.c) ------------------- */

static bool name_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
           (ch >= '0' && ch <= '9') || ch == '_' || ch == '-';
}

static bool name_valid(const char *s, size_t max)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (n >= max || !name_char(s[n]))
            return false;
    return n > 0;
}

bool chat_nick_valid(const char *nick)
{
    return name_valid(nick, CHAT_NICK_MAX);
}

int chat_room_normalize(const char *in, char *out, size_t cap)
{
    if (in[0] == '#')
        in++;
    if (!name_valid(in, CHAT_ROOM_MAX) || cap < strlen(in) + 2)
        return -1;
    snprintf(out, cap, "#%s", in);
    return 0;
}

size_t chat_payload(unsigned char *buf, size_t cap, uint32_t conn,
                    const char *a, const char *b)
{
    size_t la = a ? strlen(a) : 0, lb = b ? strlen(b) : 0;
    size_t len = sizeof conn + la + (b ? 1 + lb : 0);
    if (len > cap)
        return 0;
    memcpy(buf, &conn, sizeof conn);
    if (la)
        memcpy(buf + sizeof conn, a, la);
    if (b) {
        buf[sizeof conn + la] = '\0';
        memcpy(buf + sizeof conn + la + 1, b, lb);
    }
    return len;
}

int chat_parse(const struct ipc_msg *msg, char *buf, size_t cap,
               uint32_t *conn, const char **a, const char **b)
{
    size_t len = msg->hdr.len;
    if (len < sizeof *conn || len - sizeof *conn + 2 > cap)
        return -1;
    memcpy(conn, msg->payload, sizeof *conn);
    len -= sizeof *conn;
    memcpy(buf, msg->payload + sizeof *conn, len);
    buf[len] = '\0';
    buf[len + 1] = '\0';
    *a = buf;
    size_t la = strlen(buf);
    *b = la < len ? buf + la + 1 : buf + len + 1;
    return 0;
}

/* ---- trees -------------------------------------------------------------- */

static int cmp_id(const void *x, const void *y)
{
    const struct chat_user *u = x, *v = y;
    if (u->pid != v->pid)
        return u->pid < v->pid ? -1 : 1;
    return u->conn < v->conn ? -1 : u->conn > v->conn;
}

static int cmp_nick(const void *x, const void *y)
{
    return strcasecmp(((const struct chat_user *)x)->nick,
                      ((const struct chat_user *)y)->nick);
}

static int cmp_room(const void *x, const void *y)
{
    return strcasecmp(((const struct chat_room *)x)->name,
                      ((const struct chat_room *)y)->name);
}

static struct chat_user *find_user(struct chat *c, pid_t pid, uint32_t conn)
{
    struct chat_user key = { .pid = pid, .conn = conn };
    void **p = tfind(&key, &c->by_id, cmp_id);
    return p ? *p : NULL;
}

static struct chat_user *find_nick(struct chat *c, const char *nick)
{
    struct chat_user key;
    snprintf(key.nick, sizeof key.nick, "%s", nick);
    void **p = tfind(&key, &c->by_nick, cmp_nick);
    return p ? *p : NULL;
}

static struct chat_room *find_room(struct chat *c, const char *name)
{
    struct chat_room key;
    snprintf(key.name, sizeof key.name, "%s", name);
    void **p = tfind(&key, &c->rooms, cmp_room);
    return p ? *p : NULL;
}

/* ---- sending ------------------------------------------------------------ */

static ssize_t slot_of(const struct master *m, pid_t pid)
{
    for (size_t i = 0; i < m->nslots; i++)
        if (m->slots[i].pid == pid)
            return (ssize_t)i;
    return -1;
}

static void send_to(struct master *m, pid_t pid, uint16_t type, uint32_t conn,
                    const char *a, const char *b)
{
    unsigned char buf[IPC_MAX_PAYLOAD];
    ssize_t slot = slot_of(m, pid);
    if (slot < 0 || pid == m->chat->gone_pid)
        return;
    size_t len = chat_payload(buf, sizeof buf, conn, a, b);
    if (len)
        master_send(m, (size_t)slot, type, buf, len);
}

static void __attribute__((format(printf, 3, 4)))
reply(struct master *m, const struct chat_user *u, const char *fmt, ...)
{
    char line[IPC_MAX_PAYLOAD - 8];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    send_to(m, u->pid, CHAT_REPLY, u->conn, line, NULL);
}

/* Once per worker that has members: the worker fans out locally. */
static void __attribute__((format(printf, 3, 4)))
deliver(struct master *m, const struct chat_room *r, const char *fmt, ...)
{
    char line[IPC_MAX_PAYLOAD - CHAT_ROOM_MAX - 8];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    for (size_t i = 0; i < r->nworkers; i++)
        send_to(m, r->workers[i].pid, CHAT_DELIVER, 0, r->name, line);
}

/* ---- rooms -------------------------------------------------------------- */

static struct chat_room *room_get(struct master *m, const char *name)
{
    struct chat *c = m->chat;
    struct chat_room *r = find_room(c, name);
    if (r)
        return r;
    if (!(r = calloc(1, sizeof *r)))
        return NULL;
    snprintf(r->name, sizeof r->name, "%s", name);
    if (!tsearch(r, &c->rooms, cmp_room)) {
        free(r);
        return NULL;
    }
    c->nrooms++;
    chatbus_room_used(m, r->name);
    return r;
}

static int room_add(struct chat_room *r, pid_t pid)
{
    size_t i = 0;
    while (i < r->nworkers && r->workers[i].pid != pid)
        i++;
    if (i == r->nworkers) {
        if (r->nworkers == r->cap) {
            size_t cap = r->cap ? r->cap * 2 : 4;
            struct room_worker *w = realloc(r->workers, cap * sizeof *w);
            if (!w)
                return -1;
            r->workers = w;
            r->cap = cap;
        }
        r->workers[r->nworkers++] = (struct room_worker){ pid, 0 };
    }
    r->workers[i].members++;
    r->members++;
    return 0;
}

/* Drop one member; an empty room disappears. */
static void room_remove(struct master *m, struct chat_room *r, pid_t pid)
{
    struct chat *c = m->chat;
    for (size_t i = 0; i < r->nworkers; i++) {
        if (r->workers[i].pid == pid && --r->workers[i].members == 0)
            r->workers[i] = r->workers[--r->nworkers];
    }
    if (--r->members > 0)
        return;
    tdelete(r, &c->rooms, cmp_room);
    c->nrooms--;
    chatbus_room_unused(m, r->name);
    free(r->workers);
    free(r);
}

static ssize_t user_room(const struct chat_user *u, const struct chat_room *r)
{
    for (size_t i = 0; i < u->nrooms; i++)
        if (u->rooms[i] == r)
            return (ssize_t)i;
    return -1;
}

/* Leave room number i of u: announced to those who stay (why "": by
 * /leave; else the user is going, which the bus hears of as one event). */
static void leave_room(struct master *m, struct chat_user *u, size_t i,
                       const char *why)
{
    struct chat_room *r = u->rooms[i];
    char name[sizeof r->name];
    snprintf(name, sizeof name, "%s", r->name);
    memmove(&u->rooms[i], &u->rooms[i + 1], (u->nrooms - i - 1) * sizeof u->rooms[0]);
    u->nrooms--;
    send_to(m, u->pid, CHAT_LEFT, u->conn, r->name, NULL);
    room_remove(m, r, u->pid);     /* may free r */
    if ((r = find_room(m->chat, name)))
        deliver(m, r, "[%s] * %s left%s", r->name, u->nick, why);
    if (!*why)
        chatbus_leave(m, u->nick, name);
}

/* ---- users -------------------------------------------------------------- */

/* guestN; with a bus guestTAGN, TAG from this instance's id, so that two
 * instances rarely offer the same (the nick claim settles it if they do). */
static void guest_nick(struct master *m, char *out, size_t cap)
{
    do
        snprintf(out, cap, "guest%s%lu", chatbus_tag(m), ++m->chat->guest_seq);
    while (find_nick(m->chat, out) || chatbus_remote_nick(m, out));
}

static struct chat_user *user_new(struct master *m, pid_t pid, uint32_t conn)
{
    struct chat *c = m->chat;
    if (c->nusers == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 64;
        struct chat_user **u = realloc(c->users, cap * sizeof *u);
        if (!u)
            return NULL;
        c->users = u;
        c->cap = cap;
    }
    struct chat_user *u = calloc(1, sizeof *u);
    if (!u)
        return NULL;
    u->pid = pid;
    u->conn = conn;
    guest_nick(m, u->nick, sizeof u->nick);
    if (!tsearch(u, &c->by_id, cmp_id) || !tsearch(u, &c->by_nick, cmp_nick)) {
        tdelete(u, &c->by_id, cmp_id);
        free(u);
        return NULL;
    }
    u->idx = c->nusers;
    c->users[c->nusers++] = u;
    chatbus_user_new(m, u->nick);
    return u;
}

static void user_delete(struct master *m, struct chat_user *u, const char *why)
{
    struct chat *c = m->chat;
    while (u->nrooms > 0)
        leave_room(m, u, u->nrooms - 1, why);
    chatbus_user_gone(m, u->nick, why);
    chatbus_release(m, u->nick);
    tdelete(u, &c->by_id, cmp_id);
    tdelete(u, &c->by_nick, cmp_nick);
    c->users[u->idx] = c->users[--c->nusers];
    c->users[u->idx]->idx = u->idx;
    free(u);
}

static void do_hello(struct master *m, pid_t pid, uint32_t conn)
{
    if (find_user(m->chat, pid, conn))
        return;
    struct chat_user *u = user_new(m, pid, conn);
    if (!u) {
        log_error("chat: out of memory for a user");
        send_to(m, pid, CHAT_REPLY, conn, "error: server out of memory", NULL);
        return;
    }
    reply(m, u, "welcome to preforkd chat; you are %s (/help lists the commands)%s",
          u->nick, chatbus_configured(m) && !chatbus_up(m) ?
          "; other instances are unreachable right now" : "");
}

static void rename_user(struct master *m, struct chat_user *u, const char *nick)
{
    char old[sizeof u->nick];
    snprintf(old, sizeof old, "%s", u->nick);
    tdelete(u, &m->chat->by_nick, cmp_nick);
    snprintf(u->nick, sizeof u->nick, "%s", nick);
    if (!tsearch(u, &m->chat->by_nick, cmp_nick))
        log_error("chat: out of memory renaming %s", old);
    reply(m, u, "ok: you are now %s", u->nick);
    for (size_t i = 0; i < u->nrooms; i++)
        deliver(m, u->rooms[i], "[%s] * %s is now known as %s", u->rooms[i]->name,
                old, u->nick);
    chatbus_renamed(m, old, u->nick);
    if (strcasecmp(old, u->nick) != 0)
        chatbus_release(m, old);
}

/* Another local user waits for the bus's answer about nick. */
static bool nick_pending(const struct chat *c, const struct chat_user *u, const char *nick)
{
    for (size_t i = 0; i < c->nusers; i++)
        if (c->users[i] != u && strcasecmp(c->users[i]->pending, nick) == 0)
            return true;
    return false;
}

/* With a bus, Redis has the last word (chat_bus_claimed answers); while
 * it is away the nick is taken locally and claimed when it is back. */
static void do_nick(struct master *m, struct chat_user *u, const char *nick)
{
    struct chat_user *other = find_nick(m->chat, nick);
    if (!chat_nick_valid(nick))
        return reply(m, u, "error: bad nick (1-%d of A-Z a-z 0-9 _ -)", CHAT_NICK_MAX);
    if ((other && other != u) || nick_pending(m->chat, u, nick) || chatbus_remote_nick(m, nick))
        return reply(m, u, "error: nick %s is taken", nick);
    if (u->pending[0])
        return reply(m, u, "error: still asking the other instances about %s; try again",
                     u->pending);
    if (other == u)
        return rename_user(m, u, nick);
    if (chatbus_claim(m, u->pid, u->conn, nick) == 0)
        snprintf(u->pending, sizeof u->pending, "%s", nick);
    else
        rename_user(m, u, nick);
}

static void do_join(struct master *m, struct chat_user *u, const char *name)
{
    char room[CHAT_ROOM_MAX + 2];
    if (chat_room_normalize(name, room, sizeof room) != 0)
        return reply(m, u, "error: bad room name (#? and 1-%d of A-Z a-z 0-9 _ -)",
                     CHAT_ROOM_MAX);
    struct chat_room *r = find_room(m->chat, room);
    ssize_t i = r ? user_room(u, r) : -1;
    if (i >= 0) {
        /* Joining again makes it the current room. */
        memmove(&u->rooms[i], &u->rooms[i + 1], (u->nrooms - (size_t)i - 1) * sizeof r);
        u->rooms[u->nrooms - 1] = r;
        send_to(m, u->pid, CHAT_JOINED, u->conn, r->name, NULL);
        return reply(m, u, "ok: %s is your current room", r->name);
    }
    if (u->nrooms == CHAT_ROOMS_PER_USER)
        return reply(m, u, "error: too many rooms (at most %d)", CHAT_ROOMS_PER_USER);
    if (!(r = room_get(m, room)) || room_add(r, u->pid) != 0)
        return reply(m, u, "error: server out of memory");
    u->rooms[u->nrooms++] = r;
    send_to(m, u->pid, CHAT_JOINED, u->conn, r->name, NULL);
    deliver(m, r, "[%s] * %s joined", r->name, u->nick);
    chatbus_join(m, u->nick, r->name);
}

/* The room named, or the current one (last joined) for "". */
static struct chat_room *named_room(struct chat *c, const struct chat_user *u,
                                    const char *name)
{
    char room[CHAT_ROOM_MAX + 2];
    if (!*name)
        return u->nrooms ? u->rooms[u->nrooms - 1] : NULL;
    if (chat_room_normalize(name, room, sizeof room) != 0)
        return NULL;
    return find_room(c, room);
}

static void do_leave(struct master *m, struct chat_user *u, const char *name)
{
    struct chat_room *r = named_room(m->chat, u, name);
    if (!*name && !r)
        return reply(m, u, "error: you are in no room");
    ssize_t i = r ? user_room(u, r) : -1;
    if (i < 0)
        return reply(m, u, "error: you are not in %s", name);
    reply(m, u, "ok: left %s", r->name);
    leave_room(m, u, (size_t)i, "");
}

static void do_say(struct master *m, struct chat_user *u, const char *name,
                   const char *text)
{
    struct chat_room *r = named_room(m->chat, u, name);
    if (!*name && !r)
        return reply(m, u, "error: you are in no room; /join ROOM first");
    if (!r || user_room(u, r) < 0)
        return reply(m, u, "error: you are not in %s", name);
    deliver(m, r, "[%s] %s: %s", r->name, u->nick, text);
    if (chatbus_say(m, r->name, u->nick, text) == BUS_DROPPED &&
        u->warned != chatbus_episode(m)) {
        u->warned = chatbus_episode(m);
        reply(m, u, "notice: the chat bus is behind; lines of yours reach this instance only "
                    "until it catches up");
    }
}

static void do_msg(struct master *m, struct chat_user *u, const char *nick,
                   const char *text)
{
    struct chat_user *to = find_nick(m->chat, nick);
    if (!to) {
        enum bus_result r = chatbus_msg(m, u->nick, nick, text);
        if (r == BUS_SENT)
            return reply(m, u, "[private -> %s] %s", nick, text);
        if (r == BUS_DROPPED)
            return reply(m, u, "error: the chat bus is behind; not sent to %s", nick);
        return reply(m, u, "error: no such nick %s", nick);
    }
    reply(m, to, "[private] %s: %s", u->nick, text);
    if (to != u)
        reply(m, u, "[private -> %s] %s", to->nick, text);
}

/* ---- listings ----------------------------------------------------------- */

/* Accumulates "a, b, c" into lines of about LIST_LINE_BYTES. */
struct lister {
    struct master *m;
    const struct chat_user *u;
    const char *head;
    char line[LIST_LINE_BYTES + 128];
    size_t len, entries;
};

static void list_flush(struct lister *l)
{
    if (l->len > 0)
        reply(l->m, l->u, "%s", l->line);
    l->len = 0;
}

static void list_add(struct lister *l, const char *entry)
{
    if (++l->entries > LIST_MAX_ENTRIES)
        return;
    if (l->len == 0)
        l->len = (size_t)snprintf(l->line, sizeof l->line, "%s", l->head);
    else
        l->len += (size_t)snprintf(l->line + l->len, sizeof l->line - l->len, ",");
    l->len += (size_t)snprintf(l->line + l->len, sizeof l->line - l->len, " %s", entry);
    if (l->len >= LIST_LINE_BYTES)
        list_flush(l);
}

/* /rooms: a room and its members on every instance. */
struct room_count {
    char name[CHAT_ROOM_MAX + 2];
    size_t members;
};

static int cmp_count(const void *x, const void *y)
{
    return strcasecmp(((const struct room_count *)x)->name,
                      ((const struct room_count *)y)->name);
}

static void count_add(void **tree, const char *name, size_t n)
{
    struct room_count key, *rc;
    snprintf(key.name, sizeof key.name, "%s", name);
    void **p = tfind(&key, tree, cmp_count);
    if (p) {
        (*(struct room_count **)p)->members += n;
        return;
    }
    if (!(rc = malloc(sizeof *rc)))
        return;
    *rc = key;
    rc->members = n;
    if (!tsearch(rc, tree, cmp_count))
        free(rc);
}

static void count_local(const void *node, VISIT which, void *ctx)
{
    if (which != postorder && which != leaf)
        return;
    const struct chat_room *r = *(const struct chat_room *const *)node;
    count_add(ctx, r->name, r->members);
}

static void count_remote(const char *nick, const char *const *rooms, size_t n, void *ctx)
{
    (void)nick;
    for (size_t i = 0; i < n; i++)
        count_add(ctx, rooms[i], 1);
}

static void list_room(const void *node, VISIT which, void *ctx)
{
    if (which != postorder && which != leaf)
        return;
    const struct room_count *r = *(const struct room_count *const *)node;
    char entry[CHAT_ROOM_MAX + 32];
    snprintf(entry, sizeof entry, "%s (%zu)", r->name, r->members);
    list_add(ctx, entry);
}

static void do_rooms(struct master *m, struct chat_user *u)
{
    struct lister l = { .m = m, .u = u, .head = "rooms:" };
    void *counts = NULL;
    twalk_r(m->chat->rooms, count_local, &counts);
    chatbus_each_remote(m, count_remote, &counts);
    if (!counts)
        return reply(m, u, "rooms: none");
    twalk_r(counts, list_room, &l);
    tdestroy(counts, free);
    list_flush(&l);
    if (l.entries > LIST_MAX_ENTRIES)
        reply(m, u, "rooms: ... and %zu more", l.entries - LIST_MAX_ENTRIES);
}

struct who_ctx {
    struct lister *l;
    const char *room;
};

static void who_remote(const char *nick, const char *const *rooms, size_t n, void *ctx)
{
    struct who_ctx *w = ctx;
    for (size_t i = 0; i < n; i++)
        if (strcasecmp(rooms[i], w->room) == 0)
            list_add(w->l, nick);
}

/* Members here first, then those of other instances (as last heard). */
static void do_who(struct master *m, struct chat_user *u, const char *name)
{
    struct chat_room *r = named_room(m->chat, u, name);
    char room[CHAT_ROOM_MAX + 2], head[CHAT_ROOM_MAX + 16];
    if (!*name && !r)
        return reply(m, u, "error: you are in no room; name one");
    if (!r && chat_room_normalize(name, room, sizeof room) != 0)
        return reply(m, u, "error: no room %s", name);
    if (r)
        snprintf(room, sizeof room, "%s", r->name);
    snprintf(head, sizeof head, "who %s:", room);
    struct lister l = { .m = m, .u = u, .head = head };
    struct who_ctx w = { .l = &l, .room = room };
    for (size_t i = 0; r && i < m->chat->nusers; i++)
        if (user_room(m->chat->users[i], r) >= 0)
            list_add(&l, m->chat->users[i]->nick);
    chatbus_each_remote(m, who_remote, &w);
    if (l.entries == 0)
        return reply(m, u, "error: no room %s", name);
    list_flush(&l);
    if (l.entries > LIST_MAX_ENTRIES)
        reply(m, u, "who %s: ... and %zu more", room, l.entries - LIST_MAX_ENTRIES);
}

/* ---- entry points ------------------------------------------------------- */

static void dispatch(struct master *m, struct chat_user *u, uint16_t type,
                     const char *a, const char *b)
{
    switch (type) {
    case CHAT_NICK:  do_nick(m, u, a); break;
    case CHAT_JOIN:  do_join(m, u, a); break;
    case CHAT_LEAVE: do_leave(m, u, a); break;
    case CHAT_SAY:   do_say(m, u, a, b); break;
    case CHAT_MSG:   do_msg(m, u, a, b); break;
    case CHAT_ROOMS: do_rooms(m, u); break;
    case CHAT_WHO:   do_who(m, u, a); break;
    case CHAT_BYE:   user_delete(m, u, " (quit)"); break;
    default:
        log_warn("chat: unexpected frame type %u from a worker", type);
    }
}

void chat_handle(struct master *m, size_t slot, const struct ipc_msg *msg)
{
    char buf[IPC_MAX_PAYLOAD + 2];
    const char *a, *b;
    uint32_t conn;
    pid_t pid = m->slots[slot].pid;
    if (!m->chat && !(m->chat = calloc(1, sizeof *m->chat))) {
        log_error("chat: out of memory");
        return;
    }
    if (chat_parse(msg, buf, sizeof buf, &conn, &a, &b) != 0)
        return;
    if (msg->hdr.type == CHAT_HELLO)
        return do_hello(m, pid, conn);
    struct chat_user *u = find_user(m->chat, pid, conn);
    if (!u) {
        log_debug("chat: frame %u for unknown connection %u of pid %d",
                  msg->hdr.type, conn, (int)pid);
        return;
    }
    dispatch(m, u, msg->hdr.type, a, b);
}

void chat_worker_gone(struct master *m, pid_t pid)
{
    struct chat *c = m->chat;
    if (!c)
        return;
    c->gone_pid = pid;
    for (size_t i = c->nusers; i-- > 0;)
        if (i < c->nusers && c->users[i]->pid == pid)
            user_delete(m, c->users[i], " (connection lost)");
    c->gone_pid = 0;
}

static void free_node(void *p)
{
    (void)p;    /* users are freed from the array, rooms below */
}

static void free_room(void *p)
{
    struct chat_room *r = p;
    free(r->workers);
    free(r);
}

void chat_free(struct master *m)
{
    struct chat *c = m->chat;
    if (!c)
        return;
    tdestroy(c->by_id, free_node);
    tdestroy(c->by_nick, free_node);
    tdestroy(c->rooms, free_room);
    for (size_t i = 0; i < c->nusers; i++)
        free(c->users[i]);
    free(c->users);
    free(c);
    m->chat = NULL;
}

/* ---- the bus: other instances ------------------------------------------- */

void chat_bus_deliver(struct master *m, const char *room, const char *text)
{
    struct chat_room *r = m->chat ? find_room(m->chat, room) : NULL;
    if (r)
        deliver(m, r, "[%s] %s", r->name, text);
}

void chat_bus_private(struct master *m, const char *to, const char *from, const char *text)
{
    struct chat_user *u = m->chat ? find_nick(m->chat, to) : NULL;
    if (u)
        reply(m, u, "[private] %s: %s", from, text);
}

void chat_bus_notice(struct master *m, const char *text)
{
    for (size_t i = 0; m->chat && i < m->chat->nusers; i++)
        reply(m, m->chat->users[i], "%s", text);
}

void chat_bus_claimed(struct master *m, pid_t pid, uint32_t conn, const char *nick, bool ok)
{
    struct chat_user *u = m->chat ? find_user(m->chat, pid, conn) : NULL;
    struct chat_user *other = m->chat ? find_nick(m->chat, nick) : NULL;
    if (!u || strcasecmp(u->pending, nick) != 0) {
        if (ok && !other)
            chatbus_release(m, nick);   /* asked for by someone gone since */
        return;
    }
    u->pending[0] = '\0';
    if (!ok || (other && other != u) || chatbus_remote_nick(m, nick))
        return reply(m, u, "error: nick %s is taken", nick);
    rename_user(m, u, nick);
}

void chat_bus_nick_lost(struct master *m, const char *nick)
{
    struct chat_user *u = m->chat ? find_nick(m->chat, nick) : NULL;
    char guest[CHAT_NICK_MAX + 1];
    if (!u)
        return;
    reply(m, u, "notice: your nick %s belongs to a user of another instance "
                "(taken while they could not see each other)", nick);
    guest_nick(m, guest, sizeof guest);
    rename_user(m, u, guest);
}

void chat_bus_each_local(struct master *m, chatbus_user_fn fn, void *ctx)
{
    const char *rooms[CHAT_ROOMS_PER_USER];
    for (size_t i = 0; m->chat && i < m->chat->nusers; i++) {
        const struct chat_user *u = m->chat->users[i];
        for (size_t k = 0; k < u->nrooms; k++)
            rooms[k] = u->rooms[k]->name;
        fn(u->nick, rooms, u->nrooms, ctx);
    }
}

static void room_again(const void *node, VISIT which, void *ctx)
{
    if (which == postorder || which == leaf)
        chatbus_room_used(ctx, (*(const struct chat_room *const *)node)->name);
}

void chat_bus_rooms_again(struct master *m)
{
    if (m->chat)
        twalk_r(m->chat->rooms, room_again, m);
}
