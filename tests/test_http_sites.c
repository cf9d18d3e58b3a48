/* Integration tests of the static-site features: virtual hosts (site NAME
 * { } chosen by Host), precompressed files, directory listings, error pages,
 * expires, and multipart/byteranges. The real build/preforkd serves files
 * from its temp dir, spoken to over real sockets (and curl). */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
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

TestSuite(http_sites, .init = setup, .fini = teardown, .timeout = 60);

/* One worker, an http listener, then the sections given. */
static void start(const char *sections)
{
    server_write_conf(&srv, "workers = 1\ngraceful_timeout = 5\n"
                      "listen { address = \"127.0.0.1:%d\" protocol = \"http\" }\n%s\n",
                      port, sections);
    cr_assert_eq(server_start(&srv, NULL), 0, "server did not become ready");
}

static const char *in_dir(const char *rel)
{
    static char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", srv.dir, rel);
    return path;
}

static void put_file(const char *rel, const void *data, size_t len)
{
    FILE *f = fopen(in_dir(rel), "w");
    cr_assert_not_null(f, "%s", rel);
    cr_assert_eq(fwrite(data, 1, len, f), len);
    fclose(f);
}

static void put_text(const char *rel, const char *text)
{
    put_file(rel, text, strlen(text));
}

static void make_dir(const char *rel)
{
    cr_assert_eq(mkdir(in_dir(rel), 0755), 0, "mkdir %s", rel);
}

static void set_mtime(const char *rel, time_t t)
{
    struct timespec ts[2] = { { .tv_sec = t }, { .tv_sec = t } };
    cr_assert_eq(utimensat(AT_FDCWD, in_dir(rel), ts, 0), 0, "%s", rel);
}

static bool has_hdr(const struct h_resp *r, const char *name)
{
    char v[512];
    return h_resp_header(r, name, v, sizeof v) != NULL;
}

/* One request on a fresh connection. */
__attribute__((format(printf, 1, 2)))
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

/* GET path with Host host: the body (the caller frees). */
static char *body_for(const char *host, const char *path)
{
    struct h_resp r = request("GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, host);
    cr_assert_eq(r.status, 200, "%s%s: %d", host, path, r.status);
    return r.body;
}

static time_t parse_date(const char *v)
{
    struct tm tm = { 0 };
    const char *end = strptime(v, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    cr_assert(end && !*end, "not a date: %s", v);
    return timegm(&tm);
}

/* ---- virtual hosts ---- */

#define TWO_SITES \
    "http { root = \"www\" }\n" \
    "site a {\n  server_names = {\"example.org\", \"*.example.org\"}\n  root = \"www-a\"\n}\n" \
    "site b {\n  server_names = {\"b.test\", \"[::1]\"}\n  root = \"www-b\"\n" \
    "  index = \"home.html\"\n}\n"

static void make_two_sites(void)
{
    make_dir("www-a");
    make_dir("www-b");
    put_text("www/f", "default\n");
    put_text("www-a/f", "site a\n");
    put_text("www-b/f", "site b\n");
    put_text("www-b/home.html", "b home\n");
    put_text("www/index.html", "default index\n");
}

Test(http_sites, chosen_by_host)
{
    make_two_sites();
    start(TWO_SITES);
    const struct { const char *host, *path, *body; } cases[] = {
        { "example.org", "/f", "site a\n" },
        { "EXAMPLE.Org:8080", "/f", "site a\n" },
        { "example.org.", "/f", "site a\n" },
        { "www.example.org", "/f", "site a\n" },
        { "b.test", "/f", "site b\n" },
        { "b.test", "/", "b home\n" },
        { "[::1]:80", "/f", "site b\n" },
        { "127.0.0.1", "/f", "default\n" },
        { "other.test", "/", "default index\n" },
        { "xexample.org", "/f", "default\n" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *body = body_for(cases[i].host, cases[i].path);
        cr_expect_str_eq(body, cases[i].body, "Host: %s", cases[i].host);
        free(body);
    }
    /* An absolute-form target names the site; Host is then ignored. */
    struct h_resp r = request("GET http://b.test/f HTTP/1.1\r\nHost: example.org\r\n\r\n");
    cr_expect_str_eq(r.body, "site b\n");
    free(r.body);
    /* HTTP/1.0 without Host: the default site. */
    r = request("GET /f HTTP/1.0\r\n\r\n");
    cr_expect_str_eq(r.body, "default\n");
    free(r.body);
    /* One connection, a different site per request. */
    int fd = h_tcp_connect(port);
    const char two[] = "GET /f HTTP/1.1\r\nHost: b.test\r\n\r\n"
                       "GET /f HTTP/1.1\r\nHost: a.example.org\r\n\r\n";
    cr_assert_eq(h_write_full(fd, two, sizeof two - 1), 0);
    cr_assert_eq(h_read_resp(fd, &r, false), 0);
    cr_expect_str_eq(r.body, "site b\n");
    free(r.body);
    cr_assert_eq(h_read_resp(fd, &r, false), 0);
    cr_expect_str_eq(r.body, "site a\n");
    free(r.body);
    close(fd);
    /* Each site's files are its own: the same path, a missing file. */
    r = request("GET /home.html HTTP/1.1\r\nHost: example.org\r\n\r\n");
    cr_expect_eq(r.status, 404);
    free(r.body);
}

Test(http_sites, curl_with_host_header)
{
    make_two_sites();
    start(TWO_SITES);
    char out[256];
    cr_assert_eq(h_run(out, sizeof out, "curl -s -H 'Host: b.test' http://127.0.0.1:%d/f "
                       "http://127.0.0.1:%d/", port, port), 0);
    cr_expect_str_eq(out, "site b\nb home\n");
    cr_assert_eq(h_run(out, sizeof out, "curl -s --resolve www.example.org:%d:127.0.0.1 "
                       "http://www.example.org:%d/f", port, port), 0);
    cr_expect_str_eq(out, "site a\n");
}

/* Each site logs to its own access log; sites naming one file share it. */
Test(http_sites, access_log_per_site)
{
    make_two_sites();
    start("http { root = \"www\" access_log = \"access.log\" }\n"
          "site a {\n  server_names = \"example.org\"\n  root = \"www-a\"\n"
          "  access_log = \"a.log\"\n}\n"
          "site b {\n  server_names = \"b.test\"\n  root = \"www-b\"\n"
          "  access_log = \"access.log\"\n}\n"
          "site c {\n  server_names = \"c.test\"\n  root = \"www-b\"\n}\n");
    free(request("GET /f?to-a HTTP/1.1\r\nHost: example.org\r\n\r\n").body);
    free(request("GET /f?to-b HTTP/1.1\r\nHost: b.test\r\n\r\n").body);
    free(request("GET /f?to-default HTTP/1.1\r\nHost: x\r\n\r\n").body);
    free(request("GET /f?to-c HTTP/1.1\r\nHost: c.test\r\n\r\n").body);
    char a[PATH_MAX], d[PATH_MAX];
    snprintf(a, sizeof a, "%s", in_dir("a.log"));
    snprintf(d, sizeof d, "%s", in_dir("access.log"));
    cr_assert(WAIT_UNTIL(h_file_count(a, "\"GET /f?to-a HTTP/1.1\" 200 7") == 1, 5000));
    cr_assert(WAIT_UNTIL(h_file_count(d, "/f?to-default") == 1 &&
                         h_file_count(d, "/f?to-b") == 1, 5000));
    cr_expect_eq(h_file_count(a, "to-b"), 0);
    cr_expect_eq(h_file_count(d, "to-a"), 0);
    cr_expect_eq(h_file_count(a, "to-c") + h_file_count(d, "to-c"), 0, "c has no log");
    /* SIGUSR1 reopens every site's log. */
    char rotated[PATH_MAX + 8];
    snprintf(rotated, sizeof rotated, "%s.1", a);
    cr_assert_eq(rename(a, rotated), 0);
    cr_assert_eq(kill(srv.pid, SIGUSR1), 0);
    cr_assert(WAIT_UNTIL(access(a, F_OK) == 0, 5000), "a.log reopened");
    free(request("GET /f?after HTTP/1.1\r\nHost: example.org\r\n\r\n").body);
    cr_assert(WAIT_UNTIL(h_file_count(a, "/f?after") == 1, 5000));
}

/* ---- precompressed ---- */

static void make_precompressed(void)
{
    put_text("www/app.js", "var app = 'plain';\n");
    put_text("www/app.js.gz", "GZ-BYTES-OF-APP");
    put_text("www/app.js.br", "BR-BYTES");
    set_mtime("www/app.js", 1700000000);
    set_mtime("www/app.js.gz", 1700000100);
    set_mtime("www/app.js.br", 1700000000);         /* as new as the file */
    put_text("www/old.css", "body{}\n");
    put_text("www/old.css.gz", "STALE");
    set_mtime("www/old.css", 1700000100);
    set_mtime("www/old.css.gz", 1700000000);        /* older: not served */
    make_dir("www/dir");
    put_text("www/dir/index.html", "<p>index</p>\n");
    put_text("www/dir/index.html.gz", "GZ-INDEX");
}

/* GET /app.js with this Accept-Encoding ("" for none): the body. */
static struct h_resp get_encoded(const char *path, const char *ae)
{
    if (!ae)
        return request("GET %s HTTP/1.1\r\nHost: t\r\n\r\n", path);
    return request("GET %s HTTP/1.1\r\nHost: t\r\nAccept-Encoding: %s\r\n\r\n", path, ae);
}

Test(http_sites, precompressed_negotiation)
{
    make_precompressed();
    start("http { root = \"www\" precompressed = true }\n");
    const struct { const char *ae, *body, *encoding; } cases[] = {
        { NULL, "var app = 'plain';\n", NULL },
        { "gzip, deflate, br, zstd", "BR-BYTES", "br" },
        { "gzip", "GZ-BYTES-OF-APP", "gzip" },
        { "x-gzip", "GZ-BYTES-OF-APP", "gzip" },
        { "br;q=0.5, gzip", "GZ-BYTES-OF-APP", "gzip" },
        { "br;q=0.5, gzip;q=0.4", "var app = 'plain';\n", NULL },   /* identity: 1 */
        { "br;q=0.5, gzip;q=0.4, identity;q=0.3", "BR-BYTES", "br" },
        { "gzip;q=0, br;q=0", "var app = 'plain';\n", NULL },
        { "gzip;q=0.5", "var app = 'plain';\n", NULL },         /* identity weighs more */
        { "gzip;q=0.5, identity;q=0.1", "GZ-BYTES-OF-APP", "gzip" },
        { "*", "BR-BYTES", "br" },
        { "*;q=0", "var app = 'plain';\n", NULL },               /* nothing else: identity */
        { "*;q=0, gzip", "GZ-BYTES-OF-APP", "gzip" },
        { "", "var app = 'plain';\n", NULL },
        { "deflate", "var app = 'plain';\n", NULL },
    };
    char v[128], plain_etag[64];
    struct h_resp r = get_encoded("/app.js", NULL);
    cr_assert_not_null(h_resp_header(&r, "ETag", plain_etag, sizeof plain_etag));
    free(r.body);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *ae = cases[i].ae ? cases[i].ae : "(none)";
        r = get_encoded("/app.js", cases[i].ae);
        cr_expect_eq(r.status, 200, "%s", ae);
        cr_expect_str_eq(r.body, cases[i].body, "Accept-Encoding: %s", ae);
        cr_expect_str_eq(h_resp_header(&r, "Vary", v, sizeof v), "Accept-Encoding", "%s", ae);
        cr_expect_str_eq(h_resp_header(&r, "Content-Type", v, sizeof v), "text/javascript", "%s", ae);
        snprintf(v, sizeof v, "%zu", strlen(cases[i].body));
        char len[32];
        cr_expect_str_eq(h_resp_header(&r, "Content-Length", len, sizeof len), v, "%s", ae);
        if (cases[i].encoding) {
            cr_expect_str_eq(h_resp_header(&r, "Content-Encoding", v, sizeof v), cases[i].encoding);
            cr_expect_str_neq(h_resp_header(&r, "ETag", v, sizeof v), plain_etag,
                              "a variant has its own ETag");
        } else {
            cr_expect_not(has_hdr(&r, "Content-Encoding"), "%s", ae);
            cr_expect_str_eq(h_resp_header(&r, "ETag", v, sizeof v), plain_etag);
        }
        free(r.body);
    }
    /* A .gz older than its file is not served; a directory's index is. */
    r = get_encoded("/old.css", "gzip");
    cr_expect_str_eq(r.body, "body{}\n");
    cr_expect_not(has_hdr(&r, "Content-Encoding"));
    free(r.body);
    r = get_encoded("/dir/", "gzip, br");
    cr_expect_str_eq(r.body, "GZ-INDEX");
    cr_expect_str_eq(h_resp_header(&r, "Content-Type", v, sizeof v), "text/html");
    free(r.body);
    /* The .gz itself, asked for by name, is a file like any other. */
    r = get_encoded("/app.js.gz", "gzip");
    cr_expect_str_eq(r.body, "GZ-BYTES-OF-APP");
    cr_expect_not(has_hdr(&r, "Content-Encoding"));
    free(r.body);
}

/* Validators and ranges are the variant's own. */
Test(http_sites, precompressed_validators_and_ranges)
{
    make_precompressed();
    start("http { root = \"www\" precompressed = true }\n");
    char etag[64], v[128];
    struct h_resp r = get_encoded("/app.js", "gzip");
    cr_assert_not_null(h_resp_header(&r, "ETag", etag, sizeof etag));
    cr_expect_str_eq(h_resp_header(&r, "Last-Modified", v, sizeof v), "Tue, 14 Nov 2023 22:15:00 GMT",
                     "the .gz's own time");
    free(r.body);
    r = request("GET /app.js HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\n"
                "If-None-Match: %s\r\n\r\n", etag);
    cr_expect_eq(r.status, 304);
    cr_expect_str_eq(h_resp_header(&r, "Vary", v, sizeof v), "Accept-Encoding");
    free(r.body);
    r = request("GET /app.js HTTP/1.1\r\nHost: t\r\nIf-None-Match: %s\r\n\r\n", etag);
    cr_expect_eq(r.status, 200, "without gzip the tag is not the plain file's");
    free(r.body);
    r = request("GET /app.js HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\n"
                "Range: bytes=3-7\r\n\r\n");
    cr_expect_eq(r.status, 206);
    cr_expect_str_eq(r.body, "BYTES");
    cr_expect_str_eq(h_resp_header(&r, "Content-Range", v, sizeof v), "bytes 3-7/15");
    cr_expect_str_eq(h_resp_header(&r, "Content-Encoding", v, sizeof v), "gzip");
    cr_expect_str_eq(h_resp_header(&r, "Vary", v, sizeof v), "Accept-Encoding");
    free(r.body);
    r = request("GET /app.js HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\n"
                "Range: bytes=20-\r\n\r\n");
    cr_expect_eq(r.status, 416);
    cr_expect_str_eq(h_resp_header(&r, "Content-Range", v, sizeof v), "bytes */15");
    free(r.body);
}

/* Files above the in-memory size go out by sendfile, the variant too. */
Test(http_sites, precompressed_large_files)
{
    size_t len = 200000;
    char *plain = malloc(len), *gz = malloc(len / 2);
    memset(plain, 'p', len);
    memset(gz, 'z', len / 2);
    put_file("www/big.txt", plain, len);
    put_file("www/big.txt.gz", gz, len / 2);
    set_mtime("www/big.txt", 1700000000);
    start("http { root = \"www\" precompressed = true }\n");
    struct h_resp r = get_encoded("/big.txt", "gzip");
    cr_assert_eq(r.body_len, len / 2);
    cr_expect_eq(memcmp(r.body, gz, len / 2), 0);
    free(r.body);
    r = get_encoded("/big.txt", NULL);
    cr_assert_eq(r.body_len, len);
    cr_expect_eq(memcmp(r.body, plain, len), 0);
    free(r.body);
    free(plain);
    free(gz);
}

/* A real .gz, as a browser or curl --compressed would take it; and a site
 * without precompressed sends the file as it is, without Vary. */
Test(http_sites, precompressed_with_curl)
{
    put_text("www/page.html", "<p>hello, compressed world</p>\n");
    char out[512];
    cr_assert_eq(h_run(out, sizeof out, "gzip -k -9 %s/www/page.html", srv.dir), 0, "%s", out);
    make_dir("www-b");
    put_text("www-b/page.html", "<p>plain</p>\n");
    put_text("www-b/page.html.gz", "NOT-SENT");
    start("http { root = \"www\" precompressed = true }\n"
          "site b {\n  server_names = \"b.test\"\n  root = \"www-b\"\n}\n");
    cr_assert_eq(h_run(out, sizeof out, "curl -s -H 'Accept-Encoding: gzip' "
                       "http://127.0.0.1:%d/page.html | gunzip -c", port), 0);
    cr_expect_str_eq(out, "<p>hello, compressed world</p>\n");
    cr_assert_eq(h_run(out, sizeof out, "curl -s --compressed -H 'Accept-Encoding: gzip' "
                       "-D - http://127.0.0.1:%d/page.html | tr -d '\\r' | "
                       "grep -i -e '^content-encoding' -e '^vary' -e '^<p>'", port), 0);
    cr_expect_str_eq(out, "Content-Encoding: gzip\nVary: Accept-Encoding\n"
                     "<p>hello, compressed world</p>\n");
    struct h_resp r = request("GET /page.html HTTP/1.1\r\nHost: b.test\r\n"
                            "Accept-Encoding: gzip\r\n\r\n");
    cr_expect_str_eq(r.body, "<p>plain</p>\n");
    cr_expect_not(has_hdr(&r, "Vary"));
    cr_expect_not(has_hdr(&r, "Content-Encoding"));
    free(r.body);
}

/* ---- directory listings ---- */

Test(http_sites, autoindex_off_by_default)
{
    make_dir("www/files");
    put_text("www/files/a.txt", "a");
    start("http { root = \"www\" }\n");
    struct h_resp r = request("GET /files/ HTTP/1.1\r\nHost: t\r\n\r\n");
    cr_expect_eq(r.status, 403);
    free(r.body);
}

Test(http_sites, autoindex_lists_a_directory)
{
    make_dir("www/files");
    make_dir("www/files/sub");
    make_dir("www/with-index");
    put_text("www/with-index/index.html", "the index\n");
    put_text("www/files/b.txt", "bbbbb");
    put_text("www/files/<a> & \"q\".txt", "odd");
    put_text("www/files/.secret", "hidden");
    set_mtime("www/files/b.txt", 1700000000);
    start("http { root = \"www\" autoindex = true }\n");
    struct h_resp r = request("GET /files/ HTTP/1.1\r\nHost: t\r\n\r\n");
    char v[128];
    cr_assert_eq(r.status, 200);
    cr_expect_str_eq(h_resp_header(&r, "Content-Type", v, sizeof v), "text/html; charset=utf-8");
    cr_expect_not_null(strstr(r.body, "<title>Index of /files/</title>"));
    const char *sub = strstr(r.body, "<a href=\"sub/\">sub/</a>");
    const char *odd = strstr(r.body, "<a href=\"%3Ca%3E%20%26%20%22q%22.txt\">"
                             "&lt;a&gt; &amp; &quot;q&quot;.txt</a>");
    const char *b = strstr(r.body, "<a href=\"b.txt\">b.txt</a></td><td>5</td>"
                           "<td>2023-11-14 22:13</td>");
    cr_expect(sub && odd && b && sub < odd && odd < b, "order or escaping:\n%s", r.body);
    cr_expect_null(strstr(r.body, "secret"));
    size_t len = r.body_len;
    free(r.body);
    /* The link leads to the file; HEAD says the same length. */
    r = request("GET /files/%%3Ca%%3E%%20%%26%%20%%22q%%22.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    cr_expect_str_eq(r.body, "odd");
    free(r.body);
    r = request("HEAD /files/ HTTP/1.1\r\nHost: t\r\n\r\n");
    cr_expect_eq(r.status, 200);
    snprintf(v, sizeof v, "%zu", len);
    char cl[32];
    cr_expect_str_eq(h_resp_header(&r, "Content-Length", cl, sizeof cl), v);
    free(r.body);
    /* An index still wins; no slash is still a redirect. */
    r = request("GET /with-index/ HTTP/1.1\r\nHost: t\r\n\r\n");
    cr_expect_str_eq(r.body, "the index\n");
    free(r.body);
    r = request("GET /files HTTP/1.1\r\nHost: t\r\n\r\n");
    cr_expect_eq(r.status, 301);
    free(r.body);
    /* The root's own listing has no parent link. */
    r = request("GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    cr_expect_eq(r.status, 200);
    cr_expect_null(strstr(r.body, "../"));
    cr_expect_not_null(strstr(r.body, "<a href=\"files/\">files/</a>"));
    free(r.body);
}

/* A listing larger than the in-memory limit goes out by sendfile, and the
 * connection goes on serving. */
Test(http_sites, autoindex_large_listing)
{
    make_dir("www/many");
    char name[PATH_MAX];
    for (int i = 0; i < 300; i++) {
        snprintf(name, sizeof name, "www/many/a-file-with-a-rather-long-name-%04d.txt", i);
        put_text(name, "x");
    }
    start("http { root = \"www\" autoindex = true }\n");
    int fd = h_tcp_connect(port);
    const char two[] = "GET /many/ HTTP/1.1\r\nHost: t\r\n\r\n"
                       "GET /many/a-file-with-a-rather-long-name-0299.txt HTTP/1.1\r\n"
                       "Host: t\r\n\r\n";
    cr_assert_eq(h_write_full(fd, two, sizeof two - 1), 0);
    struct h_resp r;
    cr_assert_eq(h_read_resp(fd, &r, false), 0);
    cr_expect_gt(r.body_len, 16384);
    cr_expect_not_null(strstr(r.body, "name-0000.txt"));
    cr_expect_not_null(strstr(r.body, "name-0299.txt"));
    cr_expect_eq(strcmp(r.body + r.body_len - 8, "</html>\n"), 0);
    free(r.body);
    cr_assert_eq(h_read_resp(fd, &r, false), 0);
    cr_expect_str_eq(r.body, "x");
    free(r.body);
    close(fd);
}

/* ---- error pages ---- */

Test(http_sites, error_pages_with_the_original_status)
{
    make_dir("www/errors");
    make_dir("www/noindex");
    put_text("www/errors/404.html", "<h1>not here</h1>\n");
    put_text("www/errors/403.html", "<h1>not yours</h1>\n");
    make_dir("www-a");
    put_text("www-a/oops.txt", "site a's 404\n");
    start("http {\n  root = \"www\"\n  error_pages = {\"404=/errors/404.html\", "
          "\"403=/errors/403.html\", \"405=/errors/missing.html\"}\n}\n"
          "site a {\n  server_names = \"a.test\"\n  root = \"www-a\"\n"
          "  error_pages = {\"404=/oops.txt\"}\n}\n");
    char v[128];
    struct h_resp r = request("GET /nothing HTTP/1.1\r\nHost: t\r\n\r\n");
    cr_expect_eq(r.status, 404);
    cr_expect_str_eq(r.body, "<h1>not here</h1>\n");
    cr_expect_str_eq(h_resp_header(&r, "Content-Type", v, sizeof v), "text/html");
    cr_expect_not(has_hdr(&r, "ETag"));
    free(r.body);
    r = request("GET /noindex/ HTTP/1.1\r\nHost: t\r\n\r\n");
    cr_expect_eq(r.status, 403);
    cr_expect_str_eq(r.body, "<h1>not yours</h1>\n");
    free(r.body);
    r = request("GET /%%2e%%2e/x HTTP/1.1\r\nHost: t\r\n\r\n");
    cr_expect_eq(r.status, 403, "a refused path gets the 403 page too");
    cr_expect_str_eq(r.body, "<h1>not yours</h1>\n");
    free(r.body);
    /* A missing page: the built-in answer, with its Allow. */
    r = request("DELETE /x HTTP/1.1\r\nHost: t\r\n\r\n");
    cr_expect_eq(r.status, 405);
    cr_expect_str_eq(r.body, "405 Method Not Allowed\n");
    cr_expect_str_eq(h_resp_header(&r, "Allow", v, sizeof v), "GET, HEAD, OPTIONS");
    free(r.body);
    /* HEAD: the page's length, no body; the connection stays open. */
    int fd = h_tcp_connect(port);
    const char two[] = "HEAD /nothing HTTP/1.1\r\nHost: t\r\n\r\n"
                       "GET /nothing HTTP/1.1\r\nHost: a.test\r\n\r\n";
    cr_assert_eq(h_write_full(fd, two, sizeof two - 1), 0);
    cr_assert_eq(h_read_resp(fd, &r, true), 0);
    cr_expect_eq(r.status, 404);
    cr_expect_str_eq(h_resp_header(&r, "Content-Length", v, sizeof v), "18");
    free(r.body);
    cr_assert_eq(h_read_resp(fd, &r, false), 0);
    cr_expect_eq(r.status, 404);
    cr_expect_str_eq(r.body, "site a's 404\n", "each site its own pages");
    cr_expect_str_eq(h_resp_header(&r, "Content-Type", v, sizeof v), "text/plain");
    free(r.body);
    close(fd);
    /* Site a has no 403 page: the built-in one. */
    r = request("GET /%%2e%%2e/x HTTP/1.1\r\nHost: a.test\r\n\r\n");
    cr_expect_eq(r.status, 403);
    cr_expect_str_eq(r.body, "403 Forbidden\n");
    free(r.body);
}

/* A page larger than the in-memory limit goes out by sendfile. */
Test(http_sites, large_error_page)
{
    size_t len = 50000;
    char *page = malloc(len);
    memset(page, 'e', len);
    put_file("www/404.html", page, len);
    start("http { root = \"www\" error_pages = {\"404=/404.html\"} }\n");
    struct h_resp r = request("GET /nothing HTTP/1.1\r\nHost: t\r\n\r\n");
    cr_expect_eq(r.status, 404);
    cr_assert_eq(r.body_len, len);
    cr_expect_eq(memcmp(r.body, page, len), 0);
    free(r.body);
    free(page);
}

/* ---- expires ---- */

/* max-age in Cache-Control, and Expires that far after Date. */
static long max_age(const struct h_resp *r)
{
    char cc[128], ex[64], date[64];
    if (!h_resp_header(r, "Cache-Control", cc, sizeof cc))
        return -1;
    cr_assert_eq(strncmp(cc, "max-age=", 8), 0, "%s", cc);
    long age = strtol(cc + 8, NULL, 10);
    cr_assert_not_null(h_resp_header(r, "Expires", ex, sizeof ex));
    cr_assert_not_null(h_resp_header(r, "Date", date, sizeof date));
    cr_expect_eq(parse_date(ex) - parse_date(date), age, "Expires %s, Date %s", ex, date);
    return age;
}

Test(http_sites, expires_by_suffix_and_directory)
{
    make_dir("www/assets");
    put_text("www/a.css", "css");
    put_text("www/x.txt", "txt");
    put_text("www/index.html", "index");
    put_text("www/assets/x.js", "js");
    put_text("www/assets/y.css", "css");
    start("http {\n  root = \"www\"\n  expires = {\"*.css=7d\", \"/assets/=30d\", "
          "\"*.html=0\", \"*.txt=90m\"}\n}\n");
    const struct { const char *path; long age; } cases[] = {
        { "/a.css", 7 * 86400 }, { "/assets/x.js", 30 * 86400 },
        { "/assets/y.css", 7 * 86400 }, { "/", 0 }, { "/index.html", 0 },
        { "/x.txt", 90 * 60 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct h_resp r = request("GET %s HTTP/1.1\r\nHost: t\r\n\r\n", cases[i].path);
        cr_expect_eq(max_age(&r), cases[i].age, "%s", cases[i].path);
        free(r.body);
    }
    char etag[64];
    struct h_resp r = request("GET /a.css HTTP/1.1\r\nHost: t\r\n\r\n");
    cr_assert_not_null(h_resp_header(&r, "ETag", etag, sizeof etag));
    free(r.body);
    r = request("GET /a.css HTTP/1.1\r\nHost: t\r\nIf-None-Match: %s\r\n\r\n", etag);
    cr_expect_eq(r.status, 304);
    cr_expect_eq(max_age(&r), 7 * 86400, "a 304 carries them too (RFC 9110 15.4.5)");
    free(r.body);
    r = request("GET /a.css HTTP/1.1\r\nHost: t\r\nRange: bytes=0-0\r\n\r\n");
    cr_expect_eq(r.status, 206);
    cr_expect_eq(max_age(&r), 7 * 86400);
    free(r.body);
    r = request("GET /missing.css HTTP/1.1\r\nHost: t\r\n\r\n");
    cr_expect_eq(r.status, 404);
    cr_expect_eq(max_age(&r), -1, "not on errors");
    free(r.body);
}

/* ---- multipart/byteranges ---- */

static const char hundred[] = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                              "0123456789abcdefghijklmnopqrstuvwxyzAB";

/* The boundary from the answer's Content-Type. */
static const char *boundary_of(const struct h_resp *r, char *out, size_t cap)
{
    char ct[256];
    cr_assert_not_null(h_resp_header(r, "Content-Type", ct, sizeof ct));
    const char *pfx = "multipart/byteranges; boundary=";
    cr_assert_eq(strncmp(ct, pfx, strlen(pfx)), 0, "%s", ct);
    snprintf(out, cap, "%.63s", ct + strlen(pfx));
    return out;
}

Test(http_sites, multipart_byteranges)
{
    cr_assert_eq(strlen(hundred), 100);
    put_text("www/h.txt", hundred);
    start("http { root = \"www\" }\n");
    struct h_resp r = request("GET /h.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=0-1,5-6,-3\r\n\r\n");
    char b[64], want[1024], v[64];
    cr_assert_eq(r.status, 206);
    boundary_of(&r, b, sizeof b);
    snprintf(want, sizeof want,
             "--%s\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-1/100\r\n\r\n01\r\n"
             "--%s\r\nContent-Type: text/plain\r\nContent-Range: bytes 5-6/100\r\n\r\n56\r\n"
             "--%s\r\nContent-Type: text/plain\r\nContent-Range: bytes 97-99/100\r\n\r\nzAB\r\n"
             "--%s--\r\n", b, b, b, b);
    cr_expect_str_eq(r.body, want);
    cr_expect_not(has_hdr(&r, "Content-Range"), "only the parts have one");
    cr_expect(has_hdr(&r, "ETag") && has_hdr(&r, "Last-Modified"));
    free(r.body);
    /* HEAD: the same length, no body. */
    size_t len = strlen(want);
    r = request("HEAD /h.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=0-1,5-6,-3\r\n\r\n");
    snprintf(want, sizeof want, "%zu", len);
    cr_expect_str_eq(h_resp_header(&r, "Content-Length", v, sizeof v), want);
    free(r.body);
    /* Overlapping or touching ranges become one: a plain 206. */
    r = request("GET /h.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=4-6,0-4\r\n\r\n");
    cr_expect_eq(r.status, 206);
    cr_expect_str_eq(h_resp_header(&r, "Content-Range", v, sizeof v), "bytes 0-6/100");
    cr_expect_str_eq(r.body, "0123456");
    free(r.body);
    /* An unsatisfiable one is dropped. */
    r = request("GET /h.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=1-2,500-600\r\n\r\n");
    cr_expect_eq(r.status, 206);
    cr_expect_str_eq(r.body, "12");
    free(r.body);
    /* More bytes asked than the file has, or more than 16 ranges: 200. */
    r = request("GET /h.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=0-,0-\r\n\r\n");
    cr_expect_eq(r.status, 200);
    cr_expect_str_eq(r.body, hundred);
    free(r.body);
    char many[512] = "bytes=0-0";
    for (int i = 1; i < 17; i++)
        snprintf(many + strlen(many), sizeof many - strlen(many), ",%d-%d", 2 * i, 2 * i);
    r = request("GET /h.txt HTTP/1.1\r\nHost: t\r\nRange: %s\r\n\r\n", many);
    cr_expect_eq(r.status, 200, "17 ranges");
    free(r.body);
    *strrchr(many, ',') = '\0';
    r = request("GET /h.txt HTTP/1.1\r\nHost: t\r\nRange: %s\r\n\r\n", many);
    cr_expect_eq(r.status, 206, "16 ranges");
    int parts = 0;
    for (const char *p = r.body; (p = strstr(p, "Content-Range: ")); p++)
        parts++;
    cr_expect_eq(parts, 16);
    free(r.body);
    /* A changed file (If-Range) comes whole. */
    r = request("GET /h.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=0-1,5-6\r\n"
                "If-Range: \"other\"\r\n\r\n");
    cr_expect_eq(r.status, 200);
    free(r.body);
}

/* A file sent by sendfile: part heads in between, then the next answer on
 * the same connection. */
Test(http_sites, multipart_byteranges_by_sendfile)
{
    size_t len = 3 << 20;
    unsigned char *data = malloc(len);
    for (size_t i = 0; i < len; i++)
        data[i] = (unsigned char)(i * 2654435761u >> 13);
    put_file("www/big.bin", data, len);
    put_text("www/small", "small");
    start("http { root = \"www\" }\n");
    int fd = h_tcp_connect(port);
    const char two[] = "GET /big.bin HTTP/1.1\r\nHost: t\r\n"
                       "Range: bytes=10-19,1000000-2999999,-5\r\n\r\n"
                       "GET /small HTTP/1.1\r\nHost: t\r\n\r\n";
    cr_assert_eq(h_write_full(fd, two, sizeof two - 1), 0);
    struct h_resp r;
    cr_assert_eq(h_read_resp(fd, &r, false), 0);
    cr_assert_eq(r.status, 206);
    char b[64], head[256];
    boundary_of(&r, b, sizeof b);
    const struct { uint64_t first, last; } parts[] = {
        { 10, 19 }, { 1000000, 2999999 }, { len - 5, len - 1 },
    };
    const char *p = r.body, *end = r.body + r.body_len;
    for (size_t i = 0; i < 3; i++) {
        int n = snprintf(head, sizeof head, "%s--%s\r\nContent-Type: application/octet-stream\r\n"
                         "Content-Range: bytes %llu-%llu/%zu\r\n\r\n", i ? "\r\n" : "", b,
                         (unsigned long long)parts[i].first,
                         (unsigned long long)parts[i].last, len);
        cr_assert(end - p >= n && memcmp(p, head, (size_t)n) == 0, "part %zu head", i);
        p += n;
        size_t plen = parts[i].last - parts[i].first + 1;
        cr_assert(end - p >= (long)plen && memcmp(p, data + parts[i].first, plen) == 0,
                  "part %zu bytes", i);
        p += plen;
    }
    snprintf(head, sizeof head, "\r\n--%s--\r\n", b);
    cr_expect_eq((size_t)(end - p), strlen(head));
    cr_expect_eq(memcmp(p, head, strlen(head)), 0);
    free(r.body);
    cr_assert_eq(h_read_resp(fd, &r, false), 0);
    cr_expect_str_eq(r.body, "small");
    free(r.body);
    close(fd);
    free(data);
}

Test(http_sites, multipart_with_curl)
{
    put_text("www/h.txt", hundred);
    start("http { root = \"www\" precompressed = true }\n");
    char out[1024];
    cr_assert_eq(h_run(out, sizeof out, "curl -s -r 0-1,10-11 -D - "
                       "http://127.0.0.1:%d/h.txt | tr -d '\\r' | "
                       "grep -e '^Content-Range' -e '^Content-Type' -e '^[0-9a][0-9b]$'", port), 0);
    cr_expect_not_null(strstr(out, "Content-Type: multipart/byteranges; boundary="), "%s", out);
    cr_expect_not_null(strstr(out, "Content-Type: text/plain\nContent-Range: bytes 0-1/100\n"
                              "01\nContent-Type: text/plain\nContent-Range: bytes 10-11/100\n"
                              "ab\n"), "%s", out);
}
