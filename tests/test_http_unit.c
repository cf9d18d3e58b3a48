/* Unit tests of the HTTP handler's pure parts: path normalisation and
 * percent-decoding, Range parsing, HTTP dates, media types. */
#include <criterion/criterion.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "workers/http_path.h"
#include "workers/mime.h"

static int norm(const char *in, char *out)
{
    return http_path_normalize(in, strlen(in), out, 256);
}

Test(http_unit, normalise_accepts_and_cleans)
{
    char out[256];
    cr_assert_eq(norm("/", out), 1);
    cr_assert_str_eq(out, "/");
    cr_assert_gt(norm("/a//b/./c?x=1#f", out), 0);
    cr_assert_str_eq(out, "/a/b/c");
    cr_assert_gt(norm("/dir/", out), 0);
    cr_assert_str_eq(out, "/dir/");
    cr_assert_gt(norm("/a%20b%41", out), 0);
    cr_assert_str_eq(out, "/a bA");
    cr_assert_gt(norm("/a/.", out), 0);
    cr_assert_str_eq(out, "/a/");
    cr_assert_gt(norm("http://host:8080/x/y", out), 0);
    cr_assert_str_eq(out, "/x/y");
    cr_assert_gt(norm("http://host", out), 0);
    cr_assert_str_eq(out, "/");
    cr_assert_gt(norm("/..a/b..", out), 0, "dots inside names are fine");
    cr_assert_str_eq(out, "/..a/b..");
}

Test(http_unit, normalise_refuses)
{
    char out[256];
    cr_assert_eq(norm("/../x", out), -403);
    cr_assert_eq(norm("/a/../x", out), -403);
    cr_assert_eq(norm("/a/..", out), -403);
    cr_assert_eq(norm("/%2e%2e/x", out), -403);
    cr_assert_eq(norm("/%2E%2e", out), -403);
    cr_assert_eq(norm("/a%2f..%2f..%2fx", out), -403);
    cr_assert_eq(norm("/a%2Fb", out), -403);
    cr_assert_eq(norm("/a%00.html", out), -403);
    cr_assert_eq(norm("/a\\b", out), -403);
    cr_assert_eq(norm("/a%5cb", out), -403);
    cr_assert_eq(norm("/a%zz", out), -400);
    cr_assert_eq(norm("/a%4", out), -400);
    cr_assert_eq(norm("*", out), -400);
    cr_assert_eq(norm("", out), -400);
    char longp[400];
    memset(longp, 'a', sizeof longp - 1);
    longp[0] = '/';
    longp[sizeof longp - 1] = '\0';
    cr_assert_eq(norm(longp, out), -414);
    /* Absolute form: the authority follows Host's rules. */
    cr_assert_eq(norm("http://u@h/x", out), -400);
    cr_assert_eq(norm("http:///x", out), -400);
    cr_assert_eq(norm("http://h:x/x", out), -400);
    cr_assert_gt(norm("http://h?q=1", out), 0);
    cr_assert_str_eq(out, "/");
}

static bool host(const char *v)
{
    return http_host_valid(v, strlen(v));
}

Test(http_unit, host_values)
{
    const char *good[] = {
        "h", "h:80", "h:", "h:0", "h:65535", "H.EXAMPLE.org", "127.0.0.1", "[::1]", "[::1]:8080",
        "[2001:db8::1]", "[::ffff:1.2.3.4]", "[v1.x:y]", "[V7f.a]", "%41b", "a-b_c~d!$&'()*+;=",
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        cr_expect(host(good[i]), "%s", good[i]);
    const char *bad[] = {
        "", ":80", "u@h", "u:p@h", "h/p", "h,i", "h, i", "h i", "h:x", "h:-1", "h:65536",
        "h:80:80", "h:99999999999", "[::1", "[]", "[zz]", "[::1]x", "[::1]:x", "[v.x]", "[v1.]",
        "[vg.x]", "h%4", "h%zz", "h\"", "h?", "h#", "h\\", "h\t", "[fe80::1%25eth0]",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_expect(!host(bad[i]), "%s", bad[i]);
}

static int te(const char *const *lines)
{
    struct http_te t = { 0 };
    for (; *lines; lines++)
        http_te_add(&t, *lines, strlen(*lines));
    return http_te_status(&t);
}

#define TE(...) te((const char *const[]){ __VA_ARGS__, NULL })

Test(http_unit, transfer_encoding_lists)
{
    cr_assert_eq(TE("chunked"), 0);
    cr_assert_eq(TE("Chunked"), 0);
    cr_assert_eq(TE(" chunked "), 0);
    cr_assert_eq(TE(",chunked,"), 0);
    cr_assert_eq(TE(""), 400);
    cr_assert_eq(TE("identity"), 400);
    cr_assert_eq(TE("gzip"), 400);
    cr_assert_eq(TE("chunked, gzip"), 400);
    cr_assert_eq(TE("chunked", "gzip"), 400);
    cr_assert_eq(TE("chunked, chunked"), 400);
    cr_assert_eq(TE("chunked", "chunked"), 400);
    cr_assert_eq(TE("chunked;x=1"), 400);
    cr_assert_eq(TE("\"chunked\""), 400);
    cr_assert_eq(TE("chunked x"), 400);
    cr_assert_eq(TE("chunked/1"), 400);
    cr_assert_eq(TE("gzip, chunked"), 501);
    cr_assert_eq(TE("gzip;level=1, chunked"), 501);
    cr_assert_eq(TE("gzip", "chunked"), 501);
    cr_assert_eq(TE("x-custom", "", "chunked"), 501);
}

Test(http_unit, tokens)
{
    cr_assert_eq(http_token_len("GET / HTTP/1.1", 14), 3);
    cr_assert_eq(http_token_len("x-y.z~!#$%&'*+^_`|", 18), 18);
    cr_assert_eq(http_token_len("a:b", 3), 1);
    cr_assert_eq(http_token_len("\x80", 1), 0);
    cr_assert_eq(http_token_len("", 0), 0);
}

static enum http_range rng(const char *v, uint64_t size, uint64_t *a, uint64_t *b)
{
    return http_range_parse(v, strlen(v), size, a, b);
}

Test(http_unit, ranges)
{
    uint64_t a, b;
    cr_assert_eq(rng("bytes=0-0", 10, &a, &b), RANGE_OK);
    cr_assert(a == 0 && b == 0);
    cr_assert_eq(rng("bytes=2-4", 10, &a, &b), RANGE_OK);
    cr_assert(a == 2 && b == 4);
    cr_assert_eq(rng("bytes=5-100", 10, &a, &b), RANGE_OK);
    cr_assert(a == 5 && b == 9);
    cr_assert_eq(rng("bytes=7-", 10, &a, &b), RANGE_OK);
    cr_assert(a == 7 && b == 9);
    cr_assert_eq(rng("bytes=-3", 10, &a, &b), RANGE_OK);
    cr_assert(a == 7 && b == 9);
    cr_assert_eq(rng("bytes=-30", 10, &a, &b), RANGE_OK);
    cr_assert(a == 0 && b == 9);
    cr_assert_eq(rng("bytes=10-", 10, &a, &b), RANGE_UNSATISFIABLE);
    cr_assert_eq(rng("bytes=-0", 10, &a, &b), RANGE_UNSATISFIABLE);
    cr_assert_eq(rng("bytes=0-", 0, &a, &b), RANGE_UNSATISFIABLE);
    cr_assert_eq(rng("bytes=4-2", 10, &a, &b), RANGE_NONE);
    cr_assert_eq(rng("bytes=0-1,3-4", 10, &a, &b), RANGE_NONE);
    cr_assert_eq(rng("items=0-1", 10, &a, &b), RANGE_NONE);
    cr_assert_eq(rng("bytes=-", 10, &a, &b), RANGE_NONE);
    cr_assert_eq(rng("bytes=99999999999999999999999-", 10, &a, &b), RANGE_NONE);
}

Test(http_unit, dates)
{
    char d[HTTP_DATE_LEN + 1];
    http_date_format(784111777, d);
    cr_assert_str_eq(d, "Sun, 06 Nov 1994 08:49:37 GMT");
    cr_assert_eq(http_date_parse(d, strlen(d)), 784111777);
    http_date_format(0, d);
    cr_assert_str_eq(d, "Thu, 01 Jan 1970 00:00:00 GMT");
    const char *bad = "Sunday, 06-Nov-94 08:49:37 GMT";
    cr_assert_eq(http_date_parse(bad, strlen(bad)), -1);
    cr_assert_eq(http_date_parse("garbage", 7), -1);
}

Test(http_unit, mime_types)
{
    mime_load(NULL);
    cr_assert_str_eq(mime_lookup("/x/index.html"), "text/html");
    cr_assert_str_eq(mime_lookup("/STYLE.CSS"), "text/css");
    cr_assert_str_eq(mime_lookup("/a.png"), "image/png");
    cr_assert_str_eq(mime_lookup("/noext"), MIME_DEFAULT);
    cr_assert_str_eq(mime_lookup("/dir.d/noext"), MIME_DEFAULT);
    /* A missing file leaves the built-in table. */
    cr_assert_eq(mime_load("/nonexistent/mime.types"), -1);
    cr_assert_str_eq(mime_lookup("/a.svg"), "image/svg+xml");
    cr_assert_str_eq(mime_lookup("/a.weird"), MIME_DEFAULT);
    /* A file of our own overrides and adds. */
    char path[] = "/tmp/preforkd-mime-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    const char text[] = "# comment\ntext/x-weird weird wrd\n\napplication/x-h html\n";
    cr_assert_eq(write(fd, text, sizeof text - 1), (ssize_t)(sizeof text - 1));
    close(fd);
    cr_assert_eq(mime_load(path), 0);
    unlink(path);
    cr_assert_str_eq(mime_lookup("/a.WRD"), "text/x-weird");
    cr_assert_str_eq(mime_lookup("/a.html"), "application/x-h");
    mime_free();
}
