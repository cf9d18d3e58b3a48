/* h1probe: send one raw HTTP/1 request (or several, pipelined) to
 * 127.0.0.1:PORT and say what came back, for tests/conformance.sh.
 *
 *   h1probe [-t IDLE_MS] PORT REQUEST
 *
 * REQUEST takes C escapes: \r \n \t \\ \0 \xHH. Sent in one write. The
 * answer is read response by response (Content-Length, chunked, or up to
 * the close when a response has neither); the output is one line: the
 * status of each response in order, then "closed" (the server closed the
 * connection: EOF or reset) or "open" (IDLE_MS, default 400, passed with
 * nothing more after an answer; the first answer is waited for 3 s), e.g. "400 closed", "200 200 open", "- closed" (no
 * answer at all). The first response to a request that starts with
 * "HEAD " has no body, nor have 1xx, 204 and 304. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_REQ   (64 * 1024)
#define BUF_CAP   (256 * 1024)
#define TOTAL_MS  8000

static int fd;
static int idle_ms = 400;
static int first_ms = 3000;         /* for the first answer: a busy machine */
static bool answered;
static char buf[BUF_CAP];
static size_t blen, bpos;           /* bytes in buf, bytes consumed */
static bool eof;
static long long deadline;

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

/* More bytes into buf: 1 got some, 0 idle timeout, -1 EOF or error. */
static int fill(void)
{
    if (eof)
        return -1;
    if (bpos == blen)
        bpos = blen = 0;
    if (blen == sizeof buf) {       /* compact */
        memmove(buf, buf + bpos, blen - bpos);
        blen -= bpos;
        bpos = 0;
        if (blen == sizeof buf)
            return -1;
    }
    int wait = answered ? idle_ms : first_ms;
    long long left = deadline - now_ms();
    if (left < wait)
        wait = left > 0 ? (int)left : 0;
    struct pollfd p = { .fd = fd, .events = POLLIN };
    int r = poll(&p, 1, wait);
    if (r <= 0)
        return 0;
    ssize_t n = read(fd, buf + blen, sizeof buf - blen);
    if (n <= 0) {
        eof = true;
        return -1;
    }
    blen += (size_t)n;
    return 1;
}

/* The head of the next response (NUL-ended in buf), its length in *hlen:
 * 1 found, 0 nothing more came (idle), -1 closed. */
static int read_head(size_t *hlen)
{
    for (;;) {
        char *e = memmem(buf + bpos, blen - bpos, "\r\n\r\n", 4);
        if (e) {
            *hlen = (size_t)(e - (buf + bpos)) + 4;
            return 1;
        }
        int r = fill();
        if (r <= 0)
            return r;
    }
}

/* Value of a header in the head [h, h+len), or NULL. */
static const char *header(const char *h, size_t len, const char *name, size_t *vlen)
{
    size_t nl = strlen(name);
    for (const char *p = h; p < h + len;) {
        const char *eol = memmem(p, (size_t)(h + len - p), "\r\n", 2);
        if (!eol)
            break;
        if ((size_t)(eol - p) > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (v < eol && (*v == ' ' || *v == '\t'))
                v++;
            *vlen = (size_t)(eol - v);
            return v;
        }
        p = eol + 2;
    }
    return NULL;
}

/* Consume n body bytes: false if the connection ended first. */
static bool skip(unsigned long long n)
{
    while (n) {
        if (bpos == blen && fill() <= 0)
            return false;
        size_t have = blen - bpos;
        size_t take = have < n ? have : (size_t)n;
        bpos += take;
        n -= take;
    }
    return true;
}

/* One line (up to CRLF) of a chunked body, into line. */
static bool read_line(char *line, size_t cap)
{
    for (;;) {
        char *e = memmem(buf + bpos, blen - bpos, "\r\n", 2);
        if (e) {
            size_t n = (size_t)(e - (buf + bpos));
            snprintf(line, cap, "%.*s", (int)(n < cap ? n : cap - 1), buf + bpos);
            bpos += n + 2;
            return true;
        }
        if (fill() <= 0)
            return false;
    }
}

static bool skip_chunked(void)
{
    char line[256];
    for (;;) {
        if (!read_line(line, sizeof line))
            return false;
        unsigned long long n = strtoull(line, NULL, 16);
        if (n == 0) {
            do {                    /* trailers, then the empty line */
                if (!read_line(line, sizeof line))
                    return false;
            } while (line[0]);
            return true;
        }
        if (!skip(n + 2))
            return false;
    }
}

static size_t unescape(const char *s, char *out, size_t cap)
{
    size_t n = 0;
    for (; *s && n < cap; s++) {
        if (*s != '\\' || !s[1]) {
            out[n++] = *s;
            continue;
        }
        s++;
        switch (*s) {
        case 'r': out[n++] = '\r'; break;
        case 'n': out[n++] = '\n'; break;
        case 't': out[n++] = '\t'; break;
        case '0': out[n++] = '\0'; break;
        case 'x': {
            char hex[3] = { s[1], s[1] ? s[2] : 0, 0 };
            out[n++] = (char)strtol(hex, NULL, 16);
            s += 2;
            break;
        }
        default: out[n++] = *s; break;
        }
    }
    return n;
}

int main(int argc, char **argv)
{
    int opt;
    while ((opt = getopt(argc, argv, "t:")) != -1) {
        if (opt != 't')
            return 2;
        idle_ms = atoi(optarg);
    }
    if (argc - optind != 2) {
        fprintf(stderr, "usage: h1probe [-t IDLE_MS] PORT REQUEST\n");
        return 2;
    }
    static char req[MAX_REQ];
    size_t rlen = unescape(argv[optind + 1], req, sizeof req);
    bool head = rlen >= 5 && memcmp(req, "HEAD ", 5) == 0;

    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[optind])) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        printf("connect-failed\n");
        return 1;
    }
    deadline = now_ms() + TOTAL_MS;
    for (size_t sent = 0; sent < rlen;) {
        ssize_t n = send(fd, req + sent, rlen - sent, MSG_NOSIGNAL);
        if (n <= 0)
            break;                  /* closed early: read what came */
        sent += (size_t)n;
    }

    char out[512] = "";
    size_t olen = 0;
    const char *state = "open";
    for (int nresp = 0; nresp < 16; nresp++) {
        size_t hlen;
        int r = read_head(&hlen);
        if (r == 0)
            break;
        if (r < 0) {
            state = "closed";
            break;
        }
        answered = true;
        char *h = buf + bpos;
        int status = 0;
        if (sscanf(h, "HTTP/%*d.%*d %d", &status) != 1)
            status = -1;
        olen += (size_t)snprintf(out + olen, sizeof out - olen, "%s%d", olen ? " " : "",
                                 status);
        bpos += hlen;
        size_t vlen;
        const char *v;
        bool ok = true;
        if ((head && nresp == 0) || status / 100 == 1 || status == 204 || status == 304)
            ;
        else if ((v = header(h, hlen, "Transfer-Encoding", &vlen)) && vlen >= 7 &&
                 strncasecmp(v + vlen - 7, "chunked", 7) == 0)
            ok = skip_chunked();
        else if ((v = header(h, hlen, "Content-Length", &vlen)))
            ok = skip(strtoull(v, NULL, 10));
        else
            ok = skip(~0ULL);       /* up to the close */
        if (!ok) {
            state = "closed";
            break;
        }
    }
    printf("%s %s\n", olen ? out : "-", state);
    close(fd);
    return 0;
}
