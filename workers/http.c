/* http: the HTTP/1.1 static file handler. llhttp parses; a connection
 * borrows a request/response buffer from a per-worker pool only while a
 * request is being read or answered, so an idle keep-alive connection costs
 * its struct conn and this small state. Pipelined requests are answered in
 * order and batched into one send; large bodies go out with sendfile. A
 * request is served by the site its Host names (workers/http_site.c). */
#include "workers/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <llhttp.h>
#include <netinet/in.h>
#include <linux/sockios.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "server/log.h"
#include "workers/http_file.h"
#include "workers/http_index.h"
#include "workers/http_io.h"
#include "workers/http_log.h"
#include "workers/http_path.h"
#include "workers/http_site.h"
#include "workers/mime.h"

#define URL_MAX          8192           /* longer request targets: 414 (RFC 9112 3
                                           recommends at least 8000) */
#define BODY_MAX         (64 * 1024)    /* bodies read and dropped up to this */
#define OUT_CAP          (HTTP_FILE_SMALL + 16384)
#define ERR_RESERVE      2048           /* out room always kept for an error */
#define HDR_RESERVE      1024           /* a file response's headers fit here */
#define POOL_KEEP        64             /* idle buffers kept for reuse */
#define POOL_LOW         4              /* ... and kept after a quiet second */
#define CACHE_SLOTS      256
#ifndef SENDFILE_TURN
#define SENDFILE_TURN    (2u << 20)  /* sendfile bytes per connection per turn */
#endif
#define SENDFILE_WAKEUP  (8u << 20)  /* ... and across connections per wake-up */
/* Unsent segments a file body keeps queued: 64, not 32, as on loopback (64
 * KiB segments) 32 cost a fast client ~28% more worker CPU per 10 MiB file
 * (median 2.34 vs 1.83 ms with no mark, 1.70 with 64: 8 rounds each,
 * tests/bench/RESULTS.md); a tiny-window slow reader still keeps tens of
 * KiB queued. */
#define LOWAT_SEGMENTS   64
#define LOWAT_MIN        (16 * 1024)    /* ... in bytes, at least */
#define LOWAT_MAX        (4 << 20)      /* ... and at most */
#define DRAIN_GRACE_MS   1000   /* idle keep-alive, draining: time for a
                                   request already on its way (a busy machine
                                   can hold a client back for 100+ ms) */
#define READS_PER_EVENT  4              /* fairness between connections */
#define LOG_FIELD_MAX    1024           /* access log: longer fields are cut */
#define NO_BODY_AT       UINT32_MAX
#define LINGER_MS        5000           /* lingering close, at most */
#define LINGER_READS     16             /* per event, so others get a turn */
#define ALLOW            "GET, HEAD, OPTIONS"

enum { H_NONE, H_INM, H_IMS, H_IM, H_IUS, H_RANGE, H_IF_RANGE, H_REFERER, H_UA, H_HOST,
       H_TE, H_AE, H_COUNT };

/* F_SERVED: answered one. F_CUT: closing on a request cut short (refused
 * head or body), so the client may still be sending. F_LINGER: closing,
 * answer sent, reading and dropping what still comes. */
enum { F_CLOSE = 1, F_SERVED = 4, F_CUT = 8, F_LINGER = 16, F_LOWAT = 32 };

struct span { uint32_t off, len; };

/* Borrowed from the pool while a request is in flight. */
struct hbuf {
    struct hbuf *next;          /* pool link */
    struct conn *c;
    uint32_t len, parsed;       /* bytes in in[], bytes given to llhttp */
    uint32_t body_at;           /* first body byte of this read: dropped */
    struct span url, field, val, hdr[H_COUNT];
    uint8_t cur;                /* H_* of the header value being read */
    bool url_done, in_body, complete;
    bool head_checked;          /* the head's last line end was checked */
    bool early;                 /* to be answered at its head's end */
    bool early_sent;            /* it was: its body is being dropped */
    uint8_t hosts;              /* Host headers seen (1.1 needs exactly one) */
    uint8_t te_lines;           /* Transfer-Encoding field lines seen */
    struct http_te te;          /* their codings */
    uint16_t head_flags;        /* llhttp's flags when the head ended */
    uint32_t method_end, version_end;   /* offsets in in[] where they end */
    uint32_t colon;             /* offset of the current field line's ':' */
    uint32_t val_end;           /* end of its value so far; 0: none yet */
    int err;                    /* status a callback refused with */
    uint64_t body_seen;
    struct http_site *site;     /* the request's; the default until known */
    struct tlist *send_tl;      /* send_timeout of the last answer's site */
    uint32_t out_head, out_len; /* pending response bytes out[head..len) */
    struct http_file *send_f;   /* then this file's bytes by sendfile */
    uint64_t send_off, send_left;
    /* multipart/byteranges from send_f's fd: parts[next_part..nparts)
     * follow, each after its head; then the closing delimiter. */
    uint8_t nparts, next_part;
    uint64_t boundary;
    struct http_byte_range parts[HTTP_RANGES_MAX];
    int64_t t_start;            /* request timing: its first byte's wakeup */
    struct { int64_t start; uint32_t n; } answered[4]; /* not yet all sent */
    uint8_t nanswered;
    char *out;                  /* OUT_CAP bytes after in[] */
    char in[];                  /* max_header_size bytes */
};

/* Per connection: kept small, it is all an idle connection costs. */
struct http_state {
    llhttp_t parser;
    struct hbuf *b;             /* NULL while idle */
    uint8_t flags;
    uint64_t sent;              /* bytes handed to the kernel */
    uint64_t acked_seen;        /* sent - queued, at the last send_timeout */
};

/* Per worker process. */
static struct {
    struct http_cache *cache;
    struct hbuf *pool;
    size_t npool, pool_min;     /* pool_min: the least since the last tick */
    uint32_t in_cap;
    bool keepalive;
    bool virtual_hosts;         /* any site NAME { }: look Host up */
    struct http_site *default_site;
    uint64_t boundary;          /* of the next multipart answer */
    struct tlist *header_tl, *keepalive_tl, *grace_tl, *linger_tl;
    int64_t wakeup_ns;          /* the wake-up sendfile_left belongs to */
    uint64_t sendfile_left;     /* SENDFILE_WAKEUP budget left in it */
    llhttp_settings_t settings;
    time_t date_sec;
    size_t date_len;
    char date_line[48];         /* "Date: ...\r\n" */
} H;

/* --- small helpers ------------------------------------------------------ */

static char *put(char *p, const void *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}
#define PUTS(p, lit) put((p), (lit), sizeof(lit) - 1)

static void refresh_date(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME_COARSE, &ts);
    if (ts.tv_sec == H.date_sec)
        return;
    H.date_sec = ts.tv_sec;
    char d[HTTP_DATE_LEN + 1];
    http_date_format(ts.tv_sec, d);
    H.date_len = (size_t)snprintf(H.date_line, sizeof H.date_line, "Date: %s\r\n", d);
}

static const char *reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 412: return "Precondition Failed";
    case 416: return "Range Not Satisfiable";
    case 431: return "Request Header Fields Too Large";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default:  return "Internal Server Error";
    }
}

static struct http_state *state_of(struct conn *c)
{
    return (struct http_state *)c->state;
}

static const char *span_ptr(const struct hbuf *b, struct span sp)
{
    return b->in + sp.off;
}

/* --- buffer pool -------------------------------------------------------- */

static void buf_reset_request(struct hbuf *b)
{
    memset(&b->url, 0, sizeof b->url + sizeof b->field + sizeof b->val + sizeof b->hdr);
    b->cur = H_NONE;
    b->url_done = b->in_body = b->complete = b->head_checked = b->early =
        b->early_sent = false;
    b->hosts = b->te_lines = 0;
    memset(&b->te, 0, sizeof b->te);
    b->method_end = b->version_end = b->colon = b->val_end = 0;
    b->head_flags = 0;
    b->err = 0;
    b->body_seen = 0;
    b->body_at = NO_BODY_AT;
    b->site = H.default_site;
}

static struct hbuf *buf_get(struct conn *c)
{
    struct hbuf *b = H.pool;
    if (b) {
        H.pool = b->next;
        if (--H.npool < H.pool_min)
            H.pool_min = H.npool;
    } else if (!(b = malloc(sizeof *b + H.in_cap + OUT_CAP))) {
        return NULL;
    }
    b->c = c;
    b->len = b->parsed = 0;
    b->out_head = b->out_len = 0;
    b->send_f = NULL;
    b->send_left = 0;
    b->send_tl = H.default_site->send_tl;
    b->nparts = 0;
    b->nanswered = 0;
    b->t_start = worker_now_ns(c->w);
    b->out = b->in + H.in_cap;
    buf_reset_request(b);
    state_of(c)->b = b;
    state_of(c)->parser.data = b;
    return b;
}

static void buf_put(struct http_state *s)
{
    struct hbuf *b = s->b;
    s->b = NULL;
    if (b->send_f)
        http_file_release(b->send_f);
    if (H.npool >= POOL_KEEP) {
        free(b);
        return;
    }
    b->next = H.pool;
    H.pool = b;
    H.npool++;
}

/* --- llhttp callbacks --------------------------------------------------- */

/* llhttp (strict mode, GNUmakefile) checks the grammar it knows; these
 * callbacks add what RFC 9110/9112 ask of a server and llhttp 8 leaves to
 * its user, from the positions of the spans it reports, never by scanning
 * the request again: one SP between the request-line parts, CRLF line ends
 * (llhttp takes a bare LF after the request line and the last header),
 * no empty field name, no obs-fold, a valid Host, a Transfer-Encoding that
 * is exactly "chunked" (and not next to Content-Length, nor in HTTP/1.0),
 * HTTP/1.x only, trailers dropped. Each refusal closes the connection. */

static int refuse(struct hbuf *b, int status)
{
    b->err = status;
    return -1;
}

/* A span can arrive in pieces (one per llhttp_execute()); they are
 * contiguous in in[], which holds the whole head. */
static void span_add(struct span *sp, struct hbuf *b, const char *at, size_t len)
{
    if (sp->len == 0)
        sp->off = (uint32_t)(at - b->in);
    sp->len += (uint32_t)len;
}

static uint32_t span_end(struct span sp)
{
    return sp.off + sp.len;
}

static int on_message_begin(llhttp_t *p)
{
    struct hbuf *b = p->data;
    conn_timer_set(b->c, H.header_tl);
    b->t_start = worker_now_ns(b->c->w);
    return 0;
}

static int on_method(llhttp_t *p, const char *at, size_t len)
{
    struct hbuf *b = p->data;
    b->method_end = (uint32_t)(at + len - b->in);
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
    struct hbuf *b = p->data;
    /* RFC 9112 3: method SP request-target; llhttp skips any number of SP */
    if (!b->url.len && (uint32_t)(at - b->in) != b->method_end + 1)
        return refuse(b, 400);
    if (b->url.len + len > URL_MAX)
        return refuse(b, 414);
    span_add(&b->url, b, at, len);
    return 0;
}

static int on_url_complete(llhttp_t *p)
{
    ((struct hbuf *)p->data)->url_done = true;
    return 0;
}

/* The digits of HTTP-version ("1.1"), after "HTTP/". */
static int on_version(llhttp_t *p, const char *at, size_t len)
{
    struct hbuf *b = p->data;
    uint32_t off = (uint32_t)(at - b->in);
    if (!b->version_end && off != span_end(b->url) + sizeof " HTTP/" - 1)
        return refuse(b, 400);          /* more than one SP before it */
    b->version_end = off + (uint32_t)len;
    return 0;
}

/* llhttp takes any digit.digit here (LENIENT_VERSION, set in http_open):
 * 1.2 and up are served as 1.1 (RFC 9110 2.5), other majors get 505. */
static int on_version_complete(llhttp_t *p)
{
    return p->http_major == 1 ? 0 : refuse(p->data, 505);
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    struct hbuf *b = p->data;
    span_add(&b->field, b, at, len);
    return 0;
}

static int on_header_field_complete(llhttp_t *p)
{
    static const struct { const char *name; size_t len; } known[H_COUNT] = {
        [H_INM] = { "if-none-match", 13 }, [H_IMS] = { "if-modified-since", 17 },
        [H_IM] = { "if-match", 8 }, [H_IUS] = { "if-unmodified-since", 19 },
        [H_RANGE] = { "range", 5 }, [H_IF_RANGE] = { "if-range", 8 },
        [H_REFERER] = { "referer", 7 },
        [H_UA] = { "user-agent", 10 }, [H_HOST] = { "host", 4 },
        [H_TE] = { "transfer-encoding", 17 }, [H_AE] = { "accept-encoding", 15 },
    };
    struct hbuf *b = p->data;
    if (!b->field.len)
        return refuse(b, 400);          /* ": value" (RFC 9110 5.1: 1*tchar) */
    b->colon = span_end(b->field);      /* strict llhttp: no space before ':' */
    b->val_end = 0;
    b->cur = H_NONE;
    /* A trailer field is dropped (RFC 9110 6.5.1): none is applied, framing,
     * routing and request modifiers (Range, Host, ...) least of all. */
    if (!b->in_body)
        for (int i = H_INM; i < H_COUNT; i++)
            if (b->field.len == known[i].len &&
                strncasecmp(span_ptr(b, b->field), known[i].name, known[i].len) == 0)
                b->cur = (uint8_t)i;
    if (b->cur == H_HOST && b->hosts < UINT8_MAX)
        b->hosts++;             /* counted, not just kept: two are a 400 */
    b->field.len = 0;
    return 0;
}

/* obs-fold (RFC 9112 5.2): llhttp joins a line that starts with SP or HTAB
 * to the value before it. Refused: a value piece that does not continue
 * the previous one, or a first piece with a line break between it and the
 * colon (an empty value is reported at the next line's start, after its
 * own CRLF). The bytes looked at are the few of the OWS llhttp skipped. */
static bool folded(const struct hbuf *b, uint32_t off, size_t len)
{
    if (b->val_end)
        return off != b->val_end;
    size_t gap = off - b->colon - (len == 0);
    return memchr(b->in + b->colon, '\n', gap) != NULL;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    struct hbuf *b = p->data;
    uint32_t off = (uint32_t)(at - b->in);
    /* Trailers are dropped, and their bytes may be gone already (body bytes
     * are dropped from in[] after each read): no positions to check. */
    if (!b->in_body && folded(b, off, len))
        return refuse(b, 400);
    b->val_end = off + (uint32_t)len;
    if (b->cur != H_NONE)
        span_add(&b->val, b, at, len);
    return 0;
}

/* The value without the trailing whitespace llhttp leaves in it. */
static struct span trimmed(const struct hbuf *b, struct span sp)
{
    while (sp.len && (b->in[sp.off + sp.len - 1] == ' ' || b->in[sp.off + sp.len - 1] == '\t'))
        sp.len--;
    return sp;
}

static int on_header_value_complete(llhttp_t *p)
{
    struct hbuf *b = p->data;
    struct span v = trimmed(b, b->val);
    if (b->cur == H_HOST && b->hosts == 1 && !http_host_valid(span_ptr(b, v), v.len))
        return refuse(b, 400);          /* RFC 9112 3.2 */
    if (b->cur == H_TE) {
        http_te_add(&b->te, span_ptr(b, v), v.len);
        b->te_lines = 1;
    }
    if (b->cur != H_NONE && !b->hdr[b->cur].len)
        b->hdr[b->cur] = b->val;        /* a repeated header: the first one counts */
    b->val.len = 0;
    b->cur = H_NONE;
    return 0;
}

/* RFC 9112 6.1 and 6.3: a request's framing must be certain. Transfer-
 * Encoding must be exactly "chunked" (llhttp refuses chunked not last, but
 * takes an empty value, unknown codings before chunked, and HTTP/1.0),
 * never next to Content-Length (llhttp misses it when the TE value is
 * empty). Content-Length itself is llhttp's: 1*DIGIT, one field line. */
static int framing_status(const llhttp_t *p, const struct hbuf *b)
{
    if (!b->te_lines)
        return 0;
    if (p->http_minor == 0 || (p->flags & F_CONTENT_LENGTH))
        return 400;
    int st = http_te_status(&b->te);
    return st || (p->flags & F_CHUNKED) ? st : 400;
}

static int on_headers_complete(llhttp_t *p)
{
    struct hbuf *b = p->data;
    b->in_body = true;
    /* RFC 9112 3.2: a 1.1 request without Host, or with several, is a 400. */
    if (b->hosts > 1 || (b->hosts == 0 && p->http_minor >= 1))
        return refuse(b, 400);
    /* RFC 9112 2.2: CRLF ends the request line (strict llhttp: a CR is
     * followed by LF; a bare LF it takes). */
    if (b->in[b->version_end] != '\r')
        return refuse(b, 400);
    int st = framing_status(p, b);
    if (st)
        return refuse(b, st);
    if ((p->flags & F_CONTENT_LENGTH) && p->content_length > BODY_MAX)
        return refuse(b, 413);
    if (!conn_rate_ok(b->c))
        return refuse(b, 503);          /* rate_limit: over it, answered at once */
    /* Upgrade (h2c, websocket) is ignored, as RFC 9110 7.8 allows: without
     * this llhttp would stop parsing the connection after this request. */
    p->upgrade = 0;
    b->head_flags = p->flags;
    bool body = (p->flags & F_CHUNKED) || p->content_length > 0;
    /* Early answer: a body changes no answer of a static server, and any
     * method but GET and HEAD gets an error, so that one is sent as soon
     * as the head is in, not after a (maybe trickled) body, which is then
     * read and dropped as usual (within header_timeout and BODY_MAX, else
     * the connection closes, lingering). */
    b->early = body && p->method != HTTP_GET && p->method != HTTP_HEAD;
    /* Where the head ends is known at the pause: at on_message_complete
     * for a request without a body, here for one with a body. */
    return body ? HPE_PAUSED : 0;
}

/* Bodies are not used: they are counted and dropped from the buffer. */
static int on_body(llhttp_t *p, const char *at, size_t len)
{
    struct hbuf *b = p->data;
    b->body_seen += len;
    if (b->body_seen > BODY_MAX) {
        b->err = 413;
        return -1;
    }
    if (b->body_at == NO_BODY_AT)
        b->body_at = (uint32_t)(at - b->in);
    return 0;
}

/* Pause after each request so it is answered before the next is parsed. */
static int on_message_complete(llhttp_t *p)
{
    struct hbuf *b = p->data;
    b->complete = true;
    /* llhttp applies Connection (and Content-Length, Upgrade) found in
     * trailers to its flags: undo that, trailers are dropped. */
    if (p->flags & F_CHUNKED)
        p->flags = b->head_flags;
    return HPE_PAUSED;
}

static void settings_init(void)
{
    llhttp_settings_t *s = &H.settings;
    llhttp_settings_init(s);
    s->on_message_begin = on_message_begin;
    s->on_method = on_method;
    s->on_url = on_url;
    s->on_url_complete = on_url_complete;
    s->on_version = on_version;
    s->on_version_complete = on_version_complete;
    s->on_header_field = on_header_field;
    s->on_header_field_complete = on_header_field_complete;
    s->on_header_value = on_header_value;
    s->on_header_value_complete = on_header_value_complete;
    s->on_headers_complete = on_headers_complete;
    s->on_body = on_body;
    s->on_message_complete = on_message_complete;
}

/* --- access log and counters --------------------------------------------- */

/* Copy a request field for the log, escaping what could forge a line
 * or a field ('"', '\\', control and non-ASCII bytes, as nginx does). */
static char *put_escaped(char *p, const struct hbuf *b, struct span sp)
{
    static const char hex[] = "0123456789ABCDEF";
    if (!sp.len)
        return PUTS(p, "-");
    const unsigned char *v = (const unsigned char *)span_ptr(b, sp);
    size_t n = sp.len < LOG_FIELD_MAX ? sp.len : LOG_FIELD_MAX;
    for (size_t i = 0; i < n; i++) {
        if (v[i] == '"' || v[i] == '\\' || v[i] < 0x20 || v[i] >= 0x7f) {
            p = PUTS(p, "\\x");
            *p++ = hex[v[i] >> 4];
            *p++ = hex[v[i] & 15];
        } else {
            *p++ = (char)v[i];
        }
    }
    return p;
}

#define LOG_TLS_MAX  128                /* " TLSv1.3 CIPHER" (tls.log_cipher) */
#define LOG_LINE_MAX (3 * 4 * LOG_FIELD_MAX + 256 + LOG_TLS_MAX)

/* host - - [time] "request line" status bytes "referer" "user agent" */
static void access_log(struct conn *c, struct http_state *s, struct hbuf *b,
                       int status, uint64_t bytes)
{
    struct http_log *log = b->site->log;
    char *line = http_log_reserve(log, LOG_LINE_MAX);
    if (!line)
        return;
    char ip[INET6_ADDRSTRLEN];
    peer_addr_text(&c->peer, ip, sizeof ip);
    const llhttp_t *p = &s->parser;
    char *o = line + sprintf(line, "%s - - %s \"%s ", ip, http_log_time(),
                             b->url_done ? llhttp_method_name(p->method) : "-");
    o = put_escaped(o, b, b->url);
    o += sprintf(o, " HTTP/%d.%d\" %d %llu \"", p->http_major, p->http_minor,
                 status, (unsigned long long)bytes);
    o = put_escaped(o, b, b->hdr[H_REFERER]);
    o = PUTS(o, "\" \"");
    o = put_escaped(o, b, b->hdr[H_UA]);
    o = PUTS(o, "\"");
    o += http_io_tls_text(c->fd, o, LOG_TLS_MAX);
    o = PUTS(o, "\n");
    http_log_commit(log, (size_t)(o - line));
}

static int log_field_len(struct span sp)
{
    return (int)(sp.len < LOG_FIELD_MAX ? sp.len : LOG_FIELD_MAX);
}

/* Timing: answered requests wait in b->answered (runs of one start time;
 * a fifth start joins the fourth run) until flush_out has handed their
 * last byte to the kernel. */
static void lat_answered(struct hbuf *b)
{
    uint8_t k = b->nanswered;
    if (!PREFORKD_LATENCY)
        return;
    if (k && (b->answered[k - 1].start == b->t_start || k == 4)) {
        b->answered[k - 1].n++;
        return;
    }
    b->answered[k].start = b->t_start;
    b->answered[k].n = 1;
    b->nanswered++;
}

static void lat_sent(struct conn *c, struct hbuf *b)
{
    for (uint8_t k = 0; k < b->nanswered; k++)
        worker_lat_done(c->ls, b->answered[k].start, b->answered[k].n);
    b->nanswered = 0;
}

static void request_done(struct conn *c, struct http_state *s, struct hbuf *b,
                         int status, uint64_t bytes, bool keep)
{
    c->w->stats.requests++;
    lat_answered(b);
    s->flags |= F_SERVED;
    if (!keep)
        s->flags |= F_CLOSE;
    if (status >= 500 && status != 501 && status != 503 && status != 505)  /* ours */
        log_error("http %d for %.*s", status, log_field_len(b->url), span_ptr(b, b->url));
    else if (status >= 400)
        log_debug("http %d for %.*s", status, log_field_len(b->url), span_ptr(b, b->url));
    if (b->site->log)
        access_log(c, s, b, status, bytes);
}

/* --- responses ---------------------------------------------------------- */

static char *put_status(char *p, int status)
{
    p += sprintf(p, "HTTP/1.1 %d %s\r\nServer: preforkd\r\n", status, reason(status));
    return put(p, H.date_line, H.date_len);
}

static char *put_connection(char *p, const llhttp_t *parser, bool keep)
{
    if (!keep)
        return PUTS(p, "Connection: close\r\n");
    if (parser->http_major == 1 && parser->http_minor == 0)
        return PUTS(p, "Connection: keep-alive\r\n");
    return p;
}

static bool keep_alive(struct conn *c, struct http_state *s, const struct hbuf *b)
{
    return H.keepalive && !b->err && !c->w->draining &&
           llhttp_should_keep_alive(&s->parser);
}

static bool is_head(const struct http_state *s)
{
    return s->parser.method == HTTP_HEAD;
}

/* Where a directory named without its slash lives: the raw path + "/". */
static char *put_location(char *p, const struct hbuf *b)
{
    const char *t = span_ptr(b, b->url);
    size_t len = b->url.len, start = 0;
    if (len && t[0] != '/') {           /* absolute form: skip scheme://host */
        const char *sep = memmem(t, len, "://", 3);
        start = sep ? (size_t)(sep - t) + 3 : 0;
        while (start < len && t[start] != '/')
            start++;
    }
    size_t plen = start + http_target_path_len(t + start, len - start);
    p = PUTS(p, "Location: ");
    p = put(p, t + start, plen - start);
    p = PUTS(p, "/");
    p = put(p, t + plen, len - plen);
    return PUTS(p, "\r\n");
}

/* Whether an error answer leaves the connection open: not after a
 * request whose framing or size is in doubt, nor after a server error. */
static bool error_keeps(struct conn *c, struct http_state *s, const struct hbuf *b,
                        int status)
{
    return status < 500 && status != 400 && status != 408 && status != 413 &&
           status != 414 && status != 431 && keep_alive(c, s, b);
}

/* A short text body; always fits (ERR_RESERVE, URL_MAX bound Location). */
static void reply_error(struct conn *c, struct http_state *s, struct hbuf *b,
                        int status, const struct http_file *f)
{
    bool keep = error_keeps(c, s, b, status);
    char body[64];
    int blen = snprintf(body, sizeof body, "%d %s\n", status, reason(status));
    char *p = put_status(b->out + b->out_len, status);
    p += sprintf(p, "Content-Type: text/plain\r\nContent-Length: %d\r\n", blen);
    if (status == 405)
        p = PUTS(p, "Allow: " ALLOW "\r\n");
    if (status == 301)
        p = put_location(p, b);
    if (status == 416 && f)
        p += sprintf(p, "Content-Range: bytes */%llu\r\n", (unsigned long long)f->size);
    p = put_connection(p, &s->parser, keep);
    p = PUTS(p, "\r\n");
    bool body_sent = !(b->complete && is_head(s));
    if (body_sent)
        p = put(p, body, (size_t)blen);
    b->out_len = (uint32_t)(p - b->out);
    request_done(c, s, b, status, body_sent ? (uint64_t)blen : 0, keep);
}

/* The rest of f (its bytes in out if it keeps them, else by sendfile);
 * out has room (the caller checked). Holds f while it is sent. */
static char *put_body(struct hbuf *b, char *p, struct http_file *f, uint64_t first,
                      uint64_t len)
{
    if (f->fd < 0)
        return put(p, f->data + first, len);
    http_file_hold(f);
    b->send_f = f;
    b->send_off = first;
    b->send_left = len;
    return p;
}

/* Whether out can take an answer of HDR_RESERVE header bytes and copied
 * body bytes now; an empty out always can (the callers bound the body). */
static bool out_has_room(const struct hbuf *b, uint64_t copied)
{
    return !b->out_len || b->out_len + HDR_RESERVE + copied <= OUT_CAP - ERR_RESERVE;
}

/* The site's page for an error status (error_pages), sent with that status:
 * 1 sent, 0 none (no page, or it cannot be served: the built-in answer
 * goes instead), -1 no room in out yet. */
static int reply_error_page(struct conn *c, struct http_state *s, struct hbuf *b,
                            int status)
{
    const char *page = http_site_error_page(b->site, status);
    int st;
    struct http_file *f = page ? http_cache_get(H.cache, b->site->root, page, strlen(page),
                                                c->w->now_ms, &st)
                               : NULL;
    if (!f)
        return 0;
    bool body = f->size > 0 && !is_head(s);
    if (!out_has_room(b, body && f->fd < 0 ? f->size : 0))
        return -1;
    bool keep = error_keeps(c, s, b, status);
    char *p = put_status(b->out + b->out_len, status);
    p += sprintf(p, "Content-Type: %s\r\nContent-Length: %llu\r\n", f->ctype,
                 (unsigned long long)f->size);
    if (status == 405)
        p = PUTS(p, "Allow: " ALLOW "\r\n");
    p = put_connection(p, &s->parser, keep);
    p = PUTS(p, "\r\n");
    if (body)
        p = put_body(b, p, f, 0, f->size);
    b->out_len = (uint32_t)(p - b->out);
    request_done(c, s, b, status, body ? f->size : 0, keep);
    return 1;
}

/* An error answer to a complete request: the site's page for it, or the
 * built-in one. false: no room left in out; flush and call again. */
static bool reply_status(struct conn *c, struct http_state *s, struct hbuf *b, int status)
{
    if (b->site->opts->nerror_pages) {
        int r = reply_error_page(c, s, b, status);
        if (r != 0)
            return r > 0;
    }
    reply_error(c, s, b, status, NULL);
    return true;
}

static bool etag_matches(const char *v, size_t len, const char *etag)
{
    return (len == 1 && v[0] == '*') || memmem(v, len, etag, strlen(etag)) != NULL;
}

/* If-Match compares strongly (RFC 9110 13.1.1): our tag in the list, not
 * as a weak W/"..." one; "*" matches any file that exists. */
static bool etag_matches_strong(const char *v, size_t len, const char *etag)
{
    if (len == 1 && v[0] == '*')
        return true;
    size_t elen = strlen(etag);
    for (const char *p = v; (p = memmem(p, len - (size_t)(p - v), etag, elen)); p += elen)
        if (p - v < 2 || p[-2] != 'W' || p[-1] != '/')
            return true;
    return false;
}

/* If-Match, else If-Unmodified-Since (RFC 9110 13.2.2 steps 1-2): a client
 * that asks for the version it holds gets 412 if the file changed. A date
 * that does not parse is ignored, as the RFC says. */
static bool preconditions_hold(const struct hbuf *b, const struct http_file *f)
{
    struct span im = b->hdr[H_IM], ius = b->hdr[H_IUS];
    if (im.len)
        return etag_matches_strong(span_ptr(b, im), im.len, f->etag);
    if (ius.len) {
        time_t t = http_date_parse(span_ptr(b, ius), ius.len);
        return t == (time_t)-1 || f->mtime <= t;
    }
    return true;
}

/* If-Range (RFC 9110 13.1.5): the range applies only to the version the
 * client holds: an entity-tag must match ours exactly (a weak one never
 * does), a date must equal Last-Modified. Otherwise the whole file, 200, so
 * a resumed download is never spliced from two versions. */
static bool if_range_holds(const struct hbuf *b, const struct http_file *f)
{
    struct span ir = b->hdr[H_IF_RANGE];
    if (!ir.len)
        return true;
    const char *v = span_ptr(b, ir);
    if (v[0] == '"' || (ir.len > 1 && v[0] == 'W' && v[1] == '/'))  /* not "Wed, " */
        return ir.len == strlen(f->etag) && memcmp(v, f->etag, ir.len) == 0;
    time_t t = http_date_parse(v, ir.len);
    return t != (time_t)-1 && t == f->mtime;
}

/* 200, 206, 304, 412 or 416 from the validators and Range of the request;
 * for 206, the ranges in rg[0..*nr). */
static int file_status(const struct hbuf *b, const struct http_file *f,
                       struct http_byte_range rg[HTTP_RANGES_MAX], size_t *nr)
{
    struct span inm = b->hdr[H_INM], ims = b->hdr[H_IMS], r = b->hdr[H_RANGE];
    if (!preconditions_hold(b, f))
        return 412;
    if (inm.len) {
        if (etag_matches(span_ptr(b, inm), inm.len, f->etag))
            return 304;
    } else if (ims.len) {
        time_t t = http_date_parse(span_ptr(b, ims), ims.len);
        if (t != (time_t)-1 && f->mtime <= t)
            return 304;
    }
    if (!r.len || !if_range_holds(b, f))
        return 200;
    switch (http_ranges_parse(span_ptr(b, r), r.len, f->size, rg, nr)) {
    case RANGE_OK:            return 206;
    case RANGE_UNSATISFIABLE: return 416;
    default:                  return 200;
    }
}

static char *put_file_headers(char *p, const struct http_file *f, int status,
                              uint64_t first, uint64_t last)
{
    if (status == 200)
        return put(p, f->hdr, f->hdrlen);
    if (status == 304)
        return p + sprintf(p, "Last-Modified: %s\r\nETag: %s\r\n", f->lastmod, f->etag);
    return p + sprintf(p, "Content-Type: %s\r\nContent-Length: %llu\r\n%s%s%s"
                       "Content-Range: bytes %llu-%llu/%llu\r\n"
                       "Last-Modified: %s\r\nETag: %s\r\n", f->ctype,
                       (unsigned long long)(last - first + 1),
                       f->encoding ? "Content-Encoding: " : "", f->encoding ? f->encoding : "",
                       f->encoding ? "\r\n" : "", (unsigned long long)first,
                       (unsigned long long)last, (unsigned long long)f->size,
                       f->lastmod, f->etag);
}

/* precompressed: the variant of f the request's Accept-Encoding takes, by
 * weight (br first when br and gzip weigh the same, either before identity
 * when it weighs no more), or f itself. */
static struct http_file *choose_encoding(const struct hbuf *b, struct http_file *f)
{
    struct span ae = b->hdr[H_AE];
    if (!ae.len)
        return f;               /* no Accept-Encoding: identity (as nginx) */
    struct http_accept a;
    http_accept_encoding(span_ptr(b, ae), ae.len, &a);
    enum http_enc order[2] = { HTTP_ENC_BR, HTTP_ENC_GZIP };
    uint16_t q[2] = { a.br, a.gzip };
    if (a.gzip > a.br) {
        order[0] = HTTP_ENC_GZIP, order[1] = HTTP_ENC_BR;
        q[0] = a.gzip, q[1] = a.br;
    }
    for (int i = 0; i < 2; i++) {
        if (q[i] == 0 || q[i] < a.identity)
            break;
        struct http_file *v = http_file_variant(f, order[i]);
        if (v)
            return v;
    }
    return f;
}

/* --- multipart/byteranges (RFC 9110 14.6) --- */

#define BOUNDARY_FMT "%016llx"

/* The head of a part: the delimiter (after the previous part's CRLF), its
 * Content-Type and Content-Range. Into p (out, with room: the callers
 * counted it first), or only counted when p is NULL. */
static size_t put_part_head(char *p, uint64_t boundary, bool first_part,
                            const struct http_file *f, const struct http_byte_range *r)
{
    int n = snprintf(p, p ? OUT_CAP : 0, "%s--" BOUNDARY_FMT "\r\nContent-Type: %s\r\n"
                     "Content-Range: bytes %llu-%llu/%llu\r\n\r\n", first_part ? "" : "\r\n",
                     (unsigned long long)boundary, f->ctype, (unsigned long long)r->first,
                     (unsigned long long)r->last, (unsigned long long)f->size);
    return n > 0 ? (size_t)n : 0;
}

#define PART_TAIL_LEN (sizeof "\r\n--" "--\r\n" - 1 + 16)

static size_t put_part_tail(char *p, uint64_t boundary)
{
    return (size_t)sprintf(p, "\r\n--" BOUNDARY_FMT "--\r\n", (unsigned long long)boundary);
}

/* The length of the whole multipart body. */
static uint64_t multipart_length(uint64_t boundary, const struct http_file *f,
                                 const struct http_byte_range *rg, size_t nr)
{
    uint64_t total = PART_TAIL_LEN;
    for (size_t i = 0; i < nr; i++)
        total += put_part_head(NULL, boundary, i == 0, f, &rg[i]) + rg[i].last - rg[i].first + 1;
    return total;
}

/* After the answer's head: every part into out (a file kept in memory;
 * out has room), or the first part's head, its bytes by sendfile and the
 * rest left to flush_out. */
static char *put_multipart(struct hbuf *b, char *p, struct http_file *f, uint64_t boundary,
                           const struct http_byte_range *rg, size_t nr)
{
    if (f->fd < 0) {
        for (size_t i = 0; i < nr; i++) {
            p += put_part_head(p, boundary, i == 0, f, &rg[i]);
            p = put(p, f->data + rg[i].first, rg[i].last - rg[i].first + 1);
        }
        return p + put_part_tail(p, boundary);
    }
    p += put_part_head(p, boundary, true, f, &rg[0]);
    memcpy(b->parts, rg, nr * sizeof *rg);
    b->nparts = (uint8_t)nr;
    b->next_part = 1;
    b->boundary = boundary;
    return put_body(b, p, f, rg[0].first, rg[0].last - rg[0].first + 1);
}

/* The next part's head (or the closing delimiter) into the empty out, and
 * that part's bytes to send. With the delimiter the file is let go at once:
 * while it waits in out, the next answer may already be set up, and with a
 * file of its own (send_f must be free by then). */
static void next_part(struct hbuf *b)
{
    const struct http_file *f = b->send_f;
    if (b->next_part < b->nparts) {
        const struct http_byte_range *r = &b->parts[b->next_part++];
        b->out_len = (uint32_t)put_part_head(b->out, b->boundary, false, f, r);
        b->send_off = r->first;
        b->send_left = r->last - r->first + 1;
    } else {
        b->out_len = (uint32_t)put_part_tail(b->out, b->boundary);
        b->nparts = 0;
        http_file_release(b->send_f);
        b->send_f = NULL;
    }
}

/* false: no room left in out; flush and call again. */
static bool reply_file(struct conn *c, struct http_state *s, struct hbuf *b,
                       struct http_file *f)
{
    struct http_site *site = b->site;
    struct http_file *plain = f;
    if (site->opts->precompressed)
        f = choose_encoding(b, f);
    struct http_byte_range rg[HTTP_RANGES_MAX];
    size_t nr = 0;
    int status = file_status(b, f, rg, &nr);
    if (status == 412 || status == 416) {
        reply_error(c, s, b, status, f);
        return true;
    }
    uint64_t first = 0, last = f->size ? f->size - 1 : 0, len = f->size;
    uint64_t boundary = H.boundary;
    if (status == 206 && nr == 1) {
        first = rg[0].first, last = rg[0].last;
        len = last - first + 1;
    } else if (status == 206) {
        len = multipart_length(boundary, f, rg, nr);
        if (f->fd < 0 && HDR_RESERVE + len > OUT_CAP - ERR_RESERVE) {
            status = 200;       /* parts with absurd heads: the file whole */
            len = f->size;
        }
    }
    if (status == 304 || f->size == 0)
        len = 0;
    bool body = len > 0 && !is_head(s);
    bool copy = body && f->fd < 0;
    if (!out_has_room(b, copy ? len : 0))
        return false;
    bool keep = keep_alive(c, s, b);
    char *p = put_status(b->out + b->out_len, status);
    if (status == 206 && nr > 1) {
        H.boundary++;
        p += sprintf(p, "Content-Type: multipart/byteranges; boundary=" BOUNDARY_FMT "\r\n"
                     "Content-Length: %llu\r\n%s%s%sLast-Modified: %s\r\nETag: %s\r\n",
                     (unsigned long long)boundary, (unsigned long long)len,
                     f->encoding ? "Content-Encoding: " : "", f->encoding ? f->encoding : "",
                     f->encoding ? "\r\n" : "", f->lastmod, f->etag);
    } else {
        p = put_file_headers(p, f, status, first, last);
    }
    if (site->opts->precompressed)
        p = PUTS(p, "Vary: Accept-Encoding\r\n");
    if (site->opts->nexpires) {
        if (plain->expires == -2)
            plain->expires = http_expires_match(site->opts, plain->key, strlen(plain->key),
                                                http_root_index(site->root));
        if (plain->expires >= 0) {
            const struct http_expires_line *e = http_site_expires(site, plain->expires,
                                                                  H.date_sec);
            p = put(p, e->text, e->len);
        }
    }
    p = put_connection(p, &s->parser, keep);
    p = PUTS(p, "\r\n");
    if (body && status == 206 && nr > 1)
        p = put_multipart(b, p, f, boundary, rg, nr);
    else if (body)
        p = put_body(b, p, f, first, len);
    b->out_len = (uint32_t)(p - b->out);
    request_done(c, s, b, status, body ? len : 0, keep);
    return true;
}

/* autoindex: the listing of a directory that has no index file. */
static bool reply_listing(struct conn *c, struct http_state *s, struct hbuf *b,
                          const char *path)
{
    const struct http_root *root = b->site->root;
    char real[PATH_MAX];
    int rc = http_root_dir(root, path, real);
    if (rc < 0)
        return reply_status(c, s, b, -rc);
    size_t len = 0;
    char *html = http_index_html(http_root_path(root), real, path, &len);
    if (!html)
        return reply_status(c, s, b, 500);
    bool body = !is_head(s);
    if (!out_has_room(b, body && len <= HTTP_FILE_SMALL ? len : 0)) {
        free(html);
        return false;
    }
    struct http_file *f = NULL;
    if (body && len > HTTP_FILE_SMALL && !(f = http_file_from_bytes(html, len, NULL))) {
        free(html);
        return reply_status(c, s, b, 500);
    }
    bool keep = keep_alive(c, s, b);
    char *p = put_status(b->out + b->out_len, 200);
    p += sprintf(p, "Content-Type: text/html; charset=utf-8\r\nContent-Length: %zu\r\n", len);
    p = put_connection(p, &s->parser, keep);
    p = PUTS(p, "\r\n");
    if (f) {                    /* made held: this answer's hold */
        b->send_f = f;
        b->send_off = 0;
        b->send_left = len;
    } else if (body) {
        p = put(p, html, len);
    }
    free(html);
    b->out_len = (uint32_t)(p - b->out);
    request_done(c, s, b, 200, body ? len : 0, keep);
    return true;
}

/* OPTIONS (RFC 9110 9.3.7): the methods, no content. The same for every
 * resource, so "*" and a path get the same answer; a path that could not
 * be served (malformed, refused) gets that error instead. */
static void reply_options(struct conn *c, struct http_state *s, struct hbuf *b)
{
    if (b->url.len != 1 || *span_ptr(b, b->url) != '*') {
        char path[URL_MAX + 1];
        int n = http_path_normalize(span_ptr(b, b->url), b->url.len, path, sizeof path);
        if (n < 0) {
            reply_error(c, s, b, -n, NULL);
            return;
        }
    }
    bool keep = keep_alive(c, s, b);
    char *p = put_status(b->out + b->out_len, 200);
    p = PUTS(p, "Allow: " ALLOW "\r\nContent-Length: 0\r\n");
    p = put_connection(p, &s->parser, keep);
    p = PUTS(p, "\r\n");
    b->out_len = (uint32_t)(p - b->out);
    request_done(c, s, b, 200, 0, keep);
}

/* The site the request names: by the authority of an absolute-form target
 * (RFC 9112 3.2.2: then Host is ignored), else by Host. */
static struct http_site *site_of(const struct hbuf *b)
{
    size_t off, len;
    if (http_target_authority(span_ptr(b, b->url), b->url.len, &off, &len))
        return http_site_for_host(span_ptr(b, b->url) + off, len);
    struct span h = trimmed(b, b->hdr[H_HOST]);
    return h.len ? http_site_for_host(span_ptr(b, h), h.len) : http_site_default();
}

/* Answer the complete request in b; false when out has no room for it. */
static bool respond(struct conn *c, struct http_state *s, struct hbuf *b)
{
    if (b->out_len && b->out_len + HDR_RESERVE + b->url.len > OUT_CAP - ERR_RESERVE)
        return false;
    if (s->parser.method == HTTP_OPTIONS) {
        reply_options(c, s, b);
        return true;
    }
    if (H.virtual_hosts) {
        b->site = site_of(b);
        b->send_tl = b->site->send_tl;
    }
    if (s->parser.method != HTTP_GET && s->parser.method != HTTP_HEAD)
        return reply_status(c, s, b, 405);
    char path[URL_MAX + 1];
    int n = http_path_normalize(span_ptr(b, b->url), b->url.len, path, sizeof path);
    int status = -n;
    struct http_file *f = NULL;
    if (n > 0)
        f = http_cache_get(H.cache, b->site->root, path, (size_t)n, c->w->now_ms, &status);
    if (f)
        return reply_file(c, s, b, f);
    if (status == HTTP_STATUS_NO_INDEX) {
        if (b->site->opts->autoindex)
            return reply_listing(c, s, b, path);
        status = 403;
    }
    if (status == 301) {
        reply_error(c, s, b, status, NULL);
        return true;
    }
    return reply_status(c, s, b, status);
}

/* --- parsing ------------------------------------------------------------ */

/* The request at the front was answered: move what follows to the front. */
static void next_request(struct http_state *s, struct hbuf *b)
{
    memmove(b->in, b->in + b->parsed, b->len - b->parsed);
    b->len -= b->parsed;
    b->parsed = 0;
    buf_reset_request(b);
    b->t_start = worker_now_ns(b->c->w);    /* until llhttp sees its first byte */
    llhttp_resume(&s->parser);
}

/* A method llhttp does not know (it stops at its first unknown letter):
 * 501 if the request starts with a token and SP (RFC 9110 9.1), else 400.
 * The message starts at in[0] (next_request moves it there), after the
 * empty lines RFC 9112 2.2 says to ignore. Only on this error path. */
static int unknown_method_status(const struct hbuf *b)
{
    uint32_t i = 0;
    while (i < b->len && (b->in[i] == '\r' || b->in[i] == '\n'))
        i++;
    size_t n = http_token_len(b->in + i, b->len - i);
    return n && i + n < b->len && b->in[i + n] == ' ' ? 501 : 400;
}

static int parse_error_status(const struct http_state *s, const struct hbuf *b)
{
    if (b->err)
        return b->err;
    if (llhttp_get_errno(&s->parser) == HPE_INVALID_METHOD)
        return unknown_method_status(b);
    return 400;
}

static void parse_more(struct conn *c, struct http_state *s, struct hbuf *b)
{
    const char *start = b->in + b->parsed;
    llhttp_errno_t e = llhttp_execute(&s->parser, start, b->len - b->parsed);
    if (e == HPE_OK) {
        b->parsed = b->len;
        if (b->in_body && b->body_at != NO_BODY_AT) {
            /* Drop the body bytes, but keep the last byte read, so that the
             * byte before the next read's first is still what came before
             * it (the line-end check of the trailer section uses it). */
            b->in[b->body_at] = b->in[b->len - 1];
            b->len = b->parsed = b->body_at + (b->body_at + 1 < H.in_cap);
            b->body_at = NO_BODY_AT;
        }
        return;
    }
    if (e == HPE_PAUSED) {
        uint32_t end = (uint32_t)(llhttp_get_error_pos(&s->parser) - b->in);
        /* The first pause is at the end of the head (on_headers_complete
         * or on_message_complete): its empty line must be CRLF too
         * (RFC 9112 2.2; llhttp takes a bare LF there). So must the one
         * that ends the trailer section of a chunked body. */
        if (!b->head_checked || (b->complete && (b->head_flags & F_CHUNKED))) {
            b->head_checked = true;
            if (b->in[end - 2] != '\r')
                b->err = 400;
        }
        if (!b->err) {
            b->parsed = end;
            if (!b->complete && !b->early)
                llhttp_resume(&s->parser);      /* a body follows */
            return;                             /* (early: after the answer) */
        }
    }
    if (!b->err)
        log_debug("http parse error: %s", llhttp_get_error_reason(&s->parser));
    if (!b->early_sent)         /* else its body failed: just close */
        reply_error(c, s, b, parse_error_status(s, b), NULL);
    s->flags |= F_CLOSE | F_CUT;
}

/* Parse and answer what is buffered, until out is full, a file body must
 * be sent first, more bytes are needed or the connection is to close. */
static void serve_buffered(struct conn *c, struct http_state *s, struct hbuf *b)
{
    while (!(s->flags & F_CLOSE) && !b->send_left) {
        if (b->complete) {
            if (!b->early_sent && !respond(c, s, b))
                return;
            next_request(s, b);
        } else if (b->early && !b->early_sent) {
            if (!respond(c, s, b))
                return;
            b->early_sent = true;
            llhttp_resume(&s->parser);          /* now its body, dropped */
        } else if (b->parsed < b->len) {
            parse_more(c, s, b);
        } else {
            if (b->len == H.in_cap) {   /* a head (or chunk line) larger than allowed */
                b->err = b->in_body ? 400 : b->url_done ? 431 : 414;
                reply_error(c, s, b, b->err, NULL);
                s->flags |= F_CLOSE | F_CUT;
            }
            return;
        }
    }
}

/* --- I/O ---------------------------------------------------------------- */

/* Slow readers (tests/attacks.sh): a client that takes a few bytes a
 * second would otherwise get a send buffer's worth (megabytes, autotuned)
 * queued in the kernel per connection, every sendfile queueing page
 * references for all of it: thousands of them fill the kernel's TCP memory
 * and hold the loop for a millisecond per call. With TCP_NOTSENT_LOWAT the
 * kernel keeps few unsent bytes and wakes us only when half of them went
 * out. In segments: a client that advertises a tiny window gets tiny
 * segments (the MSS is bounded by half the window), each costing a
 * buffer's overhead. Set once per connection, before its first file body
 * (small answers never need it: no cost for them). */
static void limit_unsent(struct conn *c, struct http_state *s)
{
    int mss = 0, lowat;
    socklen_t len = sizeof mss;
    s->flags |= F_LOWAT;
    if (getsockopt(c->fd, IPPROTO_TCP, TCP_MAXSEG, &mss, &len) != 0 || mss <= 0)
        mss = 1460;
    lowat = mss > LOWAT_MAX / LOWAT_SEGMENTS ? LOWAT_MAX : mss * LOWAT_SEGMENTS;
    if (lowat < LOWAT_MIN)
        lowat = LOWAT_MIN;
    if (setsockopt(c->fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &lowat, sizeof lowat) != 0)
        log_debug("TCP_NOTSENT_LOWAT: %s", strerror(errno));
}

/* sendfile bytes this wake-up may still send, across connections: many
 * connections writable at once then share the wake-ups, and other events
 * (accepts, short requests) wait for at most one budget's worth. */
static uint64_t wakeup_budget(const struct worker *w)
{
    if (H.wakeup_ns != worker_now_ns(w)) {
        H.wakeup_ns = worker_now_ns(w);
        H.sendfile_left = SENDFILE_WAKEUP;
    }
    return H.sendfile_left;
}

/* 1 all sent, 0 the socket is full (or this turn's share is used), -1 a
 * fatal error. The bytes of out, then of send_f; for multipart/byteranges,
 * part after part. */
static int flush_out(struct conn *c, struct hbuf *b)
{
    struct http_state *s = state_of(c);
    uint64_t sent = 0;
    for (;;) {
        while (b->out_head < b->out_len) {
            int flags = MSG_NOSIGNAL | (b->send_left || b->nparts ? MSG_MORE : 0);
            ssize_t n = http_io_send(c->fd, b->out + b->out_head, b->out_len - b->out_head,
                                     flags);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                return errno == EAGAIN ? 0 : -1;
            }
            b->out_head += (uint32_t)n;
            s->sent += (uint64_t)n;
            c->w->stats.bytes_out += (uint64_t)n;
        }
        b->out_head = b->out_len = 0;
        while (b->send_left) {
            uint64_t budget = wakeup_budget(c->w);
            if (sent >= SENDFILE_TURN || budget == 0)
                return 0;       /* still writable: epoll says so next turn */
            if (!(s->flags & F_LOWAT))
                limit_unsent(c, s);
            off_t off = (off_t)b->send_off;
            size_t want = b->send_left < SENDFILE_TURN ? (size_t)b->send_left : SENDFILE_TURN;
            if (want > budget)
                want = (size_t)budget;
            ssize_t n = http_io_sendfile(c->fd, b->send_f->fd, &off, want);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0 && errno == EAGAIN)
                return 0;
            if (n <= 0)
                return -1;  /* an error, or the file shrank: the length is a lie */
            b->send_off += (uint64_t)n;
            b->send_left -= (uint64_t)n;
            sent += (uint64_t)n;
            s->sent += (uint64_t)n;
            H.sendfile_left -= (uint64_t)n;
            c->w->stats.bytes_out += (uint64_t)n;
        }
        if (!b->nparts)
            break;
        next_part(b);
    }
    if (b->send_f) {
        http_file_release(b->send_f);
        b->send_f = NULL;
    }
    if (b->nanswered)
        lat_sent(c, b);
    return 1;
}

/* Nothing buffered and nothing half-parsed: between requests. */
static bool between_requests(const struct hbuf *b)
{
    return b->len == 0 && !b->in_body && !b->complete && !b->out_len && !b->send_left &&
           !b->nparts;
}

static void settle(struct conn *c, struct http_state *s)
{
    if (between_requests(s->b)) {
        buf_put(s);
        /* A fresh connection waits for its first request under
         * header_timeout, draining or not: it was accepted to be served. */
        if (!(s->flags & F_SERVED))
            goto wait;
        if (c->w->draining) {
            conn_close(c);
            return;
        }
        conn_timer_set(c, H.keepalive_tl);
    }
wait:
    if (conn_set_interest(c, EPOLLIN) != 0)
        conn_close(c);
}

/* 1 more bytes arrived, 0 none for now, -1 closed or failed. */
static int read_more(struct conn *c, struct hbuf *b, bool *maybe_more)
{
    size_t room = H.in_cap - b->len;
    for (;;) {
        ssize_t n = http_io_read(c->fd, b->in + b->len, room);
        if (n > 0) {
            b->len += (uint32_t)n;
            c->w->stats.bytes_in += (uint64_t)n;
            /* Over TLS a read returns one record: more may wait in OpenSSL's
             * buffer (tiny records) without the socket saying so. */
            *maybe_more = (size_t)n == room || http_io_pending(c->fd);
            return 1;
        }
        if (n == 0)
            return -1;
        if (errno != EINTR)
            return errno == EAGAIN ? 0 : -1;
    }
}

/* Lingering close, as nginx's lingering_close and Apache's: closing a
 * socket with unread input makes the kernel send a reset, and a client still
 * sending (an upload refused with 413, requests pipelined behind a close)
 * then fails its write or loses the answer before reading it. So: FIN after
 * the answer, then read and drop input until the client closes or LINGER_MS
 * pass. The request buffer goes back to the pool meanwhile. */
static void linger_start(struct conn *c, struct http_state *s)
{
    buf_put(s);
    s->flags |= F_LINGER;
    if (http_io_shutdown_wr(c->fd) != 0) {
        conn_close(c);
        return;
    }
    conn_timer_set(c, H.linger_tl);
    if (conn_set_interest(c, EPOLLIN) != 0)
        conn_close(c);
}

static void linger_read(struct conn *c)
{
    char sink[16384];
    for (int i = 0; i < LINGER_READS; i++) {
        ssize_t n = http_io_read(c->fd, sink, sizeof sink);
        if (n > 0) {
            c->w->stats.bytes_in += (uint64_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        conn_close(c);          /* the client closed too, or failed */
        return;
    }
    /* More is coming: epoll is level-triggered, this runs again. */
}

static void pump(struct conn *c, struct http_state *s, bool readable)
{
    struct hbuf *b = s->b;
    refresh_date();
    for (int reads = 0;;) {
        serve_buffered(c, s, b);
        int r = flush_out(c, b);
        if (r < 0) {
            conn_close(c);
            return;
        }
        if (r == 0) {           /* the client is slow to read: wait, re-armed
                                   each time it takes bytes (send_timeout) */
            conn_timer_set(c, b->send_tl);
            if (conn_set_interest(c, EPOLLOUT) != 0)
                conn_close(c);
            return;
        }
        if (s->flags & F_CLOSE) {
            /* close() sends the FIN; lingering would only cost syscalls
             * when nothing is left unread and nothing more is coming. */
            if (b->len || (s->flags & F_CUT))
                linger_start(c, s);
            else
                conn_close(c);
            return;
        }
        if (b->complete || b->parsed < b->len)
            continue;           /* it waited for room in out, or for a body
                                   sent by sendfile: serve what is buffered */
        if (!readable || reads++ == READS_PER_EVENT)
            break;
        int got = read_more(c, b, &readable);
        if (got < 0) {
            conn_close(c);
            return;
        }
        if (got == 0)
            break;
    }
    settle(c, s);
}

/* A canned answer when no buffer can be had, or when a per-address limit
 * refuses the connection (worker.c sends it); the connection closes. */
static const char resp_unavailable[] =
    "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
    "Content-Length: 24\r\nConnection: close\r\n\r\n503 Service Unavailable\n";

static void refuse_unavailable(struct conn *c)
{
    log_error("http: out of memory for a request buffer; answering 503");
    ssize_t n = http_io_send(c->fd, resp_unavailable, sizeof resp_unavailable - 1,
                             MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)n;        /* best effort: closed either way */
    conn_close(c);
}

/* --- struct proto ------------------------------------------------------- */

static void http_open(struct conn *c)
{
    struct http_state *s = state_of(c);
    llhttp_init(&s->parser, HTTP_REQUEST, &H.settings);
    /* Any digit.digit version reaches on_version_complete (1.2 is served as
     * 1.1, 2.0 gets 505); llhttp's other lenient flags (headers, chunked
     * length, keep-alive, transfer-encoding) stay off. */
    s->parser.lenient_flags = LENIENT_VERSION;
    /* TCP_NODELAY comes from the listening socket (the master sets it;
     * accepted sockets inherit it): no setsockopt per connection. */
    conn_timer_set(c, H.header_tl);     /* a silent client is closed */
    /* The request came with the accept (TCP_DEFER_ACCEPT): read it now. The
     * connection joins epoll only when it has to wait (settle(), or a full
     * socket), so a request answered with Connection: close never does. */
    if (!buf_get(c)) {
        refuse_unavailable(c);
        return;
    }
    pump(c, s, true);
}

static void http_event(struct conn *c, uint32_t events)
{
    struct http_state *s = state_of(c);
    if (events & EPOLLERR) {
        conn_close(c);
        return;
    }
    if (s->flags & F_LINGER) {
        linger_read(c);
        return;
    }
    if (!s->b && !buf_get(c)) {
        refuse_unavailable(c);
        return;
    }
    pump(c, s, events & (EPOLLIN | EPOLLHUP));
}

/* send_timeout passed without a write event. A client reading slowly
 * but steadily may still have taken bytes (TCP_NOTSENT_LOWAT wakes us
 * only when half the low-water mark went out): what it took since the
 * last look (what we handed the kernel minus what is still queued,
 * SIOCOUTQ) decides. So a client is closed after one to two send_timeouts
 * without taking a byte. */
static bool took_bytes_lately(struct conn *c, struct http_state *s)
{
    int queued = 0;
    if (ioctl(c->fd, SIOCOUTQ, &queued) != 0 || queued < 0)
        return false;
    uint64_t acked = s->sent - (uint64_t)queued;
    bool moved = acked != s->acked_seen;
    s->acked_seen = acked;
    return moved;
}

/* A request that did not arrive in time gets 408; anything else closes. */
static void http_timeout(struct conn *c)
{
    struct http_state *s = state_of(c);
    struct hbuf *b = s->b;      /* NULL when lingering: just close */
    if (b && (b->out_len || b->send_left || b->nparts) && took_bytes_lately(c, s)) {
        conn_timer_set(c, b->send_tl);
        return;
    }
    if (b && !b->complete && !b->early_sent && !b->out_len && !b->send_left && !b->nparts &&
        (b->len > 0 || b->in_body)) {
        refresh_date();
        reply_error(c, s, b, 408, NULL);
        if (flush_out(c, b) > 0)
            http_io_shutdown_wr(c->fd);
    }
    conn_close(c);
}

/* Idle keep-alive: wait a moment for a request already on its way, then
 * close. A fresh connection (no request yet) keeps its header_timeout, as in
 * any worker: it was accepted to be served. Busy: keep_alive() now says no,
 * so the answer carries Connection: close. */
static void http_drain(struct conn *c)
{
    if (!state_of(c)->b && c->tl == H.keepalive_tl)
        conn_timer_set(c, H.grace_tl);
}

static void http_close(struct conn *c)
{
    struct http_state *s = state_of(c);
    if (s->b)
        buf_put(s);
}

/* Each site's send_timeout gets its timer list (sites with the same
 * value share one); past the worker's number of lists, a site takes the
 * default site's. */
static int http_sites_send_timers(struct worker *w)
{
    struct http_site *site, *dflt = http_site_default();
    for (size_t i = 0; (site = http_site_nth(i)); i++) {
        site->send_tl = worker_timer_list(w, (int64_t)site->send_timeout * 1000);
        if (!site->send_tl && site != dflt) {
            log_warn("site %s: too many different timeouts; send_timeout %d s "
                     "instead of %d s", site->name, dflt->send_timeout, site->send_timeout);
            site->send_tl = dflt->send_tl;
        }
        if (!site->send_tl)
            return -1;
    }
    return 0;
}

static int http_init(struct worker *w)
{
    const struct http_conf *hc = &w->cfg->http;
    if (mime_load(NULL) != 0)
        log_warn("/etc/mime.types: %s; using the built-in media types", strerror(errno));
    if (http_sites_init(w->cfg) != 0)
        return -1;
    H.default_site = http_site_default();
    H.virtual_hosts = http_sites_virtual();
    H.cache = http_cache_new(CACHE_SLOTS);
    if (!H.cache) {
        log_error("http: out of memory for the file cache");
        return -1;
    }
    /* Multipart boundaries: unlikely in any file, different per worker. */
    if (getrandom(&H.boundary, sizeof H.boundary, GRND_NONBLOCK) != sizeof H.boundary)
        H.boundary = (uint64_t)getpid() << 32 ^ (uint64_t)time(NULL);
    H.in_cap = (uint32_t)hc->max_header_size;
    H.keepalive = hc->keepalive_timeout > 0;
    H.header_tl = worker_timer_list(w, (int64_t)hc->header_timeout * 1000);
    H.keepalive_tl = worker_timer_list(w, (int64_t)(H.keepalive ? hc->keepalive_timeout : 1) * 1000);
    H.grace_tl = worker_timer_list(w, DRAIN_GRACE_MS);
    H.linger_tl = worker_timer_list(w, LINGER_MS);
    if (!H.header_tl || !H.keepalive_tl || !H.grace_tl || !H.linger_tl ||
        http_sites_send_timers(w) != 0) {
        log_error("http: out of timer lists");
        return -1;
    }
    settings_init();
    return 0;
}

/* Buffers no request took for a whole tick are surplus (an attack's
 * thousands of half-sent requests, say): freed down to POOL_LOW. */
static void pool_trim(struct worker *w)
{
    size_t surplus = H.pool_min > POOL_LOW ? H.pool_min - POOL_LOW : 0;
    if (surplus)
        worker_heap_shrank(w);
    for (; surplus && H.pool; surplus--) {
        struct hbuf *b = H.pool;
        H.pool = b->next;
        H.npool--;
        free(b);
    }
    H.pool_min = H.npool;
}

static void http_tick(struct worker *w)
{
    http_log_flush_all();
    pool_trim(w);
}

static void http_reopen(struct worker *w)
{
    (void)w;
    http_log_reopen_all();
}

static void http_exit(struct worker *w)
{
    (void)w;
    http_log_close_all();
}

const struct proto http_proto = {
    .name = "http",
    .state_size = sizeof(struct http_state),
    .init = http_init,
    .on_open = http_open,
    .on_event = http_event,
    .on_timeout = http_timeout,
    .on_drain = http_drain,
    .on_close = http_close,
    .on_reopen = http_reopen,
    .on_exit = http_exit,
    .on_tick = http_tick,
    .refusal = resp_unavailable,
    .rate_per_request = true,
};
