/* http_io: the real socket calls behind workers/http_io.h; one direct call
 * each, no copies, or the TLS ones when the fd's connection speaks TLS
 * (workers/tls.c). The fuzz harness links its own instead of this file. */
#include "workers/http_io.h"

#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#include "workers/tls.h"

ssize_t http_io_read(int fd, void *buf, size_t len)
{
    SSL *ssl = tls_of(fd);
    return ssl ? tls_read(ssl, buf, len) : read(fd, buf, len);
}

/* flags (MSG_MORE, MSG_NOSIGNAL) are the socket's: OpenSSL writes records
 * whole and preforkd ignores SIGPIPE. */
ssize_t http_io_send(int fd, const void *buf, size_t len, int flags)
{
    SSL *ssl = tls_of(fd);
    return ssl ? tls_write(ssl, buf, len) : send(fd, buf, len, flags);
}

ssize_t http_io_sendfile(int out_fd, int in_fd, off_t *off, size_t count)
{
    SSL *ssl = tls_of(out_fd);
    return ssl ? tls_sendfile(ssl, in_fd, off, count) : sendfile(out_fd, in_fd, off, count);
}

int http_io_shutdown_wr(int fd)
{
    SSL *ssl = tls_of(fd);
    return ssl ? tls_shutdown_wr(ssl, fd) : shutdown(fd, SHUT_WR);
}

bool http_io_pending(int fd)
{
    SSL *ssl = tls_of(fd);
    return ssl && SSL_has_pending(ssl);
}

size_t http_io_tls_text(int fd, char *out, size_t cap)
{
    SSL *ssl = tls_of(fd);
    return ssl ? tls_log_text(ssl, out, cap) : 0;
}
