/* proxy: see workers/proxy.h. While it waits, a connection holds nothing but
 * itself: the header stays in the socket (MSG_PEEK) until it is complete,
 * then exactly its bytes are read. The stage stands in as the connection's
 * protocol (c->proto) until conn_admit puts the listener's back. */
#include "workers/proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "server/cidr.h"
#include "server/log.h"
#include "workers/proxy_hdr.h"

/* Refusals are logged at most once a second per source address; this many
 * sources are remembered (a flood from more in one second is summed up in
 * the next line that is logged). */
#define NOTE_SLOTS 256
#define NOTE_PROBES 8

struct note_slot {
    struct peer_addr who;           /* family and address are the key */
    int64_t second;                 /* last logged, monotonic; 0 = free */
    unsigned long held;             /* refusals not logged since */
};

static struct note_slot notes[NOTE_SLOTS];
static unsigned long crowd;         /* refusals no slot was free for */
static struct tlist *header_tl;     /* header_timeout, for every listener */

static void stage_event(struct conn *c, uint32_t events);
static void stage_timeout(struct conn *c);
static void stage_drain(struct conn *c);

static const struct proto proxy_stage = {
    .name = "proxy",
    .on_event = stage_event,
    .on_timeout = stage_timeout,
    .on_drain = stage_drain,
};

/* --- refusals: counted, logged at most once a second per source ----------- */

static size_t note_hash(const struct peer_addr *p)
{
    uint32_t h = 2166136261u ^ p->family;
    for (size_t i = 0; i < sizeof p->addr; i++)
        h = (h ^ p->addr[i]) * 16777619u;
    return h % NOTE_SLOTS;
}

static bool same_source(const struct peer_addr *a, const struct peer_addr *b)
{
    return a->family == b->family && memcmp(a->addr, b->addr, sizeof a->addr) == 0;
}

/* The slot that says whether `who` may be logged this second, or NULL when
 * it may not (logged already, or no slot free). */
static struct note_slot *note_slot(const struct peer_addr *who, int64_t second)
{
    size_t h = note_hash(who);
    struct note_slot *spare = NULL;
    for (size_t i = 0; i < NOTE_PROBES; i++) {
        struct note_slot *s = &notes[(h + i) % NOTE_SLOTS];
        if (s->second && same_source(&s->who, who)) {
            if (s->second == second) {
                s->held++;
                return NULL;
            }
            s->second = second;
            return s;
        }
        if (!spare && s->second < second)   /* free, or its second is over */
            spare = s;
    }
    if (!spare) {
        crowd++;
        return NULL;
    }
    spare->who = *who;
    spare->held = 0;
    spare->second = second;
    return spare;
}

static void note_refusal(const struct conn *c, const char *why)
{
    struct note_slot *s = note_slot(&c->peer, worker_now(c->w) / 1000 + 1);
    if (!s)
        return;
    char ip[INET6_ADDRSTRLEN], more[96] = "";
    if (s->held || crowd)
        snprintf(more, sizeof more, " (and %lu more since from it, %lu from others)",
                 s->held, crowd);
    log_warn("proxy: closed a connection from %s on %s: %s%s",
             peer_addr_text(&c->peer, ip, sizeof ip), c->ls->conf->addr.text, why, more);
    s->held = 0;
    crowd = 0;
}

static void refuse(struct conn *c, const char *why)
{
    c->w->stats.proxy_rejected++;
    note_refusal(c, why);
    conn_close(c);
}

/* --- the stage ------------------------------------------------------------ */

/* Over a unix socket there is no address to check: the socket file's
 * permissions say who may connect. */
static bool trusted(const struct conn *c)
{
    struct sockaddr_storage ss;
    if (c->peer.family != AF_INET && c->peer.family != AF_INET6)
        return c->ls->conf->addr.sa.ss_family == AF_UNIX;
    peer_to_sockaddr(&c->peer, &ss);
    return cidr_match(c->ls->conf->proxy_from, c->ls->conf->nproxy_from,
                      (const struct sockaddr *)&ss);
}

/* The protocol expects a connection that is not in epoll yet. */
static void admit(struct conn *c)
{
    conn_timer_clear(c);
    if (c->in_epoll) {
        if (epoll_ctl(c->w->epfd, EPOLL_CTL_DEL, c->fd, NULL) != 0)
            log_error("epoll_ctl del fd %d: %s", c->fd, strerror(errno));
        c->in_epoll = false;
        c->interest = 0;
    }
    conn_admit(c);
}

/* Edge-triggered: the bytes peeked stay in the socket, so a level would
 * wake the loop again at once; the next segment is a new edge. The clock
 * starts at the first wait and is not re-armed, so dribbling bytes one by
 * one buys no time. */
static void wait_for_more(struct conn *c)
{
    if (!header_tl)
        header_tl = worker_timer_list(c->w, (int64_t)c->w->cfg->http.header_timeout * 1000);
    if (!header_tl) {
        log_error("proxy: no timer list left for the header timeout");
        conn_close(c);
        return;
    }
    if (!c->tl)
        conn_timer_set(c, header_tl);
    if (conn_set_interest(c, EPOLLIN | EPOLLRDHUP | EPOLLET) != 0)
        conn_close(c);
}

/* Peek at what came; consume exactly the header when it is all there. */
static void read_header(struct conn *c, uint32_t events)
{
    unsigned char buf[PROXY_HDR_MAX];
    ssize_t n = recv(c->fd, buf, sizeof buf, MSG_PEEK);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        wait_for_more(c);
        return;
    }
    if (n <= 0) {
        refuse(c, n == 0 ? "closed before sending a PROXY header" : strerror(errno));
        return;
    }
    struct proxy_hdr h;
    const char *why;
    int len = proxy_hdr_parse(buf, (size_t)n, &h, &why);
    if (len == 0 && (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))) {
        why = "closed in the middle of a PROXY header";     /* the rest cannot come */
        len = -1;
    }
    if (len < 0) {
        refuse(c, why);
        return;
    }
    if (len == 0) {
        wait_for_more(c);
        return;
    }
    if (recv(c->fd, buf, (size_t)len, 0) != len) {
        refuse(c, "the PROXY header could not be read again");
        return;
    }
    if (!h.local)
        c->peer = h.src;
    admit(c);
}

void proxy_stage_open(struct conn *c)
{
    c->proto = &proxy_stage;
    if (!trusted(c)) {
        refuse(c, "not in proxy_from");
        return;
    }
    read_header(c, 0);
}

static void stage_event(struct conn *c, uint32_t events)
{
    read_header(c, events);
}

static void stage_timeout(struct conn *c)
{
    refuse(c, "no complete PROXY header within header_timeout");
}

/* A connection the balancer just sent is served: header_timeout bounds the
 * wait, and the protocol sees the worker draining once admitted. */
static void stage_drain(struct conn *c)
{
    (void)c;
}
