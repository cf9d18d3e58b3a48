/* daemon: pidfile locking and writing, and detaching from the terminal
 * while the starting process waits for the master's ready verdict. */
#ifndef PREFORKD_DAEMON_H
#define PREFORKD_DAEMON_H

#include <stddef.h>
#include <sys/types.h>

/* mkdir -p of the directory part of path. 0 or -1 with errno. */
int mkdir_parents(const char *path, mode_t mode);
/* Open and flock the pidfile; a live holder gives -1 with "already
 * running (pid N)". Returns the locked fd (close-on-exec). */
int pidfile_lock(const char *path, char *err, size_t errlen);
/* Replace the file's content with pid. 0 or -1 with errno. */
int pidfile_write(int fd, pid_t pid);
/* Read the pid recorded in path; 0 when none. */
pid_t pidfile_read(const char *path);
void pidfile_remove(const char *path, int fd);

/* Fork twice and setsid. Returns 0 in the daemon, with *ready_fd to pass to
 * daemon_ready; the starting process never returns: it exits 0 once the
 * daemon is ready, or 1 printing the daemon's reason. -1 on fork errors. */
int daemonize(int *ready_fd, char *err, size_t errlen);
/* Tell the waiting starter: why == NULL means ready. Closes fd. */
void daemon_ready(int fd, const char *why);
/* stdin and stdout to /dev/null; stderr too unless keep_stderr. */
int daemon_redirect_stdio(int keep_stderr);

#endif
