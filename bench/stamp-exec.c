/* stamp-exec STAMPFILE PROGRAM [ARGS...]
 *
 * Benchmark wrapper: appends "<pid> <CLOCK_REALTIME ns>\n" to STAMPFILE, then execs
 * PROGRAM in the same process (same pid). Every supervisor under test starts the demo
 * server through it, so "the new server process exists" is timed the same way for all
 * of them, within microseconds of the exec, without polling /proc. O_APPEND makes one
 * small write atomic, so the reader never sees half a line.
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: stamp-exec STAMPFILE PROGRAM [ARGS...]\n");
        return 2;
    }
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    char line[64];
    int n = snprintf(line, sizeof line, "%ld %lld\n", (long)getpid(),
                     (long long)now.tv_sec * 1000000000LL + now.tv_nsec);
    int fd = open(argv[1], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, line, (size_t)n) != n) {
        perror("stamp-exec: cannot write the stamp file");
        return 1;
    }
    close(fd);
    execv(argv[2], argv + 2);
    perror("stamp-exec: exec failed");
    return 127;
}
