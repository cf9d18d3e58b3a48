/* http_log: the access logs of one worker, in Combined Log Format. Each
 * site may have its own file; sites naming the same path share one log.
 * Lines are buffered (64 KiB per file) and written when the buffer fills,
 * once a second (from the worker's tick), on exit and before a reopen
 * (SIGUSR1). */
#ifndef PREFORKD_HTTP_LOG_H
#define PREFORKD_HTTP_LOG_H

#include <stdbool.h>
#include <stddef.h>

struct http_log;

/* The log of path: the one already open for it, or opened now (create,
 * append). NULL with errno. */
struct http_log *http_log_open(const char *path);
/* Room for one line of up to len bytes; flushes first when full. The
 * caller fills it, then commits what it used. NULL when it cannot. */
char *http_log_reserve(struct http_log *l, size_t len);
void http_log_commit(struct http_log *l, size_t used);
/* "[10/Oct/2000:13:55:36 +0000]", cached per second. */
const char *http_log_time(void);
/* Every open log: write what is buffered; reopen (after rotation); close. */
void http_log_flush_all(void);
void http_log_reopen_all(void);
void http_log_close_all(void);

#endif
