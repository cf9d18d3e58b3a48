/* notify: parse sd_notify-style messages from app workers. Keys understood:
 * READY=1, STOPPING=1, RELOADING=1, WATCHDOG=1, STATUS=text, ERRNO=n and the
 * preforkd extensions REQUESTS=n, ACTIVE=n; others are ignored as systemd
 * does. Lines with bytes that are not text, or no '=', count as bad. */
#include "ipc/notify.h"

#include <string.h>

static bool parse_u64(const char *v, size_t n, uint64_t *out)
{
    uint64_t x = 0;
    if (n == 0 || n > 19)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return false;
        x = x * 10 + (uint64_t)(v[i] - '0');
    }
    *out = x;
    return true;
}

/* Visible text plus spaces and tabs: what a log line may carry. */
static bool is_text(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return false;
    }
    return true;
}

static bool flag_is_one(const char *v, size_t n)
{
    return n == 1 && v[0] == '1';
}

static bool key_is(const char *key, size_t klen, const char *name)
{
    return klen == strlen(name) && memcmp(key, name, klen) == 0;
}

/* A flag key (READY, ...) and where it is stored, or NULL. */
static bool *flag_field(struct notify_msg *m, const char *key, size_t klen)
{
    if (key_is(key, klen, "READY"))     return &m->ready;
    if (key_is(key, klen, "STOPPING"))  return &m->stopping;
    if (key_is(key, klen, "RELOADING")) return &m->reloading;
    if (key_is(key, klen, "WATCHDOG"))  return &m->watchdog;
    return NULL;
}

static bool apply_number(struct notify_msg *m, const char *key, size_t klen,
                         const char *v, size_t vlen)
{
    uint64_t x;
    if (!parse_u64(v, vlen, &x))
        return false;
    if (key_is(key, klen, "ERRNO") && x < 4096) {
        m->errno_value = (int)x;
        return (m->has_errno = true);
    }
    if (key_is(key, klen, "REQUESTS")) {
        m->requests = x;
        return (m->has_requests = true);
    }
    if (key_is(key, klen, "ACTIVE") && x <= UINT32_MAX) {
        m->active = (uint32_t)x;
        return (m->has_active = true);
    }
    return false;
}

/* One KEY=VALUE line: known, unknown (ignored, as systemd does) or bad. */
static void apply_line(struct notify_msg *m, const char *line, size_t n)
{
    const char *eq = memchr(line, '=', n);
    if (!eq || eq == line || !is_text(line, n)) {
        m->bad++;
        return;
    }
    size_t klen = (size_t)(eq - line), vlen = n - klen - 1;
    const char *v = eq + 1;
    bool *flag = flag_field(m, line, klen);
    bool ok;
    if (flag) {
        ok = flag_is_one(v, vlen) && (*flag = true);
    } else if (key_is(line, klen, "STATUS")) {
        size_t keep = vlen < NOTIFY_STATUS_MAX ? vlen : NOTIFY_STATUS_MAX - 1;
        memcpy(m->status, v, keep);
        m->status[keep] = '\0';
        ok = m->has_status = true;
    } else if (key_is(line, klen, "ERRNO") || key_is(line, klen, "REQUESTS") ||
               key_is(line, klen, "ACTIVE")) {
        ok = apply_number(m, line, klen, v, vlen);
    } else {
        m->unknown++;
        return;
    }
    if (ok)
        m->known++;
    else
        m->bad++;
}

unsigned notify_parse(const char *buf, size_t len, struct notify_msg *out)
{
    memset(out, 0, sizeof *out);
    if (len > NOTIFY_MSG_MAX) {
        out->bad++;
        return 0;
    }
    while (len > 0) {
        const char *nl = memchr(buf, '\n', len);
        size_t n = nl ? (size_t)(nl - buf) : len;
        if (n > 0)
            apply_line(out, buf, n);
        if (!nl)
            break;
        buf = nl + 1;
        len -= n + 1;
    }
    return out->known;
}
