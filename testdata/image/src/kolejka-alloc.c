/*
 * kolejka-alloc MIB [HOLD_SECONDS]
 *
 * Allocates MIB mebibytes, writes every byte (so every page is really
 * faulted in and charged to the memory cgroup, not just reserved), prints
 *
 *     allocated=<bytes>
 *
 * then optionally sleeps HOLD_SECONDS (so a test can sample usage while the
 * memory is held) and exits 0. If the allocation fails it prints the reason
 * on stderr and exits 1; under a memory limit the kernel usually OOM-kills
 * the process while it writes the pages instead.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int main(int argc, char **argv)
{
	if (argc != 2 && argc != 3) {
		fprintf(stderr, "usage: kolejka-alloc MIB [HOLD_SECONDS]\n");
		return 2;
	}
	char *end;
	errno = 0;
	unsigned long long mib = strtoull(argv[1], &end, 10);
	if (errno != 0 || end == argv[1] || *end != '\0' || argv[1][0] == '-' || mib > (SIZE_MAX >> 20)) {
		fprintf(stderr, "kolejka-alloc: MIB must be a whole number of mebibytes, got %s\n", argv[1]);
		return 2;
	}
	double hold = 0;
	if (argc == 3) {
		errno = 0;
		hold = strtod(argv[2], &end);
		if (errno != 0 || end == argv[2] || *end != '\0' || !isfinite(hold) || hold < 0) {
			fprintf(stderr, "kolejka-alloc: HOLD_SECONDS must be a non-negative number, got %s\n", argv[2]);
			return 2;
		}
	}

	size_t bytes = (size_t)mib << 20;
	unsigned char *p = malloc(bytes ? bytes : 1);
	if (p == NULL) {
		fprintf(stderr, "kolejka-alloc: unable to allocate %zu bytes\n", bytes);
		return 1;
	}
	/*
	 * A non-zero fill value: malloc+memset(0) may be turned into calloc,
	 * which leaves fresh pages untouched. The empty asm tells the compiler
	 * the buffer is used, so the stores cannot be optimised away.
	 */
	memset(p, 0x5a, bytes);
	__asm__ volatile("" : : "r"(p) : "memory");

	printf("allocated=%zu\n", bytes);
	if (fflush(stdout) != 0) {
		perror("kolejka-alloc: stdout");
		return 1;
	}

	if (hold > 0) {
		struct timespec ts = {.tv_sec = (time_t)hold, .tv_nsec = (long)((hold - floor(hold)) * 1e9)};
		while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
			;
	}
	return 0;
}
