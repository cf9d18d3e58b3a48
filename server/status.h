/* status: the control socket protocol (one command line in, the answer out,
 * then close) and its client, `preforkd status`. */
#ifndef PREFORKD_STATUS_H
#define PREFORKD_STATUS_H

#include <stddef.h>

#include "server/sbuf.h"

struct master;

enum status_format { STATUS_TEXT, STATUS_JSON, STATUS_PROMETHEUS };

/* Ask the master named by the configuration file; print its answer.
 * Exit code: 0 answered, 3 not running (no socket or nobody listening),
 * 1 other errors. */
int status_client(const char *conf_path, enum status_format fmt);

/* Send one command line (e.g. "scale 4") to the master named by the
 * configuration file and print the answer; exit codes as status_client. */
int control_client(const char *conf_path, const char *line);

/* Send one command line to the control socket at path, collect the whole
 * answer into buf (NUL-terminated). 0, or -1 with errno
 * (ENOENT/ECONNREFUSED: not running). */
int control_request(const char *sock_path, const char *line,
                    char *buf, size_t cap);

/* Milliseconds as "35us", "1.2ms", "120ms", "1.50s"; negative: "-". */
const char *status_fmt_ms(double ms, char *buf, size_t cap);

/* Render the master's view: the table of SPEC.md, JSON or Prometheus. */
void status_render(const struct master *m, enum status_format fmt, struct sbuf *out);

#endif
