/* sdnotify: the master's side of systemd's protocols, spoken directly (a
 * datagram and a few environment variables; not worth libsystemd as a
 * dependency): sd_notify messages to $NOTIFY_SOCKET, the watchdog period
 * from $WATCHDOG_USEC, and listening sockets passed in $LISTEN_FDS. */
#ifndef PREFORKD_SDNOTIFY_H
#define PREFORKD_SDNOTIFY_H

#include <stddef.h>
#include <stdint.h>

#include "server/config.h"

/* Connect to $NOTIFY_SOCKET ("/path" or "@abstract") and unset it, so no
 * child inherits it; its value is kept in saved (a new master of a hot
 * upgrade gets it back). The socket, or -1 when there is none. */
int sdnotify_open(char *saved, size_t cap);
/* One message (newline-separated KEY=VALUE lines); never blocks, and a
 * failure costs only this message. No-op when fd < 0. */
void sdnotify_send(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* $WATCHDOG_USEC for this process (WATCHDOG_PID unset or ours) in ms, else 0. */
int64_t sdnotify_watchdog_ms(void);

/* Socket activation: take the sockets of $LISTEN_FDS when $LISTEN_PID is
 * this process (fd 3 on), close-on-exec, and unset the variables. */
void sdnotify_take_listen_fds(void);
/* A passed socket bound to a's address and type, taken out of the set,
 * or -1. */
int sdnotify_adopt(const struct address *a);
/* Every passed socket bound to a's address (a hot upgrade passes a per-CPU
 * listener's sockets in their order), in fd order, at most max: how many. */
int sdnotify_adopt_all(const struct address *a, int *fds, int max);
/* Passed sockets that no listen entry matched: logged and closed. */
void sdnotify_close_unadopted(void);

#endif
