/* subreaper PROGRAM [ARGS...]
 *
 * Benchmark wrapper playing init for a peer supervisor: becomes a child subreaper,
 * runs PROGRAM as its child, reaps every orphan that lands on it at once (as systemd
 * or any init does), forwards SIGTERM/SIGINT to PROGRAM, and exits with PROGRAM's
 * status. Needed because PID 1 of a container may not reap orphans, which leaves a
 * killed daemonized server as a zombie that monit then reports as "a zombie" instead
 * of "not running" — an artefact of the machine, not of monit.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile pid_t child = -1;

static void forward(int sig) {
    if (child > 0) kill(child, sig);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: subreaper PROGRAM [ARGS...]\n");
        return 2;
    }
    if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0) {
        perror("subreaper: prctl");
        return 1;
    }
    struct sigaction sa = {0};
    sa.sa_handler = forward;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    child = fork();
    if (child < 0) {
        perror("subreaper: fork");
        return 1;
    }
    if (child == 0) {
        execvp(argv[1], argv + 1);
        perror("subreaper: exec");
        _exit(127);
    }
    int status = 0;
    for (;;) {
        pid_t pid = wait(&status);
        if (pid == child) break;
        if (pid < 0 && errno == ECHILD) return 1;
    }
    /* Orphans still running after the supervisor ended are the caller's to kill. */
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
