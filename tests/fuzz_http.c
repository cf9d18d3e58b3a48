/* fuzz_http: libFuzzer harness of the HTTP handler. Each input is the byte
 * stream of one client connection, run through the real workers/http.c
 * (llhttp, path resolution against a real root, the file cache, response
 * building, the access log) with the worker loop replaced by
 * tests/fuzz_worker.c (which also makes the site) and the socket calls of
 * workers/http_io.h by the memory-backed fakes below. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>

#include "tests/fuzz_worker.h"
#include "workers/http.h"
#include "workers/http_io.h"

/* How the fake client and socket behave for one run of an input. */
struct mode {
    size_t read_chunk;          /* bytes per read(); 0 = all that fits */
    size_t send_cap;            /* bytes per send/sendfile; 0 = all */
    bool eagain;                /* every other send returns EAGAIN */
    bool drain_when_idle;          /* the worker drains once the client waits */
    bool timeout_at_end;        /* the client goes silent instead of EOF */
};

static struct {
    const uint8_t *in;
    size_t len, pos;
    bool eof;
    struct mode m;
    unsigned sends;
    uint64_t out_total;
    char head[9];               /* first bytes of the response stream */
} io;

static struct config cfg;
static struct listen_conf lconf;
static struct wlistener wl;

/* --- the socket calls, in memory ----------------------------------------- */

ssize_t http_io_read(int fd, void *buf, size_t len)
{
    (void)fd;
    size_t left = io.len - io.pos;
    if (!left) {
        if (io.eof)
            return 0;
        errno = EAGAIN;
        return -1;
    }
    size_t n = len < left ? len : left;
    if (io.m.read_chunk && n > io.m.read_chunk)
        n = io.m.read_chunk;
    memcpy(buf, io.in + io.pos, n);
    io.pos += n;
    return (ssize_t)n;
}

/* Short writes and EAGAIN as the mode says; n bytes go out. */
static ssize_t out_room(size_t len, size_t cap)
{
    if (io.m.eagain && io.sends++ % 2 == 0) {
        errno = EAGAIN;
        return -1;
    }
    return (ssize_t)(cap && len > cap ? cap : len);
}

ssize_t http_io_send(int fd, const void *buf, size_t len, int flags)
{
    (void)fd, (void)flags;
    if (len == 0)
        abort();                        /* the handler never sends nothing */
    ssize_t n = out_room(len, io.m.send_cap);
    if (n < 0)
        return n;
    static char sink[1 << 16];
    size_t touch = (size_t)n < sizeof sink ? (size_t)n : sizeof sink;
    memcpy(sink, buf, touch);           /* ASan checks every byte sent */
    if (memmem(buf, (size_t)n, FUZZ_SECRET, sizeof FUZZ_SECRET - 1) &&
        !memmem(io.in, io.len, FUZZ_SECRET, sizeof FUZZ_SECRET - 1))
        abort();        /* a file outside the root was served (not an echo) */
    for (size_t i = 0; io.out_total + i < sizeof io.head && i < (size_t)n; i++)
        io.head[io.out_total + i] = ((const char *)buf)[i];
    io.out_total += (uint64_t)n;
    return n;
}

ssize_t http_io_sendfile(int out_fd, int in_fd, off_t *off, size_t count)
{
    (void)out_fd;
    struct stat st;
    if (fstat(in_fd, &st) != 0 || !S_ISREG(st.st_mode) || *off < 0 ||
        (uint64_t)*off + count > (uint64_t)st.st_size || count == 0)
        abort();                        /* a bad fd or a range past the end */
    if (io.out_total < sizeof io.head)
        abort();                        /* a body before any header */
    ssize_t n = out_room(count, io.m.send_cap * 1024);  /* big files: 1-byte steps are slow */
    if (n < 0)
        return n;
    *off += n;
    io.out_total += (uint64_t)n;
    return n;
}

int http_io_shutdown_wr(int fd)
{
    (void)fd;
    return 0;
}

bool http_io_pending(int fd)
{
    (void)fd;
    return false;       /* a plain socket: a short read took what there was */
}

size_t http_io_tls_text(int fd, char *out, size_t cap)
{
    (void)fd, (void)out, (void)cap;
    return 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fuzz_site_init(&cfg);
    lconf.addr.sa.ss_family = AF_UNIX;  /* no TCP_NODELAY on a fake fd */
    wl.conf = &lconf;
    wl.proto = &http_proto;
    return 0;
}

/* --- one connection ----------------------------------------------------- */

/* Input exhausted and the handler waits for more: drain, time out or EOF. */
static void client_idle(struct conn *c)
{
    if (io.m.drain_when_idle && !fuzz_w.draining) {
        fuzz_w.draining = true;
        http_proto.on_drain(c);
    } else if (io.m.timeout_at_end) {
        fuzz_w.now_ms += 10000;
        http_proto.on_timeout(c);
    } else {
        io.eof = true;
        http_proto.on_event(c, EPOLLIN);
    }
}

static void run_conn(const uint8_t *data, size_t size, struct mode m)
{
    memset(&io, 0, sizeof io);
    io.in = data, io.len = size, io.m = m;
    fuzz_closed = false;
    fuzz_w.draining = false;
    struct conn *c = calloc(1, sizeof *c + http_proto.state_size);
    if (!c)
        abort();
    c->fd = -1, c->w = &fuzz_w, c->proto = &http_proto, c->ls = &wl;
    http_proto.on_open(c);
    size_t stalled = 0, last_pos = 0;
    uint64_t last_out = 0;
    while (!fuzz_closed) {
        stalled = io.pos == last_pos && io.out_total == last_out ? stalled + 1 : 0;
        if (stalled == 100)
            abort();                    /* the handler makes no progress */
        last_pos = io.pos, last_out = io.out_total;
        fuzz_w.now_ns++;                /* each event a wake-up of its own (the
                                           sendfile budget is per wake-up) */
        if (c->interest & EPOLLOUT)
            http_proto.on_event(c, EPOLLOUT);
        else if (io.pos < io.len)
            http_proto.on_event(c, EPOLLIN);
        else
            client_idle(c);
    }
    if (io.out_total && memcmp(io.head, "HTTP/1.1 ", io.out_total < 9 ? io.out_total : 9))
        abort();                        /* the stream must start with a status line */
    http_proto.on_tick(&fuzz_w);
}

/* The I/O pattern of the second run, from the input's own bytes. */
static struct mode mode_of(const uint8_t *data, size_t size)
{
    static const size_t chunks[] = { 0, 1, 2, 5, 64, 700 };
    static const size_t caps[] = { 0, 1, 13, 1000 };
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < size; i++)
        h = (h ^ data[i]) * 16777619u;
    return (struct mode){
        .read_chunk = chunks[h % 6], .send_cap = caps[(h >> 3) % 4],
        .eagain = h & 0x100, .drain_when_idle = h & 0x200, .timeout_at_end = h & 0x400,
    };
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_w.now_ms += 300;               /* cache entries expire every few runs */
    run_conn(data, size, (struct mode){ 0 });
    run_conn(data, size, mode_of(data, size));
    return 0;
}
