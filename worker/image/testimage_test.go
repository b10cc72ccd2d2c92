package image

// The real test image (testdata/image/build.sh: Debian's busybox-static and
// the kolejka-spin/kolejka-alloc programs) in the three formats build.sh
// writes.

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kolejka-go/kolejka/internal/testenv"
)

// testImageDir is build.sh's output: $KOLEJKA_TESTIMAGE or the default
// <module>/build/testimage.
func testImageDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("KOLEJKA_TESTIMAGE")
	if dir == "" {
		dir = filepath.Join("..", "..", "build", "testimage")
	}
	if _, err := os.Stat(filepath.Join(dir, "rootfs.tar")); err != nil {
		testenv.Missing(t, "no test image at %s (%v): run testdata/image/build.sh first (make test does)", dir, err)
	}
	return dir
}

func TestImportBuiltTestImage(t *testing.T) {
	dir := testImageDir(t)
	s := openStore(t)

	fromTar := mustImport(t, s, "kolejka-test:rootfs", filepath.Join(dir, "rootfs.tar"))
	fromSave := mustImport(t, s, "kolejka-test:latest", filepath.Join(dir, "docker-save.tar"))
	// The OCI layout has the docker save's config: same ID, so in this
	// store it just re-points the name...
	shared := mustImport(t, s, "kolejka-test:latest", filepath.Join(dir, "oci"))
	if fromSave.ID != shared.ID || fromSave.Rootfs != shared.Rootfs {
		t.Errorf("docker save and OCI layout of one image differ: %s vs %s", fromSave.ID, shared.ID)
	}
	// ... so unpack its gzip layer in a store of its own.
	fromOCI := mustImport(t, openStore(t), "kolejka-test:latest", filepath.Join(dir, "oci"))
	if fromOCI.ID != fromSave.ID || fromOCI.Size != fromSave.Size {
		t.Errorf("OCI layout: ID %s, size %d; docker save: %s, %d", fromOCI.ID, fromOCI.Size, fromSave.ID, fromSave.Size)
	}
	if fromTar.ID == fromSave.ID {
		t.Errorf("a rootfs tar's ID is the digest of the tar, a docker image's its config's: both %s", fromTar.ID)
	}
	if ids := contentIDs(t, s); len(ids) != 2 {
		t.Errorf("content folders %v, want two (rootfs tar, docker/OCI config)", ids)
	}
	if !slices.ContainsFunc(fromOCI.Env, func(e string) bool { return strings.HasPrefix(e, "PATH=") }) {
		t.Errorf("Env = %v, want the config's PATH", fromOCI.Env)
	}
	if len(fromOCI.Notes) > 0 && os.Geteuid() == 0 {
		t.Errorf("Notes = %v, want none", fromOCI.Notes)
	}

	for _, img := range []*Image{fromTar, fromSave, fromOCI} {
		root := img.Rootfs
		fi, err := os.Stat(filepath.Join(root, "bin/busybox"))
		if err != nil {
			t.Fatal(err)
		}
		if !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o755 || fi.Size() < 500_000 {
			t.Errorf("%s: bin/busybox is %v, %d bytes", img.Format, fi.Mode(), fi.Size())
		}
		assertLink(t, filepath.Join(root, "bin/sh"), "/bin/busybox")
		assertLink(t, filepath.Join(root, "usr/bin/wc"), "/bin/busybox")
		assertMode(t, filepath.Join(root, "tmp"), 0o777|os.ModeDir|os.ModeSticky)
		assertMode(t, filepath.Join(root, "usr/local/bin/kolejka-spin"), 0o755)
		assertMode(t, filepath.Join(root, "usr/local/bin/kolejka-alloc"), 0o755)
		if !strings.Contains(readFile(t, filepath.Join(root, "etc/passwd")), "nobody:x:65534:") {
			t.Errorf("%s: etc/passwd lacks nobody", img.Format)
		}
		if img.Size < fi.Size() {
			t.Errorf("%s: Size %d is less than busybox alone", img.Format, img.Size)
		}
	}

	// The unpacked image runs: chroot into it (root only).
	if os.Geteuid() != 0 {
		testenv.RequireRootUser(t)
	}
	out, err := exec.Command("chroot", fromSave.Rootfs, "/bin/sh", "-c",
		"echo ok; kolejka-alloc 1; kolejka-spin 0.01 | cut -d= -f1").CombinedOutput()
	if err != nil || string(out) != "ok\nallocated=1048576\nrusage_us\n" {
		t.Errorf("running the unpacked image: %v\n%s", err, out)
	}
}

// Archives written by an independent tool (skopeo, Debian package skopeo)
// import to the same image: our readers follow the formats, not just our
// own writers. skopeo's docker-archive links <id>/layer.tar to <diff>.tar.
func TestImportSkopeoArchives(t *testing.T) {
	dir := testImageDir(t)
	skopeo, err := exec.LookPath("skopeo")
	if err != nil {
		testenv.Missing(t, "skopeo is not installed (apt-get install skopeo)")
	}
	out := t.TempDir()
	src := "oci:" + filepath.Join(dir, "oci") + ":latest"
	for _, args := range [][]string{
		{"copy", "-q", src, "docker-archive:" + filepath.Join(out, "save.tar") + ":kolejka-test:skopeo"},
		{"copy", "-q", src, "oci-archive:" + filepath.Join(out, "oci.tar") + ":skopeo"},
		{"copy", "-q", "--dest-compress-format", "zstd", src, "oci:" + filepath.Join(out, "zstd") + ":skopeo"},
	} {
		if b, err := exec.Command(skopeo, args...).CombinedOutput(); err != nil {
			t.Fatalf("skopeo %v: %v\n%s", args, err, b)
		}
	}
	want := mustImport(t, openStore(t), "kolejka-test:latest", filepath.Join(dir, "oci"))
	for _, p := range []string{"save.tar", "oci.tar", "zstd"} {
		// A fresh store each: in one store, an image whose ID is already
		// present is not unpacked again, and its layers would go unread.
		img := mustImport(t, openStore(t), "kolejka-test:skopeo", filepath.Join(out, p))
		if img.ID != want.ID {
			t.Errorf("%s: ID %s, want %s (skopeo keeps the config)", p, img.ID, want.ID)
		}
		assertLink(t, filepath.Join(img.Rootfs, "bin/sh"), "/bin/busybox")
		assertMode(t, filepath.Join(img.Rootfs, "bin/busybox"), 0o755)
		if img.Size != want.Size {
			t.Errorf("%s: Size %d, want %d", p, img.Size, want.Size)
		}
	}
}
