/* kolejka-threads N: starts N threads that sleep, reporting how many it
 * got; a thread bomb for the pids limit (threads count as pids). Prints
 * "threads=<started> failed=<errno name or none>" and exits 0 when all
 * started, 1 otherwise. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void *sleeper(void *arg) {
	(void)arg;
	for (;;)
		pause();
	return NULL;
}

int main(int argc, char **argv) {
	if (argc != 2) {
		fprintf(stderr, "usage: kolejka-threads N\n");
		return 2;
	}
	long n = strtol(argv[1], NULL, 10);
	long started = 0;
	int err = 0;
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 64 * 1024);
	for (; started < n; started++) {
		pthread_t t;
		err = pthread_create(&t, &attr, sleeper, NULL);
		if (err != 0)
			break;
	}
	printf("threads=%ld failed=%s\n", started, err ? strerror(err) : "none");
	fflush(stdout);
	_exit(err ? 1 : 0);
}
