/* Strict HTTP/1.1 request parsing (RFC 9110, RFC 9112): raw requests over
 * a socket to the real build/preforkd, the status line that comes back and
 * whether the connection is closed (framing in doubt) or still serves the
 * next request. One test per rule; each rule's refusals and the valid
 * neighbours that must still be served. */
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/harness.h"

static struct server srv;
static int port;

static void setup(void)
{
    server_init(&srv);
    port = h_free_port(SOCK_STREAM);
}

static void teardown(void)
{
    server_cleanup(&srv);
}

TestSuite(http_strict, .init = setup, .fini = teardown, .timeout = 60);

static void write_www(const char *name, const char *data)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/www/%s", srv.dir, name);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "%s", path);
    fputs(data, f);
    fclose(f);
}

/* A server with www/f ("f\n") and the given http { } options. */
static void start(const char *http_extra)
{
    write_www("f", "f\n");
    server_write_conf(&srv, "workers = 1\ngraceful_timeout = 5\n"
                      "listen { address = \"127.0.0.1:%d\" protocol = \"http\" }\n"
                      "http { root = \"www\" %s }\n", port, http_extra);
    cr_assert_eq(server_start(&srv, NULL), 0, "server did not become ready");
}

struct answer {
    int status;
    char head[4096];
    char body[256];
};

/* Read one response (head byte by byte, then Content-Length bytes). */
static int read_answer(int fd, struct answer *a, bool no_body)
{
    size_t n = 0;
    memset(a, 0, sizeof *a);
    while (n + 1 < sizeof a->head) {
        if (h_read_full(fd, a->head + n, 1, 5000) != 0)
            return -1;
        n++;
        if (n >= 4 && memcmp(a->head + n - 4, "\r\n\r\n", 4) == 0)
            break;
    }
    if (sscanf(a->head, "HTTP/1.1 %d", &a->status) != 1)
        return -1;
    const char *cl = strstr(a->head, "\r\nContent-Length: ");
    size_t len = cl ? strtoul(cl + 18, NULL, 10) : 0;
    if (no_body || a->status == 304)
        len = 0;
    if (len >= sizeof a->body)
        return -1;
    return len ? h_read_full(fd, a->body, len, 5000) : 0;
}

/* Whether the connection still serves: a GET of /f answered 200. */
static bool serves_next(int fd)
{
    static const char next[] = "GET /f HTTP/1.1\r\nHost: t\r\n\r\n";
    struct answer a;
    return h_write_full(fd, next, sizeof next - 1) == 0 && read_answer(fd, &a, false) == 0 &&
           a.status == 200 && strcmp(a.body, "f\n") == 0;
}

/* Send len raw bytes on a fresh connection and read the first answer. */
static int send_raw(const char *req, size_t len, struct answer *a)
{
    int fd = h_tcp_connect(port);
    cr_assert_geq(fd, 0);
    cr_assert_eq(h_write_full(fd, req, len), 0);
    cr_assert_eq(read_answer(fd, a, strncmp(req, "HEAD ", 5) == 0), 0,
                 "no answer to \"%.*s\"", (int)(len < 200 ? len : 200), req);
    return fd;
}

enum conn { CLOSED, OPEN };

/* req (a C string) gets status, and the connection is closed after it, or
 * still serves the next request. */
static void expect(const char *req, int status, enum conn conn)
{
    struct answer a;
    int fd = send_raw(req, strlen(req), &a);
    cr_expect_eq(a.status, status, "\"%.300s\": %d, expected %d", req, a.status, status);
    if (conn == CLOSED)
        cr_expect(h_closed_by_peer(fd, 3000), "\"%.300s\": not closed after %d", req, a.status);
    else
        cr_expect(serves_next(fd), "\"%.300s\": connection not kept after %d", req, a.status);
    close(fd);
}

static void expect_400_closed(const char *req)
{
    expect(req, 400, CLOSED);
}

/* A GET of /f with the given header lines ("" for none). */
static char *get_with(const char *headers)
{
    static char req[2048];
    snprintf(req, sizeof req, "GET /f HTTP/1.1\r\n%s\r\n", headers);
    return req;
}

/* RFC 9112 5.1: "No whitespace is allowed between the field name and
 * colon ... A server MUST reject ... with a response status code of 400". */
Test(http_strict, whitespace_before_colon_is_400)
{
    start("");
    expect_400_closed(get_with("Host: t\r\nX-Test : v\r\n"));
    expect_400_closed(get_with("Host : t\r\n"));
    expect_400_closed(get_with("Host: t\r\nX-Test\t: v\r\n"));
    expect(get_with("Host: t\r\nX-Test: v\r\n"), 200, OPEN);
}

/* RFC 9110 5.1: field-name = token, 1*tchar. */
Test(http_strict, empty_field_name_is_400)
{
    start("");
    expect_400_closed(get_with("Host: t\r\n: v\r\n"));
    expect_400_closed(get_with(":v\r\nHost: t\r\n"));
    expect_400_closed(get_with("Host: t\r\nX@Y: v\r\n"));     /* not a token */
}

/* RFC 9112 5.2: obs-fold is refused (the RFC's other choice is to unfold;
 * nothing here needs it and proxies disagree on it). */
Test(http_strict, obs_fold_is_400)
{
    start("");
    expect_400_closed(get_with("Host: t\r\nX: a\r\n b\r\n"));
    expect_400_closed(get_with("Host: t\r\nX: a\r\n\tb\r\n"));
    expect_400_closed(get_with("Host: t\r\nX:\r\n b\r\n"));
    expect_400_closed(get_with("Host: t\r\nX:\r\n \r\n"));
    expect_400_closed(get_with("Host: t\r\n X: a\r\n"));      /* joins Host's value */
    expect_400_closed("GET /f HTTP/1.1\r\n Host: t\r\n\r\n");  /* after the request line */
    /* Empty values and trailing whitespace are not folds. */
    expect(get_with("Host: t\r\nX:\r\nY: \r\nZ: a \t\r\n"), 200, OPEN);
}

/* RFC 9112 3.2 and RFC 9110 7.2: Host = uri-host [ ":" port ]; a 1.1
 * request needs exactly one, and an invalid value is a 400. */
Test(http_strict, invalid_host_is_400)
{
    start("");
    const char *bad[] = {
        "Host:", "Host: ", "Host: user@t", "Host: u:p@t", "Host: t/path", "Host: t, u",
        "Host: t,u", "Host: t u", "Host: t:x", "Host: t:-1", "Host: t:80:80", "Host: t:99999",
        "Host: [::1", "Host: [zz::1]", "Host: []", "Host: [::1]x", "Host: :80", "Host: t%zz",
        "Host: t\"", "Host: t?q", "Host: t#f",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char h[128];
        snprintf(h, sizeof h, "%s\r\n", bad[i]);
        expect_400_closed(get_with(h));
    }
    const char *good[] = {
        "Host: t", "Host: t:80", "Host: t:", "Host: T.Example.ORG:8080", "Host: 127.0.0.1:1",
        "Host: [::1]", "Host: [::1]:8080", "Host: [v1.fe80::a+en1]", "Host: %74",
        "Host: xn--bcher-kva.example", "Host: t  ", "Host: a-b_c~d!$&'()*+;=",
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        char h[128];
        snprintf(h, sizeof h, "%s\r\n", good[i]);
        expect(get_with(h), 200, OPEN);
    }
    expect_400_closed("GET /f HTTP/1.1\r\n\r\n");                          /* none */
    expect_400_closed(get_with("Host: t\r\nHost: t\r\n"));                 /* two */
    expect_400_closed("GET /f HTTP/1.0\r\nHost: user@t\r\n\r\n");          /* 1.0 too */
    expect("GET /f HTTP/1.0\r\n\r\n", 200, CLOSED);                        /* 1.0: optional */
}

/* RFC 9112 6.1: in a request, any Transfer-Encoding but a final chunked
 * is a 400 and the connection closes; codings unknown here before chunked
 * are a 501 (closed as well). HTTP/1.0 with Transfer-Encoding: framing is
 * faulty, 400 and close. */
Test(http_strict, transfer_encoding_other_than_chunked_is_refused_and_closed)
{
    start("");
    const char *bad[] = {
        "Transfer-Encoding:", "Transfer-Encoding: ", "Transfer-Encoding: chunked, gzip",
        "Transfer-Encoding: identity", "Transfer-Encoding: gzip", "Transfer-Encoding: xchunked",
        "Transfer-Encoding: chunked;a=b", "Transfer-Encoding: chunked, chunked",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip",
        "Transfer-Encoding: \"chunked\"",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char h[256];
        snprintf(h, sizeof h, "Host: t\r\n%s\r\n", bad[i]);
        char req[2100];
        snprintf(req, sizeof req, "%s0\r\n\r\n", get_with(h));
        expect_400_closed(req);
    }
    expect("GET /f HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
           501, CLOSED);
    expect("GET /f HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n"
           "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501, CLOSED);
    expect_400_closed("GET /f HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
    /* A valid chunked body is read, dropped, and the connection kept. */
    expect("GET /f HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
           "5\r\nhello\r\n0\r\n\r\n", 200, OPEN);
    expect("GET /f HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: CHUNKED \r\n\r\n0\r\n\r\n",
           200, OPEN);
    expect("GET /f HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: ,chunked\r\n\r\n0\r\n\r\n",
           200, OPEN);                  /* empty list elements (RFC 9110 5.6.1) */
}

/* RFC 9112 6.1: a request with both is refused (the RFC allows either
 * refusing or ignoring Content-Length) and the connection MUST close. */
Test(http_strict, transfer_encoding_with_content_length_is_400_and_closed)
{
    start("");
    expect_400_closed("GET /f HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
                      "Content-Length: 5\r\n\r\n0\r\n\r\n");
    expect_400_closed("GET /f HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
                      "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
    expect_400_closed("GET /f HTTP/1.1\r\nHost: t\r\nTransfer-Encoding:\r\n"
                      "Content-Length: 0\r\n\r\n");
    expect_400_closed("GET /f HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n"
                      "Transfer-Encoding:\r\n\r\n");
}

/* RFC 9112 6.3 (5): an invalid Content-Length is a 400 and a close.
 * Content-Length = 1*DIGIT, so leading zeros are valid and kept; a second
 * field line is refused even with the same value (RFC 9110 8.6 allows it). */
Test(http_strict, content_length_malformed_is_400_and_closed)
{
    start("");
    const char *bad[] = {
        "+5", "-5", "5 5", "1 2", "abc", "0x5", "5,5", "5, 5", "", " ", "5.0",
        "99999999999999999999999",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char req[256];
        snprintf(req, sizeof req, "GET /f HTTP/1.1\r\nHost: t\r\nContent-Length: %s\r\n\r\n"
                 "hello", bad[i]);
        expect_400_closed(req);
    }
    expect_400_closed("GET /f HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
                      "Content-Length: 6\r\n\r\nhello!");
    expect_400_closed("GET /f HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
                      "Content-Length: 5\r\n\r\nhello");
    /* Leading zeros and trailing whitespace: five bytes of body, then the
     * next request is parsed where it starts. */
    expect("GET /f HTTP/1.1\r\nHost: t\r\nContent-Length: 005\r\n\r\nhello", 200, OPEN);
    expect("GET /f HTTP/1.1\r\nHost: t\r\nContent-Length: 5 \r\n\r\nhello", 200, OPEN);
}

/* RFC 9112 2.2: lines end with CRLF. A bare LF is refused wherever it
 * ends a line of the head (the RFC lets a recipient take it; the strict
 * answer leaves no room for a proxy to disagree), and a bare CR too. */
Test(http_strict, bare_lf_or_cr_line_end_is_400)
{
    start("");
    expect_400_closed("GET /f HTTP/1.1\nHost: t\r\n\r\n");
    expect_400_closed("GET /f HTTP/1.1\r\nHost: t\nX: y\r\n\r\n");
    expect_400_closed("GET /f HTTP/1.1\r\nHost: t\r\n\n");
    expect_400_closed("GET /f HTTP/1.0\n\n");
    expect_400_closed("GET /f HTTP/1.0\r\n\n");
    expect_400_closed("GET /f HTTP/1.1\rHost: t\r\n\r\n");
    expect_400_closed("GET /f HTTP/1.1\r\nHost: t\rX: y\r\n\r\n");
    expect_400_closed("GET /f HTTP/1.1\r\nHost: t\r\n\rX");
    /* With a body the head's end is checked at another pause. */
    expect_400_closed("GET /f HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\nx");
    expect_400_closed("GET /f HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\n"
                      "0\r\n\r\n");
    expect("GET /f HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nx", 200, OPEN);
    /* The empty line that ends a chunked body's trailer section too. */
    expect_400_closed("GET /f HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "0\r\n\n");
    expect_400_closed("GET /f HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "3\r\nabc\r\n0\r\nX: y\r\n\n");
    /* Its CR in the read that carried the last body bytes (dropped from
     * the buffer), its LF in the next read. */
    int fd = h_tcp_connect(port);
    const char part1[] = "GET /f HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                         "3\r\nabc\r\n0\r\n\r";
    cr_assert_eq(h_write_full(fd, part1, sizeof part1 - 1), 0);
    h_sleep_ms(100);
    cr_assert_eq(h_write_full(fd, "\n", 1), 0);
    struct answer a;
    cr_assert_eq(read_answer(fd, &a, false), 0);
    cr_expect_eq(a.status, 200);
    cr_expect(serves_next(fd));
    close(fd);
    /* RFC 9112 2.2: empty lines before the request line are ignored. */
    expect("\r\n\r\nGET /f HTTP/1.1\r\nHost: t\r\n\r\n", 200, OPEN);
}

/* RFC 9112 3: request-line = method SP request-target SP HTTP-version,
 * single SPs; other whitespace is refused (RFC 9112 3 permits a lenient
 * parse, which is how smuggling between proxies starts). */
Test(http_strict, request_line_needs_single_spaces)
{
    start("");
    expect_400_closed("GET  /f HTTP/1.1\r\nHost: t\r\n\r\n");
    expect_400_closed("GET /f  HTTP/1.1\r\nHost: t\r\n\r\n");
    expect_400_closed("GET /f HTTP/1.1 \r\nHost: t\r\n\r\n");
    expect_400_closed("GET\t/f HTTP/1.1\r\nHost: t\r\n\r\n");
    expect_400_closed("GET /f\tHTTP/1.1\r\nHost: t\r\n\r\n");
    expect_400_closed(" GET /f HTTP/1.1\r\nHost: t\r\n\r\n");
    expect_400_closed("GET /f HTTP/1.1\x0b\r\nHost: t\r\n\r\n");
}

/* RFC 9110 2.5: a higher minor version of HTTP/1 is served as HTTP/1.1;
 * another major version gets 505; anything but digit.digit is a 400. */
Test(http_strict, http_versions)
{
    start("");
    expect("GET /f HTTP/1.2\r\nHost: t\r\n\r\n", 200, OPEN);
    expect("GET /f HTTP/1.9\r\nHost: t\r\n\r\n", 200, OPEN);
    expect_400_closed("GET /f HTTP/1.9\r\n\r\n");              /* 1.1 rules: Host */
    expect("GET /f HTTP/2.0\r\nHost: t\r\n\r\n", 505, CLOSED);
    expect("GET /f HTTP/3.0\r\nHost: t\r\n\r\n", 505, CLOSED);
    expect("GET /f HTTP/0.9\r\n\r\n", 505, CLOSED);
    expect("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, CLOSED);
    expect_400_closed("GET /f HTTP/1.10\r\nHost: t\r\n\r\n");
    expect_400_closed("GET /f HTTP/1\r\nHost: t\r\n\r\n");
    expect_400_closed("GET /f http/1.1\r\nHost: t\r\n\r\n");
    expect_400_closed("GET /f\r\n\r\n");
    struct answer a;
    const char v12[] = "GET /f HTTP/1.2\r\nHost: t\r\n\r\n";
    int fd = send_raw(v12, sizeof v12 - 1, &a);
    cr_expect(strncmp(a.head, "HTTP/1.1 200 ", 13) == 0, "%s", a.head);
    close(fd);
}

/* RFC 9112 3: request-lines of at least 8000 octets are accepted. A name
 * longer than the file system allows (ENAMETOOLONG) is a 404, not a 414;
 * 414 stays for targets over 8 KiB. */
Test(http_strict, long_targets)
{
    start("max_header_size = 16384");
    static char req[12000], target[10000];
    memset(target, 'a', sizeof target);
    memcpy(target, "/f?", 3);
    target[8000] = '\0';
    snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: t\r\n\r\n", target);
    expect(req, 200, OPEN);
    memset(target, 'a', sizeof target);
    target[0] = '/';
    target[1 + 300] = '\0';                         /* a 300-byte name */
    snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: t\r\n\r\n", target);
    expect(req, 404, OPEN);
    memset(target, 'a', sizeof target);
    for (size_t i = 0; i < 6000; i += 100)
        target[i] = '/';                            /* 6000 bytes: over PATH_MAX */
    target[6000] = '\0';
    snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: t\r\n\r\n", target);
    expect(req, 404, OPEN);
    memset(target, 'a', sizeof target);
    target[0] = '/';
    target[9000] = '\0';
    snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: t\r\n\r\n", target);
    expect(req, 414, CLOSED);
}

/* RFC 9110 9.3.7: OPTIONS * and OPTIONS /path: 200, Allow, no content. */
Test(http_strict, options)
{
    start("");
    const char *reqs[] = {
        "OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n",
        "OPTIONS /f HTTP/1.1\r\nHost: t\r\n\r\n",
        "OPTIONS /missing HTTP/1.1\r\nHost: t\r\n\r\n",
        "OPTIONS http://t/f HTTP/1.1\r\nHost: t\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof reqs / sizeof reqs[0]; i++) {
        struct answer a;
        int fd = send_raw(reqs[i], strlen(reqs[i]), &a);
        cr_expect_eq(a.status, 200, "%s: %d", reqs[i], a.status);
        cr_expect(strstr(a.head, "\r\nAllow: GET, HEAD, OPTIONS\r\n"), "%s", a.head);
        cr_expect(strstr(a.head, "\r\nContent-Length: 0\r\n"), "%s", a.head);
        cr_expect(serves_next(fd), "%s: connection not kept", reqs[i]);
        close(fd);
    }
    expect("OPTIONS /../x HTTP/1.1\r\nHost: t\r\n\r\n", 403, OPEN);
    expect_400_closed("OPTIONS ** HTTP/1.1\r\nHost: t\r\n\r\n");
    expect("GET * HTTP/1.1\r\nHost: t\r\n\r\n", 400, CLOSED);   /* * is OPTIONS only */
    struct answer a;
    int fd;
    const char del[] = "DELETE /f HTTP/1.1\r\nHost: t\r\n\r\n";
    fd = send_raw(del, sizeof del - 1, &a);
    cr_expect_eq(a.status, 405);
    cr_expect(strstr(a.head, "\r\nAllow: GET, HEAD, OPTIONS\r\n"), "%s", a.head);
    close(fd);
}

/* RFC 9112 3.2 / RFC 3986: the request target is visible ASCII; raw
 * UTF-8, overlong forms, control bytes, DEL are 400. Percent-encoded UTF-8
 * is served. */
Test(http_strict, target_bytes_outside_visible_ascii_are_400)
{
    start("");
    write_www("caf\xc3\xa9.txt", "cafe\n");
    const char *bad[] = {
        "/caf\xc3\xa9.txt", "/\xc0\xaf", "/\xc0\xae\xc0\xae/f", "/\x80", "/\xff",
        "/a\x01", "/a\x1f", "/a\x7f", "/a\tb", "/a\x0c" "b", "/a\x0b" "b", "/?\xe9",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char req[128];
        snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: t\r\n\r\n", bad[i]);
        expect_400_closed(req);
    }
    struct answer a;
    const char ok[] = "GET /caf%C3%A9.txt HTTP/1.1\r\nHost: t\r\n\r\n";
    int fd = send_raw(ok, sizeof ok - 1, &a);
    cr_expect_eq(a.status, 200);
    cr_expect_str_eq(a.body, "cafe\n");
    close(fd);
}

/* RFC 9110 6.5.1: trailer fields are not merged into the header section;
 * here none is applied: not Range, not Connection, not a second Host, not
 * Content-Length. A Transfer-Encoding trailer is refused by llhttp (400). */
Test(http_strict, trailers_are_dropped)
{
    start("");
    write_www("digits", "0123456789");
    struct answer a;
    const char range[] = "GET /digits HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                         "0\r\nRange: bytes=0-1\r\nIf-None-Match: *\r\n\r\n";
    int fd = send_raw(range, sizeof range - 1, &a);
    cr_expect_eq(a.status, 200, "a Range or If-None-Match trailer was applied: %d", a.status);
    cr_expect_str_eq(a.body, "0123456789");
    close(fd);
    expect("GET /f HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
           "0\r\nConnection: close\r\n\r\n", 200, OPEN);
    expect("GET /f HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
           "0\r\nHost: other\r\nContent-Length: 20\r\n\r\n", 200, OPEN);
    expect("GET /f HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
           "3\r\nabc\r\n0\r\nX-Checksum: 1\r\n\r\n", 200, OPEN);
    expect_400_closed("GET /f HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "0\r\nTransfer-Encoding: chunked\r\n\r\n");
}

/* RFC 9110 9.1: a method this server does not know is a 501 (not a
 * 400: the request is well formed); garbage is a 400. */
Test(http_strict, unknown_method_is_501)
{
    start("");
    expect("FOO /f HTTP/1.1\r\nHost: t\r\n\r\n", 501, CLOSED);
    expect("get /f HTTP/1.1\r\nHost: t\r\n\r\n", 501, CLOSED);   /* case-sensitive */
    expect_400_closed("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03");
    expect_400_closed("G@T /f HTTP/1.1\r\nHost: t\r\n\r\n");
}

/* RFC 9110 7.8: Upgrade may be ignored; then the connection goes on in
 * HTTP/1.1 (llhttp would otherwise stop parsing it). */
Test(http_strict, upgrade_is_ignored)
{
    start("");
    expect("GET /f HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, HTTP2-Settings\r\n"
           "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n", 200, OPEN);
    expect("GET /f HTTP/1.1\r\nHost: t\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
           200, OPEN);
}

/* RFC 9112 3.2.2: absolute-form is accepted (its authority wins over Host),
 * with the same rules for the authority as for Host, userinfo included
 * (RFC 9110 4.2.4). */
Test(http_strict, absolute_form)
{
    start("");
    expect("GET http://t/f HTTP/1.1\r\nHost: other\r\n\r\n", 200, OPEN);
    expect("GET HTTP://[::1]:80/f HTTP/1.1\r\nHost: t\r\n\r\n", 200, OPEN);
    expect_400_closed("GET http://user@t/f HTTP/1.1\r\nHost: t\r\n\r\n");
    expect_400_closed("GET http:///f HTTP/1.1\r\nHost: t\r\n\r\n");
    expect_400_closed("GET http://t:x/f HTTP/1.1\r\nHost: t\r\n\r\n");
    expect_400_closed("GET t:80 HTTP/1.1\r\nHost: t\r\n\r\n");   /* authority-form */
}

/* The checks above use where llhttp's spans start and end; a request that
 * arrives a byte at a time (one read each, mostly) must parse the same. */
Test(http_strict, requests_split_into_single_bytes)
{
    start("");
    const char *reqs[] = {
        "GET /f HTTP/1.1\r\nHost: t:80\r\nX-Empty:\r\nUser-Agent: a b \r\n\r\n",
        "GET /f HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc",
        "GET /f HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        "3\r\nabc\r\n0\r\nX-T: v\r\n\r\n",
        "OPTIONS * HTTP/1.1\r\nHost: [::1]\r\n\r\n",
    };
    int one = 1;
    for (size_t i = 0; i < sizeof reqs / sizeof reqs[0]; i++) {
        int fd = h_tcp_connect(port);
        cr_assert_geq(fd, 0);
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        for (const char *p = reqs[i]; *p; p++) {
            cr_assert_eq(h_write_full(fd, p, 1), 0);
            h_sleep_ms(1);
        }
        struct answer a;
        cr_assert_eq(read_answer(fd, &a, false), 0);
        cr_expect_eq(a.status, 200, "%s: %d", reqs[i], a.status);
        cr_expect(serves_next(fd), "%s: connection not kept", reqs[i]);
        close(fd);
    }
    /* And the refusals still happen when split. */
    const char *bad[] = {
        "GET /f HTTP/1.1\r\nHost: t\r\nX: a\r\n b\r\n\r\n",
        "GET  /f HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET /f HTTP/1.1\r\nHost: t\r\n\n",
        "GET /f HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\nx",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int fd = h_tcp_connect(port);
        cr_assert_geq(fd, 0);
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        for (const char *p = bad[i]; *p; p++) {
            if (send(fd, p, 1, MSG_NOSIGNAL) != 1)
                break;                  /* refused before the end */
            h_sleep_ms(1);
        }
        struct answer a;
        cr_assert_eq(read_answer(fd, &a, false), 0);
        cr_expect_eq(a.status, 400, "%s: %d", bad[i], a.status);
        close(fd);
    }
}
