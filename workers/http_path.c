/* http_path: percent-decoding, path normalisation, Range and date parsing.
 * The normaliser is the only gate between a URL and the file system, so it
 * refuses anything ambiguous instead of guessing. */
#include "workers/http_path.h"

#include <arpa/inet.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>

static int hexval(int ch)
{
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

/* tchar (RFC 9110 5.6.2): visible ASCII except delimiters. */
static bool is_tchar(unsigned char c)
{
    static const char extra[] = "!#$%&'*+-.^_`|~";
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && memchr(extra, c, sizeof extra - 1));
}

size_t http_token_len(const char *s, size_t len)
{
    size_t i = 0;
    while (i < len && is_tchar((unsigned char)s[i]))
        i++;
    return i;
}

/* unreserved / sub-delims (RFC 3986 2.2, 2.3), without ','. */
static bool is_reg_name_char(unsigned char c)
{
    static const char extra[] = "-._~!$&'()*+;=";
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && memchr(extra, c, sizeof extra - 1));
}

/* Inside the brackets of an IP-literal: IPv6address or IPvFuture
 * ("v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" )). */
static bool ip_literal_valid(const char *v, size_t len)
{
    if (len > 1 && (v[0] == 'v' || v[0] == 'V')) {
        size_t i = 1;
        while (i < len && hexval(v[i]) >= 0)
            i++;
        if (i == 1 || i + 1 >= len || v[i] != '.')
            return false;
        for (i++; i < len; i++)
            if (!is_reg_name_char((unsigned char)v[i]) && v[i] != ',' && v[i] != ':')
                return false;
        return true;
    }
    char buf[INET6_ADDRSTRLEN];
    unsigned char addr[16];
    if (len == 0 || len >= sizeof buf)
        return false;
    memcpy(buf, v, len);
    buf[len] = '\0';
    return inet_pton(AF_INET6, buf, addr) == 1;
}

bool http_host_valid(const char *v, size_t len)
{
    size_t i = 0;
    if (len && v[0] == '[') {
        const char *end = memchr(v, ']', len);
        if (!end || !ip_literal_valid(v + 1, (size_t)(end - v) - 1))
            return false;
        i = (size_t)(end - v) + 1;
    } else {
        while (i < len && v[i] != ':') {
            if (v[i] == '%') {
                if (i + 2 >= len || hexval(v[i + 1]) < 0 || hexval(v[i + 2]) < 0)
                    return false;
                i += 3;
            } else if (is_reg_name_char((unsigned char)v[i])) {
                i++;
            } else {
                return false;
            }
        }
        if (i == 0)
            return false;               /* no host */
    }
    if (i == len)
        return true;
    if (v[i] != ':')
        return false;
    unsigned port = 0;                  /* port = *DIGIT: may be empty */
    for (i++; i < len; i++) {
        if (v[i] < '0' || v[i] > '9')
            return false;
        port = port * 10 + (unsigned)(v[i] - '0');
        if (port > 65535)
            return false;
    }
    return true;
}

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

void http_te_add(struct http_te *te, const char *v, size_t len)
{
    size_t i = 0;
    for (;;) {
        while (i < len && (is_ows(v[i]) || v[i] == ','))
            i++;                        /* empty list elements are allowed */
        if (i == len)
            return;
        size_t n = http_token_len(v + i, len - i);
        if (n == 0) {
            te->bad = true;
            return;
        }
        bool chunked = n == 7 && strncasecmp(v + i, "chunked", 7) == 0;
        for (i += n; i < len && is_ows(v[i]); i++)
            ;
        if (i < len && v[i] == ';') {   /* parameters; chunked takes none */
            if (chunked) {
                te->bad = true;
                return;
            }
            while (i < len && v[i] != ',')
                i++;
        }
        if (i < len && v[i] != ',') {
            te->bad = true;
            return;
        }
        if (chunked && te->chunked < UINT8_MAX)
            te->chunked++;
        else if (!chunked && te->other < UINT8_MAX)
            te->other++;
        te->last_chunked = chunked;
    }
}

int http_te_status(const struct http_te *te)
{
    if (te->bad || !te->last_chunked || te->chunked != 1)
        return 400;
    return te->other ? 501 : 0;
}

/* Offset of the path in an absolute-form target ("http://host/p"), 0 for
 * origin form, len when the target has no path at all; -400 when its
 * authority is not a valid host[:port] (userinfo included: RFC 9110 4.2.4
 * says to treat it as an error). */
static long skip_scheme_host(const char *t, size_t len)
{
    size_t i;
    if (len >= 7 && strncasecmp(t, "http://", 7) == 0)
        i = 7;
    else if (len >= 8 && strncasecmp(t, "https://", 8) == 0)
        i = 8;
    else
        return 0;
    size_t host = i;
    while (i < len && t[i] != '/' && t[i] != '?' && t[i] != '#')
        i++;
    if (!http_host_valid(t + host, i - host))
        return -400;
    return (long)i;
}

/* The segment out[seg..*o) just ended: drop ".", refuse "..". */
static int end_segment(char *out, size_t *o, size_t seg)
{
    size_t n = *o - seg;
    if (n == 1 && out[seg] == '.')
        *o = seg;
    else if (n == 2 && out[seg] == '.' && out[seg + 1] == '.')
        return -403;
    return 0;
}

/* Next decoded byte at t[*i] (advancing *i), or -status. */
static int next_byte(const char *t, size_t len, size_t *i)
{
    int ch = (unsigned char)t[*i];
    if (ch == '%') {
        if (*i + 2 >= len)
            return -400;
        int hi = hexval(t[*i + 1]), lo = hexval(t[*i + 2]);
        if (hi < 0 || lo < 0)
            return -400;
        *i += 2;
        ch = hi * 16 + lo;
        if (ch == '/' || ch == 0)
            return -403;    /* an encoded separator or NUL hides a path */
    }
    if (ch == '\\')
        return -403;
    return ch;
}

int http_path_normalize(const char *t, size_t len, char *out, size_t cap)
{
    long skip = skip_scheme_host(t, len);
    if (skip < 0)
        return (int)skip;
    size_t i = (size_t)skip;
    if (i > 0 && (i == len || t[i] != '/')) {   /* "http://host" or "http://host?q" */
        t = "/";
        len = 1;
        i = 0;
    }
    if (i >= len || t[i] != '/' || cap < 2)
        return -400;
    size_t o = 0, seg = 1;
    out[o++] = '/';
    for (i++; i < len && t[i] != '?' && t[i] != '#'; i++) {
        if (t[i] == '/') {
            if (end_segment(out, &o, seg) < 0)
                return -403;
            if (out[o - 1] != '/')
                out[o++] = '/';
            seg = o;
            continue;
        }
        int ch = next_byte(t, len, &i);
        if (ch < 0)
            return ch;
        if (o + 2 > cap - 1)
            return -414;
        out[o++] = (char)ch;
    }
    if (end_segment(out, &o, seg) < 0)
        return -403;
    out[o] = '\0';
    return (int)o;
}

size_t http_target_path_len(const char *t, size_t len)
{
    size_t i = 0;
    while (i < len && t[i] != '?' && t[i] != '#')
        i++;
    return i;
}

/* Decimal digits at v[*i]; false when there are none or on overflow. */
static bool parse_u64(const char *v, size_t len, size_t *i, uint64_t *out)
{
    size_t start = *i;
    uint64_t n = 0;
    while (*i < len && v[*i] >= '0' && v[*i] <= '9') {
        if (n > (UINT64_MAX - 9) / 10)
            return false;
        n = n * 10 + (uint64_t)(v[*i] - '0');
        (*i)++;
    }
    *out = n;
    return *i > start;
}

enum http_range http_range_parse(const char *v, size_t len, uint64_t size,
                                 uint64_t *first, uint64_t *last)
{
    if (len < 6 || strncasecmp(v, "bytes=", 6) != 0)
        return RANGE_NONE;
    size_t i = 6;
    uint64_t a = 0, b = 0;
    bool has_a = parse_u64(v, len, &i, &a);
    if (i >= len || v[i] != '-')
        return RANGE_NONE;
    i++;
    bool has_b = parse_u64(v, len, &i, &b);
    if (i != len || (!has_a && !has_b) || (has_a && has_b && b < a))
        return RANGE_NONE;      /* several ranges or garbage: ignore */
    if (!has_a) {               /* suffix: the last b bytes */
        if (b == 0 || size == 0)
            return RANGE_UNSATISFIABLE;
        *first = b >= size ? 0 : size - b;
        *last = size - 1;
        return RANGE_OK;
    }
    if (a >= size)
        return RANGE_UNSATISFIABLE;
    *first = a;
    *last = has_b && b < size ? b : size - 1;
    return RANGE_OK;
}

static const char wdays[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };

static char *put2(char *p, int v)
{
    *p++ = (char)('0' + v / 10 % 10);
    *p++ = (char)('0' + v % 10);
    return p;
}

void http_date_format(time_t t, char out[HTTP_DATE_LEN + 1])
{
    struct tm tm;
    if (!gmtime_r(&t, &tm) || tm.tm_year + 1900 > 9999 || tm.tm_year + 1900 < 0)
        memset(&tm, 0, sizeof tm);      /* absurd mtimes: print a fixed date */
    int year = tm.tm_year + 1900;
    char *p = out;
    memcpy(p, wdays[tm.tm_wday % 7], 3);
    p += 3;
    *p++ = ',';
    *p++ = ' ';
    p = put2(p, tm.tm_mday);
    *p++ = ' ';
    memcpy(p, months[tm.tm_mon % 12], 3);
    p += 3;
    *p++ = ' ';
    p = put2(put2(p, year / 100), year % 100);
    *p++ = ' ';
    p = put2(p, tm.tm_hour);
    *p++ = ':';
    p = put2(p, tm.tm_min);
    *p++ = ':';
    p = put2(p, tm.tm_sec);
    memcpy(p, " GMT", 5);
}

time_t http_date_parse(const char *s, size_t len)
{
    char buf[64];
    if (len != HTTP_DATE_LEN)
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    struct tm tm = { 0 };
    const char *end = strptime(buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    if (!end || *end != '\0')
        return -1;
    return timegm(&tm);
}
