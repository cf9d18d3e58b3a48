/* formats: a strict JSON syntax checker and a Prometheus text exposition
 * checker for the status tests (no JSON library is a project dependency). */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/harness.h"

static const char *json_value(const char *p, int depth);

static const char *skip_ws(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    return p;
}

static const char *json_string(const char *p)
{
    if (*p++ != '"')
        return NULL;
    while (*p && *p != '"') {
        if ((unsigned char)*p < 0x20)
            return NULL;
        if (*p == '\\') {
            p++;
            if (*p == 'u') {
                for (int i = 1; i <= 4; i++)
                    if (!isxdigit((unsigned char)p[i]))
                        return NULL;
                p += 4;
            } else if (!strchr("\"\\/bfnrt", *p)) {
                return NULL;
            }
        }
        p++;
    }
    return *p == '"' ? p + 1 : NULL;
}

static const char *json_number(const char *p)
{
    const char *start = p;
    if (*p == '-')
        p++;
    if (!isdigit((unsigned char)*p))
        return NULL;
    if (*p == '0' && isdigit((unsigned char)p[1]))
        return NULL;
    while (isdigit((unsigned char)*p))
        p++;
    if (*p == '.') {
        p++;
        if (!isdigit((unsigned char)*p))
            return NULL;
        while (isdigit((unsigned char)*p))
            p++;
    }
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-')
            p++;
        if (!isdigit((unsigned char)*p))
            return NULL;
        while (isdigit((unsigned char)*p))
            p++;
    }
    return p > start ? p : NULL;
}

/* Members of an object (pairs) or elements of an array. */
static const char *json_container(const char *p, char close, bool pairs, int depth)
{
    p = skip_ws(p + 1);
    if (*p == close)
        return p + 1;
    for (;;) {
        if (pairs) {
            p = json_string(skip_ws(p));
            if (!p || *(p = skip_ws(p)) != ':')
                return NULL;
            p++;
        }
        p = json_value(p, depth + 1);
        if (!p)
            return NULL;
        p = skip_ws(p);
        if (*p == close)
            return p + 1;
        if (*p++ != ',')
            return NULL;
    }
}

static const char *json_value(const char *p, int depth)
{
    if (depth > 64)
        return NULL;
    p = skip_ws(p);
    switch (*p) {
    case '{': return json_container(p, '}', true, depth);
    case '[': return json_container(p, ']', false, depth);
    case '"': return json_string(p);
    case 't': return strncmp(p, "true", 4) == 0 ? p + 4 : NULL;
    case 'f': return strncmp(p, "false", 5) == 0 ? p + 5 : NULL;
    case 'n': return strncmp(p, "null", 4) == 0 ? p + 4 : NULL;
    default:  return json_number(p);
    }
}

bool h_json_valid(const char *text)
{
    const char *end = json_value(text, 0);
    return end && *skip_ws(end) == '\0';
}

double h_json_number(const char *text, const char *key)
{
    char pat[128];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(text, pat);
    return p ? strtod(p + strlen(pat), NULL) : -1;
}

static bool prom_name(const char **pp)
{
    const char *p = *pp;
    if (!(isalpha((unsigned char)*p) || *p == '_' || *p == ':'))
        return false;
    while (isalnum((unsigned char)*p) || *p == '_' || *p == ':')
        p++;
    *pp = p;
    return true;
}

/* name{label="value",...} number */
static bool prom_sample(const char *p, const char *end)
{
    if (strncmp(p, "preforkd_", 9) != 0 || !prom_name(&p))
        return false;
    if (*p == '{') {
        p++;
        while (*p != '}') {
            if (!prom_name(&p) || *p++ != '=' || *p++ != '"')
                return false;
            while (p < end && *p != '"')
                p += (*p == '\\') ? 2 : 1;
            if (p >= end || *p++ != '"')
                return false;
            if (*p == ',')
                p++;
        }
        p++;
    }
    if (*p++ != ' ')
        return false;
    char *num_end;
    strtod(p, &num_end);
    return num_end == end && num_end > p;
}

/* Histogram families: per label set (le aside), buckets in increasing le
 * with non-decreasing counts, ending at le="+Inf", which equals _count. */
static struct {
    char name[128];                 /* the family being read, "" outside */
    char labels[512];               /* the current label set, le removed */
    double last_le, last_count, inf_count;
    bool have_inf;
} H;

/* The labels of a sample without le="..." into out; le's value into *le. */
static bool split_le(const char *p, const char *end, char *out, size_t cap, double *le)
{
    const char *open = memchr(p, '{', (size_t)(end - p));
    const char *close = open ? memchr(open, '}', (size_t)(end - open)) : NULL;
    size_t n = 0;
    bool found = false;
    out[0] = '\0';
    if (!open || !close)
        return false;
    for (const char *q = open + 1; q < close; ) {
        const char *comma = q, *quote = memchr(q, '"', (size_t)(close - q));
        if (!quote)
            return false;
        for (comma = quote + 1; comma < close && *comma != '"'; comma++)
            if (*comma == '\\')
                comma++;
        comma++;                    /* past the closing quote */
        if (strncmp(q, "le=\"", 4) == 0) {
            found = true;
            *le = strncmp(q + 4, "+Inf\"", 5) == 0 ? HUGE_VAL : strtod(q + 4, NULL);
        } else if (n + (size_t)(comma - q) + 1 < cap) {
            memcpy(out + n, q, (size_t)(comma - q));
            n += (size_t)(comma - q);
            out[n++] = ',';
            out[n] = '\0';
        }
        q = comma + (*comma == ',');
    }
    return found;
}

static bool prom_histogram_sample(const char *p, const char *end)
{
    size_t nlen = strlen(H.name);
    if (!H.name[0] || strncmp(p, H.name, nlen) != 0)
        return true;                /* not in a histogram family */
    const char *suffix = p + nlen, *v = end;
    while (v > p && v[-1] != ' ')
        v--;
    double value = strtod(v, NULL), le = 0;
    char labels[512];
    bool has_le = split_le(p, end, labels, sizeof labels, &le);
    if (strncmp(suffix, "_bucket{", 8) == 0) {
        if (!has_le)
            return false;
        if (strcmp(labels, H.labels) != 0) {
            snprintf(H.labels, sizeof H.labels, "%s", labels);
            H.last_le = -HUGE_VAL;
            H.last_count = 0;
            H.have_inf = false;
        }
        if (le <= H.last_le || value < H.last_count || H.have_inf)
            return false;
        H.last_le = le;
        H.last_count = value;
        if (le == HUGE_VAL) {
            H.have_inf = true;
            H.inf_count = value;
        }
        return true;
    }
    if (has_le || strcmp(labels, H.labels) != 0)
        return false;               /* _sum and _count: the buckets' labels */
    if (strncmp(suffix, "_count", 6) == 0)
        return H.have_inf && value == H.inf_count;
    return strncmp(suffix, "_sum", 4) == 0;
}

static bool prom_line(const char *p, const char *end)
{
    if (strncmp(p, "# TYPE ", 7) == 0)
        H.name[0] = '\0';
    if (strncmp(p, "# HELP ", 7) == 0) {
        p += 7;
        return prom_name(&p) && *p == ' ';
    }
    if (strncmp(p, "# TYPE ", 7) == 0) {
        p += 7;
        const char *name = p;
        if (!prom_name(&p) || *p++ != ' ')
            return false;
        size_t nlen = (size_t)(p - 1 - name);
        if (strncmp(p, "counter", 7) == 0)
            return nlen > 6 && strncmp(name + nlen - 6, "_total", 6) == 0 && p + 7 == end;
        if (strncmp(p, "histogram", 9) == 0 && p + 9 == end && nlen < sizeof H.name) {
            memcpy(H.name, name, nlen);
            H.name[nlen] = '\0';
            H.labels[0] = '\x01';  /* no label set yet */
            H.labels[1] = '\0';
            return true;
        }
        return (strncmp(p, "gauge", 5) == 0 && p + 5 == end);
    }
    return prom_sample(p, end) && prom_histogram_sample(p, end);
}

bool h_prometheus_valid(const char *text, const char **bad)
{
    const char *p = text;
    memset(&H, 0, sizeof H);
    while (*p) {
        const char *end = strchr(p, '\n');
        if (!end || !prom_line(p, end)) {
            *bad = p;
            return false;
        }
        p = end + 1;
    }
    return p != text;
}
