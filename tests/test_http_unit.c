/* Unit tests of the HTTP handler's pure parts: path normalisation and
 * percent-decoding, Range parsing, Accept-Encoding, HTTP dates, media
 * types, the choice of a site by Host, expires rules, directory listings. */
#include <criterion/criterion.h>
#include <errno.h>
#include <ftw.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "workers/http_index.h"
#include "workers/http_path.h"
#include "workers/http_site.h"
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
    struct http_byte_range r[HTTP_RANGES_MAX];
    size_t n = 0;
    enum http_range st = http_ranges_parse(v, strlen(v), size, r, &n);
    if (st == RANGE_OK) {
        cr_assert_eq(n, 1, "%s: %zu ranges", v, n);
        *a = r[0].first;
        *b = r[0].last;
    }
    return st;
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
    cr_assert_eq(rng("Bytes=1-1", 10, &a, &b), RANGE_OK, "the unit is case-insensitive");
    cr_assert_eq(rng("bytes=10-", 10, &a, &b), RANGE_UNSATISFIABLE);
    cr_assert_eq(rng("bytes=-0", 10, &a, &b), RANGE_UNSATISFIABLE);
    cr_assert_eq(rng("bytes=0-", 0, &a, &b), RANGE_UNSATISFIABLE);
    cr_assert_eq(rng("bytes=4-2", 10, &a, &b), RANGE_NONE);
    cr_assert_eq(rng("items=0-1", 10, &a, &b), RANGE_NONE);
    cr_assert_eq(rng("bytes=-", 10, &a, &b), RANGE_NONE);
    cr_assert_eq(rng("bytes=", 10, &a, &b), RANGE_NONE);
    cr_assert_eq(rng("bytes=0-1;x", 10, &a, &b), RANGE_NONE);
    cr_assert_eq(rng("bytes=99999999999999999999999-", 10, &a, &b), RANGE_NONE);
}

/* Several ranges (RFC 9110 14.1.2, 14.6): sorted, overlapping or touching
 * ones merged, unsatisfiable ones dropped; too many, or more bytes asked
 * than the body has: the whole body. */
Test(http_unit, range_sets)
{
    struct http_byte_range r[HTTP_RANGES_MAX];
    size_t n;
#define SET(v, size) http_ranges_parse(v, strlen(v), size, r, &n)
    cr_assert_eq(SET("bytes=0-1,5-6", 10), RANGE_OK);
    cr_assert_eq(n, 2);
    cr_assert(r[0].first == 0 && r[0].last == 1 && r[1].first == 5 && r[1].last == 6);
    cr_assert_eq(SET("bytes=5-6, 0-1", 10), RANGE_OK, "OWS, any order");
    cr_assert(n == 2 && r[0].first == 0 && r[1].first == 5);
    cr_assert_eq(SET("bytes=0-1,2-3", 10), RANGE_OK);
    cr_assert(n == 1 && r[0].first == 0 && r[0].last == 3, "touching ranges merge");
    cr_assert_eq(SET("bytes=0-3,2-5,-1", 10), RANGE_OK);
    cr_assert(n == 2 && r[0].last == 5 && r[1].first == 9 && r[1].last == 9);
    cr_assert_eq(SET("bytes=0-0,,-1,", 10), RANGE_OK, "empty list elements");
    cr_assert_eq(n, 2);
    cr_assert_eq(SET("bytes=0-0,20-30", 10), RANGE_OK, "the unsatisfiable one is dropped");
    cr_assert(n == 1 && r[0].last == 0);
    cr_assert_eq(SET("bytes=20-30,40-", 10), RANGE_UNSATISFIABLE);
    cr_assert_eq(SET("bytes=0-1,x", 10), RANGE_NONE, "one bad spec: the whole body");
    cr_assert_eq(SET("bytes=0-5,3-9", 10), RANGE_NONE, "12 bytes asked of 10");
    cr_assert_eq(SET("bytes=0-,0-", 10), RANGE_NONE);
    cr_assert_eq(SET("bytes=0-0,2-2,4-4,6-6,8-8,10-10,12-12,14-14,16-16,18-18,"
                     "20-20,22-22,24-24,26-26,28-28,30-30", 100), RANGE_OK);
    cr_assert_eq(n, 16);
    cr_assert_eq(SET("bytes=0-0,2-2,4-4,6-6,8-8,10-10,12-12,14-14,16-16,18-18,"
                     "20-20,22-22,24-24,26-26,28-28,30-30,32-32", 100), RANGE_NONE,
                 "17 ranges");
#undef SET
}

static struct http_accept ae(const char *v)
{
    struct http_accept a;
    http_accept_encoding(v, strlen(v), &a);
    return a;
}

Test(http_unit, accept_encoding)
{
    struct http_accept a = ae("gzip, deflate, br, zstd");
    cr_assert(a.br == 1000 && a.gzip == 1000 && a.identity == 1000);
    a = ae("");
    cr_assert(a.br == 0 && a.gzip == 0 && a.identity == 1000, "empty: identity only");
    a = ae("gzip;q=0.5, br;q=0");
    cr_assert(a.gzip == 500 && a.br == 0 && a.identity == 1000);
    a = ae("GZIP ; Q=0.25 ,identity;q=0");
    cr_assert(a.gzip == 250 && a.identity == 0);
    a = ae("*;q=0");
    cr_assert(a.gzip == 0 && a.br == 0 && a.identity == 0);
    a = ae("*;q=0, identity");
    cr_assert(a.gzip == 0 && a.identity == 1000);
    a = ae("*");
    cr_assert(a.gzip == 1000 && a.br == 1000);
    a = ae("x-gzip;q=1.000");
    cr_assert(a.gzip == 1000 && a.br == 0);
    a = ae("br;q=1.5, gzip;q=0.1234, identity;q=abc, deflate");
    cr_assert(a.br == 0 && a.gzip == 0 && a.identity == 1000, "bad weights leave it out");
    a = ae("br;level=5, gzip;q=0.001");
    cr_assert(a.br == 0 && a.gzip == 1, "a parameter other than q leaves it out");
}

Test(http_unit, target_authority)
{
    size_t off, len;
    const char *t = "http://Example.org:8080/x?y";
    cr_assert(http_target_authority(t, strlen(t), &off, &len));
    cr_assert_eq(len, 16);
    cr_assert_eq(strncmp(t + off, "Example.org:8080", len), 0);
    t = "https://h";
    cr_assert(http_target_authority(t, strlen(t), &off, &len));
    cr_assert(off == 8 && len == 1);
    cr_assert_not(http_target_authority("/x", 2, &off, &len));
    cr_assert_not(http_target_authority("http://u@h/", 11, &off, &len));
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

static const char *site_of(const char *host)
{
    return http_site_for_host(host, strlen(host))->name;
}

/* Exact names first, then the longest wildcard; port, case and a trailing
 * dot do not matter; anything else goes to the default site (""). */
Test(http_unit, site_by_host)
{
    static char *a[] = { "example.org", "*.example.org", NULL };
    static char *b[] = { "*.b.example.org", "[::1]", NULL };
    static char *c[] = { "www.example.org", NULL };
    static int lines[] = { 1, 2 };
    static struct site_conf sites[3];
    static struct config cfg;
    char **names[] = { a, b, c };
    snprintf(cfg.http.root, sizeof cfg.http.root, "/tmp");
    snprintf(cfg.http.index, sizeof cfg.http.index, "index.html");
    for (int i = 0; i < 3; i++) {
        snprintf(sites[i].name, sizeof sites[i].name, "%c", 'a' + i);
        snprintf(sites[i].root, sizeof sites[i].root, "/tmp");
        snprintf(sites[i].index, sizeof sites[i].index, "index.html");
        sites[i].server_names = names[i];
        sites[i].server_name_lines = lines;
        while (names[i][sites[i].nserver_names])
            sites[i].nserver_names++;
    }
    cfg.sites = sites;
    cfg.nsites = 3;
    cr_assert_eq(http_sites_init(&cfg), 0);
    cr_assert(http_sites_virtual());
    cr_expect_str_eq(site_of("example.org"), "a");
    cr_expect_str_eq(site_of("EXAMPLE.Org:8080"), "a");
    cr_expect_str_eq(site_of("example.org."), "a");
    cr_expect_str_eq(site_of("x.example.org"), "a");
    cr_expect_str_eq(site_of("b.example.org"), "a", "*.b.example.org wants one more label");
    cr_expect_str_eq(site_of("x.b.example.org:80"), "b", "the longest wildcard wins");
    cr_expect_str_eq(site_of("www.example.org"), "c", "an exact name beats a wildcard");
    cr_expect_str_eq(site_of("[::1]:8080"), "b");
    cr_expect_str_eq(site_of("[::1]"), "b");
    cr_expect_str_eq(site_of("xexample.org"), "");
    cr_expect_str_eq(site_of("example.org.evil"), "");
    cr_expect_str_eq(site_of("127.0.0.1"), "");
    cr_expect_str_eq(site_of(""), "");
    cr_expect_str_eq(http_site_default()->name, "");
    http_sites_free();
}

Test(http_unit, expires_rules)
{
    struct expires_rule rules[] = {
        { "*.css", false, 60 }, { "/assets/", true, 3600 }, { "*/index.html", false, 1 },
        { "*.htm", false, 2 },
    };
    struct site_opts o = { .expires = rules, .nexpires = 4 };
#define MATCH(path) http_expires_match(&o, path, strlen(path), "index.htm")
    cr_expect_eq(MATCH("/a.css"), 0);
    cr_expect_eq(MATCH("/assets/x.js"), 1);
    cr_expect_eq(MATCH("/assets/"), 1);
    cr_expect_eq(MATCH("/assets/a.css"), 0, "the first match wins");
    cr_expect_eq(MATCH("/assets"), -1);
    cr_expect_eq(MATCH("/x.js"), -1);
    cr_expect_eq(MATCH("/docs/"), 3, "a directory: its index's name");
    cr_expect_eq(MATCH("/docs/index.html"), 2);
    cr_expect_eq(MATCH("/a.CSS"), -1, "suffixes are case-sensitive, as paths are");
#undef MATCH
    o.nexpires = 0;
    cr_expect_eq(http_expires_match(&o, "/a.css", 6, "index.html"), -1);
}

static char listing_dir[] = "/tmp/preforkd-index-XXXXXX";

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *f)
{
    (void)st, (void)flag, (void)f;
    return remove(path);
}

static void touch(const char *name, const char *text)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", listing_dir, name);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "%s", path);
    fputs(text, f);
    fclose(f);
}

/* Directories first, names sorted, escaped in text and links; no hidden
 * files; symlinks only when they stay under the root. */
Test(http_unit, directory_listing)
{
    char path[PATH_MAX];
    cr_assert_not_null(mkdtemp(listing_dir));
    touch("b.txt", "12345");
    touch("a&<>\"'.txt", "x");
    touch(".hidden", "h");
    touch("javascript:alert(1)", "j");
    snprintf(path, sizeof path, "%s/sub", listing_dir);
    cr_assert_eq(mkdir(path, 0755), 0);
    snprintf(path, sizeof path, "%s/A dir", listing_dir);
    cr_assert_eq(mkdir(path, 0755), 0);
    snprintf(path, sizeof path, "%s/out", listing_dir);
    cr_assert_eq(symlink("/etc", path), 0);
    snprintf(path, sizeof path, "%s/in", listing_dir);
    cr_assert_eq(symlink("b.txt", path), 0);
    size_t len = 0;
    char *html = http_index_html(listing_dir, listing_dir, "/d<x>/", &len);
    cr_assert_not_null(html);
    cr_assert_eq(strlen(html), len);
    const char *order[] = {
        "<title>Index of /d&lt;x&gt;/</title>",
        "<a href=\"../\">../</a>",
        "<a href=\"A%20dir/\">A dir/</a></td><td>-</td><td>2",
        "<a href=\"sub/\">sub/</a>",
        "<a href=\"a%26%3C%3E%22%27.txt\">a&amp;&lt;&gt;&quot;&#39;.txt</a></td><td>1</td>",
        "<a href=\"b.txt\">b.txt</a></td><td>5</td><td>2",
        "<a href=\"in\">in</a></td><td>5</td>",
        "<a href=\"javascript%3Aalert%281%29\">javascript:alert(1)</a>",
    };
    const char *at = html;
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        const char *found = strstr(at, order[i]);
        cr_expect_not_null(found, "%s missing or out of order in:\n%s", order[i], html);
        if (found)
            at = found;
    }
    cr_expect_null(strstr(html, "hidden"));
    cr_expect_null(strstr(html, "\"out"), "a symlink out of the root is not listed");
    free(html);
    html = http_index_html(listing_dir, listing_dir, "/", &len);
    cr_assert_not_null(html);
    cr_expect_null(strstr(html, "../"), "the root has no parent link");
    free(html);
    nftw(listing_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    errno = 0;
    cr_expect_null(http_index_html("/tmp", listing_dir, "/gone/", &len));
    cr_expect_eq(errno, ENOENT);
}
