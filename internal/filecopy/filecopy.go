// Package filecopy puts a file into a task's folder: by a hard link where
// the file system allows it, else by copying its bytes. Both the worker
// (the task's inputs) and the foreman (cached blobs) fill task folders so.
package filecopy

import (
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// Copy copies the regular file src (a symlink is followed) to the new file
// dst with src's permission bits, set again after the create because the
// umask may have cut some off and executables must stay so. The kernel
// picks copy_file_range, a reflink on file systems that have one. It
// refuses a src that is not a regular file and a dst that exists; a copy
// that fails leaves no dst behind.
func Copy(src, dst string) error {
	// O_NONBLOCK: opening a FIFO for reading would otherwise wait for a
	// writer forever; it is refused below like any other non-regular file.
	// On a regular file the flag changes nothing.
	in, err := os.OpenFile(src, os.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer in.Close()
	info, err := in.Stat()
	if err != nil {
		return err
	}
	if !info.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", src)
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, info.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		os.Remove(dst)
		return err
	}
	if err := out.Close(); err != nil {
		os.Remove(dst)
		return err
	}
	return os.Chmod(dst, info.Mode().Perm())
}

// LinkOrCopy hard-links src to dst where it can (the same file system),
// which costs no copy, and copies it (Copy) otherwise. A symlink src is
// followed, as a copy would; a src that is not a regular file is refused
// either way.
func LinkOrCopy(src, dst string) error {
	if err := unix.Linkat(unix.AT_FDCWD, src, unix.AT_FDCWD, dst, unix.AT_SYMLINK_FOLLOW); err == nil {
		if fi, err := os.Lstat(dst); err == nil && fi.Mode().IsRegular() {
			return nil
		}
		// Not a regular file: Copy refuses it with a reason.
		os.Remove(dst)
	}
	return Copy(src, dst)
}
