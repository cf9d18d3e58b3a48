/* Unit tests for ipc/: frame round trips, reassembly of any split of the
 * byte stream, refusal of malformed headers, all-or-nothing sends into a
 * full pipe, and the bounded write queue against full and closed pipes. */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "ipc/ipc.h"

#define HB_FRAME (IPC_HDR_SIZE + sizeof(struct ipc_report))

static struct ipc_report
make_report(uint64_t n)
{
    struct ipc_report rep;

    memset(&rep, 0, sizeof(rep));
    rep.state = WS_BUSY;
    rep.active = (uint32_t)(n % 1000);
    rep.accepted = n;
    rep.requests = n * 3;
    rep.bytes_in = n << 20;
    rep.bytes_out = ~n;
    rep.cpu_usec = n + 7;
    rep.maxrss_kb = 6100;
    return rep;
}

/* A payload whose bytes depend on a seed, to catch mixed-up frames. */
static void
fill_pattern(unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(seed * 31 + i * 7);
}

static void
make_pipe(int fds[2])
{
    cr_assert_eq(ipc_pipe(fds), 0, "ipc_pipe: %s", strerror(errno));
}

static void
assert_frame(const struct ipc_msg *m, uint16_t type, uint16_t slot,
             uint32_t gen, const void *payload, size_t len)
{
    cr_assert_eq(m->hdr.type, type);
    cr_assert_eq(m->hdr.len, len);
    cr_assert_eq(m->hdr.slot, slot);
    cr_assert_eq(m->hdr.gen, gen);
    cr_assert_eq(m->hdr.flags, 0);
    cr_assert_eq(m->hdr.pid, (uint32_t)getpid());
    if (len > 0)
        cr_assert_eq(memcmp(m->payload, payload, len), 0);
}

/* Feed one raw header (no payload) and return what the reader says. */
static int
next_after_header(uint16_t type, uint16_t len, uint16_t flags, char *err,
                  size_t errlen)
{
    struct ipc_hdr hdr = { .type = type, .len = len, .flags = flags };
    static struct ipc_reader r;
    static struct ipc_msg m;

    ipc_reader_init(&r);
    cr_assert_eq(ipc_reader_feed(&r, &hdr, sizeof(hdr)), 0);
    err[0] = '\0';
    return ipc_reader_next(&r, &m, err, errlen);
}

static void
assert_bad_header(uint16_t type, uint16_t len, uint16_t flags,
                  const char *expected)
{
    char err[128];

    cr_assert_eq(next_after_header(type, len, flags, err, sizeof(err)), -1,
                 "type %u len %u flags %u accepted", type, len, flags);
    cr_assert_str_eq(err, expected);
}

/* ---- encoding ---------------------------------------------------------- */

Test(ipc, round_trip_every_type)
{
    struct ipc_report rep = make_report(42);
    unsigned char fault[IPC_MAX_PAYLOAD];
    struct {
        uint16_t type;
        const void *payload;
        size_t len;
    } cases[] = {
        { IPC_STATE, &rep, sizeof(rep) },
        { IPC_HEARTBEAT, &rep, sizeof(rep) },
        { IPC_CMD_DRAIN, NULL, 0 },
        { IPC_CMD_REOPEN, NULL, 0 },
        { IPC_CMD_FAULT, fault, 0 },
        { IPC_CMD_FAULT, fault, 13 },
        { IPC_CMD_FAULT, fault, IPC_MAX_PAYLOAD },
    };
    unsigned char frame[IPC_MAX_FRAME];
    static struct ipc_reader r;
    static struct ipc_msg m;
    char err[128];

    fill_pattern(fault, sizeof(fault), 1);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ssize_t n = ipc_encode(frame, sizeof(frame), cases[i].type,
                               (uint16_t)i, 1000 + (uint32_t)i,
                               cases[i].payload, cases[i].len);
        cr_assert_eq(n, (ssize_t)(IPC_HDR_SIZE + cases[i].len));
        ipc_reader_init(&r);
        cr_assert_eq(ipc_reader_feed(&r, frame, (size_t)n), 0);
        cr_assert_eq(ipc_reader_next(&r, &m, err, sizeof(err)), 1,
                     "case %zu: %s", i, err);
        assert_frame(&m, cases[i].type, (uint16_t)i, 1000 + (uint32_t)i,
                     cases[i].payload, cases[i].len);
        cr_assert_eq(r.len, 0);
        cr_assert_eq(ipc_reader_next(&r, &m, err, sizeof(err)), 0);
    }
}

Test(ipc, encode_refuses_oversize_and_small_buffer)
{
    static unsigned char big[IPC_MAX_PAYLOAD + 1];
    unsigned char frame[IPC_MAX_FRAME];

    errno = 0;
    cr_assert_eq(ipc_encode(frame, sizeof(frame), IPC_CMD_FAULT, 0, 0, big,
                            sizeof(big)), -1);
    cr_assert_eq(errno, EMSGSIZE);
    errno = 0;
    cr_assert_eq(ipc_encode(frame, IPC_HDR_SIZE + 3, IPC_CMD_FAULT, 0, 0, big,
                            4), -1);
    cr_assert_eq(errno, ENOBUFS);
}

Test(ipc, send_refuses_oversize)
{
    static unsigned char big[IPC_MAX_PAYLOAD + 1];
    int fds[2];

    make_pipe(fds);
    errno = 0;
    cr_assert_eq(ipc_send(fds[1], IPC_CMD_FAULT, 0, 0, big, sizeof(big)), -1);
    cr_assert_eq(errno, EMSGSIZE);
    close(fds[0]);
    close(fds[1]);
}

Test(ipc, send_reports_write_errors)
{
    errno = 0;
    cr_assert_eq(ipc_send(-1, IPC_CMD_DRAIN, 0, 0, NULL, 0), -1);
    cr_assert_eq(errno, EBADF);
}

/* ---- reassembly -------------------------------------------------------- */

/* A stream of mixed frames; frame i carries slot i. */
#define STREAM_FRAMES 6

static size_t
build_stream(unsigned char *out, size_t cap, struct ipc_report *rep,
             unsigned char *fault)
{
    static const uint16_t types[STREAM_FRAMES] = {
        IPC_HEARTBEAT, IPC_CMD_DRAIN, IPC_STATE, IPC_CMD_FAULT,
        IPC_CMD_REOPEN, IPC_HEARTBEAT,
    };
    size_t off = 0;

    *rep = make_report(7);
    fill_pattern(fault, 100, 3);
    for (uint16_t i = 0; i < STREAM_FRAMES; i++) {
        const void *p = types[i] == IPC_CMD_FAULT ? (const void *)fault : rep;
        size_t len = types[i] == IPC_CMD_FAULT ? 100 :
                     types[i] <= IPC_HEARTBEAT ? sizeof(*rep) : 0;
        ssize_t n = ipc_encode(out + off, cap - off, types[i], i, 9, p, len);
        cr_assert_gt(n, 0);
        off += (size_t)n;
    }
    return off;
}

static void
assert_stream_frame(const struct ipc_msg *m, uint16_t i,
                    const struct ipc_report *rep, const unsigned char *fault)
{
    cr_assert_eq(m->hdr.slot, i, "frame %u out of order", i);
    if (m->hdr.type == IPC_CMD_FAULT)
        assert_frame(m, IPC_CMD_FAULT, i, 9, fault, 100);
    else if (m->hdr.type <= IPC_HEARTBEAT)
        assert_frame(m, m->hdr.type, i, 9, rep, sizeof(*rep));
    else
        assert_frame(m, m->hdr.type, i, 9, NULL, 0);
}

Test(ipc, one_byte_at_a_time)
{
    unsigned char stream[2048], fault[100];
    struct ipc_report rep;
    static struct ipc_reader r;
    static struct ipc_msg m;
    uint16_t got = 0;
    char err[128];
    int rc;

    size_t n = build_stream(stream, sizeof(stream), &rep, fault);
    ipc_reader_init(&r);
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(ipc_reader_feed(&r, stream + i, 1), 0);
        while ((rc = ipc_reader_next(&r, &m, err, sizeof(err))) == 1)
            assert_stream_frame(&m, got++, &rep, fault);
        cr_assert_eq(rc, 0, "byte %zu: %s", i, err);
    }
    cr_assert_eq(got, STREAM_FRAMES);
    cr_assert_eq(r.len, 0);
}

Test(ipc, many_frames_in_one_feed)
{
    unsigned char stream[sizeof(((struct ipc_reader *)0)->buf)];
    static struct ipc_reader r;
    static struct ipc_msg m;
    size_t off = 0, sent = 0, got = 0;
    char err[128];
    int rc;

    /* Alternate heartbeats and drains until the reader's buffer is full. */
    for (;;) {
        struct ipc_report rep = make_report(sent);
        int hb = sent % 2 == 0;
        ssize_t n = ipc_encode(stream + off, sizeof(stream) - off,
                               hb ? IPC_HEARTBEAT : IPC_CMD_DRAIN,
                               (uint16_t)sent, 1, &rep, hb ? sizeof(rep) : 0);
        if (n == -1)
            break;
        off += (size_t)n;
        sent++;
    }
    /* Every heartbeat and drain pair that fits, and one more heartbeat
     * at most: dozens of frames (74 with a 184-byte report). */
    cr_assert_geq(sent, 2 * (sizeof stream / (HB_FRAME + IPC_HDR_SIZE)));
    ipc_reader_init(&r);
    cr_assert_eq(ipc_reader_feed(&r, stream, off), 0);
    while ((rc = ipc_reader_next(&r, &m, err, sizeof(err))) == 1) {
        struct ipc_report rep = make_report(got);
        int hb = got % 2 == 0;
        assert_frame(&m, hb ? IPC_HEARTBEAT : IPC_CMD_DRAIN, (uint16_t)got,
                     1, &rep, hb ? sizeof(rep) : 0);
        got++;
    }
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert_eq(got, sent);
    cr_assert_eq(r.len, 0);
}

Test(ipc, frame_split_across_two_pipe_reads)
{
    unsigned char frame[IPC_MAX_FRAME], fault[500];
    static struct ipc_reader r;
    static struct ipc_msg m;
    char err[128];
    int fds[2];

    make_pipe(fds);
    fill_pattern(fault, sizeof(fault), 5);
    ssize_t n = ipc_encode(frame, sizeof(frame), IPC_CMD_FAULT, 3, 4, fault,
                           sizeof(fault));
    ipc_reader_init(&r);
    cr_assert_eq(write(fds[1], frame, 200), 200);
    cr_assert_eq(ipc_reader_fill(&r, fds[0]), 200);
    cr_assert_eq(ipc_reader_next(&r, &m, err, sizeof(err)), 0);
    cr_assert_eq(write(fds[1], frame + 200, (size_t)n - 200), n - 200);
    cr_assert_eq(ipc_reader_fill(&r, fds[0]), n - 200);
    cr_assert_eq(ipc_reader_next(&r, &m, err, sizeof(err)), 1, "%s", err);
    assert_frame(&m, IPC_CMD_FAULT, 3, 4, fault, sizeof(fault));
    close(fds[0]);
    close(fds[1]);
}

Test(ipc, fill_reports_eagain_and_eof)
{
    static struct ipc_reader r;
    int fds[2];

    make_pipe(fds);
    ipc_reader_init(&r);
    errno = 0;
    cr_assert_eq(ipc_reader_fill(&r, fds[0]), -1);
    cr_assert_eq(errno, EAGAIN);
    close(fds[1]);
    cr_assert_eq(ipc_reader_fill(&r, fds[0]), 0);
    close(fds[0]);
}

Test(ipc, feed_beyond_buffer_fails)
{
    static unsigned char junk[sizeof(((struct ipc_reader *)0)->buf)];
    static struct ipc_reader r;

    ipc_reader_init(&r);
    cr_assert_eq(ipc_reader_feed(&r, junk, sizeof(junk) - 1), 0);
    errno = 0;
    cr_assert_eq(ipc_reader_feed(&r, junk, 2), -1);
    cr_assert_eq(errno, ENOBUFS);
    cr_assert_eq(r.len, sizeof(junk) - 1);
}

/* ---- malformed headers ------------------------------------------------- */

Test(ipc, bad_type)
{
    assert_bad_header(0, 0, 0, "bad frame type 0");
    assert_bad_header(200, 0, 0, "bad frame type 200");
    assert_bad_header(IPC_TYPE_MAX, 0, 0, "bad frame type 64");
    assert_bad_header(5, 0, 0, "bad frame type 5");
    assert_bad_header(UINT16_MAX, 0, 0, "bad frame type 65535");
}

Test(ipc, bad_length)
{
    assert_bad_header(IPC_CMD_FAULT, 5000, 0, "frame length 5000 exceeds 4080");
    assert_bad_header(IPC_CMD_FAULT, IPC_MAX_PAYLOAD + 1, 0,
                      "frame length 4081 exceeds 4080");
    assert_bad_header(IPC_HEARTBEAT, UINT16_MAX, 0,
                      "frame length 65535 exceeds 4080");
}

Test(ipc, chat_payload_bounds)
{
    assert_bad_header(CHAT_HELLO, 0, 0, "chat hello payload 0 bytes, expected 4");
    assert_bad_header(CHAT_SAY, 4, 0,
                      "chat say payload 4 bytes, expected at least 5");
    assert_bad_header(CHAT_REPLY, 3, 0,
                      "chat reply payload 3 bytes, expected at least 4");
    assert_bad_header(45, 4, 0, "bad frame type 45");
}

Test(ipc, bad_flags)
{
    assert_bad_header(IPC_CMD_DRAIN, 0, 3, "bad flags 0x3");
    assert_bad_header(IPC_HEARTBEAT, sizeof(struct ipc_report), 0x8000,
                      "bad flags 0x8000");
}

Test(ipc, bad_payload_size_for_type)
{
    /* the report grows with its counters: its size, not a number */
    size_t rep = sizeof(struct ipc_report);
    char want[80];
    snprintf(want, sizeof want, "heartbeat payload 12 bytes, expected %zu", rep);
    assert_bad_header(IPC_HEARTBEAT, 12, 0, want);
    snprintf(want, sizeof want, "state payload 0 bytes, expected %zu", rep);
    assert_bad_header(IPC_STATE, 0, 0, want);
    snprintf(want, sizeof want, "state payload %zu bytes, expected %zu", rep + 1, rep);
    assert_bad_header(IPC_STATE, (uint16_t)(rep + 1), 0, want);
    assert_bad_header(IPC_CMD_DRAIN, 4, 0, "drain payload 4 bytes, expected 0");
    assert_bad_header(IPC_CMD_REOPEN, 1, 0,
                      "reopen payload 1 bytes, expected 0");
}

Test(ipc, bad_header_refused_before_payload)
{
    char err[128];

    /* Each header promises a payload that never comes: refused at once. */
    cr_assert_eq(next_after_header(IPC_HEARTBEAT, 12, 0, err, sizeof(err)),
                 -1);
    cr_assert_not_null(strstr(err, "heartbeat payload 12"), "%s", err);
    cr_assert_eq(next_after_header(IPC_CMD_FAULT, 5000, 0, err, sizeof(err)),
                 -1);
    cr_assert_not_null(strstr(err, "exceeds"), "%s", err);
    cr_assert_eq(next_after_header(IPC_CMD_FAULT, 100, 1, err, sizeof(err)),
                 -1);
    cr_assert_not_null(strstr(err, "bad flags"), "%s", err);
    /* A good header with its payload still missing is just incomplete. */
    cr_assert_eq(next_after_header(IPC_CMD_FAULT, 100, 0, err, sizeof(err)),
                 0);
}

Test(ipc, bad_header_after_good_frames_and_stays_bad)
{
    struct ipc_hdr bad = { .type = 99 };
    static struct ipc_reader r;
    static struct ipc_msg m;
    char err[128];

    unsigned char frame[IPC_MAX_FRAME];
    ipc_reader_init(&r);
    ssize_t n = ipc_encode(frame, sizeof(frame), IPC_CMD_REOPEN, 2, 3, NULL, 0);
    cr_assert_eq(ipc_reader_feed(&r, frame, (size_t)n), 0);
    cr_assert_eq(ipc_reader_feed(&r, &bad, sizeof(bad)), 0);
    cr_assert_eq(ipc_reader_next(&r, &m, err, sizeof(err)), 1);
    cr_assert_eq(ipc_reader_next(&r, &m, err, sizeof(err)), -1);
    cr_assert_str_eq(err, "bad frame type 99");
    cr_assert_eq(ipc_reader_next(&r, &m, NULL, 0), -1);
    cr_assert_str_eq(err, "bad frame type 99");
}

/* ---- all-or-nothing sends into a full pipe ----------------------------- */

#define MAX_SENDS 8192

/* Payload sizes tried in turn, so a frame often meets a partly free pipe. */
static const size_t send_sizes[] = { sizeof(struct ipc_report), 1000, 0, IPC_MAX_PAYLOAD, 333,
                                     sizeof(struct ipc_report) };
#define NSIZES (sizeof(send_sizes) / sizeof(send_sizes[0]))

static uint16_t
type_for_size(size_t i)
{
    if (i == 0 || i == NSIZES - 1)
        return IPC_HEARTBEAT;
    return send_sizes[i] == 0 ? IPC_CMD_DRAIN : IPC_CMD_FAULT;
}

/* Send until every size has been refused in a row; record what was sent. */
static size_t
send_until_full(int fd, size_t *sent_len)
{
    static unsigned char payload[IPC_MAX_PAYLOAD];
    size_t sent = 0, refusals = 0;

    for (size_t i = 0; refusals < NSIZES; i = (i + 1) % NSIZES) {
        fill_pattern(payload, send_sizes[i], (unsigned)sent);
        if (ipc_send(fd, type_for_size(i), (uint16_t)sent, 0, payload,
                     send_sizes[i]) == -1) {
            cr_assert_eq(errno, EAGAIN, "send: %s", strerror(errno));
            refusals++;
            continue;
        }
        refusals = 0;
        cr_assert_lt(sent, MAX_SENDS);
        sent_len[sent++] = send_sizes[i];
    }
    return sent;
}

Test(ipc, full_pipe_gets_only_whole_frames)
{
    static size_t sent_len[MAX_SENDS];
    static unsigned char expect[IPC_MAX_PAYLOAD];
    static struct ipc_reader r;
    static struct ipc_msg m;
    size_t sent, got = 0;
    char err[128];
    ssize_t n;
    int fds[2], rc;

    make_pipe(fds);
    sent = send_until_full(fds[1], sent_len);
    cr_assert_gt(sent, 10);
    close(fds[1]);
    ipc_reader_init(&r);
    while ((n = ipc_reader_fill(&r, fds[0])) > 0) {
        while ((rc = ipc_reader_next(&r, &m, err, sizeof(err))) == 1) {
            cr_assert_lt(got, sent);
            cr_assert_eq(m.hdr.slot, (uint16_t)got);
            fill_pattern(expect, sent_len[got], (unsigned)got);
            cr_assert_eq(m.hdr.len, sent_len[got]);
            cr_assert_eq(memcmp(m.payload, expect, m.hdr.len), 0);
            got++;
        }
        cr_assert_eq(rc, 0, "%s", err);
    }
    cr_assert_eq(n, 0, "read: %s", strerror(errno));
    cr_assert_eq(got, sent);
    cr_assert_eq(r.len, 0, "%zu bytes of a partial frame", r.len);
    close(fds[0]);
}

/* ---- the write queue --------------------------------------------------- */

Test(ipc, queue_push_beyond_limit)
{
    struct ipc_report rep = make_report(1);
    static unsigned char big[IPC_MAX_PAYLOAD + 1];
    struct ipc_queue q;

    ipc_queue_init(&q, 3 * HB_FRAME);
    cr_assert_null(q.buf, "the queue allocates lazily");
    for (int i = 0; i < 3; i++)
        cr_assert_eq(ipc_queue_push(&q, IPC_HEARTBEAT, 0, 0, &rep,
                                    sizeof(rep)), 0);
    cr_assert_eq(q.len, 3 * HB_FRAME);
    errno = 0;
    cr_assert_eq(ipc_queue_push(&q, IPC_CMD_DRAIN, 0, 0, NULL, 0), -1);
    cr_assert_eq(errno, ENOBUFS);
    cr_assert_eq(q.len, 3 * HB_FRAME);
    errno = 0;
    cr_assert_eq(ipc_queue_push(&q, IPC_CMD_FAULT, 0, 0, big, sizeof(big)), -1);
    cr_assert_eq(errno, EMSGSIZE);
    cr_assert_eq(q.len, 3 * HB_FRAME);
    ipc_queue_free(&q);
    cr_assert_null(q.buf);
    cr_assert_eq(q.len, 0);
}

/* Read whatever the pipe holds into r, checking each frame taken. */
static void
drain_pipe(int fd, struct ipc_reader *r, size_t *got)
{
    static struct ipc_msg m;
    unsigned char expect[500];
    char err[128];
    ssize_t n;
    int rc;

    while ((n = ipc_reader_fill(r, fd)) > 0) {
        while ((rc = ipc_reader_next(r, &m, err, sizeof(err))) == 1) {
            size_t len = 100 + *got % 400;
            fill_pattern(expect, len, (unsigned)*got);
            assert_frame(&m, IPC_CMD_FAULT, (uint16_t)*got, 5, expect, len);
            (*got)++;
        }
        cr_assert_eq(rc, 0, "%s", err);
    }
    cr_assert_eq(n, -1);
    cr_assert_eq(errno, EAGAIN);
}

/* flush returned 0: it must have written until the pipe took no more. */
static void
assert_pipe_full(const int fds[2])
{
    int size = fcntl(fds[1], F_GETPIPE_SZ), queued = 0;

    cr_assert_gt(size, 0);
    cr_assert_eq(ioctl(fds[0], FIONREAD, &queued), 0);
    cr_assert_geq((size_t)queued, (size_t)size - IPC_MAX_FRAME,
                  "flush stopped with %d of %d bytes in the pipe", queued,
                  size);
}

Test(ipc, queue_flush_into_full_pipe)
{
    enum { FRAMES = 1000 };
    unsigned char payload[500];
    static struct ipc_reader r;
    struct ipc_queue q;
    size_t got = 0;
    int fds[2], rc, rounds = 0;

    make_pipe(fds);
    ipc_queue_init(&q, 1 << 20);
    for (size_t i = 0; i < FRAMES; i++) {
        size_t len = 100 + i % 400;     /* odd sizes: frames split */
        fill_pattern(payload, len, (unsigned)i);
        cr_assert_eq(ipc_queue_push(&q, IPC_CMD_FAULT, (uint16_t)i, 5,
                                    payload, len), 0);
    }
    ipc_reader_init(&r);
    while ((rc = ipc_queue_flush(&q, fds[1])) == 0) {
        cr_assert_gt(q.len, 0);
        assert_pipe_full(fds);
        drain_pipe(fds[0], &r, &got);
        rounds++;
    }
    cr_assert_eq(rc, 1);
    cr_assert_gt(rounds, 0, "the first flush must meet a full pipe");
    cr_assert_eq(q.len, 0);
    drain_pipe(fds[0], &r, &got);
    cr_assert_eq(got, FRAMES);
    cr_assert_eq(r.len, 0);
    cr_assert_eq(ipc_queue_flush(&q, fds[1]), 1, "empty queue flushes");
    ipc_queue_free(&q);
    close(fds[0]);
    close(fds[1]);
}

Test(ipc, queue_reuses_flushed_space)
{
    struct ipc_report rep = make_report(2);
    struct ipc_queue q;
    int fds[2];

    make_pipe(fds);
    ipc_queue_init(&q, 2 * HB_FRAME);
    for (int round = 0; round < 100; round++) {
        cr_assert_eq(ipc_queue_push(&q, IPC_HEARTBEAT, 0, 0, &rep,
                                    sizeof(rep)), 0);
        cr_assert_eq(ipc_queue_push(&q, IPC_HEARTBEAT, 0, 0, &rep,
                                    sizeof(rep)), 0);
        cr_assert_eq(ipc_queue_flush(&q, fds[1]), 1);
        cr_assert_leq(q.cap, q.limit);
        unsigned char sink[2 * HB_FRAME];
        cr_assert_eq(read(fds[0], sink, sizeof(sink)), (ssize_t)sizeof(sink));
    }
    ipc_queue_free(&q);
    close(fds[0]);
    close(fds[1]);
}

Test(ipc, queue_flush_to_closed_reader)
{
    struct ipc_queue q;
    int fds[2];

    signal(SIGPIPE, SIG_IGN);
    make_pipe(fds);
    close(fds[0]);
    ipc_queue_init(&q, 4096);
    cr_assert_eq(ipc_queue_push(&q, IPC_CMD_DRAIN, 1, 1, NULL, 0), 0);
    errno = 0;
    cr_assert_eq(ipc_queue_flush(&q, fds[1]), -1);
    cr_assert_eq(errno, EPIPE);
    cr_assert_eq(q.len, IPC_HDR_SIZE, "nothing was taken");
    ipc_queue_free(&q);
    close(fds[1]);
}

/* ---- the pipe itself --------------------------------------------------- */

Test(ipc, pipe_is_nonblocking_and_cloexec)
{
    int fds[2];

    make_pipe(fds);
    for (int i = 0; i < 2; i++) {
        int fl = fcntl(fds[i], F_GETFL), fd = fcntl(fds[i], F_GETFD);
        cr_assert_neq(fl, -1);
        cr_assert_neq(fd, -1);
        cr_assert(fl & O_NONBLOCK, "end %d blocks", i);
        cr_assert(fd & FD_CLOEXEC, "end %d survives exec", i);
    }
    close(fds[0]);
    close(fds[1]);
}
