/* notify: the messages app workers send about themselves, in sd_notify's
 * KEY=VALUE line format, whether they come over the native pipe
 * (PREFORKD_NOTIFY_FD) or as NOTIFY_SOCKET datagrams. Parsing is total:
 * any bytes give a result, garbage is counted, never trusted. */
#ifndef PREFORKD_NOTIFY_H
#define PREFORKD_NOTIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NOTIFY_STATUS_MAX 128       /* STATUS= text kept, cut beyond */
#define NOTIFY_MSG_MAX    4096      /* a datagram or line larger is garbage */

/* What one message said; has_* flags tell which keys it carried. */
struct notify_msg {
    bool ready, stopping, watchdog, reloading;
    bool has_status, has_requests, has_active, has_errno;
    char status[NOTIFY_STATUS_MAX];
    uint64_t requests;
    uint32_t active;
    int errno_value;
    unsigned known, unknown, bad;   /* lines understood, ignored, malformed */
};

/* Parse the lines of one message (newline-separated, a final newline
 * optional) into *out, which is cleared first. Returns out->known. */
unsigned notify_parse(const char *buf, size_t len, struct notify_msg *out);

#endif
