/* http_log: the access log of one worker, in Combined Log Format. Lines
 * are buffered (64 KiB) and written when the buffer fills, once a second
 * (from the worker's tick), on exit and before a reopen (SIGUSR1). */
#ifndef PREFORKD_HTTP_LOG_H
#define PREFORKD_HTTP_LOG_H

#include <stdbool.h>
#include <stddef.h>

/* Open (create, append) path. 0, or -1 with errno. */
int http_log_open(const char *path);
bool http_log_enabled(void);
/* Room for one line of up to len bytes; flushes first when full. The
 * caller fills it, then commits what it used. NULL when off. */
char *http_log_reserve(size_t len);
void http_log_commit(size_t used);
/* "[10/Oct/2000:13:55:36 +0000]", cached per second. */
const char *http_log_time(void);
void http_log_flush(void);
int http_log_reopen(void);
void http_log_close(void);

#endif
