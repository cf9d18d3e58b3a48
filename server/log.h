/* log: the error log of master and workers, one line per write():
 * "2026-11-22T07:50:01.123Z [info] master 4121: message". Targets: stderr,
 * syslog or a file (O_APPEND, reopened on SIGUSR1 for logrotate). */
#ifndef PREFORKD_LOG_H
#define PREFORKD_LOG_H

#include <stdarg.h>
#include <stddef.h>
#include "server/config.h"

/* Where lines go and what is dropped. Until log_open, stderr at info. */
int log_open(const char *target, enum log_level level, char *err, size_t errlen);
/* Reopen a file target (after rotation); no-op for stderr and syslog. */
int log_reopen(void);
/* Role printed on every line: "master", "worker 3". */
void log_set_role(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Whether lines of this level are written (callers may skip costly work). */
int log_enabled(enum log_level level);
/* The file descriptor lines go to (-1 for syslog), e.g. for dup2. */
int log_fd(void);

void log_msg(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void log_vmsg(enum log_level level, const char *fmt, va_list ap);

#define log_error(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LVL_DEBUG, __VA_ARGS__)

#endif
