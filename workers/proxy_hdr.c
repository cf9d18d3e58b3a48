/* proxy_hdr: see workers/proxy_hdr.h. Anything that does not match the
 * spec exactly is refused (it says so: "any sequence which does not exactly
 * match the protocol must be discarded"), as early as the bytes show it. */
#include "workers/proxy_hdr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

static const char v1_sig[] = "PROXY ";
static const unsigned char v2_sig[12] = {
    0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a
};

static size_t min_size(size_t a, size_t b) { return a < b ? a : b; }

static int refuse(const char **why, const char *reason)
{
    *why = reason;
    return -1;
}

/* --- version 1: "PROXY TCP4 SRC DST SPORT DPORT\r\n" ----------------------- */

/* A decimal port: "0", or 1 to 5 digits without a leading zero, <= 65535. */
static bool v1_port(const char *s, size_t n, uint16_t *port)
{
    unsigned long v = 0;
    if (n == 0 || n > 5 || (s[0] == '0' && n > 1))
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (v > 65535)
        return false;
    *port = (uint16_t)v;
    return true;
}

/* An address in the family's canonical text form. inet_pton is strict here
 * (IPv4: exactly four decimal numbers, no leading zeros); IPv6 also takes the
 * "::ffff:1.2.3.4" form that inet_ntop, and so HAProxy, writes. */
static bool v1_addr(const char *s, size_t n, int family, struct peer_addr *p)
{
    char text[INET6_ADDRSTRLEN];
    if (n == 0 || n >= sizeof text || n > (family == AF_INET ? 15u : 45u))
        return false;
    memcpy(text, s, n);
    text[n] = '\0';
    if (inet_pton(family, text, p->addr) != 1)
        return false;
    p->family = (uint8_t)family;
    return true;
}

/* Split "A B C D" (exactly one space between, none around) into 4 fields. */
static bool v1_fields(const char *s, size_t n, const char *f[4], size_t fl[4])
{
    size_t k = 0, start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && s[i] != ' ')
            continue;
        if (k == 4 || i == start)
            return false;           /* a fifth field, or an empty one */
        f[k] = s + start;
        fl[k++] = i - start;
        start = i + 1;
    }
    return k == 4;
}

/* The line between "PROXY " and CRLF: s, n bytes. */
static int v1_line(const char *s, size_t n, struct proxy_hdr *out, const char **why)
{
    if (n >= 7 && memcmp(s, "UNKNOWN", 7) == 0 && (n == 7 || s[7] == ' ')) {
        out->local = true;          /* the rest of the line is to be ignored */
        return 0;
    }
    if (n < 5 || memcmp(s, "TCP", 3) != 0 || (s[3] != '4' && s[3] != '6') || s[4] != ' ')
        return refuse(why, "v1: the protocol is not TCP4, TCP6 or UNKNOWN");
    int family = s[3] == '4' ? AF_INET : AF_INET6;
    const char *f[4];
    size_t fl[4];
    if (!v1_fields(s + 5, n - 5, f, fl))
        return refuse(why, "v1: not four fields separated by single spaces");
    if (!v1_addr(f[0], fl[0], family, &out->src) || !v1_addr(f[1], fl[1], family, &out->dst))
        return refuse(why, "v1: an address is not in the family's canonical form");
    if (!v1_port(f[2], fl[2], &out->src.port) || !v1_port(f[3], fl[3], &out->dst.port))
        return refuse(why, "v1: a port is not a decimal number 0..65535 without "
                      "leading zeros");
    return 0;
}

static int parse_v1(const unsigned char *buf, size_t len, struct proxy_hdr *out,
                    const char **why)
{
    size_t sig = sizeof v1_sig - 1, n = min_size(len, PROXY_V1_MAX);
    if (memcmp(buf, v1_sig, min_size(len, sig)) != 0)
        return refuse(why, "not a PROXY header");
    for (size_t i = 0; i < n; i++) {
        if (buf[i] == '\r') {
            if (i + 1 == PROXY_V1_MAX)
                break;              /* its LF would be byte 108 */
            if (i + 1 == len)
                return 0;
            if (buf[i + 1] != '\n')
                return refuse(why, "v1: CR without LF");
            out->version = 1;
            if (v1_line((const char *)buf + sig, i - sig, out, why) < 0)
                return -1;
            return (int)(i + 2);
        }
        if (buf[i] < 0x20 || buf[i] > 0x7e)
            return refuse(why, "v1: a byte that is not printable US-ASCII before CRLF");
    }
    if (len >= PROXY_V1_MAX)
        return refuse(why, "v1: no CRLF in the first 107 bytes");
    return 0;
}

/* --- version 2: signature, version/command, family/protocol, length ------- */

/* The family/protocol byte (the 14th): its address block's size, or -1 for
 * the combinations the spec does not list. */
static int v2_addr_size(unsigned char fam)
{
    switch (fam) {
    case 0x00: return 0;            /* UNSPEC */
    case 0x11: case 0x12: return 12;    /* TCP, UDP over IPv4 */
    case 0x21: case 0x22: return 36;    /* over IPv6 */
    case 0x31: case 0x32: return 216;   /* UNIX stream, datagram */
    default:   return -1;
    }
}

/* TLVs (type, 16-bit length, value) must tile the rest of the header. */
static bool v2_tlvs_fit(const unsigned char *p, size_t n)
{
    while (n > 0) {
        if (n < 3)
            return false;
        size_t vlen = (size_t)p[1] << 8 | p[2];
        if (3 + vlen > n)
            return false;
        p += 3 + vlen;
        n -= 3 + vlen;
    }
    return true;
}

/* TCP over IPv4 or IPv6: the client and where it connected. */
static void v2_inet(const unsigned char *a, unsigned char fam, struct proxy_hdr *out)
{
    size_t alen = fam == 0x11 ? 4 : 16;
    int family = fam == 0x11 ? AF_INET : AF_INET6;
    out->src.family = out->dst.family = (uint8_t)family;
    memcpy(out->src.addr, a, alen);
    memcpy(out->dst.addr, a + alen, alen);
    out->src.port = (uint16_t)(a[2 * alen] << 8 | a[2 * alen + 1]);
    out->dst.port = (uint16_t)(a[2 * alen + 2] << 8 | a[2 * alen + 3]);
}

/* What the first min(len, 16) bytes already show to be wrong, or NULL. */
static const char *v2_fixed_problem(const unsigned char *buf, size_t len)
{
    if (memcmp(buf, v2_sig, min_size(len, sizeof v2_sig)) != 0)
        return "not a PROXY header";
    if (len > 12 && (buf[12] >> 4) != 2)
        return "v2: version is not 2";
    if (len > 12 && (buf[12] & 0x0f) > 1)
        return "v2: command is neither LOCAL nor PROXY";
    if (len > 13 && v2_addr_size(buf[13]) < 0)
        return "v2: unknown address family or transport protocol";
    if (len > 15 && ((size_t)buf[14] << 8 | buf[15]) > PROXY_V2_MAX_BODY)
        return "v2: longer than 1024 bytes of addresses and TLVs";
    return NULL;
}

static int parse_v2(const unsigned char *buf, size_t len, struct proxy_hdr *out,
                    const char **why)
{
    const char *problem = v2_fixed_problem(buf, len);
    if (problem)
        return refuse(why, problem);
    if (len < PROXY_V2_FIXED)
        return 0;
    size_t body = (size_t)buf[14] << 8 | buf[15];
    if (len < PROXY_V2_FIXED + body)
        return 0;
    out->version = 2;
    unsigned char fam = buf[13];
    size_t asize = (size_t)v2_addr_size(fam);
    /* LOCAL (a balancer's own health check): the block is to be skipped. */
    if ((buf[12] & 0x0f) == 0) {
        out->local = true;
        return (int)(PROXY_V2_FIXED + body);
    }
    if (body < asize)
        return refuse(why, "v2: the length is shorter than the addresses");
    const unsigned char *a = buf + PROXY_V2_FIXED;
    if (fam != 0x00 && !v2_tlvs_fit(a + asize, body - asize))
        return refuse(why, "v2: a TLV runs past the header's length");
    if (fam == 0x11 || fam == 0x21)
        v2_inet(a, fam, out);
    else
        out->local = true;          /* UNSPEC, UDP, UNIX: not a TCP client */
    return (int)(PROXY_V2_FIXED + body);
}

int proxy_hdr_parse(const unsigned char *buf, size_t len, struct proxy_hdr *out,
                    const char **why)
{
    memset(out, 0, sizeof *out);
    *why = NULL;
    if (len == 0)
        return 0;
    if (buf[0] == v1_sig[0])
        return parse_v1(buf, len, out, why);
    if (buf[0] == v2_sig[0])
        return parse_v2(buf, len, out, why);
    return refuse(why, "not a PROXY header");
}
