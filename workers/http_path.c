/* http_path: percent-decoding, path normalisation, Range and date parsing.
 * The normaliser is the only gate between a URL and the file system, so it
 * refuses anything ambiguous instead of guessing. */
#include "workers/http_path.h"

#include <arpa/inet.h>
#include <stdbool.h>
#include <stdlib.h>
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

bool http_target_authority(const char *t, size_t len, size_t *off, size_t *alen)
{
    long p = skip_scheme_host(t, len);
    if (p <= 0)
        return false;
    *off = (size_t)(t[4] == ':' ? 7 : 8);
    *alen = (size_t)p - *off;
    return true;
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

/* One range-spec of v[*i..): first-last, a-, or -n (suffix). RANGE_NONE
 * when malformed; RANGE_UNSATISFIABLE when it is not in the body. */
static enum http_range one_range(const char *v, size_t len, size_t *i, uint64_t size,
                                 struct http_byte_range *r, uint64_t *asked)
{
    uint64_t a = 0, b = 0;
    bool has_a = parse_u64(v, len, i, &a);
    if (*i >= len || v[*i] != '-')
        return RANGE_NONE;
    (*i)++;
    bool has_b = parse_u64(v, len, i, &b);
    if ((!has_a && !has_b) || (has_a && has_b && b < a))
        return RANGE_NONE;
    if (!has_a) {               /* suffix: the last b bytes */
        if (b == 0 || size == 0)
            return RANGE_UNSATISFIABLE;
        r->first = b >= size ? 0 : size - b;
        r->last = size - 1;
    } else {
        if (a >= size)
            return RANGE_UNSATISFIABLE;
        r->first = a;
        r->last = has_b && b < size ? b : size - 1;
    }
    *asked += r->last - r->first + 1;
    return RANGE_OK;
}

static int range_cmp(const void *x, const void *y)
{
    const struct http_byte_range *a = x, *b = y;
    return a->first < b->first ? -1 : a->first > b->first;
}

enum http_range http_ranges_parse(const char *v, size_t len, uint64_t size,
                                  struct http_byte_range out[HTTP_RANGES_MAX], size_t *n)
{
    if (len < 6 || strncasecmp(v, "bytes=", 6) != 0)
        return RANGE_NONE;
    size_t i = 6, specs = 0;
    uint64_t asked = 0;
    *n = 0;
    for (;;) {
        while (i < len && (is_ows(v[i]) || v[i] == ','))
            i++;                        /* 1#range-spec: empty elements, OWS */
        if (i == len)
            break;
        if (++specs > HTTP_RANGES_MAX)
            return RANGE_NONE;
        enum http_range st = one_range(v, len, &i, size, &out[*n], &asked);
        if (st == RANGE_NONE)
            return RANGE_NONE;
        if (st == RANGE_OK)
            (*n)++;
        while (i < len && is_ows(v[i]))
            i++;
        if (i < len && v[i] != ',')
            return RANGE_NONE;
    }
    if (specs == 0)
        return RANGE_NONE;
    if (*n == 0)
        return RANGE_UNSATISFIABLE;
    if (asked > size)
        return RANGE_NONE;
    qsort(out, *n, sizeof *out, range_cmp);
    size_t m = 0;
    for (size_t k = 1; k < *n; k++) {
        if (out[k].first <= out[m].last + 1) {
            if (out[k].last > out[m].last)
                out[m].last = out[k].last;
        } else {
            out[++m] = out[k];
        }
    }
    *n = m + 1;
    return RANGE_OK;
}

/* qvalue (RFC 9110 12.4.2): "0" ["." 0*3DIGIT] / "1" ["." 0*3"0"], in
 * thousandths; -1 when malformed. */
static int parse_qvalue(const char *v, size_t len)
{
    if (len == 0 || (v[0] != '0' && v[0] != '1') || len > 5 || (len > 1 && v[1] != '.'))
        return -1;
    int q = (v[0] - '0') * 1000, scale = 100;
    for (size_t i = 2; i < len; i++, scale /= 10) {
        if (v[i] < '0' || v[i] > '9')
            return -1;
        q += (v[i] - '0') * scale;
    }
    return q > 1000 ? -1 : q;
}

/* One element "coding [OWS ; OWS q=qvalue]" at v[*i..), up to its comma:
 * its name's length at *name (from *start) and its weight, or -1. */
static int accept_element(const char *v, size_t len, size_t *i, size_t *start, size_t *name)
{
    *start = *i;
    *name = http_token_len(v + *i, len - *i);
    *i += *name;
    int q = 1000;
    while (*i < len && is_ows(v[*i]))
        (*i)++;
    if (*i < len && v[*i] == ';') {
        for ((*i)++; *i < len && is_ows(v[*i]); (*i)++)
            ;
        size_t end = *i;
        while (end < len && v[end] != ',' && !is_ows(v[end]))
            end++;
        q = end - *i > 2 && (v[*i] == 'q' || v[*i] == 'Q') && v[*i + 1] == '='
            ? parse_qvalue(v + *i + 2, end - *i - 2) : -1;
        for (*i = end; *i < len && is_ows(v[*i]); (*i)++)
            ;
    }
    if (*name == 0 || (*i < len && v[*i] != ','))
        q = -1;
    while (*i < len && v[*i] != ',')
        (*i)++;                         /* a bad element is skipped whole */
    return q;
}

void http_accept_encoding(const char *v, size_t len, struct http_accept *a)
{
    int br = -1, gzip = -1, identity = -1, star = -1;
    for (size_t i = 0;;) {
        while (i < len && (is_ows(v[i]) || v[i] == ','))
            i++;
        if (i == len)
            break;
        size_t start, n;
        int q = accept_element(v, len, &i, &start, &n);
        const char *c = v + start;
        if (q < 0)
            continue;
        if (n == 2 && strncasecmp(c, "br", 2) == 0)
            br = q;
        else if ((n == 4 && strncasecmp(c, "gzip", 4) == 0) ||
                 (n == 6 && strncasecmp(c, "x-gzip", 6) == 0))
            gzip = q;
        else if (n == 8 && strncasecmp(c, "identity", 8) == 0)
            identity = q;
        else if (n == 1 && c[0] == '*')
            star = q;
    }
    a->br = (uint16_t)(br >= 0 ? br : star >= 0 ? star : 0);
    a->gzip = (uint16_t)(gzip >= 0 ? gzip : star >= 0 ? star : 0);
    a->identity = (uint16_t)(identity >= 0 ? identity : star >= 0 ? star : 1000);
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
