/* percpu: the CPU list, the reuseport steering program and pinning for
 * accept = "per-cpu" listeners (see server/percpu.h). */
#include "server/percpu.h"

#include <errno.h>
#include <linux/filter.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

int percpu_allowed(int *cpus, int max)
{
    cpu_set_t set;
    int n = 0;
    if (sched_getaffinity(0, sizeof set, &set) != 0)
        return 0;
    for (int c = 0; c < CPU_SETSIZE && n < max; c++)
        if (CPU_ISSET(c, &set))
            cpus[n++] = c;
    return n;
}

/* A: the CPU that runs the packet's softirq (SKF_AD_CPU); for each of our
 * CPUs "A == cpu[i]: return i"; else A mod n. The return value indexes the
 * group's sockets in the order they were put in listen state. */
int percpu_steer(const struct percpu_set *pc, char *err, size_t errlen)
{
    struct sock_filter code[3 + 2 * PERCPU_MAX];
    unsigned short len = 0;
    code[len++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
                                               (uint32_t)(SKF_AD_OFF + SKF_AD_CPU));
    for (int i = 0; i < pc->n; i++) {
        code[len++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K,
                                                   (uint32_t)pc->cpu[i], 0, 1);
        code[len++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, (uint32_t)i);
    }
    code[len++] = (struct sock_filter)BPF_STMT(BPF_ALU | BPF_MOD | BPF_K, (uint32_t)pc->n);
    code[len++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_A, 0);
    /* memset: the padding after .len goes to the kernel too (valgrind) */
    struct sock_fprog prog;
    memset(&prog, 0, sizeof prog);
    prog.len = len;
    prog.filter = code;
    if (setsockopt(pc->fd[0], SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &prog, sizeof prog) != 0) {
        snprintf(err, errlen, "SO_ATTACH_REUSEPORT_CBPF: %s", strerror(errno));
        return -1;
    }
    return 0;
}

/* tcpi_unacked is a listener's queue length, tcpi_sacked its backlog. */
int percpu_queue(int fd, int *backlog)
{
    struct tcp_info ti;
    socklen_t len = sizeof ti;
    if (fd < 0 || getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0)
        return -1;
    if (backlog)
        *backlog = (int)ti.tcpi_sacked;
    return (int)ti.tcpi_unacked;
}

int percpu_pin(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return sched_setaffinity(0, sizeof set, &set);
}
