/* percpu: accept = "per-cpu". One SO_REUSEPORT socket per CPU the master may
 * run on, a classic BPF program on the group that hands each connection to
 * the socket of the CPU its packets arrived on, and workers pinned to CPUs;
 * the worker side of the accept is in workers/worker.c. */
#ifndef PREFORKD_PERCPU_H
#define PREFORKD_PERCPU_H

#include <stddef.h>

#define PERCPU_MAX 64               /* sockets per listener; more CPUs share */

/* A per-CPU listener's sockets; n == 0: a shared listener (one socket). */
struct percpu_set {
    int n;
    int fd[PERCPU_MAX];             /* fd[i]: the socket of cpu[i], the i-th in the
                                       kernel's reuseport group (listen order) */
    int cpu[PERCPU_MAX];
};

/* The CPUs this process may run on (sched_getaffinity), ascending, at most
 * max of them; 0 if that cannot be read. */
int percpu_allowed(int *cpus, int max);

/* Attach the steering program to the group of pc's sockets: a connection
 * processed on cpu[i] goes to fd[i]; any other CPU to fd[CPU mod n]. 0, or
 * -1 with "why" in err (the kernel then spreads by hash). */
int percpu_steer(const struct percpu_set *pc, char *err, size_t errlen);

/* Connections waiting in a TCP listener's accept queue; -1 if unknown. */
int percpu_queue(int fd, int *backlog);

/* Pin the calling process to cpu. 0 or -1 with errno. */
int percpu_pin(int cpu);

#endif
