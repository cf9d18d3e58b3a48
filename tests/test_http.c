/* Integration tests of the HTTP handler: the real build/preforkd serving
 * files from its temp dir's www/, spoken to over real sockets (and curl):
 * status codes, headers, validators, ranges, traversal, keep-alive,
 * pipelining, timeouts, limits, sendfile, the access log, idle clients. */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
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

TestSuite(http, .init = setup, .fini = teardown, .timeout = 60);

static void start_http(const char *http_extra, const char *extra)
{
    server_write_conf(&srv, "workers = 1\ngraceful_timeout = 5\n%s\n"
                      "listen { address = \"127.0.0.1:%d\" protocol = \"http\" }\n"
                      "http { root = \"www\" %s }\n", extra, port, http_extra);
    cr_assert_eq(server_start(&srv, NULL), 0, "server did not become ready");
}

static void write_www(const char *name, const void *data, size_t len)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/www/%s", srv.dir, name);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "%s", path);
    cr_assert_eq(fwrite(data, 1, len, f), len);
    fclose(f);
}

static void mkdir_www(const char *name)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/www/%s", srv.dir, name);
    cr_assert_eq(mkdir(path, 0755), 0);
}

/* One request on a fresh connection. */
static struct h_resp request(const char *fmt, ...)
{
    char req[8192];
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(req, sizeof req, fmt, ap);
    va_end(ap);
    struct h_resp r;
    cr_assert_eq(h_request(port, &r, req, (size_t)len), 0, "no response to %s", req);
    return r;
}

static int status_of(const char *target)
{
    struct h_resp r = request("GET %s HTTP/1.1\r\nHost: t\r\n\r\n", target);
    free(r.body);
    return r.status;
}

Test(http, get_file_with_headers)
{
    write_www("hello.txt", "hello, world\n", 13);
    start_http("", "");
    struct h_resp r = request("GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    char v[128];
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "hello, world\n");
    cr_assert_str_eq(h_resp_header(&r, "Content-Length", v, sizeof v), "13");
    cr_assert_str_eq(h_resp_header(&r, "Content-Type", v, sizeof v), "text/plain");
    cr_assert_not_null(h_resp_header(&r, "Date", v, sizeof v));
    cr_assert(strstr(v, " GMT") != NULL, "Date: %s", v);
    cr_assert_not_null(h_resp_header(&r, "Last-Modified", v, sizeof v));
    cr_assert_not_null(h_resp_header(&r, "ETag", v, sizeof v));
    cr_assert_eq(v[0], '"');
    free(r.body);
}

Test(http, head_has_no_body)
{
    write_www("a.html", "<p>x</p>", 8);
    start_http("", "");
    int fd = h_tcp_connect(port);
    const char req[] = "HEAD /a.html HTTP/1.1\r\nHost: t\r\n\r\n"
                       "GET /a.html HTTP/1.1\r\nHost: t\r\n\r\n";
    cr_assert_eq(h_write_full(fd, req, sizeof req - 1), 0);
    struct h_resp r;
    char v[64];
    cr_assert_eq(h_read_resp(fd, &r, true), 0);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(h_resp_header(&r, "Content-Length", v, sizeof v), "8");
    cr_assert_str_eq(h_resp_header(&r, "Content-Type", v, sizeof v), "text/html");
    free(r.body);
    /* The next bytes must be the GET's response, not a HEAD body. */
    cr_assert_eq(h_read_resp(fd, &r, false), 0);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "<p>x</p>");
    free(r.body);
    close(fd);
}

Test(http, not_modified_by_etag_and_date)
{
    write_www("c.css", "body{}", 6);
    start_http("", "");
    struct h_resp r = request("GET /c.css HTTP/1.1\r\nHost: t\r\n\r\n");
    char etag[64], lm[64];
    cr_assert_not_null(h_resp_header(&r, "ETag", etag, sizeof etag));
    cr_assert_not_null(h_resp_header(&r, "Last-Modified", lm, sizeof lm));
    free(r.body);
    r = request("GET /c.css HTTP/1.1\r\nHost: t\r\nIf-None-Match: %s\r\n\r\n", etag);
    cr_assert_eq(r.status, 304);
    free(r.body);
    r = request("GET /c.css HTTP/1.1\r\nHost: t\r\nIf-None-Match: \"nope\"\r\n\r\n");
    cr_assert_eq(r.status, 200);
    free(r.body);
    r = request("GET /c.css HTTP/1.1\r\nHost: t\r\nIf-Modified-Since: %s\r\n\r\n", lm);
    cr_assert_eq(r.status, 304);
    free(r.body);
    r = request("GET /c.css HTTP/1.1\r\nHost: t\r\n"
                "If-Modified-Since: Sat, 01 Jan 2000 00:00:00 GMT\r\n\r\n");
    cr_assert_eq(r.status, 200);
    free(r.body);
}

/* If-Match and If-Unmodified-Since (RFC 9110 13.1.1, 13.1.4): the version
 * the client holds or 412; If-Match compares strongly and wins over the date. */
Test(http, precondition_failed)
{
    write_www("p.txt", "v1", 2);
    start_http("", "");
    struct h_resp r = request("GET /p.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    char etag[64], lm[64], v[64];
    cr_assert_not_null(h_resp_header(&r, "ETag", etag, sizeof etag));
    cr_assert_not_null(h_resp_header(&r, "Last-Modified", lm, sizeof lm));
    free(r.body);
    const struct { const char *header; int status; } cases[] = {
        { "If-Match: %s", 200 },
        { "If-Match: \"other\", %s", 200 },
        { "If-Match: *", 200 },
        { "If-Match: \"other\"", 412 },
        { "If-Match: W/%s", 412 },
        { "If-Unmodified-Since: %s", 200 },
        { "If-Unmodified-Since: Sat, 01 Jan 2000 00:00:00 GMT", 412 },
        { "If-Unmodified-Since: yesterday", 200 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char line[160];
        snprintf(line, sizeof line, cases[i].header, strstr(cases[i].header, "Since") ? lm : etag);
        r = request("GET /p.txt HTTP/1.1\r\nHost: t\r\n%s\r\n\r\n", line);
        cr_expect_eq(r.status, cases[i].status, "%s: %d", line, r.status);
        if (r.status == 412)
            cr_expect_str_eq(r.body, "412 Precondition Failed\n");
        free(r.body);
    }
    r = request("GET /p.txt HTTP/1.1\r\nHost: t\r\nIf-Match: %s\r\n"
                "If-Unmodified-Since: Sat, 01 Jan 2000 00:00:00 GMT\r\n\r\n", etag);
    cr_expect_eq(r.status, 200, "If-Match decides when both are sent");
    free(r.body);
    r = request("GET /p.txt HTTP/1.1\r\nHost: t\r\nIf-Match: \"other\"\r\n"
                "Range: bytes=0-0\r\n\r\n");
    cr_expect_eq(r.status, 412, "before Range");
    cr_expect(!h_resp_header(&r, "Connection", v, sizeof v) || strcmp(v, "close") != 0,
              "a 412 keeps the connection");
    free(r.body);
}

Test(http, byte_ranges)
{
    write_www("digits", "0123456789", 10);
    start_http("", "");
    char v[64];
    struct h_resp r = request("GET /digits HTTP/1.1\r\nHost: t\r\nRange: bytes=2-4\r\n\r\n");
    cr_assert_eq(r.status, 206);
    cr_assert_str_eq(r.body, "234");
    cr_assert_str_eq(h_resp_header(&r, "Content-Range", v, sizeof v), "bytes 2-4/10");
    free(r.body);
    r = request("GET /digits HTTP/1.1\r\nHost: t\r\nRange: bytes=7-\r\n\r\n");
    cr_assert_eq(r.status, 206);
    cr_assert_str_eq(r.body, "789");
    free(r.body);
    r = request("GET /digits HTTP/1.1\r\nHost: t\r\nRange: bytes=-2\r\n\r\n");
    cr_assert_eq(r.status, 206);
    cr_assert_str_eq(r.body, "89");
    free(r.body);
    r = request("GET /digits HTTP/1.1\r\nHost: t\r\nRange: bytes=10-\r\n\r\n");
    cr_assert_eq(r.status, 416);
    cr_assert_str_eq(h_resp_header(&r, "Content-Range", v, sizeof v), "bytes */10");
    free(r.body);
    /* If-Range: the range only for the version the client has. */
    r = request("GET /digits HTTP/1.1\r\nHost: t\r\n\r\n");
    char etag[64], lastmod[64];
    cr_assert_not_null(h_resp_header(&r, "ETag", etag, sizeof etag));
    cr_assert_not_null(h_resp_header(&r, "Last-Modified", lastmod, sizeof lastmod));
    free(r.body);
    r = request("GET /digits HTTP/1.1\r\nHost: t\r\nRange: bytes=2-4\r\n"
                "If-Range: %s\r\n\r\n", etag);
    cr_assert_eq(r.status, 206);
    cr_assert_str_eq(r.body, "234");
    free(r.body);
    r = request("GET /digits HTTP/1.1\r\nHost: t\r\nRange: bytes=2-4\r\n"
                "If-Range: %s\r\n\r\n", lastmod);
    cr_assert_eq(r.status, 206);
    free(r.body);
    r = request("GET /digits HTTP/1.1\r\nHost: t\r\nRange: bytes=2-4\r\n"
                "If-Range: \"other\"\r\n\r\n");
    cr_assert_eq(r.status, 200, "a changed file must come whole");
    cr_assert_str_eq(r.body, "0123456789");
    free(r.body);
    r = request("GET /digits HTTP/1.1\r\nHost: t\r\nRange: bytes=2-4\r\n"
                "If-Range: W/%s\r\n\r\n", etag);
    cr_assert_eq(r.status, 200, "a weak tag never matches");
    free(r.body);
    r = request("GET /digits HTTP/1.1\r\nHost: t\r\nRange: bytes=2-4\r\n"
                "If-Range: Thu, 01 Jan 2004 00:00:00 GMT\r\n\r\n");
    cr_assert_eq(r.status, 200);
    free(r.body);
    /* A date on a Wednesday is a date, not a weak tag (a file not asked
     * for before, so no cached entry holds its old time). */
    write_www("wed", "0123456789", 10);
    struct timespec ts[2] = { { .tv_sec = 1445385600 }, { .tv_sec = 1445385600 } };
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/www/wed", srv.dir);
    cr_assert_eq(utimensat(AT_FDCWD, path, ts, 0), 0);
    r = request("GET /wed HTTP/1.1\r\nHost: t\r\nRange: bytes=2-4\r\n"
                "If-Range: Wed, 21 Oct 2015 00:00:00 GMT\r\n\r\n");
    cr_assert_eq(r.status, 206, "Last-Modified Wed, 21 Oct 2015 00:00:00 GMT");
    free(r.body);
}

Test(http, not_found_and_traversal_refused)
{
    write_www("ok.txt", "ok", 2);
    char secret[PATH_MAX];
    snprintf(secret, sizeof secret, "%s/secret.txt", srv.dir);
    FILE *f = fopen(secret, "w");
    fputs("secret", f);
    fclose(f);
    char link[PATH_MAX];
    snprintf(link, sizeof link, "%s/www/out", srv.dir);
    cr_assert_eq(symlink(secret, link), 0);
    snprintf(link, sizeof link, "%s/www/in", srv.dir);
    cr_assert_eq(symlink("ok.txt", link), 0);
    start_http("", "");
    cr_assert_eq(status_of("/missing"), 404);
    cr_assert_eq(status_of("/in"), 200, "a symlink inside root is served");
    const char *bad[] = { "/../secret.txt", "/%2e%2e/secret.txt", "/a%2f..%2f..%2fsecret.txt",
                          "/ok.txt%00.html", "/..\\secret.txt", "/%5c../secret.txt", "/out",
                          "/x/../../secret.txt" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int st = status_of(bad[i]);
        cr_assert(st == 403 || st == 404 || st == 400, "%s gave %d", bad[i], st);
        struct h_resp r = request("GET %s HTTP/1.1\r\nHost: t\r\n\r\n", bad[i]);
        cr_assert_null(strstr(r.body, "secret"), "%s leaked the file", bad[i]);
        free(r.body);
    }
    cr_assert_eq(status_of("/out"), 403, "symlink out of root");
    cr_assert_eq(status_of("/%2e%2e/secret.txt"), 403);
}

Test(http, directories)
{
    mkdir_www("docs");
    write_www("docs/index.html", "docs index", 10);
    mkdir_www("empty");
    start_http("", "");
    char v[256];
    struct h_resp r = request("GET /docs?x=1 HTTP/1.1\r\nHost: t\r\n\r\n");
    cr_assert_eq(r.status, 301);
    cr_assert_str_eq(h_resp_header(&r, "Location", v, sizeof v), "/docs/?x=1");
    free(r.body);
    r = request("GET /docs/ HTTP/1.1\r\nHost: t\r\n\r\n");
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "docs index");
    cr_assert_str_eq(h_resp_header(&r, "Content-Type", v, sizeof v), "text/html");
    free(r.body);
    cr_assert_eq(status_of("/empty/"), 403);
}

Test(http, method_not_allowed_and_body_limit)
{
    write_www("f", "f", 1);
    start_http("", "");
    char v[64];
    /* 405 keeps the connection: the small body is read and dropped. */
    int fd = h_tcp_connect(port);
    const char req[] = "POST /f HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello"
                       "GET /f HTTP/1.1\r\nHost: t\r\n\r\n";
    cr_assert_eq(h_write_full(fd, req, sizeof req - 1), 0);
    struct h_resp r;
    cr_assert_eq(h_read_resp(fd, &r, false), 0);
    cr_assert_eq(r.status, 405);
    cr_assert_str_eq(h_resp_header(&r, "Allow", v, sizeof v), "GET, HEAD, OPTIONS");
    free(r.body);
    cr_assert_eq(h_read_resp(fd, &r, false), 0);
    cr_assert_eq(r.status, 200);
    free(r.body);
    close(fd);
    r = request("PUT /f HTTP/1.1\r\nHost: t\r\nContent-Length: 100000000\r\n\r\n");
    cr_assert_eq(r.status, 413);
    free(r.body);
}

/* An upload refused with 413 while the client is still sending: the
 * worker reads and drops the rest for a while (lingering close) instead of
 * closing with unread data, which would reset the connection and make the
 * client fail its write, or lose the answer, instead of reading the 413. */
Test(http, refused_upload_gets_its_answer)
{
    enum { BODY = 16 << 20, CHUNK = 64 << 10 };
    write_www("f", "f", 1);
    start_http("", "");
    int fd = h_tcp_connect(port);
    cr_assert_geq(fd, 0);
    struct timeval tv = { .tv_sec = 10 };
    cr_assert_eq(setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv), 0);
    char head[128];
    int hl = snprintf(head, sizeof head,
                      "PUT /f HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n", BODY);
    cr_assert_eq(h_write_full(fd, head, (size_t)hl), 0);
    static char chunk[CHUNK];
    memset(chunk, 'u', sizeof chunk);
    for (size_t sent = 0; sent < BODY;) {
        ssize_t n = send(fd, chunk, sizeof chunk, MSG_NOSIGNAL);
        cr_assert_gt(n, 0, "body write failed after %zu bytes: %s", sent, strerror(errno));
        sent += (size_t)n;
    }
    struct h_resp r;
    cr_assert_eq(h_read_resp(fd, &r, false), 0, "no answer after the body");
    cr_assert_eq(r.status, 413);
    free(r.body);
    cr_assert(h_closed_by_peer(fd, 5000));
    close(fd);
}

/* HTTP/1.1 needs exactly one Host (RFC 9112 3.2); 1.0 may omit it. */
Test(http, host_header_required_in_http11)
{
    write_www("f", "f", 1);
    start_http("", "");
    struct h_resp r = request("GET /f HTTP/1.1\r\n\r\n");
    cr_assert_eq(r.status, 400);
    free(r.body);
    r = request("GET /f HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n");
    cr_assert_eq(r.status, 400);
    free(r.body);
    r = request("GET /f HTTP/1.1\r\nHost:\r\n\r\n");
    cr_assert_eq(r.status, 400, "an empty Host is invalid (RFC 9110 4.2.1)");
    free(r.body);
    int fd = h_tcp_connect(port);
    cr_assert_eq(h_write_full(fd, "GET /f HTTP/1.0\r\n\r\n", 20), 0);
    cr_assert_eq(h_read_resp(fd, &r, false), 0);
    cr_assert_eq(r.status, 200);
    free(r.body);
    close(fd);
}

Test(http, uri_and_header_limits)
{
    start_http("max_header_size = 2048", "");
    static char big[6000];
    memset(big, 'a', sizeof big - 1);
    big[0] = '/';
    struct h_resp r = request("GET %s HTTP/1.1\r\nHost: t\r\n\r\n", big);
    cr_assert_eq(r.status, 414);
    free(r.body);
    big[3000] = '\0';
    r = request("GET / HTTP/1.1\r\nHost: t\r\nX-Big: %s\r\n\r\n", big);
    cr_assert_eq(r.status, 431);
    free(r.body);
    /* A chunk extension too long for the buffer is a bad body, not a bad
     * header: 400. */
    r = request("GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                "5;%s\r\nhello\r\n0\r\n\r\n", big + 1);
    cr_assert_eq(r.status, 400);
    free(r.body);
}

Test(http, header_timeout_gives_408)
{
    start_http("header_timeout = 1", "");
    int fd = h_tcp_connect(port);
    const char part[] = "GET / HTTP/1.1\r\nHost: t\r\n";
    cr_assert_eq(h_write_full(fd, part, sizeof part - 1), 0);
    int64_t t0 = h_now_ms();
    struct h_resp r;
    cr_assert_eq(h_read_resp(fd, &r, false), 0);
    cr_assert_eq(r.status, 408);
    cr_assert_geq(h_now_ms() - t0, 800);
    cr_assert(h_closed_by_peer(fd, 3000));
    free(r.body);
    close(fd);
}

Test(http, keepalive_and_pipelining)
{
    write_www("one", "1", 1);
    write_www("two", "22", 2);
    write_www("three", "333", 3);
    start_http("", "");
    int fd = h_tcp_connect(port);
    struct h_resp r;
    for (int i = 0; i < 5; i++) {      /* several requests, one connection */
        const char req[] = "GET /two HTTP/1.1\r\nHost: t\r\n\r\n";
        cr_assert_eq(h_write_full(fd, req, sizeof req - 1), 0);
        cr_assert_eq(h_read_resp(fd, &r, false), 0);
        cr_assert_str_eq(r.body, "22");
        free(r.body);
    }
    const char three[] = "GET /one HTTP/1.1\r\nHost: t\r\n\r\nGET /three HTTP/1.1\r\n"
                         "Host: t\r\n\r\nGET /two HTTP/1.1\r\nHost: t\r\n\r\n";
    cr_assert_eq(h_write_full(fd, three, sizeof three - 1), 0);
    const char *want[] = { "1", "333", "22" };
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(h_read_resp(fd, &r, false), 0);
        cr_assert_str_eq(r.body, want[i], "response %d in order", i);
        free(r.body);
    }
    close(fd);
}

Test(http, connection_close_and_http10)
{
    write_www("x", "x", 1);
    start_http("", "");
    char v[64];
    int fd = h_tcp_connect(port);
    const char req[] = "GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    cr_assert_eq(h_write_full(fd, req, sizeof req - 1), 0);
    struct h_resp r;
    cr_assert_eq(h_read_resp(fd, &r, false), 0);
    cr_assert_str_eq(h_resp_header(&r, "Connection", v, sizeof v), "close");
    cr_assert(h_closed_by_peer(fd, 3000));
    free(r.body);
    close(fd);
    fd = h_tcp_connect(port);
    const char r10[] = "GET /x HTTP/1.0\r\n\r\n";
    cr_assert_eq(h_write_full(fd, r10, sizeof r10 - 1), 0);
    cr_assert_eq(h_read_resp(fd, &r, false), 0);
    cr_assert_eq(r.status, 200);
    cr_assert(h_closed_by_peer(fd, 3000), "HTTP/1.0 closes by default");
    free(r.body);
    close(fd);
    fd = h_tcp_connect(port);
    const char ka[] = "GET /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
    cr_assert_eq(h_write_full(fd, ka, sizeof ka - 1), 0);
    cr_assert_eq(h_read_resp(fd, &r, false), 0);
    cr_assert_str_eq(h_resp_header(&r, "Connection", v, sizeof v), "keep-alive");
    free(r.body);
    cr_assert_eq(h_write_full(fd, ka, sizeof ka - 1), 0);
    cr_assert_eq(h_read_resp(fd, &r, false), 0, "still open after keep-alive");
    free(r.body);
    close(fd);
}

/* 5 MiB: more than two of a connection's sendfile turns (2 MiB each). */
Test(http, large_file_by_sendfile)
{
    size_t len = 5 << 20;
    unsigned char *data = malloc(len);
    for (size_t i = 0; i < len; i++)
        data[i] = (unsigned char)(i * 2654435761u >> 13);
    write_www("big.bin", data, len);
    start_http("", "");
    struct h_resp r = request("GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n");
    cr_assert_eq(r.status, 200);
    cr_assert_eq(r.body_len, len);
    cr_assert_eq(memcmp(r.body, data, len), 0, "body differs");
    free(r.body);
    r = request("GET /big.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=1000000-\r\n\r\n");
    cr_assert_eq(r.status, 206);
    cr_assert_eq(r.body_len, len - 1000000);
    cr_assert_eq(memcmp(r.body, data + 1000000, r.body_len), 0);
    free(r.body);
    /* Two at once on one worker: the turns interleave, neither is mixed up. */
    int fds[2];
    for (int i = 0; i < 2; i++) {
        fds[i] = h_tcp_connect(port);
        static const char get[] = "GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n";
        cr_assert_eq(h_write_full(fds[i], get, sizeof get - 1), 0);
    }
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(h_read_resp(fds[i], &r, false), 0);
        cr_assert_eq(r.body_len, len);
        cr_assert_eq(memcmp(r.body, data, len), 0, "body %d differs", i);
        free(r.body);
        close(fds[i]);
    }
    free(data);
}

/* A request pipelined behind one answered by sendfile is answered when
 * that body is out, without waiting for more bytes from the client. */
Test(http, pipelined_behind_sendfile)
{
    size_t len = 3 << 20;
    char *data = malloc(len);
    memset(data, 's', len);
    write_www("big.bin", data, len);
    write_www("small", "small", 5);
    start_http("", "");
    int fd = h_tcp_connect(port);
    const char two[] = "GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n"
                       "GET /small HTTP/1.1\r\nHost: t\r\n\r\n";
    cr_assert_eq(h_write_full(fd, two, sizeof two - 1), 0);
    struct h_resp r;
    cr_assert_eq(h_read_resp(fd, &r, false), 0);
    cr_assert_eq(r.body_len, len);
    free(r.body);
    cr_assert_eq(h_read_resp(fd, &r, false), 0, "the second answer never came");
    cr_assert_str_eq(r.body, "small");
    free(r.body);
    close(fd);
    free(data);
}

Test(http, access_log_combined_format)
{
    write_www("logme", "L", 1);
    start_http("access_log = \"access.log\"", "");
    struct h_resp r = request("GET /logme HTTP/1.1\r\nHost: t\r\nReferer: http://r/\r\n"
                            "User-Agent: tester/1\r\n\r\n");
    free(r.body);
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/access.log", srv.dir);
    /* Flushed within about a second by the worker's tick. */
    cr_assert(WAIT_UNTIL(h_file_count(path, "\"GET /logme HTTP/1.1\" 200 1") == 1, 5000));
    char *log = h_read_file(path);
    char ip[32], date[64], req[64], ref[32], ua[32];
    int status, bytes;
    cr_assert_eq(sscanf(log, "%31s - - [%63[^]]] \"%63[^\"]\" %d %d \"%31[^\"]\" \"%31[^\"]\"",
                        ip, date, req, &status, &bytes, ref, ua), 7, "line: %s", log);
    cr_assert_str_eq(ip, "127.0.0.1");
    cr_assert_str_eq(ref, "http://r/");
    cr_assert_str_eq(ua, "tester/1");
    free(log);
    /* A quote in a field cannot end it early: it is escaped. */
    free(request("GET /logme HTTP/1.1\r\nHost: t\r\nUser-Agent: a\"b\r\n\r\n").body);
    cr_assert(WAIT_UNTIL(h_file_count(path, "\"a\\x22b\"") == 1, 5000));
}

Test(http, idle_clients_do_not_block_others)
{
    write_www("ping", "pong", 4);
    start_http("", "worker_connections = 2000");
    enum { IDLE = 1000 };
    static int fds[IDLE];
    for (int i = 0; i < IDLE; i++) {
        fds[i] = h_tcp_connect(port);
        cr_assert_geq(fds[i], 0, "connect %d: %s", i, strerror(errno));
    }
    /* Half of them sent part of a request and stalled. */
    for (int i = 0; i < IDLE; i += 2)
        cr_assert_eq(h_write_full(fds[i], "GET /ping HTTP/1.1\r\n", 20), 0);
    for (int i = 0; i < 5; i++) {
        struct h_resp r = request("GET /ping HTTP/1.1\r\nHost: t\r\n\r\n");
        cr_assert_eq(r.status, 200);
        cr_assert_str_eq(r.body, "pong");
        free(r.body);
    }
    for (int i = 0; i < IDLE; i++)
        close(fds[i]);
}

Test(http, curl_as_a_person_would)
{
    write_www("index.html", "<html>hi</html>", 15);
    start_http("", "");
    char out[256];
    cr_assert_eq(h_run(out, sizeof out, "curl -s -o /dev/null -w '%%{http_code}' "
                       "http://127.0.0.1:%d/", port), 0);
    cr_assert_str_eq(out, "200");
    cr_assert_eq(h_run(out, sizeof out, "curl -s http://127.0.0.1:%d/index.html "
                       "http://127.0.0.1:%d/index.html", port, port), 0);
    cr_assert_str_eq(out, "<html>hi</html><html>hi</html>");
    cr_assert_eq(h_run(out, sizeof out, "curl -s -o /dev/null -w '%%{http_code}' "
                       "--path-as-is http://127.0.0.1:%d/../../etc/passwd", port), 0);
    cr_assert_str_eq(out, "403");
}

/* The bundled site: the page and everything it links load with 200. */
Test(http, bundled_site_loads)
{
    char root[PATH_MAX + 16];
    snprintf(root, sizeof root, "root = \"%s/etc/www\"", h_root());
    start_http(root, "");
    const char *paths[] = { "/", "/style.css", "/logo.png" };
    const char *types[] = { "text/html", "text/css", "image/png" };
    char v[64];
    for (int i = 0; i < 3; i++) {
        struct h_resp r = request("GET %s HTTP/1.1\r\nHost: t\r\n\r\n", paths[i]);
        cr_assert_eq(r.status, 200, "%s", paths[i]);
        cr_assert_str_eq(h_resp_header(&r, "Content-Type", v, sizeof v), types[i]);
        if (i == 0) {
            cr_assert_not_null(strstr(r.body, "href=\"style.css\""));
            cr_assert_not_null(strstr(r.body, "src=\"logo.png\""));
        }
        free(r.body);
    }
}

/* SIGTERM: an idle keep-alive connection is closed; a request half-read is
 * still answered, with Connection: close; then the server exits. */
Test(http, draining_closes_idle_and_finishes_inflight)
{
    write_www("d", "drain", 5);
    start_http("", "");
    int idle = h_tcp_connect(port), busy = h_tcp_connect(port);
    struct h_resp r;
    const char req[] = "GET /d HTTP/1.1\r\nHost: t\r\n\r\n";
    cr_assert_eq(h_write_full(idle, req, sizeof req - 1), 0);
    cr_assert_eq(h_read_resp(idle, &r, false), 0);
    free(r.body);
    cr_assert_eq(h_write_full(busy, req, 20), 0);       /* half a request */
    char v[32];
    pid_t w;
    cr_assert(WAIT_UNTIL(h_children(&srv, srv.pid, &w, 1) == 1, 5000));
    cr_assert_eq(kill(srv.pid, SIGTERM), 0);
    cr_assert(h_closed_by_peer(idle, 3000), "idle keep-alive connection closed");
    /* The idle one was closed, so the drain has begun: finish the request. */
    cr_assert_eq(h_write_full(busy, req + 20, sizeof req - 1 - 20), 0);
    cr_assert_eq(h_read_resp(busy, &r, false), 0, "in-flight request answered");
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "drain");
    cr_assert_str_eq(h_resp_header(&r, "Connection", v, sizeof v), "close");
    free(r.body);
    cr_assert(h_closed_by_peer(busy, 3000));
    cr_assert(WAIT_UNTIL(h_pid_gone(srv.pid), 5000), "server exited after draining");
    close(idle);
    close(busy);
}

/* SIGUSR1 (logrotate): lines after the reopen go to the new file. */
Test(http, access_log_reopened_on_sigusr1)
{
    write_www("r", "r", 1);
    start_http("access_log = \"access.log\"", "");
    char path[PATH_MAX], rotated[PATH_MAX + 8];
    snprintf(path, sizeof path, "%s/access.log", srv.dir);
    snprintf(rotated, sizeof rotated, "%s.1", path);
    free(request("GET /r?before HTTP/1.1\r\nHost: t\r\n\r\n").body);
    cr_assert(WAIT_UNTIL(h_file_count(path, "/r?before") == 1, 5000));
    cr_assert_eq(rename(path, rotated), 0);
    cr_assert_eq(kill(srv.pid, SIGUSR1), 0);
    cr_assert(WAIT_UNTIL(access(path, F_OK) == 0, 5000), "log reopened");
    free(request("GET /r?after HTTP/1.1\r\nHost: t\r\n\r\n").body);
    cr_assert(WAIT_UNTIL(h_file_count(path, "/r?after") == 1, 5000));
    cr_assert_eq(h_file_count(rotated, "/r?after"), 0);
}

/* Connect with a small receive buffer, ask for /big, take nothing for
 * wait_ms, then read to EOF: the bytes that came. */
static size_t slow_read_big(int wait_ms)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), small = 4096;
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    cr_assert_eq(connect(fd, (struct sockaddr *)&sin, sizeof sin), 0);
    static const char req[] = "GET /big HTTP/1.1\r\nHost: t\r\n\r\n";
    cr_assert_eq(h_write_full(fd, req, sizeof req - 1), 0);
    h_sleep_ms(wait_ms);            /* the slow reader itself, not a wait for a result */
    static char buf[1 << 16];
    size_t total = 0, before;
    do {
        before = total;
        if (h_read_some(fd, buf, sizeof buf, 5000, &total) != 0)
            break;
    } while (total > before);
    close(fd);
    return total;
}

/* send_timeout: a client that takes no byte for that long is closed
 * (nginx's send_timeout); one that is merely slow is served. */
Test(http, send_timeout_closes_a_reader_that_takes_nothing)
{
    static char big[8 << 20];
    memset(big, 'b', sizeof big);
    write_www("big", big, sizeof big);
    start_http("send_timeout = 1\nheader_timeout = 30", "");
    size_t got = slow_read_big(3000);
    cr_assert_lt(got, sizeof big, "the whole file went to a client silent for 3 s");
}

Test(http, send_timeout_spares_a_reader_within_it)
{
    static char big[8 << 20];
    memset(big, 'b', sizeof big);
    write_www("big", big, sizeof big);
    start_http("send_timeout = 30", "");
    size_t got = slow_read_big(3000);
    cr_assert_gt(got, sizeof big, "a client silent for 3 s of 30 lost its download: %zu", got);
}
