/* stallwatch: notes when this machine stops running a sleeping process on
 * time. It sleeps 100 ms at a time; a wake-up more than STALL_MS late is a
 * stall of the whole machine (a VM paused or starved by its host: this 2-core
 * VM's kernel then logs "rcu_preempt detected stalls"), and is appended to
 * OUTFILE. .ci/run uses it to tell such stalls from failures of preforkd.
 * Usage: stallwatch OUTFILE MAX_SECONDS (exits then, or with its parent). */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#define STEP_MS  100
#define STALL_MS 2000

static int64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void note_stall(const char *path, int64_t gap_ms)
{
    char when[32];
    time_t now = time(NULL);
    strftime(when, sizeof when, "%H:%M:%S", gmtime(&now));
    FILE *f = fopen(path, "a");
    if (!f) {
        perror(path);
        exit(1);
    }
    fprintf(f, "stallwatch: the machine did not run it for %.1f s, until %s UTC\n",
            (double)(gap_ms - STEP_MS) / 1000.0, when);
    if (fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

int main(int argc, char **argv)
{
    if (argc != 3 || atoi(argv[2]) <= 0) {
        fprintf(stderr, "usage: stallwatch OUTFILE MAX_SECONDS\n");
        return 2;
    }
    pid_t parent = getppid();
    if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || getppid() != parent)
        return 1;
    int64_t end = monotonic_ms() + (int64_t)atoi(argv[2]) * 1000;
    struct timespec step = { .tv_sec = 0, .tv_nsec = STEP_MS * 1000000L };
    for (int64_t prev = monotonic_ms(); prev < end;) {
        if (nanosleep(&step, NULL) != 0 && errno != EINTR)
            return 1;
        int64_t now = monotonic_ms();
        if (now - prev > STALL_MS)
            note_stall(argv[1], now - prev);
        prev = now;
    }
    return 0;
}
