/* chatclient: the chat suites' line clients (test_chat, test_chatbus):
 * each keeps everything it received, NUL-ended, so a test asks what a
 * user has seen; pump() reads from all of them at once, so clients drain
 * as fast as the server fans out. */
#ifndef PREFORKD_TESTS_CHATCLIENT_H
#define PREFORKD_TESTS_CHATCLIENT_H

#include <stdbool.h>
#include <stddef.h>

#include "tests/harness.h"

#define CHAT_CL_CAP (1 << 20)           /* bytes a client keeps */

struct client {
    int fd;
    bool eof;
    char *data;                 /* everything received, NUL-ended */
    size_t len;
    size_t lines;               /* newlines in data, counted as they come */
};

/* Take fd as a client (its receive buffer allocated, nothing read yet). */
void chat_client_open(struct client *c, int fd);
/* Close and free the first n clients. */
void chat_clients_close(struct client *cl, size_t n);
/* Wait up to ms for input on any of the n clients, and read it. */
void chat_pump(struct client *cl, size_t n, int ms);
bool chat_has(const struct client *c, const char *s);
int chat_count(const struct client *c, const char *s);
/* Send a formatted line (fails the test if it cannot be written). */
void chat_say(struct client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Like WAIT_UNTIL, but reading all the time instead of sleeping between
 * checks; the including file defines pump(int ms) over its clients. */
#define PUMP_UNTIL(cond, ms) ({                                           \
    int64_t _end = h_now_ms() + (ms); bool _ok;                           \
    while (!(_ok = (cond)) && h_now_ms() < _end) pump(2);                 \
    _ok; })

#endif
