package image

// SIF images built by siftest, from the test image's rootfs.tar and from
// small trees, some made hostile.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/apptainer/sif/v2/pkg/sif"

	"github.com/kolejka-go/kolejka/internal/testenv"
	"github.com/kolejka-go/kolejka/worker/image/siftest"
)

func TestImportSIF(t *testing.T) {
	dir := testImageDir(t)
	sifPath := siftest.FromRootfsTar(t, filepath.Join(dir, "rootfs.tar"))
	s := openStore(t)
	img := mustImport(t, s, "kolejka-test:sif", sifPath)
	fromTar := mustImport(t, s, "kolejka-test:rootfs", filepath.Join(dir, "rootfs.tar"))
	if img.Format != FormatSIF {
		t.Errorf("Format = %q, want %q", img.Format, FormatSIF)
	}
	if os.Geteuid() == 0 && len(img.Notes) > 0 {
		t.Errorf("Notes = %v, want none", img.Notes)
	}
	if img.Size != fromTar.Size {
		t.Errorf("Size %d, the rootfs tar's %d: the squashfs lost or gained content", img.Size, fromTar.Size)
	}
	root := img.Rootfs
	assertMode(t, filepath.Join(root, "bin/busybox"), 0o755)
	assertLink(t, filepath.Join(root, "bin/sh"), "/bin/busybox")
	assertLink(t, filepath.Join(root, "usr/bin/wc"), "/bin/busybox")
	assertMode(t, filepath.Join(root, "tmp"), 0o777|os.ModeDir|os.ModeSticky)
	assertMode(t, filepath.Join(root, "usr/local/bin/kolejka-spin"), 0o755)
	if !strings.Contains(readFile(t, filepath.Join(root, "etc/passwd")), "nobody:x:65534:") {
		t.Errorf("etc/passwd lacks nobody")
	}
	// The job folder, with unsquashfs's tree, is gone.
	if n := dirNames(t, filepath.Join(s.Root(), "tmp")); len(n) != 0 {
		t.Errorf("tmp/ left behind: %v", n)
	}

	// One SIF is one ID: imported again into a fresh store, or under
	// another name, it is the same content.
	again := mustImport(t, openStore(t), "kolejka-test:sif", sifPath)
	if again.ID != img.ID {
		t.Errorf("the same SIF imported twice: IDs %s and %s", img.ID, again.ID)
	}
	other := mustImport(t, s, "kolejka-test:other", sifPath)
	if other.Rootfs != img.Rootfs {
		t.Errorf("another name for the same SIF got its own content: %s vs %s", other.Rootfs, img.Rootfs)
	}

	if os.Geteuid() != 0 {
		testenv.RequireRootUser(t)
	}
	out, err := exec.Command("chroot", root, "/bin/sh", "-c", "echo ok; kolejka-alloc 1").CombinedOutput()
	if err != nil || string(out) != "ok\nallocated=1048576\n" {
		t.Errorf("running the unpacked SIF: %v\n%s", err, out)
	}
}

func TestImportRefusesBadSIF(t *testing.T) {
	siftest.RequireTools(t)
	// A small good root: one file.
	small := t.TempDir()
	writeFile(t, filepath.Join(small, "etc", "hostname"), []byte("box\n"))
	good := siftest.Squashfs(t, small)
	big := t.TempDir()
	writeFile(t, filepath.Join(big, "text"), bytes.Repeat([]byte("some text to compress\n"), 5000))
	text := siftest.Squashfs(t, big)
	outside := t.TempDir() // where the hostile images aim

	tests := []struct {
		name   string
		limits Limits
		make   func(t *testing.T, dir string) string
		want   string // in the message
	}{
		{"no root partition", Limits{}, func(t *testing.T, dir string) string {
			return siftest.Write(t, filepath.Join(dir, "noroot.sif"), siftest.Object{Type: sif.DataGeneric, Data: []byte("just data")})
		}, "has no primary system partition"},
		{"root partition not squashfs", Limits{}, func(t *testing.T, dir string) string {
			return siftest.Write(t, filepath.Join(dir, "ext3.sif"),
				siftest.Object{Type: sif.DataPartition, Data: good, FS: sif.FsExt3, Part: sif.PartPrimSys})
		}, "is Ext3, not squashfs"},
		{"root for another CPU", Limits{}, func(t *testing.T, dir string) string {
			o := siftest.RootPartition(good)
			o.Arch = siftest.OtherArch()
			return siftest.Write(t, filepath.Join(dir, "arch.sif"), o)
		}, "the root partition is for " + siftest.OtherArch()},
		{"squashfs magic wrong", Limits{}, func(t *testing.T, dir string) string {
			return siftest.Write(t, filepath.Join(dir, "magic.sif"), siftest.RootPartition(bytes.Repeat([]byte("not a squashfs "), 20)))
		}, "is not a squashfs"},
		{"truncated in the partition", Limits{}, func(t *testing.T, dir string) string {
			p := siftest.Write(t, filepath.Join(dir, "cut.sif"), siftest.RootPartition(good))
			b := readFile(t, p)
			return writeFile(t, p, []byte(b[:len(b)-len(good)/2]))
		}, "past the end of the"},
		{"truncated in the header", Limits{}, func(t *testing.T, dir string) string {
			p := siftest.Write(t, filepath.Join(dir, "head.sif"), siftest.RootPartition(good))
			return writeFile(t, p, []byte(readFile(t, p)[:200]))
		}, "not a readable SIF file"},
		{"corrupt squashfs tables", Limits{}, func(t *testing.T, dir string) string {
			bad := bytes.Clone(good)
			for i := 96; i < len(bad); i++ {
				bad[i] = byte(i*7 + 3)
			}
			return siftest.Write(t, filepath.Join(dir, "corrupt.sif"), siftest.RootPartition(bad))
		}, "squashfs root partition is unreadable"},
		{"corrupt file data", Limits{}, func(t *testing.T, dir string) string {
			// The tables read well (the listing passes); the one file's
			// compressed data block, between the superblock and the
			// inode table, is garbage.
			bad := bytes.Clone(text)
			inodes := binary.LittleEndian.Uint64(bad[64:])
			for i := 96; i < int(inodes); i++ {
				bad[i] = byte(i*7 + 3)
			}
			return siftest.Write(t, filepath.Join(dir, "data.sif"), siftest.RootPartition(bad))
		}, "unable to extract the squashfs root partition"},
		{"too many bytes", Limits{MaxBytes: 3}, func(t *testing.T, dir string) string {
			return siftest.Write(t, filepath.Join(dir, "big.sif"), siftest.RootPartition(good))
		}, "holds more than 3 bytes (Limits.MaxBytes)"},
		{"too many entries", Limits{MaxEntries: 2}, func(t *testing.T, dir string) string {
			return siftest.Write(t, filepath.Join(dir, "many.sif"), siftest.RootPartition(good))
		}, "more than 2 entries (Limits.MaxEntries)"},
		{"name with ../", Limits{}, func(t *testing.T, dir string) string {
			sq := siftest.Hostile(t, func(root string) {
				writeFile(t, filepath.Join(root, "PLACEHOLDERxxxxx"), []byte("escaped\n"))
			}, "PLACEHOLDERxxxxx", "../../../../pwn1")
			return siftest.Write(t, filepath.Join(dir, "dotdot.sif"), siftest.RootPartition(sq))
		}, "squashfs root partition is unreadable"},
		{"symlink then a file through it", Limits{}, func(t *testing.T, dir string) string {
			sq := siftest.Hostile(t, func(root string) {
				if err := os.Symlink(outside, filepath.Join(root, "LINKxx")); err != nil {
					t.Fatal(err)
				}
				writeFile(t, filepath.Join(root, "DIRxxx", "pwn2"), []byte("escaped\n"))
			}, "DIRxxx", "LINKxx")
			return siftest.Write(t, filepath.Join(dir, "through.sif"), siftest.RootPartition(sq))
		}, "squashfs root partition is unreadable"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.make(t, t.TempDir())
			s := openStore(t, WithLimits(tc.limits))
			_, err := s.Import(t.Context(), "bad:sif", p)
			if !errors.Is(err, ErrBadArchive) || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Import: %v\nwant ErrBadArchive naming %s and saying %q", err, p, tc.want)
			}
			assertEmptyStore(t, s)
			for _, escaped := range []string{
				filepath.Join(filepath.Dir(s.Root()), "pwn1"), filepath.Join(s.Root(), "pwn1"), filepath.Join(outside, "pwn2"),
			} {
				assertMissing(t, escaped)
			}
		})
	}
}

// What a squashfs can hold beyond plain files comes through as the tar path
// treats it: hard links stay one file, modes (setuid, sticky, 0700
// folders), fifos, symlinks (absolute ones too), owners and times are
// kept, device nodes are skipped with a note.
func TestImportSIFKeepsTheTree(t *testing.T) {
	siftest.RequireTools(t)
	testenv.RequireRootUser(t)
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "bin", "tool"), []byte("#!/bin/sh\necho tool\n"))
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Chmod(filepath.Join(root, "bin", "tool"), os.ModeSetuid|0o755))
	must(os.Link(filepath.Join(root, "bin", "tool"), filepath.Join(root, "bin", "tool-again")))
	must(os.Symlink("/bin/tool", filepath.Join(root, "bin", "abs")))
	must(os.Mkdir(filepath.Join(root, "private"), 0o700))
	must(os.Chown(filepath.Join(root, "private"), 1234, 5678))
	must(syscall.Mkfifo(filepath.Join(root, "fifo"), 0o640))
	must(os.Mkdir(filepath.Join(root, "dev"), 0o755))
	must(syscall.Mknod(filepath.Join(root, "dev", "null"), syscall.S_IFCHR|0o666, 1<<8|3))
	when := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	must(os.Chtimes(filepath.Join(root, "bin", "tool"), when, when))

	p := siftest.Write(t, filepath.Join(t.TempDir(), "tree.sif"), siftest.RootPartition(siftest.Squashfs(t, root)))
	img := mustImport(t, openStore(t), "tree:sif", p)
	r := img.Rootfs
	assertMode(t, filepath.Join(r, "bin", "tool"), 0o755|os.ModeSetuid)
	assertLink(t, filepath.Join(r, "bin", "abs"), "/bin/tool")
	assertMode(t, filepath.Join(r, "private"), 0o700|os.ModeDir)
	assertMode(t, filepath.Join(r, "fifo"), 0o640|os.ModeNamedPipe)
	assertMissing(t, filepath.Join(r, "dev", "null"))
	a, b := statOf(t, filepath.Join(r, "bin", "tool")), statOf(t, filepath.Join(r, "bin", "tool-again"))
	if a.Ino != b.Ino || a.Nlink != 2 {
		t.Errorf("bin/tool and bin/tool-again: inodes %d and %d, %d links; want one file with two names", a.Ino, b.Ino, a.Nlink)
	}
	if st := statOf(t, filepath.Join(r, "private")); st.Uid != 1234 || st.Gid != 5678 {
		t.Errorf("private: owner %d:%d, want 1234:5678", st.Uid, st.Gid)
	}
	if fi, err := os.Stat(filepath.Join(r, "bin", "tool")); err != nil || !fi.ModTime().Equal(when) {
		t.Errorf("bin/tool: mtime %v (%v), want %v", fi.ModTime(), err, when)
	}
	if !slices.ContainsFunc(img.Notes, func(n string) bool { return strings.Contains(n, "skipped 1 device node(s): /dev/null") }) {
		t.Errorf("Notes = %v, want the skipped /dev/null", img.Notes)
	}
}

func statOf(t testing.TB, p string) *syscall.Stat_t {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t)
}
