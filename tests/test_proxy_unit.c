/* Unit tests of the PROXY-header parser (workers/proxy_hdr.c): v1 and v2,
 * every malformed shape we know of, every truncation of a good header,
 * the size bounds, LOCAL and UNKNOWN, IPv6; and the listen section's
 * proxy_protocol and proxy_from keys (server/config.c). */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server/config.h"
#include "workers/proxy_hdr.h"

static struct proxy_hdr h;
static const char *why;

static int parse(const void *buf, size_t len)
{
    return proxy_hdr_parse(buf, len, &h, &why);
}

static int parse_text(const char *s)
{
    return parse(s, strlen(s));
}

static const char *text_of(const struct peer_addr *p)
{
    static char buf[2][INET6_ADDRSTRLEN];
    static int i;
    i ^= 1;
    return peer_addr_text(p, buf[i], sizeof buf[i]);
}

/* Every strict prefix of a good header asks for more. */
static void assert_prefixes_need_more(const void *buf, size_t full)
{
    struct proxy_hdr keep = h;
    for (size_t k = 0; k < full; k++)
        cr_assert_eq(parse(buf, k), 0, "prefix of %zu of %zu bytes: %s", k, full,
                     why ? why : "complete?");
    h = keep;
}

TestSuite(proxy_hdr);

/* --- version 1 ------------------------------------------------------------ */

Test(proxy_hdr, v1_tcp4_and_what_follows_stays)
{
    const char *s = "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\n";
    int n = parse_text(s);
    cr_assert_eq(n, (int)strlen("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"), "%s", why);
    cr_assert_eq(h.version, 1);
    cr_assert(!h.local);
    cr_assert_eq(h.src.family, AF_INET);
    cr_assert_str_eq(text_of(&h.src), "192.168.0.1");
    cr_assert_str_eq(text_of(&h.dst), "192.168.0.11");
    cr_assert_eq(h.src.port, 56324);
    cr_assert_eq(h.dst.port, 443);
    assert_prefixes_need_more(s, (size_t)n);
}

Test(proxy_hdr, v1_tcp6_full_compressed_and_v4_mapped)
{
    const char *full = "PROXY TCP6 2001:0db8:0000:0000:0000:0000:0000:0001 "
                       "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 0\r\n";
    cr_assert_eq(parse_text(full), (int)strlen(full), "%s", why);
    cr_assert_eq(h.src.family, AF_INET6);
    cr_assert_str_eq(text_of(&h.src), "2001:db8::1");
    cr_assert_eq(h.src.port, 65535);
    cr_assert_eq(h.dst.port, 0);
    cr_assert_eq(parse_text("PROXY TCP6 ::1 ::1 1 2\r\n"), 24, "%s", why);
    cr_assert_str_eq(text_of(&h.src), "::1");
    /* inet_ntop (so HAProxy) writes v4-mapped addresses this way */
    cr_assert_gt(parse_text("PROXY TCP6 ::ffff:10.0.0.1 ::1 1 2\r\n"), 0, "%s", why);
    cr_assert_str_eq(text_of(&h.src), "::ffff:10.0.0.1");
}

Test(proxy_hdr, v1_unknown_short_and_long)
{
    cr_assert_eq(parse_text("PROXY UNKNOWN\r\nxyz"), 15);
    cr_assert(h.local);
    cr_assert_eq(h.version, 1);
    /* the spec's worst case: exactly 107 bytes with CRLF; what is after
     * UNKNOWN is ignored */
    const char *worst = "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    cr_assert_eq(strlen(worst), PROXY_V1_MAX);
    cr_assert_eq(parse_text(worst), PROXY_V1_MAX, "%s", why);
    cr_assert(h.local);
    assert_prefixes_need_more(worst, PROXY_V1_MAX);
    cr_assert_eq(parse_text("PROXY UNKNOWN whatever it is\r\n"), 30);
}

Test(proxy_hdr, v1_longer_than_107_bytes)
{
    char s[200];
    snprintf(s, sizeof s, "PROXY UNKNOWN %0*d\r\n", 92, 0);   /* 108 bytes */
    cr_assert_eq(strlen(s), PROXY_V1_MAX + 1);
    cr_assert_eq(parse_text(s), -1);
    cr_assert_str_eq(why, "v1: no CRLF in the first 107 bytes");
    /* and without waiting for the CRLF that would come too late */
    cr_assert_eq(parse(s, PROXY_V1_MAX), -1);
    cr_assert_eq(parse(s, PROXY_V1_MAX - 1), 0);
}

Test(proxy_hdr, v1_malformed_shapes)
{
    static const char *const bad[] = {
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",          /* LF without CR */
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX",         /* CR without LF */
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n",
        "PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",       /* two spaces */
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",       /* trailing space */
        "PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",          /* a field missing */
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",      /* one too many */
        "PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n",       /* leading zero */
        "PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n",
        "PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n",
        "PROXY TCP4 ::1 ::1 1 2\r\n",                /* family mismatch */
        "PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY TCP6 1::2::3 ::1 1 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n",      /* leading zero */
        "PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1a 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 123456 2\r\n",
        "PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY UNKNOWNX\r\n",
        "PROXY \r\n",
        "PROXY TCP4\r\n",
        "PROXY TCP4 \r\n",
        "proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
        "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\t\r\n",
        "GET / HTTP/1.1\r\n",
        "\x16\x03\x01\x02\x00",                       /* a TLS ClientHello */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_eq(parse_text(bad[i]), -1, "accepted: %s", bad[i]);
        cr_assert_not_null(why);
    }
    /* a byte that is not printable ASCII, even before the line is done */
    cr_assert_eq(parse("PROXY TCP4 1.2\x80", 15), -1);
    cr_assert_eq(parse("PROXY TCP4 1.2\0", 15), -1);
}

/* A client that speaks first without a header is refused at its first
 * byte, not after a timeout. */
Test(proxy_hdr, not_a_header_is_refused_at_once)
{
    cr_assert_eq(parse("G", 1), -1);
    cr_assert_str_eq(why, "not a PROXY header");
    cr_assert_eq(parse("PROXI", 5), -1);
    cr_assert_eq(parse("\r\n\r\n\0\r\nQUIX", 12), -1);
    cr_assert_eq(parse("\r\nX", 3), -1);
    cr_assert_eq(parse("", 0), 0);
    cr_assert_eq(parse("PRO", 3), 0);
}

/* --- version 2 ------------------------------------------------------------ */

static const unsigned char sig[12] = {
    0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a
};

/* A v2 header: signature, ver_cmd, fam, body (len bytes) into out. */
static size_t v2(unsigned char *out, unsigned char ver_cmd, unsigned char fam,
                 const void *body, size_t len)
{
    memcpy(out, sig, 12);
    out[12] = ver_cmd;
    out[13] = fam;
    out[14] = (unsigned char)(len >> 8);
    out[15] = (unsigned char)len;
    if (len)
        memcpy(out + 16, body, len);
    return 16 + len;
}

static const unsigned char tcp4_body[12] = {
    203, 0, 113, 7,   127, 0, 0, 1,   0xd4, 0x31,   0x1f, 0x90    /* 54321, 8080 */
};

Test(proxy_hdr, v2_tcp4)
{
    unsigned char b[128];
    size_t n = v2(b, 0x21, 0x11, tcp4_body, sizeof tcp4_body);
    memcpy(b + n, "GET /", 5);
    cr_assert_eq(parse(b, n + 5), (int)n, "%s", why);
    cr_assert_eq(h.version, 2);
    cr_assert(!h.local);
    cr_assert_str_eq(text_of(&h.src), "203.0.113.7");
    cr_assert_str_eq(text_of(&h.dst), "127.0.0.1");
    cr_assert_eq(h.src.port, 54321);
    cr_assert_eq(h.dst.port, 8080);
    assert_prefixes_need_more(b, n);
}

Test(proxy_hdr, v2_tcp6_with_tlvs)
{
    unsigned char body[36 + 5 + 3], b[128];
    inet_pton(AF_INET6, "2001:db8::42", body);
    inet_pton(AF_INET6, "::1", body + 16);
    body[32] = 0x01; body[33] = 0xbb;       /* 443 */
    body[34] = 0x00; body[35] = 0x50;       /* 80 */
    /* ALPN "h2" (type 1), then an empty NOOP (type 4): TLVs tile the rest */
    memcpy(body + 36, "\x01\x00\x02h2", 5);
    memcpy(body + 41, "\x04\x00\x00", 3);
    size_t n = v2(b, 0x21, 0x21, body, sizeof body);
    cr_assert_eq(parse(b, n), (int)n, "%s", why);
    cr_assert_eq(h.src.family, AF_INET6);
    cr_assert_str_eq(text_of(&h.src), "2001:db8::42");
    cr_assert_eq(h.src.port, 443);
    cr_assert_eq(h.dst.port, 80);
    assert_prefixes_need_more(b, n);
}

Test(proxy_hdr, v2_local_keeps_the_socket_address)
{
    unsigned char b[64];
    size_t n = v2(b, 0x20, 0x00, NULL, 0);
    cr_assert_eq(parse(b, n), 16, "%s", why);
    cr_assert(h.local);
    /* LOCAL: the block is skipped whatever it holds */
    n = v2(b, 0x20, 0x11, tcp4_body, 5);
    cr_assert_eq(parse(b, n), 21, "%s", why);
    cr_assert(h.local);
}

Test(proxy_hdr, v2_unspec_udp_unix_fall_back_to_the_socket_address)
{
    unsigned char b[600], body[216 + 3] = { 0 };
    cr_assert_eq(parse(b, v2(b, 0x21, 0x00, NULL, 0)), 16, "%s", why);
    cr_assert(h.local);
    cr_assert_eq(parse(b, v2(b, 0x21, 0x12, tcp4_body, 12)), 28, "%s", why);
    cr_assert(h.local);
    cr_assert_eq(parse(b, v2(b, 0x21, 0x22, body, 36)), 52, "%s", why);
    cr_assert(h.local);
    cr_assert_eq(parse(b, v2(b, 0x21, 0x31, body, 216)), 232, "%s", why);
    cr_assert(h.local);
}

Test(proxy_hdr, v2_size_bounds)
{
    static unsigned char b[PROXY_HDR_MAX + 64], body[PROXY_V2_MAX_BODY + 1];
    memcpy(body, tcp4_body, 12);
    /* one NOOP TLV pads the body to exactly the limit */
    size_t pad = PROXY_V2_MAX_BODY - 12 - 3;
    body[12] = 0x04;
    body[13] = (unsigned char)(pad >> 8);
    body[14] = (unsigned char)pad;
    size_t n = v2(b, 0x21, 0x11, body, PROXY_V2_MAX_BODY);
    cr_assert_eq(n, PROXY_HDR_MAX);
    cr_assert_eq(parse(b, n), PROXY_HDR_MAX, "%s", why);
    cr_assert_str_eq(text_of(&h.src), "203.0.113.7");
    /* one more byte: refused as soon as the length is in, not buffered */
    body[14] = (unsigned char)(pad + 1);
    v2(b, 0x21, 0x11, body, PROXY_V2_MAX_BODY + 1);
    cr_assert_eq(parse(b, 16), -1);
    cr_assert_str_eq(why, "v2: longer than 1024 bytes of addresses and TLVs");
    cr_assert_eq(parse(b, 15), 0);
    /* the largest length field */
    b[14] = b[15] = 0xff;
    cr_assert_eq(parse(b, 16), -1);
}

Test(proxy_hdr, v2_malformed_shapes)
{
    unsigned char b[128], body[40] = { 0 };
    memcpy(body, tcp4_body, 12);
    struct { unsigned char ver_cmd, fam; size_t len; const char *what; } bad[] = {
        { 0x11, 0x11, 12, "version 1 in a v2 header" },
        { 0x31, 0x11, 12, "version 3" },
        { 0x22, 0x11, 12, "command 2" },
        { 0x2f, 0x11, 12, "command 15" },
        { 0x21, 0x41, 12, "family 4" },
        { 0x21, 0x13, 12, "transport 3" },
        { 0x21, 0x01, 12, "UNSPEC family with STREAM" },
        { 0x21, 0x10, 12, "INET with UNSPEC transport" },
        { 0x21, 0x11, 8, "shorter than IPv4 addresses" },
        { 0x21, 0x21, 12, "shorter than IPv6 addresses" },
        { 0x21, 0x11, 14, "2 bytes after the addresses: not a TLV" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t n = v2(b, bad[i].ver_cmd, bad[i].fam, body, bad[i].len);
        cr_assert_eq(parse(b, n), -1, "accepted: %s", bad[i].what);
    }
    /* a TLV whose length runs past the header */
    memcpy(body + 12, "\x05\x00\x0a" "abcd", 7);
    size_t n = v2(b, 0x21, 0x11, body, 19);
    cr_assert_eq(parse(b, n), -1);
    cr_assert_str_eq(why, "v2: a TLV runs past the header's length");
    /* version and command are judged as soon as their byte is in */
    v2(b, 0x11, 0x11, body, 12);
    cr_assert_eq(parse(b, 13), -1);
    cr_assert_eq(parse(b, 12), 0);
    /* a signature that differs at its fifth byte */
    v2(b, 0x21, 0x11, body, 12);
    b[4] = 'X';
    cr_assert_eq(parse(b, 5), -1);
    cr_assert_eq(parse(b, 4), 0);
}

/* --- configuration -------------------------------------------------------- */

static char dir[64], path[128], err[1024];
static struct config cfg;

static void conf_setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/preforkd-proxyconf-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/p.conf", dir);
}

static void conf_teardown(void)
{
    config_free(&cfg);
    unlink(path);
    rmdir(dir);
}

static int load(const char *text)
{
    FILE *f = fopen(path, "we");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
    config_free(&cfg);
    return config_load(path, &cfg, err, sizeof err);
}

TestSuite(proxy_conf, .init = conf_setup, .fini = conf_teardown);

Test(proxy_conf, defaults_off_and_loopback)
{
    cr_assert_eq(load("listen { address = \"127.0.0.1:0\" protocol = \"echo\" }\n"), 0, "%s", err);
    cr_assert(!cfg.listens[0].proxy_protocol);
    cr_assert_eq(cfg.listens[0].nproxy_from, 1);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    cr_assert(cidr_match(cfg.listens[0].proxy_from, 1, (struct sockaddr *)&a));
}

Test(proxy_conf, list_cidr_and_a_comment_inside)
{
    cr_assert_eq(load("listen {\n"
                      "  address = \"127.0.0.1:0\"  protocol = \"echo\"\n"
                      "  # the balancers\n"
                      "  proxy_protocol = true   # v1 or v2\n"
                      "  proxy_from = {\"10.0.0.0/8\", # the LAN\n"
                      "                \"::1\"}\n"
                      "}\n"
                      "listen { address = \"127.0.0.1:1\" protocol = \"chat\"\n"
                      "  proxy_from += {\"192.0.2.1\"} }\n"), 0, "%s", err);
    const struct listen_conf *l = &cfg.listens[0];
    cr_assert(l->proxy_protocol);
    cr_assert_eq(l->nproxy_from, 2);
    struct sockaddr_in a = { .sin_family = AF_INET };
    inet_pton(AF_INET, "10.200.0.9", &a.sin_addr);
    cr_assert(cidr_match(l->proxy_from, l->nproxy_from, (struct sockaddr *)&a));
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    cr_assert(!cidr_match(l->proxy_from, l->nproxy_from, (struct sockaddr *)&a));
    /* `+=` appends to the default */
    l = &cfg.listens[1];
    cr_assert(!l->proxy_protocol);
    cr_assert_eq(l->nproxy_from, 2);
    cr_assert(cidr_match(l->proxy_from, l->nproxy_from, (struct sockaddr *)&a));
}

Test(proxy_conf, errors_say_file_and_line)
{
    char want[256];
    cr_assert_eq(load("listen {\n  address = \"127.0.0.1:0\"\n  protocol = \"echo\"\n"
                      "  proxy_from = {\"10.0.0.0/33\"}\n}\n"), -1);
    snprintf(want, sizeof want, "%s:4: listen.proxy_from: \"10.0.0.0/33\" is not an IP address",
             path);
    cr_assert(strstr(err, want), "%s", err);
    cr_assert_eq(load("listen {\n  address = \"127.0.0.1:0\"\n  protocol = \"echo\"\n"
                      "  proxy_protocol = maybe\n}\n"), -1);
    snprintf(want, sizeof want, "%s:4: listen.proxy_protocol: must be true or false", path);
    cr_assert(strstr(err, want), "%s", err);
    cr_assert_eq(load("\n\nlisten { address = \"udp:127.0.0.1:0\" protocol = \"echo\"\n"
                      "  proxy_protocol = true }\n"), -1);
    snprintf(want, sizeof want, "%s:3: listen: proxy_protocol needs a stream address", path);
    cr_assert(strstr(err, want), "%s", err);
    cr_assert_eq(load("app a { command = {\"/bin/true\"}\n"
                      "  listen { address = \"127.0.0.1:0\" proxy_protocol = true } }\n"), -1);
    cr_assert(strstr(err, ":2: ") && strstr(err, "proxy_protocol"), "%s", err);
}
