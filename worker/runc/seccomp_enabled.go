//go:build cgo && seccomp

package runc

// SeccompBuilt reports that libcontainer was built with libseccomp (the
// `seccomp` build tag, as `make` builds): task containers get taskSeccomp's
// filter.
const SeccompBuilt = true
