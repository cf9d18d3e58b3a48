/* formats: a strict JSON syntax checker and a Prometheus text exposition
 * checker for the status tests (no JSON library is a project dependency). */
#include <ctype.h>
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

static bool prom_line(const char *p, const char *end)
{
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
        return (strncmp(p, "gauge", 5) == 0 && p + 5 == end);
    }
    return prom_sample(p, end);
}

bool h_prometheus_valid(const char *text, const char **bad)
{
    const char *p = text;
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
