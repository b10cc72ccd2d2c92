/*
 * kolejka-spin SECONDS
 *
 * Burns CPU until this process's own CPU time (CLOCK_PROCESS_CPUTIME_ID)
 * reaches SECONDS, then prints one line on stdout:
 *
 *     rusage_us=<ru_utime + ru_stime of RUSAGE_SELF, in microseconds>
 *
 * Tests compare that self-reported figure with what the worker measured
 * through the task cgroup: both count the same process, so they must agree
 * within the kernel's accounting granularity. Wall time is never used, so the
 * program spins for the same CPU time however loaded the machine is.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

static double cpu_seconds(void)
{
	struct timespec ts;
	if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) != 0) {
		perror("kolejka-spin: clock_gettime");
		exit(1);
	}
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: kolejka-spin SECONDS\n");
		return 2;
	}
	char *end;
	errno = 0;
	double seconds = strtod(argv[1], &end);
	if (errno != 0 || end == argv[1] || *end != '\0' || !isfinite(seconds) || seconds < 0) {
		fprintf(stderr, "kolejka-spin: SECONDS must be a non-negative number, got %s\n", argv[1]);
		return 2;
	}

	/* volatile keeps the compiler from folding the loop away. */
	volatile unsigned long counter = 0;
	while (cpu_seconds() < seconds) {
		for (int i = 0; i < 100000; i++)
			counter++;
	}

	struct rusage ru;
	if (getrusage(RUSAGE_SELF, &ru) != 0) {
		perror("kolejka-spin: getrusage");
		return 1;
	}
	long long us = ((long long)ru.ru_utime.tv_sec + (long long)ru.ru_stime.tv_sec) * 1000000LL +
		       (long long)ru.ru_utime.tv_usec + (long long)ru.ru_stime.tv_usec;
	printf("rusage_us=%lld\n", us);
	if (fflush(stdout) != 0) {
		perror("kolejka-spin: stdout");
		return 1;
	}
	return 0;
}
