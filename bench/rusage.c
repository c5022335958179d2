/* rusage OUTFILE PROGRAM [ARGS...]
 *
 * Benchmark wrapper: runs PROGRAM (stdin, stdout and stderr inherited), waits for it with
 * wait4(2) and writes one JSON line to OUTFILE:
 *   {"exit": N, "wall_s": S, "user_s": S, "sys_s": S, "maxrss_kb": K}
 * then exits with PROGRAM's exit code (128 + signal if it was killed).
 *
 * Why not wait4 from the Python bench directly: Linux keeps the peak RSS of the memory
 * a process had *before* exec in its ru_maxrss, and a child forked (or vforked) by a
 * Python process tens of MB large would report that size, not the program's. This
 * wrapper is a few hundred kB, so the program's own peak is what shows.
 */
#include <stdio.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double seconds(struct timespec t) { return (double)t.tv_sec + t.tv_nsec / 1e9; }

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: rusage OUTFILE PROGRAM [ARGS...]\n");
        return 2;
    }
    FILE *out = fopen(argv[1], "w");
    if (!out) {
        perror("rusage: cannot open the output file");
        return 2;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pid_t pid = fork();
    if (pid < 0) {
        perror("rusage: fork");
        return 2;
    }
    if (pid == 0) {
        fclose(out);
        execvp(argv[2], argv + 2);
        perror("rusage: exec");
        _exit(127);
    }
    int status;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) < 0) {
        perror("rusage: wait4");
        return 2;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    fprintf(out,
            "{\"exit\": %d, \"wall_s\": %.6f, \"user_s\": %.6f, \"sys_s\": %.6f, "
            "\"maxrss_kb\": %ld}\n",
            code, seconds(t1) - seconds(t0),
            ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6,
            ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6, ru.ru_maxrss);
    fclose(out);
    return code;
}
