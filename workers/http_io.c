/* http_io: the real socket calls behind workers/http_io.h; one direct call
 * each, no copies (the fuzz harness links its own instead of this file). */
#include "workers/http_io.h"

#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

ssize_t http_io_read(int fd, void *buf, size_t len)
{
    return read(fd, buf, len);
}

ssize_t http_io_send(int fd, const void *buf, size_t len, int flags)
{
    return send(fd, buf, len, flags);
}

ssize_t http_io_sendfile(int out_fd, int in_fd, off_t *off, size_t count)
{
    return sendfile(out_fd, in_fd, off, count);
}

int http_io_shutdown_wr(int fd)
{
    return shutdown(fd, SHUT_WR);
}
