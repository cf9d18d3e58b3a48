/* ipc: frame encoding, the incremental frame reader and the bounded write
 * queue behind ipc.h. Only this file knows which payload size each message
 * type must carry; everything else sees whole, checked frames. */
#include "ipc/ipc.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PAYLOAD_ANY      SIZE_MAX   /* any length up to IPC_MAX_PAYLOAD */
#define QUEUE_MIN_CAP    IPC_MAX_FRAME

/* What a valid frame of each type looks like; name == NULL: not a type. */
struct frame_rule {
    const char *name;
    size_t payload;
    size_t min;             /* with PAYLOAD_ANY: the least length */
};

#define CHAT_ID_SIZE    4   /* uint32 conn id leads every chat payload */

static const struct frame_rule frame_rules[IPC_TYPE_MAX] = {
    [IPC_STATE]      = { "state",     sizeof(struct ipc_report) },
    [IPC_HEARTBEAT]  = { "heartbeat", sizeof(struct ipc_report) },
    [IPC_LATENCY]    = { "latency",   PAYLOAD_ANY, 5 },
    [IPC_CMD_DRAIN]  = { "drain",     0 },
    [IPC_CMD_REOPEN] = { "reopen",    0 },
    [IPC_CMD_FAULT]  = { "fault",     PAYLOAD_ANY },
    [IPC_CMD_TLS_KEYS] = { "tls keys", IPC_TLS_KEYS_SIZE },
    [CHAT_HELLO]     = { "chat hello",   CHAT_ID_SIZE },
    [CHAT_NICK]      = { "chat nick",    PAYLOAD_ANY, CHAT_ID_SIZE + 1 },
    [CHAT_JOIN]      = { "chat join",    PAYLOAD_ANY, CHAT_ID_SIZE + 1 },
    [CHAT_LEAVE]     = { "chat leave",   PAYLOAD_ANY, CHAT_ID_SIZE },
    [CHAT_SAY]       = { "chat say",     PAYLOAD_ANY, CHAT_ID_SIZE + 1 },
    [CHAT_MSG]       = { "chat msg",     PAYLOAD_ANY, CHAT_ID_SIZE + 2 },
    [CHAT_ROOMS]     = { "chat rooms",   CHAT_ID_SIZE },
    [CHAT_WHO]       = { "chat who",     PAYLOAD_ANY, CHAT_ID_SIZE },
    [CHAT_BYE]       = { "chat bye",     CHAT_ID_SIZE },
    [CHAT_REPLY]     = { "chat reply",   PAYLOAD_ANY, CHAT_ID_SIZE },
    [CHAT_DELIVER]   = { "chat deliver", PAYLOAD_ANY, CHAT_ID_SIZE + 2 },
    [CHAT_JOINED]    = { "chat joined",  PAYLOAD_ANY, CHAT_ID_SIZE + 1 },
    [CHAT_LEFT]      = { "chat left",    PAYLOAD_ANY, CHAT_ID_SIZE + 1 },
};

int ipc_pipe(int fds[2])
{
    return pipe2(fds, O_NONBLOCK | O_CLOEXEC);
}

/* ---- encoding and sending ---------------------------------------------- */

ssize_t ipc_encode(void *buf, size_t cap, uint16_t type, uint16_t slot, uint32_t gen,
                   const void *payload, size_t len)
{
    struct ipc_hdr hdr;

    if (len > IPC_MAX_PAYLOAD) {
        errno = EMSGSIZE;
        return -1;
    }
    if (cap < IPC_HDR_SIZE + len) {
        errno = ENOBUFS;
        return -1;
    }
    memset(&hdr, 0, sizeof(hdr));
    hdr.type = type;
    hdr.len = (uint16_t)len;
    hdr.slot = slot;
    hdr.gen = gen;
    hdr.pid = (uint32_t)getpid();
    /* buf may be unaligned (a byte queue), so copy rather than cast. */
    memcpy(buf, &hdr, IPC_HDR_SIZE);
    if (len > 0)
        memcpy((unsigned char *)buf + IPC_HDR_SIZE, payload, len);
    return (ssize_t)(IPC_HDR_SIZE + len);
}

/* One write() of a frame <= PIPE_BUF: the pipe takes all of it or none. */
static int write_whole_frame(int fd, const void *frame, size_t size)
{
    ssize_t n;

    do
        n = write(fd, frame, size);
    while (n == -1 && errno == EINTR);
    if (n == -1)
        return -1;
    if ((size_t)n != size) {
        /* POSIX rules this out for pipes; the stream would be corrupt. */
        errno = EIO;
        return -1;
    }
    return 0;
}

int ipc_send(int fd, uint16_t type, uint16_t slot, uint32_t gen,
             const void *payload, size_t len)
{
    unsigned char frame[IPC_MAX_FRAME];
    ssize_t size;

    size = ipc_encode(frame, sizeof(frame), type, slot, gen, payload, len);
    if (size == -1)
        return -1;
    return write_whole_frame(fd, frame, (size_t)size);
}

/* ---- reading ----------------------------------------------------------- */

void ipc_reader_init(struct ipc_reader *r)
{
    r->len = 0;
}

ssize_t ipc_reader_fill(struct ipc_reader *r, int fd)
{
    size_t room = sizeof(r->buf) - r->len;
    ssize_t n;

    if (room == 0) {
        /* Only if the caller stopped taking frames: never read 0 bytes,
         * which would look like EOF. */
        errno = ENOBUFS;
        return -1;
    }
    do
        n = read(fd, r->buf + r->len, room);
    while (n == -1 && errno == EINTR);
    if (n > 0)
        r->len += (size_t)n;
    return n;
}

int ipc_reader_feed(struct ipc_reader *r, const void *p, size_t n)
{
    if (n > sizeof(r->buf) - r->len) {
        errno = ENOBUFS;
        return -1;
    }
    if (n > 0)
        memcpy(r->buf + r->len, p, n);
    r->len += n;
    return 0;
}

static __attribute__((format(printf, 3, 4))) void set_error(char *err, size_t errlen,
                                                             const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* A header is judged alone, so garbage is refused before its payload
 * (which may never come) is waited for. */
static int check_header(const struct ipc_hdr *hdr, char *err, size_t errlen)
{
    const struct frame_rule *rule = NULL;

    if (hdr->type < IPC_TYPE_MAX)
        rule = &frame_rules[hdr->type];
    if (rule == NULL || rule->name == NULL) {
        set_error(err, errlen, "bad frame type %u", hdr->type);
        return -1;
    }
    if (hdr->len > IPC_MAX_PAYLOAD) {
        set_error(err, errlen, "frame length %u exceeds %zu", hdr->len,
                  IPC_MAX_PAYLOAD);
        return -1;
    }
    if (hdr->flags != 0) {
        set_error(err, errlen, "bad flags 0x%x", hdr->flags);
        return -1;
    }
    if (rule->payload != PAYLOAD_ANY && hdr->len != rule->payload) {
        set_error(err, errlen, "%s payload %u bytes, expected %zu",
                  rule->name, hdr->len, rule->payload);
        return -1;
    }
    if (rule->payload == PAYLOAD_ANY && hdr->len < rule->min) {
        set_error(err, errlen, "%s payload %u bytes, expected at least %zu",
                  rule->name, hdr->len, rule->min);
        return -1;
    }
    return 0;
}

/* The header has no offset field, so consumed bytes are moved out now;
 * at most one frame's worth (< 4 KiB) is moved per frame taken. */
static void reader_consume(struct ipc_reader *r, size_t n)
{
    r->len -= n;
    if (r->len > 0)
        memmove(r->buf, r->buf + n, r->len);
}

int ipc_reader_next(struct ipc_reader *r, struct ipc_msg *m, char *err,
                    size_t errlen)
{
    struct ipc_hdr hdr;
    size_t size;

    if (r->len < IPC_HDR_SIZE)
        return 0;
    memcpy(&hdr, r->buf, IPC_HDR_SIZE);
    if (check_header(&hdr, err, errlen) == -1)
        return -1;
    size = IPC_HDR_SIZE + hdr.len;
    if (r->len < size)
        return 0;
    m->hdr = hdr;
    memcpy(m->payload, r->buf + IPC_HDR_SIZE, hdr.len);
    reader_consume(r, size);
    return 1;
}

/* ---- the bounded write queue ------------------------------------------- */

void ipc_queue_init(struct ipc_queue *q, size_t limit)
{
    q->buf = NULL;
    q->head = 0;
    q->len = 0;
    q->cap = 0;
    q->limit = limit;
}

void ipc_queue_free(struct ipc_queue *q)
{
    free(q->buf);
    ipc_queue_init(q, q->limit);
}

/* Make room for n more bytes after the queued ones: first reuse the space
 * already flushed, then grow (doubling, at most to the limit). */
static int queue_reserve(struct ipc_queue *q, size_t n)
{
    size_t want = q->len + n, cap;
    unsigned char *buf;

    if (q->head + want <= q->cap)
        return 0;
    if (q->head > 0 && q->len > 0)
        memmove(q->buf, q->buf + q->head, q->len);
    q->head = 0;
    if (want <= q->cap)
        return 0;
    cap = q->cap > 0 ? q->cap : QUEUE_MIN_CAP;
    while (cap < want)
        cap *= 2;
    if (cap > q->limit)
        cap = q->limit;
    if ((buf = realloc(q->buf, cap)) == NULL)
        return -1;
    q->buf = buf;
    q->cap = cap;
    return 0;
}

int ipc_queue_push(struct ipc_queue *q, uint16_t type, uint16_t slot,
                   uint32_t gen, const void *payload, size_t len)
{
    unsigned char frame[IPC_MAX_FRAME];
    ssize_t size;

    size = ipc_encode(frame, sizeof(frame), type, slot, gen, payload, len);
    if (size == -1)
        return -1;
    if ((size_t)size > q->limit - q->len) {
        errno = ENOBUFS;
        return -1;
    }
    if (queue_reserve(q, (size_t)size) == -1)
        return -1;
    memcpy(q->buf + q->head + q->len, frame, (size_t)size);
    q->len += (size_t)size;
    return 0;
}

int ipc_queue_flush(struct ipc_queue *q, int fd)
{
    ssize_t n;

    while (q->len > 0) {
        n = write(fd, q->buf + q->head, q->len);
        if (n == -1 && errno == EINTR)
            continue;
        if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        if (n == -1)
            return -1;
        if (n == 0) {
            /* Not expected from a pipe; never spin on it. */
            errno = EIO;
            return -1;
        }
        q->head += (size_t)n;
        q->len -= (size_t)n;
    }
    q->head = 0;
    return 1;
}
