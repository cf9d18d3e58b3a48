/* http_io: the socket calls of the HTTP handler. They live in their own
 * file so the fuzz harness (tests/fuzz_http.c) can link memory-backed ones
 * in their place and run the whole request path without sockets. */
#ifndef PREFORKD_HTTP_IO_H
#define PREFORKD_HTTP_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Same contracts as read(2), send(2), sendfile(2) and shutdown(fd, SHUT_WR). */
ssize_t http_io_read(int fd, void *buf, size_t len);
ssize_t http_io_send(int fd, const void *buf, size_t len, int flags);
ssize_t http_io_sendfile(int out_fd, int in_fd, off_t *off, size_t count);
int http_io_shutdown_wr(int fd);
/* Whether bytes already read from the socket wait to be taken (a TLS
 * connection's further records in OpenSSL's buffer): a short read is then
 * not the end of what the client sent. */
bool http_io_pending(int fd);
/* For the access log: " PROTOCOL CIPHER" of a TLS connection whose
 * listener has tls.log_cipher, written at out (at most cap bytes, no NUL);
 * its length, 0 for any other. */
size_t http_io_tls_text(int fd, char *out, size_t cap);

#endif
