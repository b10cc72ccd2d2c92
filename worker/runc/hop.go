package runc

// The hop to the lean init. libcontainer starts every container by
// re-executing the running binary as `<self> init` (through a sealed clone
// of it, see leaninit.go); in kolejka-worker or kolejka-foreman that is a
// large Go program whose runtime and package initialisation cost several
// milliseconds of CPU per container before libcontainer's init does
// anything. When the runtime hands the process a sealed kolejka-runc-init
// as descriptor 3 (Runtime.leanInit), this constructor executes it in
// place of the rest of the start-up: it runs before nsexec's constructor
// (priority 101 against nsexec's default), so the namespaces are joined by
// the lean binary's own copy of nsexec, with the environment and the
// descriptors libcontainer prepared, which an exec keeps.
//
// Descriptor 3 is marked close-on-exec first, so it is gone in the lean
// init and never reaches the container. Anything else at descriptor 3 (no
// lean init configured: a test binary, or a binary without
// kolejka-runc-init beside it) is left alone and the process goes on as
// before; so does a failed exec.

/*
#define _GNU_SOURCE
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <stdlib.h>
#include <unistd.h>

// leanInitName must match leanInitName in leaninit.go.
#define LEAN_INIT_NAME "kolejka-runc-init"

__attribute__((constructor(101))) static void kolejka_lean_init_hop(int argc, char **argv, char **envp)
{
	char link[256];
	struct stat st;
	ssize_t n;

	if (argc < 2 || strcmp(argv[1], "init") != 0 || getenv("_LIBCONTAINER_INITPIPE") == NULL)
		return;
	if (fstat(3, &st) != 0 || !S_ISREG(st.st_mode))
		return;
	n = readlink("/proc/self/fd/3", link, sizeof(link) - 1);
	if (n <= 0)
		return;
	link[n] = '\0';
	if (strstr(link, LEAN_INIT_NAME) == NULL)
		return;
	if (fcntl(3, F_SETFD, FD_CLOEXEC) != 0)
		return;
	syscall(SYS_execveat, 3, "", argv, envp, AT_EMPTY_PATH);
	// The exec failed: this binary's own init takes over, as without a
	// lean init; descriptor 3 closes with its exec of the container's
	// process.
}
*/
import "C"
