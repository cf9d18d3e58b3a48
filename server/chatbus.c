/* chatbus: chat across instances through Redis (see chatbus.h). Two hiredis
 * async connections per master: one for commands (PUBLISH, nick claims, the
 * presence key), one subscribed to PREFIX"all" (membership, heartbeats),
 * PREFIX"inst:ID" (private lines and state sent to this instance only) and
 * PREFIX"room:NAME" for each room that has local members. Messages are
 * "T\nID\nSEQ\nfields...": others' messages are taken once and in order by
 * SEQ; our own come back and are ignored by ID. Design notes: etc/man/preforkd.conf.5. */
#include "server/chatbus.h"

#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "server/chat.h"
#include "server/chatpeers.h"
#include "server/log.h"
#include "server/master.h"
#include "server/redisloop.h"
#include "server/sbuf.h"
#include "workers/worker.h"

#define ID_LEN            PEER_ID_LEN
#define CHUNK_BYTES       8192      /* users per state message, about */
#define MSG_MAX           (CHUNK_BYTES + 512)
#define BACKOFF_MIN_MS    200
#define BACKOFF_MAX_MS    5000
#define STUCK_MIN_MS      3000      /* no reply for this long (or 3 TTLs): reconnect */
#define CLAIM_BATCH       200       /* nicks per claim script call */
#define GOODBYE_MS        200       /* at exit: flush for at most this long */
#define CHAN_MAX          96        /* PREFIX "room:#" and a room name fit */

/* Set the nick keys that are free or already ours; 1/0 per key. */
static const char claim_script[] =
    "local r = {} for i, k in ipairs(KEYS) do local v = redis.call('GET', k) "
    "if v == false or v == ARGV[1] then redis.call('SET', k, ARGV[1], 'EX', ARGV[2]) "
    "r[i] = 1 else r[i] = 0 end end return r";
static const char release_script[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end "
    "return 0";

enum sub_state { SUB_IDLE, SUB_PENDING, SUB_ACTIVE, SUB_LEAVING };

struct sub {
    char chan[CHAN_MAX];
    enum sub_state state;
    bool wanted;
};

/* A message waiting for the command connection: channel, NUL, payload. */
struct out_msg {
    struct out_msg *next;
    size_t chan_len, len;
    char data[];
};

struct chatbus {
    struct master *m;
    struct chat_conf conf;
    char id[ID_LEN + 1], prefix[32];
    struct redis_loop cmd, sub;
    bool cmd_ok, sub_ok, up, down_noticed, tearing, closing;
    int64_t retry_at_ms, backoff_ms, next_beat_ms, waiting_since_ms, last_tick_ms;
    struct sub *subs;
    size_t nsubs, subs_cap, subs_pending;
    struct out_msg *qhead, *qtail;
    size_t queued, inflight;
    uint64_t seq;
    bool congested, resync;
    unsigned episode;
    struct chatpeers peers;
    uint64_t published, received, dropped, reconnects;
};

/* A claim on behalf of one user, or a batch of this instance's nicks. */
struct claim {
    pid_t pid;
    uint32_t conn;
    size_t n;
    char nicks[][CHAT_NICK_MAX + 1];
};

static void bus_lost(struct chatbus *b, const redisAsyncContext *from, const char *why);
static void pump(struct chatbus *b);
static void publish_state(struct chatbus *b, const char *chan, bool want_reply);

/* ---- names -------------------------------------------------------------- */

static void lower_copy(char *out, size_t cap, const char *in)
{
    size_t i = 0;
    for (; in[i] && i + 1 < cap; i++)
        out[i] = (char)tolower((unsigned char)in[i]);
    out[i] = '\0';
}

static void room_chan(const struct chatbus *b, const char *room, char *out, size_t cap)
{
    char low[CHAT_ROOM_MAX + 2];
    lower_copy(low, sizeof low, room);
    snprintf(out, cap, "%sroom:%s", b->prefix, low);
}

static void nick_key(const struct chatbus *b, const char *nick, char *out, size_t cap)
{
    char low[CHAT_NICK_MAX + 1];
    lower_copy(low, sizeof low, nick);
    snprintf(out, cap, "%snick:%s", b->prefix, low);
}

static void make_id(char *out)
{
    unsigned char r[ID_LEN / 2];
    if (getrandom(r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r) {
        uint64_t x = (uint64_t)time(NULL) * 2654435761u ^ (uint64_t)getpid() << 20;
        memcpy(r, &x, sizeof r);
    }
    for (size_t i = 0; i < sizeof r; i++)
        snprintf(out + 2 * i, 3, "%02x", r[i]);
}

static int64_t ttl_ms(const struct chatbus *b)
{
    return (int64_t)b->conf.bus_ttl * 1000;
}

/* ---- commands and their replies ----------------------------------------- */

/* Every command callback starts here: one reply fewer is owed. */
static void reply_came(struct chatbus *b)
{
    if (b->inflight > 0)
        b->inflight--;
    b->waiting_since_ms = b->m->now_ms;
    if (b->congested && b->queued + b->inflight < (size_t)b->conf.bus_queue / 2) {
        b->congested = false;
        log_info("chat bus: caught up (%llu publishes dropped so far)",
                 (unsigned long long)b->dropped);
    }
    if (!b->congested && b->resync && b->up) {
        b->resync = false;
        publish_state(b, "all", false);
    }
}

static int send_argv(struct chatbus *b, redisCallbackFn *fn, void *priv, int argc,
                     const char **argv, const size_t *lens)
{
    if (!b->cmd.ac || !b->cmd_ok ||
        redisAsyncCommandArgv(b->cmd.ac, fn, priv, argc, argv, lens) != REDIS_OK)
        return -1;
    if (b->inflight++ == 0)
        b->waiting_since_ms = b->m->now_ms;
    return 0;
}

static void on_plain_reply(redisAsyncContext *ac, void *r, void *priv)
{
    struct chatbus *b = ac->data;
    redisReply *reply = r;
    (void)priv;
    reply_came(b);
    if (reply && reply->type == REDIS_REPLY_ERROR && !b->closing)
        log_warn("chat bus: redis: %s", reply->str);
}

static void on_published(redisAsyncContext *ac, void *r, void *priv)
{
    struct chatbus *b = ac->data;
    redisReply *reply = r;
    (void)priv;
    reply_came(b);
    if (reply && reply->type == REDIS_REPLY_INTEGER)
        b->published++;
}

/* Move queued messages to hiredis unless a subscription is on its way:
 * a join must not reach the others before we hear the room's lines. */
static void pump(struct chatbus *b)
{
    while (b->qhead && b->up && b->subs_pending == 0) {
        struct out_msg *o = b->qhead;
        const char *argv[] = { "PUBLISH", o->data, o->data + o->chan_len + 1 };
        size_t lens[] = { 7, o->chan_len, o->len };
        b->qhead = o->next;
        if (!b->qhead)
            b->qtail = NULL;
        b->queued--;
        if (send_argv(b, on_published, NULL, 3, argv, lens) != 0)
            b->dropped++;
        free(o);
    }
}

static void drop_queue(struct chatbus *b)
{
    while (b->qhead) {
        struct out_msg *o = b->qhead;
        b->qhead = o->next;
        free(o);
    }
    b->qtail = NULL;
    b->queued = 0;
}

/* Lines may fill bus_queue; membership and state twice that, and a dropped
 * one of those means the others' mirror of us is off: resend it all later. */
static enum bus_result post(struct chatbus *b, const char *chan, bool line, char type,
                            const char *body, size_t body_len)
{
    size_t limit = (size_t)b->conf.bus_queue * (line ? 1 : 2);
    if (!b->up)
        return BUS_DOWN;
    if (b->queued + b->inflight >= limit) {
        if (!b->congested) {
            b->episode++;
            log_warn("chat bus: redis is behind (%zu publishes waiting): dropping "
                     "what does not fit, users are told", b->queued + b->inflight);
        }
        b->congested = true;
        b->resync |= !line;
        b->dropped++;
        return BUS_DROPPED;
    }
    size_t chan_len = strlen(chan);
    struct out_msg *o = malloc(sizeof *o + chan_len + 1 + ID_LEN + 48 + body_len);
    if (!o) {
        b->dropped++;
        return BUS_DROPPED;
    }
    memcpy(o->data, chan, chan_len + 1);
    o->chan_len = chan_len;
    char *p = o->data + chan_len + 1;
    int h = sprintf(p, "%c\n%s\n%llu\n", type, b->id, (unsigned long long)++b->seq);
    memcpy(p + h, body, body_len);
    o->len = (size_t)h + body_len;
    o->next = NULL;
    if (b->qtail)
        b->qtail->next = o;
    else
        b->qhead = o;
    b->qtail = o;
    b->queued++;
    pump(b);
    return BUS_SENT;
}

static enum bus_result __attribute__((format(printf, 5, 6)))
postf(struct chatbus *b, const char *chan, bool line, char type, const char *fmt, ...)
{
    char body[CHAT_LINE_MAX + 256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(body, sizeof body, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof body)
        return BUS_DROPPED;
    return post(b, chan, line, type, body, (size_t)n);
}

static enum bus_result post_all(struct chatbus *b, char type, const char *fmt, const char *a,
                                const char *c)
{
    char chan[CHAN_MAX];
    snprintf(chan, sizeof chan, "%sall", b->prefix);
    return postf(b, chan, false, type, fmt, a, c);
}

/* ---- this instance's state, for the others ------------------------------ */

struct state_out {
    struct chatbus *b;
    const char *chan;
    bool first, want_reply;
    size_t len;
    char buf[CHUNK_BYTES + 512];
};

static void state_flush(struct state_out *s, bool last)
{
    char head[8];
    if (!last && s->len == 0)
        return;
    snprintf(head, sizeof head, "%s%s%s", s->first ? "F" : "", s->want_reply ? "R" : "",
             last ? "L" : "");
    size_t hl = strlen(head);
    memmove(s->buf + hl + 1, s->buf, s->len);
    memcpy(s->buf, head, hl);
    s->buf[hl] = '\n';
    post(s->b, s->chan, false, 'D', s->buf, s->len + hl + 1);
    s->first = s->want_reply = false;
    s->len = 0;
}

static void state_user(const char *nick, const char *const *rooms, size_t n, void *ctx)
{
    struct state_out *s = ctx;
    s->len += (size_t)snprintf(s->buf + s->len, sizeof s->buf - s->len, "%s", nick);
    for (size_t i = 0; i < n; i++)
        s->len += (size_t)snprintf(s->buf + s->len, sizeof s->buf - s->len, " %s", rooms[i]);
    s->buf[s->len++] = '\n';
    if (s->len >= CHUNK_BYTES)
        state_flush(s, false);
}

/* Every local user and its rooms, in chunks; the first chunk says "forget
 * what you knew of us", R asks the receivers for theirs. */
static void publish_state(struct chatbus *b, const char *chan, bool want_reply)
{
    struct state_out *s = malloc(sizeof *s);
    char all[64];
    if (!s)
        return;
    if (strcmp(chan, "all") == 0) {
        snprintf(all, sizeof all, "%sall", b->prefix);
        chan = all;
    }
    *s = (struct state_out){ .b = b, .chan = chan, .first = true, .want_reply = want_reply };
    chat_bus_each_local(b->m, state_user, s);
    state_flush(s, true);
    free(s);
}

/* ---- nick claims -------------------------------------------------------- */

static void on_claim(redisAsyncContext *ac, void *r, void *priv)
{
    struct chatbus *b = ac->data;
    struct claim *c = priv;
    redisReply *reply = r;
    reply_came(b);
    for (size_t i = 0; i < c->n && !b->closing; i++) {
        bool ok = true;   /* no answer: keep it; the next round settles it */
        if (reply && reply->type == REDIS_REPLY_ARRAY && i < reply->elements &&
            reply->element[i]->type == REDIS_REPLY_INTEGER)
            ok = reply->element[i]->integer == 1;
        if (c->pid)
            chat_bus_claimed(b->m, c->pid, c->conn, c->nicks[i], ok);
        else if (!ok)
            chat_bus_nick_lost(b->m, c->nicks[i]);
    }
    free(c);
}

static int send_claim(struct chatbus *b, struct claim *c)
{
    const char *argv[CLAIM_BATCH + 5];
    size_t lens[CLAIM_BATCH + 5];
    char keys[CLAIM_BATCH][CHAT_NICK_MAX + 48], nkeys[16], ttl[16];
    int argc = 0;
    snprintf(nkeys, sizeof nkeys, "%zu", c->n);
    snprintf(ttl, sizeof ttl, "%d", b->conf.bus_ttl);
    argv[argc++] = "EVAL";
    argv[argc++] = claim_script;
    argv[argc++] = nkeys;
    for (size_t i = 0; i < c->n; i++) {
        nick_key(b, c->nicks[i], keys[i], sizeof keys[i]);
        argv[argc++] = keys[i];
    }
    argv[argc++] = b->id;
    argv[argc++] = ttl;
    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    return send_argv(b, on_claim, c, argc, argv, lens);
}

static struct claim *claim_new(size_t n)
{
    struct claim *c = calloc(1, sizeof *c + n * sizeof c->nicks[0]);
    return c;
}

struct batch {
    struct chatbus *b;
    struct claim *c;
};

static void batch_user(const char *nick, const char *const *rooms, size_t n, void *ctx)
{
    struct batch *bt = ctx;
    (void)rooms, (void)n;
    if (!bt->c && !(bt->c = claim_new(CLAIM_BATCH)))
        return;
    snprintf(bt->c->nicks[bt->c->n++], sizeof bt->c->nicks[0], "%s", nick);
    if (bt->c->n == CLAIM_BATCH) {
        if (send_claim(bt->b, bt->c) != 0)
            free(bt->c);
        bt->c = NULL;
    }
}

/* Every local nick again: refreshes the TTL, takes back what expired while
 * Redis was away, and finds the nicks someone else took meanwhile. */
static void claim_all(struct chatbus *b)
{
    struct batch bt = { .b = b };
    chat_bus_each_local(b->m, batch_user, &bt);
    if (bt.c && (bt.c->n == 0 || send_claim(b, bt.c) != 0))
        free(bt.c);
}

int chatbus_claim(struct master *m, pid_t pid, uint32_t conn, const char *nick)
{
    struct chatbus *b = m->bus;
    struct claim *c;
    if (!b || !b->up || b->queued + b->inflight >= (size_t)b->conf.bus_queue ||
        !(c = claim_new(1)))
        return -1;
    c->pid = pid;
    c->conn = conn;
    c->n = 1;
    snprintf(c->nicks[0], sizeof c->nicks[0], "%s", nick);
    if (send_claim(b, c) != 0) {
        free(c);
        return -1;
    }
    return 0;
}

void chatbus_release(struct master *m, const char *nick)
{
    struct chatbus *b = m->bus;
    char key[CHAT_NICK_MAX + 48];
    if (!b || !b->up)
        return;                 /* it expires by itself */
    nick_key(b, nick, key, sizeof key);
    const char *argv[] = { "EVAL", release_script, "1", key, b->id };
    size_t lens[5];
    for (int i = 0; i < 5; i++)
        lens[i] = strlen(argv[i]);
    send_argv(b, on_plain_reply, NULL, 5, argv, lens);
}

/* ---- the mirror of other instances -------------------------------------- */

static void announce(struct chatbus *b, const char *room, const char *fmt, const char *a,
                     const char *c)
{
    char text[CHAT_LINE_MAX + 128];
    snprintf(text, sizeof text, fmt, a, c);
    chat_bus_deliver(b->m, room, text);
}

/* An instance stopped or went silent: its users leave every room. */
static void remote_drop(struct chatbus *b, size_t idx, const char *why)
{
    struct peer *r = &b->peers.v[idx];
    char reason[48];
    snprintf(reason, sizeof reason, " (%s)", why);
    log_info("chat bus: instance %s %s: its %zu users leave", r->id, why, r->n);
    for (size_t i = 0; i < r->n; i++)
        for (size_t k = 0; k < r->users[i].nrooms; k++)
            announce(b, r->users[i].rooms[k], "* %s left%s", r->users[i].nick, reason);
    peers_remove(&b->peers, idx);
}

/* ---- messages from the others ------------------------------------------- */

static bool text_ok(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 && *s != '\t')
            return false;
    return true;
}

/* Split at '\n' into at most max fields, the last one taking the rest. */
static size_t split(char *s, char **f, size_t max)
{
    size_t n = 0;
    while (n + 1 < max) {
        f[n++] = s;
        char *nl = strchr(s, '\n');
        if (!nl)
            return n;
        *nl = '\0';
        s = nl + 1;
    }
    f[n++] = s;
    return n;
}

/* An instance's whole state, in chunks: F(irst) replaces what we knew,
 * R asks for ours. From an instance new to us (started, or back after we
 * had given it up) its users are announced as joining. */
static void on_state(struct chatbus *b, struct peer *r, const char *flags, char *body)
{
    if (strchr(flags, 'F')) {
        peer_users_clear(&b->peers, r);
        r->greet = !r->known;
        r->known = true;
    }
    for (char *line = strtok(body, "\n"); line; line = strtok(NULL, "\n")) {
        char *save = NULL, *nick = strtok_r(line, " ", &save);
        struct peer_user *u = nick ? peer_user_add(&b->peers, r, nick) : NULL;
        if (!u)
            continue;
        u->nrooms = 0;
        for (char *room; (room = strtok_r(NULL, " ", &save));)
            peer_user_join(u, room);
        for (size_t k = 0; r->greet && k < u->nrooms; k++)
            announce(b, u->rooms[k], "* %s joined%s", u->nick, "");
    }
    if (strchr(flags, 'L'))
        r->greet = false;
    if (strchr(flags, 'R')) {
        char chan[CHAN_MAX];
        snprintf(chan, sizeof chan, "%sinst:%s", b->prefix, r->id);
        publish_state(b, chan, false);
    }
}

static void on_quit(struct chatbus *b, struct peer *r, const char *nick, const char *why)
{
    struct peer_user *u = peer_user(r, nick);
    if (!u)
        return;
    for (size_t k = 0; k < u->nrooms; k++)
        announce(b, u->rooms[k], "* %s left%s", u->nick, why);
    peer_user_remove(&b->peers, r, u);
}

static void on_renamed(struct chatbus *b, struct peer *r, const char *old, const char *nick)
{
    struct peer_user *u = peer_user(r, old);
    if (!u || !chat_nick_valid(nick))
        return;
    snprintf(u->nick, sizeof u->nick, "%s", nick);
    for (size_t k = 0; k < u->nrooms; k++)
        announce(b, u->rooms[k], "* %s is now known as %s", old, nick);
}

static void on_event(struct chatbus *b, struct peer *r, char type, char **f, size_t n)
{
    struct peer_user *u;
    switch (type) {
    case 'U':
        if (n >= 1)
            peer_user_add(&b->peers, r, f[0]);
        break;
    case 'Q':
        if (n >= 2)
            on_quit(b, r, f[0], f[1]);
        break;
    case 'N':
        if (n >= 2)
            on_renamed(b, r, f[0], f[1]);
        break;
    case 'J':
        if (n >= 2 && (u = peer_user_add(&b->peers, r, f[0])) && !peer_user_in(u, f[1])) {
            peer_user_join(u, f[1]);
            announce(b, f[1], "* %s joined%s", u->nick, "");
        }
        break;
    case 'L':
        if (n >= 2 && (u = peer_user(r, f[0])) && peer_user_leave(u, f[1]))
            announce(b, f[1], "* %s left%s", u->nick, "");
        break;
    case 'M':
        if (n >= 3 && chat_nick_valid(f[1]))
            announce(b, f[0], "%s: %s", f[1], f[2]);
        break;
    case 'P':
        if (n >= 3 && chat_nick_valid(f[1]))
            chat_bus_private(b->m, f[0], f[1], f[2]);
        break;
    case 'S': {
        char chan[CHAN_MAX];
        snprintf(chan, sizeof chan, "%sinst:%s", b->prefix, r->id);
        publish_state(b, chan, false);
        break;
    }
    }
}

/* One message: drop our own, duplicates and anything out of order. */
static void on_message(struct chatbus *b, const char *data, size_t len)
{
    char buf[MSG_MAX], *f[8];
    if (len >= sizeof buf || memchr(data, '\0', len))
        return;
    memcpy(buf, data, len);
    buf[len] = '\0';
    size_t n = split(buf, f, buf[0] == 'D' ? 5 : 7);
    if (n < 3 || strlen(f[0]) != 1 || strlen(f[1]) != ID_LEN || strcmp(f[1], b->id) == 0)
        return;
    char type = f[0][0];
    uint64_t seq = strtoull(f[2], NULL, 10);
    struct peer *r = peers_find(&b->peers, f[1], type != 'B', b->m->now_ms);
    if (!r || seq <= r->last_seq)
        return;
    bool fresh = r->last_seq == 0;
    r->last_seq = seq;
    r->heard_ms = b->m->now_ms;
    b->received++;
    if (type == 'B')
        return remote_drop(b, (size_t)(r - b->peers.v), "instance stopped");
    for (size_t i = 3; i < n; i++)
        if (!text_ok(f[i]) && type != 'D')
            return;
    if (fresh && type != 'D') {
        char chan[CHAN_MAX];      /* we know nothing of it yet: ask for its users */
        snprintf(chan, sizeof chan, "%sinst:%s", b->prefix, r->id);
        postf(b, chan, false, 'S', "%s", "");
    }
    if (type == 'D')
        on_state(b, r, n > 3 ? f[3] : "", n > 4 ? f[4] : (char *)"");
    else
        on_event(b, r, type, f + 3, n - 3);
}

/* ---- subscriptions ------------------------------------------------------ */

static struct sub *sub_find(struct chatbus *b, const char *chan)
{
    for (size_t i = 0; i < b->nsubs; i++)
        if (strcmp(b->subs[i].chan, chan) == 0)
            return &b->subs[i];
    return NULL;
}

static struct sub *sub_add(struct chatbus *b, const char *chan)
{
    struct sub *s = sub_find(b, chan);
    if (s)
        return s;
    if (b->nsubs == b->subs_cap) {
        size_t cap = b->subs_cap ? b->subs_cap * 2 : 8;
        if (!(s = realloc(b->subs, cap * sizeof *s)))
            return NULL;
        b->subs = s;
        b->subs_cap = cap;
    }
    s = &b->subs[b->nsubs++];
    memset(s, 0, sizeof *s);
    snprintf(s->chan, sizeof s->chan, "%s", chan);
    return s;
}

static void sub_remove(struct chatbus *b, struct sub *s)
{
    *s = b->subs[--b->nsubs];
}

static void on_sub_reply(redisAsyncContext *ac, void *r, void *priv);

static void sub_send(struct chatbus *b, struct sub *s, bool subscribe)
{
    const char *argv[] = { subscribe ? "SUBSCRIBE" : "UNSUBSCRIBE", s->chan };
    size_t lens[] = { strlen(argv[0]), strlen(s->chan) };
    if (!b->sub.ac || !b->sub_ok ||
        redisAsyncCommandArgv(b->sub.ac, on_sub_reply, NULL, 2, argv, lens) != REDIS_OK)
        return;
    s->state = subscribe ? SUB_PENDING : SUB_LEAVING;
    b->subs_pending += subscribe;
}

static void check_up(struct chatbus *b);

static void on_subscribed(struct chatbus *b, const char *chan, bool subscribed)
{
    struct sub *s = sub_find(b, chan);
    if (!s)
        return;
    if (subscribed && s->state == SUB_PENDING) {
        s->state = SUB_ACTIVE;
        b->subs_pending--;
        if (!s->wanted)
            sub_send(b, s, false);
    } else if (!subscribed && s->state == SUB_LEAVING) {
        s->state = SUB_IDLE;
        if (s->wanted)
            sub_send(b, s, true);
        else
            sub_remove(b, s);
    }
    check_up(b);
    pump(b);
}

static void on_sub_reply(redisAsyncContext *ac, void *r, void *priv)
{
    struct chatbus *b = ac->data;
    redisReply *reply = r;
    (void)priv;
    if (!reply || b->closing || reply->type != REDIS_REPLY_ARRAY || reply->elements < 3 ||
        reply->element[0]->type != REDIS_REPLY_STRING ||
        reply->element[1]->type != REDIS_REPLY_STRING)
        return;
    const char *kind = reply->element[0]->str, *chan = reply->element[1]->str;
    if (strcmp(kind, "message") == 0 && reply->element[2]->type == REDIS_REPLY_STRING)
        on_message(b, reply->element[2]->str, reply->element[2]->len);
    else if (strcmp(kind, "subscribe") == 0 || strcmp(kind, "unsubscribe") == 0)
        on_subscribed(b, chan, kind[0] == 's');
}

void chatbus_room_used(struct master *m, const char *room)
{
    struct chatbus *b = m->bus;
    char chan[CHAN_MAX];
    if (!b)
        return;
    room_chan(b, room, chan, sizeof chan);
    struct sub *s = sub_add(b, chan);
    if (!s)
        return log_error("chat bus: out of memory for room %s", room);
    s->wanted = true;
    if (s->state == SUB_IDLE)
        sub_send(b, s, true);
}

void chatbus_room_unused(struct master *m, const char *room)
{
    struct chatbus *b = m->bus;
    char chan[CHAN_MAX];
    struct sub *s;
    if (!b)
        return;
    room_chan(b, room, chan, sizeof chan);
    if (!(s = sub_find(b, chan)))
        return;
    s->wanted = false;
    if (s->state == SUB_ACTIVE)
        sub_send(b, s, false);
    if (s->state == SUB_IDLE)
        sub_remove(b, s);
}

/* ---- connecting --------------------------------------------------------- */

static void heartbeat(struct chatbus *b)
{
    char key[64], val[64], ttl[16];
    snprintf(key, sizeof key, "%sinstance:%s", b->prefix, b->id);
    snprintf(val, sizeof val, "%d", (int)getpid());
    snprintf(ttl, sizeof ttl, "%d", b->conf.bus_ttl);
    const char *argv[] = { "SET", key, val, "EX", ttl };
    size_t lens[5];
    for (int i = 0; i < 5; i++)
        lens[i] = strlen(argv[i]);
    send_argv(b, on_plain_reply, NULL, 5, argv, lens);
    post_all(b, 'H', "%s%s", "", "");
    claim_all(b);
    b->next_beat_ms = b->m->now_ms + (ttl_ms(b) / 3 > 0 ? ttl_ms(b) / 3 : 1);
}

/* Both connections open and every subscription confirmed. */
static void check_up(struct chatbus *b)
{
    if (b->up || !b->cmd_ok || !b->sub_ok || b->subs_pending > 0)
        return;
    b->up = true;
    b->backoff_ms = 0;
    b->congested = b->resync = false;
    for (size_t i = 0; i < b->peers.n; i++)
        b->peers.v[i].heard_ms = b->m->now_ms;
    log_info("chat bus: connected to %s as instance %s", b->conf.bus, b->id);
    publish_state(b, "all", true);
    heartbeat(b);
    if (b->down_noticed)
        chat_bus_notice(b->m, "notice: other instances are reachable again (chat bus up)");
    b->down_noticed = false;
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct chatbus *b = ac->data;
    if (status != REDIS_OK)
        return bus_lost(b, ac, ac->errstr);
    if (ac == b->cmd.ac) {
        b->cmd_ok = true;
        if (b->conf.bus_db) {
            char db[16];
            snprintf(db, sizeof db, "%d", b->conf.bus_db);
            const char *argv[] = { "SELECT", db };
            size_t lens[] = { 6, strlen(db) };
            send_argv(b, on_plain_reply, NULL, 2, argv, lens);
        }
    } else {
        b->sub_ok = true;
        for (size_t i = 0; i < b->nsubs; i++)
            if (b->subs[i].wanted && b->subs[i].state == SUB_IDLE)
                sub_send(b, &b->subs[i], true);
    }
    check_up(b);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct chatbus *b = ac->data;
    (void)status;
    bus_lost(b, ac, ac->errstr[0] ? ac->errstr : "connection closed");
}

static int open_one(struct chatbus *b, struct redis_loop *l, size_t idx)
{
    redisAsyncContext *ac = redisAsyncConnect(b->conf.bus_host, b->conf.bus_port);
    if (!ac || ac->err) {
        log_warn("chat bus: connecting to %s: %s", b->conf.bus, ac ? ac->errstr : "no memory");
        if (ac)
            redisAsyncFree(ac);
        return -1;
    }
    ac->data = b;
    if (redis_loop_attach(l, ac, b->m->epfd, ((uint64_t)EV_BUS << 32) | idx) != 0) {
        redisAsyncFree(ac);
        return -1;
    }
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    return 0;
}

static void schedule_retry(struct chatbus *b)
{
    b->backoff_ms = b->backoff_ms ? b->backoff_ms * 2 : BACKOFF_MIN_MS;
    if (b->backoff_ms > BACKOFF_MAX_MS)
        b->backoff_ms = BACKOFF_MAX_MS;
    b->retry_at_ms = b->m->now_ms + b->backoff_ms;
}

static void bus_connect(struct chatbus *b)
{
    b->retry_at_ms = 0;
    if (open_one(b, &b->cmd, 0) != 0 || open_one(b, &b->sub, 1) != 0)
        bus_lost(b, NULL, "cannot connect");
}

/* Either connection failed or closed: close the other, forget what was in
 * flight, tell local users once, and try again after a back-off. */
static void bus_lost(struct chatbus *b, const redisAsyncContext *from, const char *why)
{
    if (b->tearing || b->closing)
        return;             /* chatbus_free is closing them */
    b->tearing = true;
    if (b->up || !b->down_noticed)
        log_warn("chat bus: %s: %s; chat goes on locally, reconnecting", b->conf.bus, why);
    bool was_up = b->up;
    b->up = b->cmd_ok = b->sub_ok = false;
    if (b->cmd.ac && b->cmd.ac != from)
        redisAsyncFree(b->cmd.ac);
    if (b->sub.ac && b->sub.ac != from)
        redisAsyncFree(b->sub.ac);
    drop_queue(b);
    b->inflight = b->subs_pending = 0;
    for (size_t i = b->nsubs; i-- > 0;) {
        b->subs[i].state = SUB_IDLE;
        if (!b->subs[i].wanted)
            sub_remove(b, &b->subs[i]);
    }
    b->reconnects += was_up;
    if (!b->down_noticed && !b->closing) {
        b->down_noticed = true;
        chat_bus_notice(b->m, "notice: other instances are unreachable (chat bus down); "
                              "chat on this instance goes on");
    }
    if (!b->closing)
        schedule_retry(b);
    b->tearing = false;
}

/* ---- entry points from the master --------------------------------------- */

static void subscribe_fixed(struct chatbus *b)
{
    char chan[CHAN_MAX];
    snprintf(chan, sizeof chan, "%sall", b->prefix);
    sub_add(b, chan)->wanted = true;
    snprintf(chan, sizeof chan, "%sinst:%s", b->prefix, b->id);
    sub_add(b, chan)->wanted = true;
}

int chatbus_start(struct master *m)
{
    struct chatbus *b;
    if (!m->cfg.chat.bus[0] || m->bus)
        return 0;
    if (!(b = calloc(1, sizeof *b)))
        return -1;
    b->m = m;
    b->conf = m->cfg.chat;
    b->cmd.fd = b->sub.fd = -1;
    make_id(b->id);
    snprintf(b->prefix, sizeof b->prefix, "preforkd:%d:", b->conf.bus_db);
    m->bus = b;
    subscribe_fixed(b);
    if (!b->subs || b->nsubs != 2) {
        chatbus_free(m);
        return -1;
    }
    log_info("chat bus: instance %s joins %s (ttl %d s)", b->id, b->conf.bus, b->conf.bus_ttl);
    bus_connect(b);
    return 0;
}

/* Same bus: keep it (the TTL and queue take effect); another: leave, and
 * join the new one with the rooms in use now. */
void chatbus_reconfigure(struct master *m)
{
    struct chatbus *b = m->bus;
    const struct chat_conf *c = &m->cfg.chat;
    if (b && strcmp(b->conf.bus, c->bus) == 0) {
        b->conf = *c;
        return;
    }
    chatbus_free(m);
    chatbus_start(m);
    chat_bus_rooms_again(m);
}

void chatbus_on_event(struct master *m, size_t idx, uint32_t events)
{
    struct chatbus *b = m->bus;
    if (b)
        redis_loop_handle(idx == 0 ? &b->cmd : &b->sub, events);
}

/* Heartbeats and claims every TTL/3; silent instances leave after a TTL;
 * a Redis that holds replies too long counts as gone. */
void chatbus_tick(struct master *m)
{
    struct chatbus *b = m->bus;
    int64_t now = m->now_ms, stuck;
    if (!b)
        return;
    /* The master itself was held up (see forgive_own_stall): the others'
     * silence meanwhile says nothing about them. */
    if (b->last_tick_ms && now - b->last_tick_ms > 1000)
        for (size_t i = 0; i < b->peers.n; i++)
            b->peers.v[i].heard_ms += now - b->last_tick_ms - 1000;
    b->last_tick_ms = now;
    stuck = 3 * ttl_ms(b);
    if (stuck < STUCK_MIN_MS)
        stuck = STUCK_MIN_MS;
    if (b->retry_at_ms && now >= b->retry_at_ms)
        bus_connect(b);
    if (b->inflight > 0 && now - b->waiting_since_ms > stuck && (b->cmd.ac || b->sub.ac)) {
        char why[64];
        snprintf(why, sizeof why, "no reply for %lld ms", (long long)(now - b->waiting_since_ms));
        bus_lost(b, NULL, why);
        return;
    }
    if (!b->up)
        return;
    if (now >= b->next_beat_ms)
        heartbeat(b);
    for (size_t i = b->peers.n; i-- > 0;)
        if (now - b->peers.v[i].heard_ms > ttl_ms(b))
            remote_drop(b, i, "instance lost");
}

int64_t chatbus_next_wakeup(const struct master *m, int64_t next)
{
    const struct chatbus *b = m->bus;
    if (!b)
        return next;
    if (b->retry_at_ms && b->retry_at_ms < next)
        next = b->retry_at_ms;
    if (b->up && b->next_beat_ms < next)
        next = b->next_beat_ms;
    return next;
}

void chatbus_close_in_child(struct master *m)
{
    struct chatbus *b = m->bus;
    if (!b)
        return;
    if (b->cmd.fd >= 0)
        close(b->cmd.fd);
    if (b->sub.fd >= 0)
        close(b->sub.fd);
}

/* Tell the others we are gone (they would notice after the TTL anyway):
 * what hiredis holds is written with a short deadline. */
static void say_goodbye(struct chatbus *b)
{
    char key[64];
    if (!b->up)
        return;
    snprintf(key, sizeof key, "%sinstance:%s", b->prefix, b->id);
    const char *argv[] = { "DEL", key };
    size_t lens[] = { 3, strlen(key) };
    send_argv(b, on_plain_reply, NULL, 2, argv, lens);
    post_all(b, 'B', "%s%s", "", "");
    pump(b);
    int64_t end = b->m->now_ms + GOODBYE_MS;
    int done = 0;
    while (!done && b->cmd.ac && monotonic_ms() < end) {
        if (redisBufferWrite(&b->cmd.ac->c, &done) != REDIS_OK)
            break;
        struct pollfd p = { .fd = b->cmd.fd, .events = POLLOUT };
        if (!done)
            poll(&p, 1, 10);
    }
}

void chatbus_free(struct master *m)
{
    struct chatbus *b = m->bus;
    if (!b)
        return;
    say_goodbye(b);
    b->closing = true;
    if (b->cmd.ac)
        redisAsyncFree(b->cmd.ac);
    if (b->sub.ac)
        redisAsyncFree(b->sub.ac);
    drop_queue(b);
    peers_free(&b->peers);
    free(b->subs);
    free(b);
    m->bus = NULL;
}

/* ---- hooks for server/chat.c -------------------------------------------- */

bool chatbus_configured(const struct master *m)
{
    return m->bus != NULL;
}

bool chatbus_up(const struct master *m)
{
    return m->bus && m->bus->up;
}

const char *chatbus_tag(const struct master *m)
{
    static char tag[5];
    if (!m->bus)
        return "";
    memcpy(tag, m->bus->id, 4);
    return tag;
}

unsigned chatbus_episode(const struct master *m)
{
    return m->bus ? m->bus->episode : 0;
}

void chatbus_user_new(struct master *m, const char *nick)
{
    if (m->bus)
        post_all(m->bus, 'U', "%s%s", nick, "");
}

void chatbus_user_gone(struct master *m, const char *nick, const char *why)
{
    if (m->bus)
        post_all(m->bus, 'Q', "%s\n%s", nick, why);
}

void chatbus_join(struct master *m, const char *nick, const char *room)
{
    if (m->bus)
        post_all(m->bus, 'J', "%s\n%s", nick, room);
}

void chatbus_leave(struct master *m, const char *nick, const char *room)
{
    if (m->bus)
        post_all(m->bus, 'L', "%s\n%s", nick, room);
}

void chatbus_renamed(struct master *m, const char *old, const char *nick)
{
    if (m->bus)
        post_all(m->bus, 'N', "%s\n%s", old, nick);
}

enum bus_result chatbus_say(struct master *m, const char *room, const char *nick,
                            const char *text)
{
    char chan[CHAN_MAX];
    if (!m->bus)
        return BUS_DOWN;
    room_chan(m->bus, room, chan, sizeof chan);
    return postf(m->bus, chan, true, 'M', "%s\n%s\n%s", room, nick, text);
}

enum bus_result chatbus_msg(struct master *m, const char *from, const char *to,
                            const char *text)
{
    struct chatbus *b = m->bus;
    const struct peer *r = b ? peers_owner(&b->peers, to) : NULL;
    char chan[CHAN_MAX];
    if (!r)
        return BUS_DOWN;
    snprintf(chan, sizeof chan, "%sinst:%s", b->prefix, r->id);
    return postf(b, chan, true, 'P', "%s\n%s\n%s", to, from, text);
}

bool chatbus_remote_nick(const struct master *m, const char *nick)
{
    return m->bus && peers_owner(&m->bus->peers, nick);
}

void chatbus_each_remote(const struct master *m, chatbus_user_fn fn, void *ctx)
{
    if (m->bus)
        peers_each_user(&m->bus->peers, fn, ctx);
}

/* ---- status ------------------------------------------------------------- */

void chatbus_status_text(const struct master *m, struct sbuf *o)
{
    const struct chatbus *b = m->bus;
    if (!b)
        return;
    sbuf_printf(o, "chat bus %s %s  instance %s  peers %zu (%zu users)  published %llu  "
                "received %llu  dropped %llu  reconnects %llu\n", b->conf.bus,
                b->up ? "connected" : "DISCONNECTED", b->id, b->peers.n, b->peers.users,
                (unsigned long long)b->published, (unsigned long long)b->received,
                (unsigned long long)b->dropped, (unsigned long long)b->reconnects);
}

void chatbus_status_json(const struct master *m, struct sbuf *o)
{
    const struct chatbus *b = m->bus;
    sbuf_printf(o, ",\"chat_bus\":");
    if (!b) {
        sbuf_printf(o, "null");
        return;
    }
    sbuf_printf(o, "{\"url\":");
    sbuf_json_string(o, b->conf.bus);
    sbuf_printf(o, ",\"connected\":%s,\"instance\":\"%s\",\"peers\":%zu,\"peer_users\":%zu,"
                "\"published\":%llu,\"received\":%llu,\"dropped\":%llu,\"reconnects\":%llu,"
                "\"queued\":%zu}", b->up ? "true" : "false", b->id, b->peers.n,
                b->peers.users, (unsigned long long)b->published,
                (unsigned long long)b->received, (unsigned long long)b->dropped,
                (unsigned long long)b->reconnects, b->queued + b->inflight);
}

void chatbus_status_prometheus(const struct master *m, struct sbuf *o)
{
    const struct chatbus *b = m->bus;
    if (!b)
        return;
    sbuf_printf(o, "# HELP preforkd_chat_bus_connected 1 while the chat bus is up.\n"
                "# TYPE preforkd_chat_bus_connected gauge\n"
                "preforkd_chat_bus_connected %d\n"
                "# HELP preforkd_chat_bus_messages_total Chat bus messages published, "
                "received from other instances, and dropped (Redis behind).\n"
                "# TYPE preforkd_chat_bus_messages_total counter\n"
                "preforkd_chat_bus_messages_total{direction=\"published\"} %llu\n"
                "preforkd_chat_bus_messages_total{direction=\"received\"} %llu\n"
                "preforkd_chat_bus_messages_total{direction=\"dropped\"} %llu\n",
                b->up, (unsigned long long)b->published, (unsigned long long)b->received,
                (unsigned long long)b->dropped);
}
