// Package siftest builds SIF (Singularity / Apptainer) images for tests, as
// `apptainer build` lays them out: a primary system partition holding a
// squashfs of the root, made by Debian's squashfs-tools (mksquashfs) and
// wrapped by github.com/apptainer/sif/v2.
package siftest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/apptainer/sif/v2/pkg/sif"

	"github.com/kolejka-go/kolejka/internal/testenv"
)

// RequireTools skips t (fails it under KOLEJKA_REQUIRE_PRIVILEGED=1)
// without squashfs-tools.
func RequireTools(t testing.TB) {
	t.Helper()
	for _, tool := range []string{"mksquashfs", "unsquashfs"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Missing(t, "%s is not installed (apt-get install squashfs-tools)", tool)
		}
	}
}

// Squashfs makes a squashfs of dir; extra are more mksquashfs options.
// Without root the owners become root (mksquashfs -all-root), as an
// unprivileged `apptainer build` makes them.
func Squashfs(t testing.TB, dir string, extra ...string) []byte {
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

// Object is one data object of a SIF file.
type Object struct {
	Type sif.DataType
	Data []byte
	FS   sif.FSType   // for partitions
	Part sif.PartType // for partitions
	Arch string       // for partitions, as GOARCH says it; "" this machine's
}

// RootPartition is the object a SIF's root file system lives in.
func RootPartition(squashfs []byte) Object {
	return Object{Type: sif.DataPartition, Data: squashfs, FS: sif.FsSquash, Part: sif.PartPrimSys}
}

// Write writes a SIF file holding objs at path and returns path.
func Write(t testing.TB, path string, objs ...Object) string {
	t.Helper()
	var dis []sif.DescriptorInput
	for _, o := range objs {
		var opts []sif.DescriptorInputOpt
		if o.Type == sif.DataPartition {
			arch := o.Arch
			if arch == "" {
				arch = runtime.GOARCH
			}
			opts = append(opts, sif.OptPartitionMetadata(o.FS, o.Part, arch))
		}
		di, err := sif.NewDescriptorInput(o.Type, bytes.NewReader(o.Data), opts...)
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

// FromRootfsTar turns a root file system tar (the test image's rootfs.tar)
// into a SIF file in a temporary folder and returns its path.
func FromRootfsTar(t testing.TB, rootfsTar string) string {
	t.Helper()
	RequireTools(t)
	root := filepath.Join(t.TempDir(), "rootfs")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command("tar", "-xf", rootfsTar, "-C", root).CombinedOutput(); err != nil {
		t.Fatalf("unpacking %s: %v\n%s", rootfsTar, err, b)
	}
	return Write(t, filepath.Join(t.TempDir(), "image.sif"), RootPartition(Squashfs(t, root)))
}

// Hostile makes a squashfs with entries mksquashfs would never write: build
// fills a tree with placeholder names, the image is written uncompressed
// (-noI: the directory table is plain bytes), and each placeholder in
// patches (from, to, from, to, ...) is replaced by the hostile name of the
// same length, e.g. "../../x" or the name of a symlink beside it.
func Hostile(t testing.TB, build func(root string), patches ...string) []byte {
	t.Helper()
	root := filepath.Join(t.TempDir(), "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	build(root)
	b := Squashfs(t, root, "-noI", "-noD", "-noF")
	for i := 0; i+1 < len(patches); i += 2 {
		from, to := []byte(patches[i]), []byte(patches[i+1])
		if len(from) != len(to) || bytes.Count(b, from) != 1 {
			t.Fatalf("placeholder %q: %d times in the squashfs, want once (and %q of the same length)", from, bytes.Count(b, from), to)
		}
		b = bytes.Replace(b, from, to, 1)
	}
	return b
}

// OtherArch is a CPU architecture SIF knows that this machine is not.
func OtherArch() string {
	if runtime.GOARCH == "arm64" {
		return "amd64"
	}
	return "arm64"
}
