/* kolejka-flood SOCKET SECONDS [IDLE]: floods kolejka-observer's socket
 * for SECONDS, as a hostile task would: it connects as fast as it can and
 * asks for a new session on every connection (POST /open), keeping every
 * session it gets; every other connection, up to IDLE of them, it keeps
 * open without ever sending a request, to hog the daemon's connection
 * slots. Prints "opened=<200s> refused=<403s> other=<other answers>
 * failed=<connections or requests that failed> idle=<idle held>" and
 * exits 0. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* request sends POST /open on fd and returns the answer's status, 0 if
 * there was none. The daemon closes the connection after answering. */
static int request(int fd) {
	static const char req[] = "POST /open HTTP/1.1\r\nHost: kolejka-observer\r\n"
				  "Content-Type: application/json; charset=utf-8\r\nContent-Length: 2\r\n\r\n{}";
	if (write(fd, req, sizeof req - 1) != (ssize_t)(sizeof req - 1))
		return 0;
	char buf[4096];
	size_t got = 0;
	for (;;) {
		ssize_t n = read(fd, buf + got, sizeof buf - 1 - got);
		if (n <= 0)
			break;
		got += (size_t)n;
		if (got == sizeof buf - 1)
			break;
	}
	buf[got] = 0;
	int status = 0;
	if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1)
		return 0;
	return status;
}

int main(int argc, char **argv) {
	if (argc < 3) {
		fprintf(stderr, "usage: kolejka-flood SOCKET SECONDS [IDLE]\n");
		return 2;
	}
	struct sockaddr_un sa;
	memset(&sa, 0, sizeof sa);
	sa.sun_family = AF_UNIX;
	if (strlen(argv[1]) >= sizeof sa.sun_path) {
		fprintf(stderr, "socket path too long\n");
		return 2;
	}
	strcpy(sa.sun_path, argv[1]);
	double seconds = atof(argv[2]);
	long hold = argc > 3 ? strtol(argv[3], NULL, 10) : 0;
	long opened = 0, refused = 0, other = 0, failed = 0, idle = 0, i = 0;
	struct timeval timeout = {5, 0};
	double end = now() + seconds;
	while (now() < end) {
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			failed++;
			continue;
		}
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
		if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
			failed++;
			close(fd);
			continue;
		}
		if (i++ % 2 == 0 && idle < hold) {
			idle++; /* kept open, silent, until the end */
			continue;
		}
		int status = request(fd);
		close(fd);
		if (status == 200)
			opened++;
		else if (status == 403)
			refused++;
		else if (status == 0)
			failed++;
		else
			other++;
	}
	printf("opened=%ld refused=%ld other=%ld failed=%ld idle=%ld\n", opened, refused, other, failed, idle);
	fflush(stdout);
	_exit(0);
}
