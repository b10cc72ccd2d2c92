package image

// SIF images built here from the test image's rootfs.tar with Debian's
// squashfs-tools (mksquashfs) and github.com/apptainer/sif/v2, as
// `apptainer build` lays them out: a primary system partition holding a
// squashfs of the root.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/apptainer/sif/v2/pkg/sif"

	"github.com/kolejka-go/kolejka/internal/testenv"
)

// requireSquashfsTools skips (fails under KOLEJKA_REQUIRE_PRIVILEGED=1)
// without squashfs-tools.
func requireSquashfsTools(t testing.TB) {
	t.Helper()
	for _, tool := range []string{"mksquashfs", "unsquashfs"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Missing(t, "%s is not installed (apt-get install squashfs-tools)", tool)
		}
	}
}

// mksquashfs makes a squashfs of dir; extra options go first.
func mksquashfs(t testing.TB, dir string, extra ...string) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "root.squashfs")
	args := append([]string{dir, out, "-noappend", "-no-progress", "-quiet", "-no-xattrs"}, extra...)
	if os.Geteuid() != 0 {
		args = append(args, "-all-root")
	}
	if b, err := exec.Command("mksquashfs", args...).CombinedOutput(); err != nil {
		t.Fatalf("mksquashfs %v: %v\n%s", args, err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sifObject is one data object of a SIF file.
type sifObject struct {
	typ  sif.DataType
	data []byte
	fs   sif.FSType // for partitions
	part sif.PartType
}

func rootPartition(squashfs []byte) sifObject {
	return sifObject{typ: sif.DataPartition, data: squashfs, fs: sif.FsSquash, part: sif.PartPrimSys}
}

// writeSIF writes a SIF file holding objs at path.
func writeSIF(t testing.TB, path string, objs ...sifObject) string {
	t.Helper()
	var dis []sif.DescriptorInput
	for _, o := range objs {
		var opts []sif.DescriptorInputOpt
		if o.typ == sif.DataPartition {
			opts = append(opts, sif.OptPartitionMetadata(o.fs, o.part, runtime.GOARCH))
		}
		di, err := sif.NewDescriptorInput(o.typ, bytes.NewReader(o.data), opts...)
		if err != nil {
			t.Fatal(err)
		}
		dis = append(dis, di)
	}
	f, err := sif.CreateContainerAtPath(path, sif.OptCreateWithDescriptors(dis...), sif.OptCreateDeterministic())
	if err != nil {
		t.Fatalf("creating SIF %s: %v", path, err)
	}
	if err := f.UnloadContainer(); err != nil {
		t.Fatal(err)
	}
	return path
}

// buildTestSIF turns the test image's rootfs.tar into a SIF file in a
// temporary folder and returns its path.
func buildTestSIF(t testing.TB, rootfsTar string) string {
	t.Helper()
	requireSquashfsTools(t)
	root := filepath.Join(t.TempDir(), "rootfs")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command("tar", "-xf", rootfsTar, "-C", root).CombinedOutput(); err != nil {
		t.Fatalf("unpacking %s: %v\n%s", rootfsTar, err, b)
	}
	return writeSIF(t, filepath.Join(t.TempDir(), "image.sif"), rootPartition(mksquashfs(t, root)))
}

// BuildTestSIF is buildTestSIF for the package's external tests (a task
// run through the runc runtime, which imports this package).
var BuildTestSIF = buildTestSIF

func TestImportSIF(t *testing.T) {
	dir := testImageDir(t)
	sifPath := buildTestSIF(t, filepath.Join(dir, "rootfs.tar"))
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

// A squashfs with an entry that tries to leave the root: mksquashfs only
// writes good names, so the test writes the image uncompressed (-noI: the
// directory table is plain bytes) with placeholder names and then puts the
// hostile names in their place, same length.
func hostileSquashfs(t testing.TB, build func(root string), patches ...string) []byte {
	t.Helper()
	root := filepath.Join(t.TempDir(), "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	build(root)
	b := mksquashfs(t, root, "-noI", "-noD", "-noF")
	for i := 0; i+1 < len(patches); i += 2 {
		from, to := []byte(patches[i]), []byte(patches[i+1])
		if len(from) != len(to) || bytes.Count(b, from) != 1 {
			t.Fatalf("placeholder %q: %d times in the squashfs, want once (and %q of the same length)", from, bytes.Count(b, from), to)
		}
		b = bytes.Replace(b, from, to, 1)
	}
	return b
}

func TestImportRefusesBadSIF(t *testing.T) {
	requireSquashfsTools(t)
	// A small good root: one file.
	small := t.TempDir()
	writeFile(t, filepath.Join(small, "etc", "hostname"), []byte("box\n"))
	good := mksquashfs(t, small)
	big := t.TempDir()
	writeFile(t, filepath.Join(big, "text"), bytes.Repeat([]byte("some text to compress\n"), 5000))
	text := mksquashfs(t, big)
	outside := t.TempDir() // where the hostile images aim

	tests := []struct {
		name   string
		limits Limits
		make   func(t *testing.T, dir string) string
		want   string // in the message
	}{
		{"no root partition", Limits{}, func(t *testing.T, dir string) string {
			return writeSIF(t, filepath.Join(dir, "noroot.sif"), sifObject{typ: sif.DataGeneric, data: []byte("just data")})
		}, "has no primary system partition"},
		{"root partition not squashfs", Limits{}, func(t *testing.T, dir string) string {
			return writeSIF(t, filepath.Join(dir, "ext3.sif"),
				sifObject{typ: sif.DataPartition, data: good, fs: sif.FsExt3, part: sif.PartPrimSys})
		}, "is Ext3, not squashfs"},
		{"squashfs magic wrong", Limits{}, func(t *testing.T, dir string) string {
			return writeSIF(t, filepath.Join(dir, "magic.sif"), rootPartition(bytes.Repeat([]byte("not a squashfs "), 20)))
		}, "is not a squashfs"},
		{"truncated in the partition", Limits{}, func(t *testing.T, dir string) string {
			p := writeSIF(t, filepath.Join(dir, "cut.sif"), rootPartition(good))
			b := readFile(t, p)
			return writeFile(t, p, []byte(b[:len(b)-len(good)/2]))
		}, "past the end of the"},
		{"truncated in the header", Limits{}, func(t *testing.T, dir string) string {
			p := writeSIF(t, filepath.Join(dir, "head.sif"), rootPartition(good))
			return writeFile(t, p, []byte(readFile(t, p)[:200]))
		}, "not a readable SIF file"},
		{"corrupt squashfs tables", Limits{}, func(t *testing.T, dir string) string {
			bad := bytes.Clone(good)
			for i := 96; i < len(bad); i++ {
				bad[i] = byte(i*7 + 3)
			}
			return writeSIF(t, filepath.Join(dir, "corrupt.sif"), rootPartition(bad))
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
			return writeSIF(t, filepath.Join(dir, "data.sif"), rootPartition(bad))
		}, "unable to extract the squashfs root partition"},
		{"too many bytes", Limits{MaxBytes: 3}, func(t *testing.T, dir string) string {
			return writeSIF(t, filepath.Join(dir, "big.sif"), rootPartition(good))
		}, "holds more than 3 bytes (Limits.MaxBytes)"},
		{"too many entries", Limits{MaxEntries: 2}, func(t *testing.T, dir string) string {
			return writeSIF(t, filepath.Join(dir, "many.sif"), rootPartition(good))
		}, "more than 2 entries (Limits.MaxEntries)"},
		{"name with ../", Limits{}, func(t *testing.T, dir string) string {
			sq := hostileSquashfs(t, func(root string) {
				writeFile(t, filepath.Join(root, "PLACEHOLDERxxxxx"), []byte("escaped\n"))
			}, "PLACEHOLDERxxxxx", "../../../../pwn1")
			return writeSIF(t, filepath.Join(dir, "dotdot.sif"), rootPartition(sq))
		}, "squashfs root partition is unreadable"},
		{"symlink then a file through it", Limits{}, func(t *testing.T, dir string) string {
			sq := hostileSquashfs(t, func(root string) {
				if err := os.Symlink(outside, filepath.Join(root, "LINKxx")); err != nil {
					t.Fatal(err)
				}
				writeFile(t, filepath.Join(root, "DIRxxx", "pwn2"), []byte("escaped\n"))
			}, "DIRxxx", "LINKxx")
			return writeSIF(t, filepath.Join(dir, "through.sif"), rootPartition(sq))
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
