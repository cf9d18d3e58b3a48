/* ipc: framed messages over non-blocking pipes between master and workers.
 * Every frame is a fixed 16-byte header plus at most IPC_MAX_PAYLOAD bytes,
 * so one frame fits in PIPE_BUF and a single write() of it is atomic.
 * Readers reassemble any split of the byte stream; writers never block. */
#ifndef PREFORKD_IPC_H
#define PREFORKD_IPC_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum ipc_type {
    IPC_NONE = 0,
    /* worker -> master */
    IPC_STATE = 1,        /* payload: struct ipc_report */
    IPC_HEARTBEAT = 2,    /* payload: struct ipc_report */
    IPC_LATENCY = 3,      /* payload: latency records (ipc/latency.h) */
    /* master -> worker */
    IPC_CMD_DRAIN = 16,   /* no payload: stop accepting, finish, exit */
    IPC_CMD_REOPEN = 17,  /* no payload: reopen log files */
    /* test-only: a worker asked to write garbage into its status pipe */
    IPC_CMD_FAULT = 18,
    /* payload: the TLS session ticket keys, current then previous (see
     * workers/tls.h); never logged, never shown */
    IPC_CMD_TLS_KEYS = 19,  /* payload: IPC_TLS_KEYS_SIZE bytes */
    /* chat, worker -> master: payload uint32 conn id (worker-local), then
     * NUL-separated fields as noted (see server/chat.h) */
    CHAT_HELLO = 32,      /* new connection */
    CHAT_NICK = 33,       /* nick */
    CHAT_JOIN = 34,       /* room */
    CHAT_LEAVE = 35,      /* room ("": the current one) */
    CHAT_SAY = 36,        /* room ("": current) \0 text */
    CHAT_MSG = 37,        /* nick \0 text */
    CHAT_ROOMS = 38,
    CHAT_WHO = 39,        /* room ("": current) */
    CHAT_BYE = 40,        /* connection closed */
    /* chat, master -> worker */
    CHAT_REPLY = 41,      /* conn, line: print to that connection */
    CHAT_DELIVER = 42,    /* conn 0, room \0 line: to every local member */
    CHAT_JOINED = 43,     /* conn, room: now a member (before any delivery) */
    CHAT_LEFT = 44,       /* conn, room: no longer a member */
    IPC_TYPE_MAX = 64     /* types >= this are protocol errors */
};

#define IPC_TLS_KEYS_SIZE 160

struct ipc_hdr {
    uint16_t type;
    uint16_t len;         /* payload bytes following the header */
    uint16_t slot;        /* sender's slot (master: the target's) */
    uint16_t flags;       /* reserved, must be 0 */
    uint32_t gen;         /* configuration generation */
    uint32_t pid;         /* sender pid */
};

#define IPC_HDR_SIZE     ((size_t)sizeof(struct ipc_hdr))
#define IPC_MAX_FRAME    ((size_t)PIPE_BUF)
#define IPC_MAX_PAYLOAD  (IPC_MAX_FRAME - IPC_HDR_SIZE)

enum worker_state { WS_STARTING, WS_IDLE, WS_BUSY, WS_DRAINING, WS_NSTATES };

/* Why TLS handshakes failed (workers/tls.c sorts OpenSSL's reasons): the
 * client left or reset, header_timeout cut it (or a drain), it offered no
 * protocol version we speak, no cipher/group/signature we share, it refused
 * our certificate (an alert), or anything else (plain HTTP, garbage). */
enum tls_fail {
    TLS_FAIL_CLOSED, TLS_FAIL_TIMEOUT, TLS_FAIL_VERSION, TLS_FAIL_CIPHER,
    TLS_FAIL_CERTIFICATE, TLS_FAIL_PROTOCOL, TLS_FAIL_N
};

static inline const char *tls_fail_name(unsigned k)
{
    static const char *const names[TLS_FAIL_N] = {
        "closed", "timeout", "version", "cipher", "certificate", "protocol",
    };
    return k < TLS_FAIL_N ? names[k] : "?";
}

/* Cumulative counters: a dropped report loses only freshness. */
struct ipc_report {
    uint32_t state;       /* enum worker_state */
    uint32_t active;      /* open connections now */
    uint64_t accepted;
    uint64_t requests;
    uint64_t bytes_in;
    uint64_t bytes_out;
    uint64_t cpu_usec;    /* user + system */
    uint64_t maxrss_kb;
    uint64_t proxy_rejected;  /* closed for a missing/bad/untrusted PROXY header */
    uint64_t tls_handshakes;  /* completed, resumed ones included */
    uint64_t tls_resumed;
    uint64_t tls_failed;      /* handshakes that did not complete */
    uint64_t tls_failed_by[TLS_FAIL_N];     /* the same, by enum tls_fail */
    uint64_t limited;     /* connections and requests refused by limits */
};

struct ipc_msg {
    struct ipc_hdr hdr;
    unsigned char payload[IPC_MAX_PAYLOAD];
};

/* Incremental reader: keeps leftover bytes between reads. */
struct ipc_reader {
    size_t len;
    unsigned char buf[2 * IPC_MAX_FRAME];
};

/* Bounded outgoing byte queue, for the master's writes to a worker. */
struct ipc_queue {
    unsigned char *buf;
    size_t head, len, cap, limit;
};

/* A pipe with both ends O_NONBLOCK and O_CLOEXEC. 0 or -1 with errno. */
int ipc_pipe(int fds[2]);

/* Encode one frame into buf (cap >= IPC_HDR_SIZE + len). Returns the frame
 * size, or -1 with errno EMSGSIZE when len > IPC_MAX_PAYLOAD. */
ssize_t ipc_encode(void *buf, size_t cap, uint16_t type, uint16_t slot,
                   uint32_t gen, const void *payload, size_t len);

/* Write one frame with a single write(): all or nothing. 0 sent; -1 with
 * errno (EAGAIN: pipe full, frame dropped). */
int ipc_send(int fd, uint16_t type, uint16_t slot, uint32_t gen,
             const void *payload, size_t len);

void ipc_reader_init(struct ipc_reader *r);
/* One read() into the free space. >0 bytes, 0 EOF, -1 errno (EAGAIN too). */
ssize_t ipc_reader_fill(struct ipc_reader *r, int fd);
/* Append bytes as if read (tests). 0, or -1 with ENOBUFS when full. */
int ipc_reader_feed(struct ipc_reader *r, const void *p, size_t n);
/* Take the next complete frame: 1 got one, 0 need more bytes, -1 protocol
 * error (bad type, length or flags) described in err; the stream is then
 * unusable and its channel should be closed. */
int ipc_reader_next(struct ipc_reader *r, struct ipc_msg *m,
                    char *err, size_t errlen);

void ipc_queue_init(struct ipc_queue *q, size_t limit);
void ipc_queue_free(struct ipc_queue *q);
/* Queue a frame. 0, or -1 with ENOBUFS when it would exceed the limit. */
int ipc_queue_push(struct ipc_queue *q, uint16_t type, uint16_t slot,
                   uint32_t gen, const void *payload, size_t len);
/* Write what the pipe takes. 1 queue empty, 0 bytes left (wait for
 * EPOLLOUT), -1 error with errno (EPIPE: reader gone). */
int ipc_queue_flush(struct ipc_queue *q, int fd);

#endif
