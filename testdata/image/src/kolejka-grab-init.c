/*
 * kolejka-grab-init [MILLISECONDS]
 *
 * A hostile task's first move: from its first instruction, and for
 * MILLISECONDS (default 200), it tries again and again to take over PID 1
 * (kolejka-init, which reports the task's end to the worker): attach to it
 * with ptrace, and open its memory (/proc/1/mem) for writing. Either would
 * let it forge the report (the status, the times) or stop init. It prints
 * one line on stdout and exits 0 either way:
 *
 *     grabbed ptrace|mem after N tries   (it got in: the test fails)
 *     refused N tries: ptrace ERRNO, mem ERRNO
 *
 * What it got in, it lets go at once (it detaches) so that the run ends.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	double ms = argc > 1 ? atof(argv[1]) : 200;
	double until = now() + ms / 1000;
	long tries = 0;
	int ptrace_err = 0, mem_err = 0;
	do {
		tries++;
		if (ptrace(PTRACE_SEIZE, 1, 0, 0) == 0) {
			ptrace(PTRACE_DETACH, 1, 0, 0);
			printf("grabbed ptrace after %ld tries\n", tries);
			return 0;
		}
		ptrace_err = errno;
		int fd = open("/proc/1/mem", O_RDWR);
		if (fd >= 0) {
			close(fd);
			printf("grabbed mem after %ld tries\n", tries);
			return 0;
		}
		mem_err = errno;
	} while (now() < until);
	printf("refused %ld tries: ptrace %s, mem %s\n", tries, strerrorname_np(ptrace_err), strerrorname_np(mem_err));
	return 0;
}
