/* fuzz_tls: libFuzzer harness of the TLS path, without sockets. The server
 * side is the real code: an SSL_CTX built by server/tlsctx.c from a
 * configuration read by server/config.c (with a certificate made at
 * start-up), workers/tls.c's handshake and I/O, workers/http_io.c and
 * workers/http.c, with tests/fuzz_worker.c as the worker loop. The
 * server's SSL talks through memory BIOs (tls_admit_ssl, the seam) behind
 * one end of a socketpair that carries no byte: its fd is the key into
 * tls.c's table and takes shutdown(SHUT_WR); any byte on its other end
 * would be plain text that bypassed TLS, so that end must stay empty.
 *
 * An input is [flags][mode][cut][n][n sizes][stream]; flags bit 0 picks:
 * 0. hostile client: the stream is what a client sends on the TCP stream,
 *    read in pieces of the sizes given. The handshake fails (counted once,
 *    its reason logged) or waits for more bytes; it never completes.
 * 1. records: an in-process OpenSSL client completes a real handshake (TLS
 *    1.2 or 1.3, or resumes with the ticket a first connection got), then
 *    sends the stream as HTTP request bytes in records of the sizes given;
 *    after `cut` bytes maybe a close_notify, or the rest raw (a bad record).
 *    It decrypts what comes back and checks it: every server record
 *    decrypts, a response starts with "HTTP/1.1 ", the secret outside the
 *    root never appears, bytes out are bounded. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "server/log.h"
#include "server/tlsctx.h"
#include "tests/fuzz_worker.h"
#include "workers/http.h"
#include "workers/http_path.h"
#include "workers/tls.h"

#define NSIZES_MAX 8
#define RECORD_MAX 16384
/* The most one request can bring back: every range of the 40 000-byte
 * file, each with its part header, and the response header. */
#define RESPONSE_MAX ((uint64_t)HTTP_RANGES_MAX * (40000 + 512) + 8192)

enum tail { TAIL_EOF, TAIL_TIMEOUT, TAIL_DRAIN, TAIL_CLOSE_NOTIFY };

/* What one input asks for (see the top comment for the layout). */
struct plan {
    bool records;           /* part 1 (else 0: hostile bytes) */
    bool tls12;             /* else TLS 1.3 */
    bool resume;            /* a first connection gets a ticket; this one resumes */
    int rotations;          /* ticket key rotations in between: 2 = ticket unknown */
    bool close_notify;      /* after `cut` stream bytes */
    bool bad_record;        /* after `cut`: the rest raw, or one record corrupted */
    bool batch;             /* all records first, then one delivery */
    enum tail tail;         /* what the client does once it has sent all */
    size_t wire_chunk;      /* bytes the wire delivers per turn; 0 = all */
    size_t write_cap;       /* bytes per server BIO write; 0 = all */
    bool eagain;            /* every other server BIO write refused */
    bool alpn, sni;
    size_t sizes[NSIZES_MAX], nsizes;   /* reads (part 0), records (part 1) */
    const uint8_t *stream;
    size_t len, cut;
};

/* The server's side of the wire. */
static struct {
    int key, peer;          /* socketpair: tls.c's key; must stay empty */
    BIO *in, *out;          /* memory BIOs: to the server, from it */
    unsigned writes;
    size_t cap;
    bool eagain;
} wire;

/* Where the client is in the response stream: in a header, just after
 * one (a body, or the next response: the answer to HEAD has none), or in
 * a body. */
enum frame { F_HEAD, F_PEEK, F_BODY };
#define HEAD_MAX 16384

/* The in-process client of part 1. */
struct client {
    SSL *ssl;
    BIO *in, *out;          /* memory BIOs: from the server, to it */
    size_t sent, nrec;      /* stream bytes sent, records written */
    bool connected;         /* its handshake completed */
    bool sending_done, alerted, shut;
    uint64_t plain;         /* decrypted bytes */
    char head[9];
    char tail[sizeof FUZZ_SECRET - 1];  /* the secret across two reads */
    enum frame frame;
    char hdr[HEAD_MAX];     /* the header so far (F_HEAD), or the body's
                               first bytes (F_PEEK) */
    size_t hlen;
    uint64_t body_left;
};

static struct config cfg, tls_cfg;
static struct wlistener wl;
static BIO_METHOD *wire_method;
static SSL_CTX *client_ctx[2];          /* TLS 1.3 only, TLS 1.2 only */
static unsigned char keys0[IPC_TLS_KEYS_SIZE];
static int log_memfd;

/* --- the wire BIO -------------------------------------------------------- */

/* A filter in front of a memory BIO. It answers BIO_get_fd with the key,
 * as tls.c's table needs (SSL_get_fd), and makes server writes short or
 * refused as the plan says, like a full socket. */
static int wire_write(BIO *b, const char *buf, int len)
{
    BIO_clear_retry_flags(b);
    if (wire.eagain && wire.writes++ % 2 == 0) {
        BIO_set_retry_write(b);
        return -1;
    }
    if (wire.cap && (size_t)len > wire.cap)
        len = (int)wire.cap;
    int n = BIO_write(BIO_next(b), buf, len);
    BIO_copy_next_retry(b);
    return n;
}

static int wire_read(BIO *b, char *buf, int len)
{
    BIO_clear_retry_flags(b);
    int n = BIO_read(BIO_next(b), buf, len);
    BIO_copy_next_retry(b);
    return n;
}

static long wire_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    if (cmd == BIO_C_GET_FD) {
        if (ptr)
            *(int *)ptr = wire.key;
        return wire.key;
    }
    return BIO_ctrl(BIO_next(b), cmd, num, ptr);
}

static int wire_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static BIO *wire_bio(BIO *mem)
{
    BIO *f = BIO_new(wire_method);
    if (!f || !BIO_up_ref(mem))
        abort();
    return BIO_push(f, mem);
}

/* A server SSL on fresh memory BIOs; wire.in and wire.out are kept. */
static SSL *wire_open(void)
{
    int sp[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sp) != 0)
        abort();
    wire.key = sp[0], wire.peer = sp[1], wire.writes = 0;
    wire.in = BIO_new(BIO_s_mem());
    wire.out = BIO_new(BIO_s_mem());
    SSL *ssl = SSL_new(tls_cfg.listens[0].ssl_ctx);
    if (!wire.in || !wire.out || !ssl)
        abort();
    SSL_set_bio(ssl, wire_bio(wire.in), wire_bio(wire.out));
    return ssl;
}

/* Nothing went out on the socket itself: it only ever saw shutdown(). */
static void wire_close(void)
{
    char c;
    ssize_t n = recv(wire.peer, &c, 1, MSG_DONTWAIT);
    if (n > 0 || (n < 0 && errno != EAGAIN))
        abort();
    close(wire.key);
    close(wire.peer);
    BIO_free(wire.in);
    BIO_free(wire.out);
}

static size_t move(BIO *from, BIO *to, size_t max)
{
    char buf[4096];
    size_t moved = 0;
    while (!max || moved < max) {
        size_t want = max && max - moved < sizeof buf ? max - moved : sizeof buf;
        int n = BIO_read(from, buf, (int)want);
        if (n <= 0)
            break;
        if (BIO_write(to, buf, n) != n)
            abort();
        moved += (size_t)n;
    }
    return moved;
}

/* --- the server connection ----------------------------------------------- */

static void conn_dispatch(struct worker *w, struct ev *ev, uint32_t events)
{
    (void)w;
    struct conn *c = (struct conn *)ev;
    c->proto->on_event(c, events);
}

/* Accepted with its first bytes there already; conn_admit's TLS branch. */
static struct conn *server_admit(SSL *ssl)
{
    struct conn *c = calloc(1, sizeof *c + http_proto.state_size);
    if (!c)
        abort();
    c->fd = wire.key, c->w = &fuzz_w, c->proto = &http_proto, c->ls = &wl;
    c->ev.on_event = conn_dispatch;
    fuzz_closed = false;
    fuzz_w.draining = false;
    fuzz_w.now_ns++;
    tls_admit_ssl(c, ssl);
    tls_run_pending(&fuzz_w);
    return c;
}

/* One wake-up: the event, then the bytes OpenSSL holds (as worker.c). */
static void server_event(struct conn *c, uint32_t events)
{
    fuzz_w.now_ns++;
    c->ev.on_event(&fuzz_w, &c->ev, events);
    tls_run_pending(&fuzz_w);
}

/* What epoll would report now; false: c waits for the client. The wire
 * is always writable (a refused write is the next write's business). */
static bool server_turn(struct conn *c)
{
    if (tls_pending_any()) {
        fuzz_w.now_ns++;
        tls_run_pending(&fuzz_w);
    } else if (c->interest & EPOLLOUT) {
        server_event(c, EPOLLOUT);
    } else if ((c->interest & EPOLLIN) && BIO_ctrl_pending(wire.in)) {
        server_event(c, EPOLLIN);
    } else {
        return false;
    }
    return true;
}

/* The client has nothing more to say: it closes its side, or goes silent
 * until c's deadline, maybe while the worker drains. */
static void server_idle(struct conn *c, const struct plan *p, struct client *cl)
{
    if (p->tail == TAIL_DRAIN && !fuzz_w.draining) {
        fuzz_w.draining = true;
        http_proto.on_drain(c);
    } else if (p->tail == TAIL_CLOSE_NOTIFY && cl && !cl->shut) {
        SSL_shutdown(cl->ssl);
        cl->shut = true;
        move(cl->out, wire.in, 0);
    } else if ((p->tail == TAIL_TIMEOUT || p->tail == TAIL_DRAIN) && c->tl) {
        fuzz_w.now_ms += c->tl->dur_ms;     /* expire_timers */
        conn_timer_clear(c);
        c->proto->on_timeout(c);
    } else if (c->interest & EPOLLIN) {
        BIO_set_mem_eof_return(wire.in, 0);
        server_event(c, EPOLLIN);
    } else if (c->tl) {
        fuzz_w.now_ms += c->tl->dur_ms;
        conn_timer_clear(c);
        c->proto->on_timeout(c);
    } else {
        abort();            /* nothing would ever wake it up */
    }
}

/* --- part 0: hostile client bytes ---------------------------------------- */

static size_t feed(const struct plan *p, size_t pos, size_t i)
{
    size_t k = p->sizes[i % p->nsizes], left = p->len - pos;
    if (!k || k > left)
        k = left;
    if (k && BIO_write(wire.in, p->stream + pos, (int)k) != (int)k)
        abort();
    return k;
}

/* The handshake's outcome was logged once, with a reason. */
static void check_logged_failure(void)
{
    static char text[1 << 16];
    ssize_t n = pread(log_memfd, text, sizeof text - 1, 0);
    if (n < 0)
        abort();
    text[n] = '\0';
    const char *line = strstr(text, "tls: handshake with ");
    if (!line || strstr(line + 1, "tls: handshake with "))
        abort();
    const char *why = strstr(line, " failed: ");
    bool reason = why && why[9] != '\n' && why[9] != '\0';
    if (!reason && !strstr(line, " not finished"))
        abort();
}

static void run_hostile(const struct plan *p)
{
    struct ipc_report before = fuzz_w.stats;
    SSL *ssl = wire_open();
    size_t pos = feed(p, 0, 0), i = 1;
    struct conn *c = server_admit(ssl);
    uint64_t last = UINT64_MAX;
    for (int stalled = 0; !fuzz_closed;) {
        uint64_t now = pos + BIO_number_read(wire.in) + BIO_number_written(wire.out);
        stalled = now == last ? stalled + 1 : 0;
        if (stalled == 100)
            abort();                /* the handshake makes no progress */
        last = now;
        (void)BIO_reset(wire.out);  /* nobody listens */
        if (pos < p->len && !BIO_ctrl_pending(wire.in))
            pos += feed(p, pos, i++);
        if (!server_turn(c) && pos == p->len)
            server_idle(c, p, NULL);
    }
    uint64_t by_kind = 0;
    for (int k = 0; k < TLS_FAIL_N; k++)
        by_kind += fuzz_w.stats.tls_failed_by[k] - before.tls_failed_by[k];
    if (fuzz_w.stats.tls_handshakes != before.tls_handshakes ||
        fuzz_w.stats.tls_failed != before.tls_failed + 1 || by_kind != 1)
        abort();    /* bytes that know no key completed a handshake, or
                       its failure was not counted exactly once */
    check_logged_failure();
    wire_close();
}

/* --- part 1: a real client's records ------------------------------------- */

static void client_open(struct client *cl, const struct plan *p, SSL_SESSION *sess)
{
    static const unsigned char alpn[] = "\x02h2\x08http/1.1";
    cl->ssl = SSL_new(client_ctx[p->tls12]);
    cl->in = BIO_new(BIO_s_mem());
    cl->out = BIO_new(BIO_s_mem());
    if (!cl->ssl || !cl->in || !cl->out)
        abort();
    SSL_set_bio(cl->ssl, cl->in, cl->out);     /* cl->ssl owns them now */
    SSL_set_connect_state(cl->ssl);
    if (p->alpn && SSL_set_alpn_protos(cl->ssl, alpn, sizeof alpn - 1) != 0)
        abort();
    if (p->sni && SSL_set_tlsext_host_name(cl->ssl, "s.test") != 1)
        abort();
    if (sess && SSL_set_session(cl->ssl, sess) != 1)
        abort();
}

/* The secret outside the root never comes back, unless the client sent it
 * (an echo); looked for across reads too. */
static void check_secret(struct client *cl, const struct plan *p, const char *buf, size_t n)
{
    const size_t keep = sizeof cl->tail;
    char joint[2 * sizeof cl->tail];
    size_t had = cl->plain < keep ? (size_t)cl->plain : keep;
    size_t add = n < keep ? n : keep;
    memcpy(joint, cl->tail + keep - had, had);
    memcpy(joint + had, buf, add);
    if ((memmem(joint, had + add, FUZZ_SECRET, keep + 1) ||
         memmem(buf, n, FUZZ_SECRET, keep + 1)) &&
        !memmem(p->stream, p->len, FUZZ_SECRET, keep + 1))
        abort();
    if (n >= keep) {
        memcpy(cl->tail, buf + n - keep, keep);
    } else {
        memmove(cl->tail, cl->tail + n, keep - n);
        memcpy(cl->tail + keep - n, buf, n);
    }
}

/* The body length a complete header announces (Content-Length; none for
 * 1xx, 204 and 304). It must be a status line. */
static uint64_t body_length(const char *hdr, size_t len)
{
    static const char status[] = "HTTP/1.1 ";
    if (len < sizeof status + 3 || memcmp(hdr, status, sizeof status - 1))
        abort();                        /* a response starts with a status line */
    int code = atoi(hdr + sizeof status - 1);
    if (code < 200 || code == 204 || code == 304)
        return 0;
    const char *cl = strcasestr(hdr, "\r\nContent-Length:");
    if (!cl || cl > hdr + len)
        abort();                        /* the stream could not be framed */
    return strtoull(cl + 17, NULL, 10);
}

/* After a header: the body, unless the next response starts here (the
 * answer to HEAD). No file of the root starts with "HTTP/1". */
static void frame_peek(struct client *cl)
{
    static const char status[] = "HTTP/1.1 ";
    size_t want = cl->body_left < sizeof status - 1 ? cl->body_left : sizeof status - 1;
    if (cl->hlen < want)
        return;
    if (memcmp(cl->hdr, status, want) == 0) {
        cl->frame = F_HEAD;             /* cl->hdr holds its first bytes */
    } else {
        cl->frame = cl->body_left == cl->hlen ? F_HEAD : F_BODY;
        cl->body_left -= cl->hlen;
        cl->hlen = 0;
    }
}

/* Responses follow each other, each framed by its Content-Length: a byte
 * lost or added on the way (a retried write, the file path) breaks it. */
static void client_frame(struct client *cl, const char *buf, size_t n)
{
    while (n) {
        size_t k = 1;
        if (cl->frame == F_BODY) {
            k = cl->body_left < n ? (size_t)cl->body_left : n;
            if (!(cl->body_left -= k))
                cl->frame = F_HEAD;
        } else {
            if (cl->hlen == sizeof cl->hdr - 1)
                abort();                /* a header without an end */
            cl->hdr[cl->hlen++] = *buf;
            cl->hdr[cl->hlen] = '\0';
            if (cl->frame == F_PEEK) {
                frame_peek(cl);
            } else if (cl->hlen >= 4 && !memcmp(cl->hdr + cl->hlen - 4, "\r\n\r\n", 4)) {
                cl->body_left = body_length(cl->hdr, cl->hlen);
                cl->hlen = 0;
                cl->frame = cl->body_left ? F_PEEK : F_HEAD;
            }
        }
        buf += k, n -= k;
    }
}

static void client_got(struct client *cl, const struct plan *p, const char *buf, size_t n)
{
    for (size_t i = 0; cl->plain + i < sizeof cl->head && i < n; i++)
        cl->head[cl->plain + i] = buf[i];
    check_secret(cl, p, buf, n);
    client_frame(cl, buf, n);
    cl->plain += n;
}

/* What the server sent: its handshake, then its records, which must all
 * decrypt. An alert is its answer to our bad record, and only to that. */
static void client_read(struct client *cl, const struct plan *p)
{
    move(wire.out, cl->in, 0);
    ERR_clear_error();
    int r = cl->connected ? 1 : SSL_do_handshake(cl->ssl);
    if (r != 1) {
        if (SSL_get_error(cl->ssl, r) != SSL_ERROR_WANT_READ)
            abort();            /* a standard client could not connect */
        return;
    }
    cl->connected = true;
    char buf[RECORD_MAX];
    while (!cl->alerted) {
        int n = SSL_read(cl->ssl, buf, sizeof buf);
        if (n > 0) {
            client_got(cl, p, buf, (size_t)n);
            continue;
        }
        int e = SSL_get_error(cl->ssl, n);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_ZERO_RETURN)
            break;
        if (e != SSL_ERROR_SSL || !p->bad_record ||
            ERR_GET_REASON(ERR_peek_error()) < SSL_AD_REASON_OFFSET)
            abort();            /* a server record did not decrypt */
        cl->alerted = true;
    }
    ERR_clear_error();
}

/* After `cut` bytes: the rest raw, or one record with a flipped byte; a
 * close_notify after that. */
static void client_break(struct client *cl, const struct plan *p)
{
    static const char req[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    if (p->bad_record && p->cut < p->len) {
        if (BIO_write(cl->out, p->stream + p->cut, (int)(p->len - p->cut)) <= 0)
            abort();
    } else if (p->bad_record) {
        size_t before = BIO_ctrl_pending(cl->out);
        char *data;
        if (SSL_write(cl->ssl, req, sizeof req - 1) <= 0)
            abort();
        long n = BIO_get_mem_data(cl->out, &data);
        if (n <= 0 || (size_t)n <= before)
            abort();
        data[n - 1] ^= 1;       /* the record's tag */
    }
    if (p->close_notify) {
        SSL_shutdown(cl->ssl);
        cl->shut = true;
    }
    cl->sending_done = true;
}

/* The next record (all of them, batched) of the stream. */
static void client_send(struct client *cl, const struct plan *p)
{
    size_t end = p->close_notify || p->bad_record ? p->cut : p->len;
    do {
        if (cl->sent == end) {
            if (p->close_notify || p->bad_record)
                client_break(cl, p);
            cl->sending_done = true;
            return;
        }
        size_t k = p->sizes[cl->nrec++ % p->nsizes];
        k = k < end - cl->sent ? k : end - cl->sent;
        ERR_clear_error();
        int n = SSL_write(cl->ssl, p->stream + cl->sent, (int)k);
        if (n <= 0 && cl->alerted) {
            cl->sending_done = true;
            return;
        }
        if (n <= 0)
            abort();
        cl->sent += (size_t)n;
    } while (p->batch);
}

static bool client_busy(const struct client *cl, bool with_http)
{
    return BIO_ctrl_pending(cl->out) || BIO_ctrl_pending(wire.out) ||
           (with_http && cl->connected && !cl->sending_done);
}

/* Bytes moved anywhere; the server's own count too, as it may take
 * records OpenSSL read ahead earlier (one per turn, when they are tiny). */
static uint64_t progress(const struct client *cl)
{
    return BIO_number_read(wire.in) + BIO_number_written(wire.out) + cl->plain + cl->sent +
           cl->nrec + BIO_number_written(cl->out) + fuzz_w.stats.bytes_in +
           fuzz_w.stats.bytes_out;
}

static void drive(struct conn *c, const struct plan *p, struct client *cl, bool with_http)
{
    uint64_t last = UINT64_MAX;
    for (int stalled = 0; !fuzz_closed;) {
        uint64_t now = progress(cl);
        stalled = now == last ? stalled + 1 : 0;
        if (stalled == 100)
            abort();                /* neither side makes progress */
        last = now;
        client_read(cl, p);
        if (with_http && cl->connected && !cl->sending_done)
            client_send(cl, p);
        move(cl->out, wire.in, p->wire_chunk);
        if (!server_turn(c) && !client_busy(cl, with_http))
            server_idle(c, p, cl);
    }
}

/* The handshake completed on both sides, resumed as expected; what came
 * back starts with a status line and is bounded. */
static void check_conn(const struct client *cl, const struct plan *p,
                       const struct ipc_report *before, bool reuse)
{
    if (!cl->connected || fuzz_w.stats.tls_handshakes != before->tls_handshakes + 1 ||
        fuzz_w.stats.tls_failed != before->tls_failed)
        abort();
    if ((SSL_session_reused(cl->ssl) == 1) != reuse ||
        fuzz_w.stats.tls_resumed != before->tls_resumed + reuse)
        abort();
    if (cl->plain && memcmp(cl->head, "HTTP/1.1 ", cl->plain < 9 ? cl->plain : 9))
        abort();
    if (cl->plain > RESPONSE_MAX * (p->len / 16 + 1))
        abort();
    if (cl->alerted && !p->bad_record)
        abort();
}

/* One connection; with SESS, REUSE says whether it must resume. Its
 * session when GOT (for the next connection). */
static void run_conn(const struct plan *p, SSL_SESSION *sess, bool with_http, bool reuse,
                     SSL_SESSION **got)
{
    struct client cl = { 0 };
    struct ipc_report before = fuzz_w.stats;
    client_open(&cl, p, sess);
    SSL *ssl = wire_open();
    client_read(&cl, p);                /* the ClientHello */
    move(cl.out, wire.in, 0);
    struct conn *c = server_admit(ssl);
    drive(c, p, &cl, with_http);
    client_read(&cl, p);
    check_conn(&cl, p, &before, reuse);
    if (got) {
        *got = SSL_get1_session(cl.ssl);
        if (!*got || !SSL_SESSION_is_resumable(*got))
            abort();                    /* no ticket was issued */
    }
    /* Done with, not broken: a session freed unshut is marked not
     * resumable (ssl_clear_bad_session), and so would be *got. */
    SSL_set_shutdown(cl.ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    SSL_free(cl.ssl);
    wire_close();
}

/* Rotations as the master makes them: a new current key, the old one
 * previous. After two, a ticket of the first key is unknown. */
static void rotate(int times)
{
    unsigned char p[IPC_TLS_KEYS_SIZE];
    memcpy(p, keys0, sizeof p);
    for (int i = 1; i <= times; i++) {
        memmove(p + sizeof p / 2, p, sizeof p / 2);
        memset(p, 0x40 + i, sizeof p / 2);
    }
    if (tls_ticket_keys_set(p, sizeof p) != 0)
        abort();
}

static void run_records(const struct plan *p)
{
    SSL_SESSION *sess = NULL;
    if (p->resume) {
        run_conn(p, NULL, false, false, &sess);
        rotate(p->rotations);
    }
    run_conn(p, sess, true, sess && p->rotations < 2, NULL);
    SSL_SESSION_free(sess);
    rotate(0);
}

/* --- the input ----------------------------------------------------------- */

/* flags: bit 0 part, 1 TLS 1.2, 2 resume, 3-4 rotations, 5 close_notify,
 * 6 bad record, 7 batch. mode: bits 0-1 tail, 2-3 wire chunk, 4-5 server
 * writes (1: every other refused, 2: 7 bytes, 3: 100 bytes), 6 ALPN, 7 SNI.
 * cut: where in the stream (/255). n: how many sizes follow (mod 8, +1). */
static struct plan plan_of(const uint8_t *data, size_t size)
{
    static const size_t chunks[] = { 0, 1, 5, 300 }, caps[] = { 0, 0, 7, 100 };
    uint8_t h[4] = { 0 };
    memcpy(h, data, size < 4 ? size : 4);
    struct plan p = {
        .records = h[0] & 1, .tls12 = h[0] & 2, .resume = h[0] & 4,
        .rotations = (h[0] >> 3) % 4 % 3, .close_notify = h[0] & 0x20,
        .bad_record = h[0] & 0x40, .batch = h[0] & 0x80,
        .tail = (enum tail)(h[1] & 3), .wire_chunk = chunks[(h[1] >> 2) & 3],
        .write_cap = caps[(h[1] >> 4) & 3], .eagain = ((h[1] >> 4) & 3) == 1,
        .alpn = h[1] & 0x40, .sni = h[1] & 0x80, .nsizes = h[3] % NSIZES_MAX + 1,
    };
    size_t at = 4;
    for (size_t i = 0; i < p.nsizes; i++, at++) {
        p.sizes[i] = at < size ? data[at] : 0;
        if (!p.sizes[i] && p.records)
            p.sizes[i] = RECORD_MAX;    /* part 0: 0 is the whole rest */
    }
    at = at < size ? at : size;
    p.stream = data + at;
    p.len = size - at;
    p.cut = (size_t)h[2] * p.len / 255;
    return p;
}

/* --- start-up ------------------------------------------------------------ */

/* A self-signed P-256 certificate and its key, in DIR. */
static void make_cert(const char *dir)
{
    char path[256];
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    if (!key || !x || X509_set_version(x, X509_VERSION_3) != 1 ||
        ASN1_INTEGER_set(X509_get_serialNumber(x), 1) != 1 ||
        !X509_gmtime_adj(X509_getm_notBefore(x), -3600) ||
        !X509_gmtime_adj(X509_getm_notAfter(x), 86400L * 365) || X509_set_pubkey(x, key) != 1)
        abort();
    X509_NAME *name = X509_get_subject_name(x);
    if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"s.test",
                                   -1, -1, 0) != 1 ||
        X509_set_issuer_name(x, name) != 1 || X509_sign(x, key, EVP_sha256()) <= 0)
        abort();
    snprintf(path, sizeof path, "%s/cert.pem", dir);
    FILE *f = fopen(path, "w");
    if (!f || PEM_write_X509(f, x) != 1 || fclose(f) != 0)
        abort();
    snprintf(path, sizeof path, "%s/key.pem", dir);
    f = fopen(path, "w");
    if (!f || PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) != 1 || fclose(f) != 0)
        abort();
    X509_free(x);
    EVP_PKEY_free(key);
}

/* The listener as users configure it, through config.c and tlsctx.c. */
static void load_listener(const char *dir)
{
    char path[256], err[512];
    snprintf(path, sizeof path, "%s/preforkd.conf", dir);
    FILE *f = fopen(path, "w");
    if (!f || fputs("listen {\n  address = \"127.0.0.1:8443\"\n  tls {\n"
                    "    # the harness's certificate\n"
                    "    certificate = \"cert.pem\"\n    key = \"key.pem\"\n"
                    "    log_cipher = true\n  }\n}\n", f) < 0 || fclose(f) != 0)
        abort();
    if (config_load(path, &tls_cfg, err, sizeof err) != 0 ||
        tlsctx_load(&tls_cfg, err, sizeof err) != 0) {
        fprintf(stderr, "fuzz_tls: %s\n", err);
        abort();
    }
    wl.conf = &tls_cfg.listens[0];
    wl.proto = &http_proto;
}

static void make_wire_method(void)
{
    int type = BIO_get_new_index() | BIO_TYPE_FILTER | BIO_TYPE_DESCRIPTOR;
    wire_method = BIO_meth_new(type, "fuzz wire");
    if (!wire_method || !BIO_meth_set_write(wire_method, wire_write) ||
        !BIO_meth_set_read(wire_method, wire_read) ||
        !BIO_meth_set_ctrl(wire_method, wire_ctrl) ||
        !BIO_meth_set_create(wire_method, wire_create))
        abort();
}

static SSL_CTX *client_ctx_for(int version)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx || SSL_CTX_set_min_proto_version(ctx, version) != 1 ||
        SSL_CTX_set_max_proto_version(ctx, version) != 1)
        abort();
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    return ctx;
}

/* The error log in memory, where run_hostile looks for its line. */
static void log_to_memory(void)
{
    char path[64], err[256];
    log_memfd = memfd_create("fuzz_tls.log", MFD_CLOEXEC);
    snprintf(path, sizeof path, "/proc/self/fd/%d", log_memfd);
    if (log_memfd < 0 || log_open(path, LOG_LVL_INFO, err, sizeof err) != 0)
        abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    const char *dir = fuzz_site_init(&cfg);
    make_cert(dir);
    load_listener(dir);
    for (size_t i = 0; i < sizeof keys0; i++)
        keys0[i] = (unsigned char)i;
    rotate(0);
    make_wire_method();
    client_ctx[0] = client_ctx_for(TLS1_3_VERSION);
    client_ctx[1] = client_ctx_for(TLS1_2_VERSION);
    log_to_memory();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct plan p = plan_of(data, size);
    fuzz_w.now_ms += 300;               /* cache entries expire every few runs */
    wire.cap = p.write_cap, wire.eagain = p.eagain;
    if (ftruncate(log_memfd, 0) != 0)
        abort();
    if (p.records)
        run_records(&p);
    else
        run_hostile(&p);
    tls_run_pending(&fuzz_w);           /* forget the closed connection */
    http_proto.on_tick(&fuzz_w);
    ERR_clear_error();
    return 0;
}
