//go:build !cgo || !seccomp

package runc

// SeccompBuilt reports that libcontainer was built with libseccomp. Without
// the `seccomp` build tag it refuses every filter ("seccomp not
// supported"), so task containers run without one, on dropped capabilities
// alone. `make` builds with the tag.
const SeccompBuilt = false
