/* http_path: percent-decoding, path normalisation, Range and date parsing.
 * The normaliser is the only gate between a URL and the file system, so it
 * refuses anything ambiguous instead of guessing. */
#include "workers/http_path.h"

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

/* Offset of the path in an absolute-form target ("http://host/p"), 0 for
 * origin form, or len when the target has no path at all. */
static size_t skip_scheme_host(const char *t, size_t len)
{
    size_t i;
    if (len >= 7 && strncasecmp(t, "http://", 7) == 0)
        i = 7;
    else if (len >= 8 && strncasecmp(t, "https://", 8) == 0)
        i = 8;
    else
        return 0;
    while (i < len && t[i] != '/')
        i++;
    return i;
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
    size_t i = skip_scheme_host(t, len);
    if (i == len && i > 0) {            /* "http://host" alone */
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
