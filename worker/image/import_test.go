package image

import (
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// rootfsEntries is a small file system with every kind of entry the store
// must reproduce.
func rootfsEntries() []ent {
	owned := reg("home/user/owned", "mine\n", 0o600)
	owned.uid, owned.gid = 1000, 1001
	return []ent{
		dir("./", 0o755),
		dir("./bin/", 0o755),
		reg("./bin/tool", "#!/bin/sh\necho tool\n", 0o755),
		hard("./bin/tool-again", "./bin/tool", 0o755),
		sym("./bin/relative", "tool"),
		sym("./bin/sh", "/bin/tool"),
		reg("./bin/su", "setuid\n", 0o4755),
		dir("./etc/", 0o755),
		reg("./etc/secret", "s3cret\n", 0o640),
		reg("./etc/.wh.literal", "a plain rootfs tar has no whiteouts\n", 0o644),
		dir("./tmp/", 0o1777),
		{name: "./run/fifo", typ: '6', mode: 0o600}, // tar.TypeFifo
		dir("./home/", 0o755),
		dir("./home/user/", 0o700),
		owned,
		reg("./usr/lib/implied", "parent folders without entries\n", 0o644),
	}
}

func checkRootfs(t *testing.T, root string) {
	t.Helper()
	if got := readFile(t, filepath.Join(root, "bin/tool")); got != "#!/bin/sh\necho tool\n" {
		t.Errorf("bin/tool = %q", got)
	}
	assertMode(t, filepath.Join(root, "bin/tool"), 0o755)
	assertMode(t, filepath.Join(root, "bin/su"), 0o755|os.ModeSetuid)
	assertMode(t, filepath.Join(root, "etc/secret"), 0o640)
	assertMode(t, filepath.Join(root, "tmp"), 0o777|os.ModeDir|os.ModeSticky)
	assertMode(t, filepath.Join(root, "home/user"), 0o700|os.ModeDir)
	assertMode(t, filepath.Join(root, "run/fifo"), 0o600|os.ModeNamedPipe)
	assertMode(t, root, 0o755|os.ModeDir)
	assertLink(t, filepath.Join(root, "bin/relative"), "tool")
	assertLink(t, filepath.Join(root, "bin/sh"), "/bin/tool")
	if got := readFile(t, filepath.Join(root, "etc/.wh.literal")); !strings.Contains(got, "no whiteouts") {
		t.Errorf("etc/.wh.literal = %q", got)
	}
	if got := readFile(t, filepath.Join(root, "usr/lib/implied")); !strings.HasPrefix(got, "parent") {
		t.Errorf("usr/lib/implied = %q", got)
	}
	a, err := os.Stat(filepath.Join(root, "bin/tool"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.Stat(filepath.Join(root, "bin/tool-again"))
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(a, b) {
		t.Error("bin/tool-again is not a hard link of bin/tool")
	}
	if os.Geteuid() == 0 {
		fi, err := os.Stat(filepath.Join(root, "home/user/owned"))
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if st.Uid != 1000 || st.Gid != 1001 {
			t.Errorf("home/user/owned is owned by %d:%d, want 1000:1001", st.Uid, st.Gid)
		}
	}
}

func TestImportRootfsTar(t *testing.T) {
	s := openStore(t)
	plain := mkTar(t, rootfsEntries()...)
	dir := t.TempDir()
	p := writeFile(t, filepath.Join(dir, "rootfs.tar"), plain)

	img := mustImport(t, s, "example/rootfs:1.0", p)
	checkRootfs(t, img.Rootfs)
	if want := digest.FromBytes(plain).String(); img.ID != want {
		t.Errorf("ID = %s, want the sha256 of the tar %s", img.ID, want)
	}
	if img.Name != "docker.io/example/rootfs:1.0" || img.Format != FormatRootfsTar {
		t.Errorf("Name, Format = %s, %s", img.Name, img.Format)
	}
	// Regular files: tool (hard-linked, counted once), su, secret,
	// .wh.literal, owned, implied.
	want := int64(len("#!/bin/sh\necho tool\n") + len("setuid\n") + len("s3cret\n") +
		len("a plain rootfs tar has no whiteouts\n") + len("mine\n") + len("parent folders without entries\n"))
	if img.Size != want {
		t.Errorf("Size = %d, want %d", img.Size, want)
	}
	if !filepath.IsAbs(img.Rootfs) || !strings.HasPrefix(img.Rootfs, s.Root()) {
		t.Errorf("Rootfs %s is not an absolute path in the store", img.Rootfs)
	}

	// The same tar, compressed, is the same image: one content folder.
	again := mustImport(t, s, "example/rootfs:gz", writeFile(t, filepath.Join(dir, "rootfs.tar.gz"), gzipped(t, plain)))
	third := mustImport(t, s, "example/rootfs:zst", writeFile(t, filepath.Join(dir, "rootfs.tar.zst"), zstdCompressed(t, plain)))
	if again.ID != img.ID || third.ID != img.ID || again.Rootfs != img.Rootfs {
		t.Errorf("compressed imports got IDs %s, %s; want %s", again.ID, third.ID, img.ID)
	}
	if ids := contentIDs(t, s); !slices.Equal(ids, []string{img.ID}) {
		t.Errorf("content folders %v, want just %s", ids, img.ID)
	}
	if n := dirNames(t, filepath.Join(s.Root(), "tmp")); len(n) != 0 {
		t.Errorf("tmp/ not cleaned: %v", n)
	}
}

func TestImportDockerSaveAppliesWhiteouts(t *testing.T) {
	s := openStore(t)
	lower := mkTar(t,
		dir("etc/", 0o755),
		reg("etc/keep", "keep\n", 0o644),
		reg("etc/gone", "gone\n", 0o644),
		dir("opt/", 0o755),
		reg("opt/old", "old\n", 0o644),
		dir("opt/sub/", 0o755),
		reg("opt/sub/deeper", "deeper\n", 0o644),
		reg("bin/tool", "v1\n", 0o755),
	)
	upper := mkTar(t,
		reg("etc/.wh.gone", "", 0o644),
		dir("opt/", 0o750),
		reg("opt/.wh..wh..opq", "", 0o644),
		reg("opt/new", "new\n", 0o644),
		reg("bin/tool", "v2\n", 0o755),
	)
	img := testImage{tags: []string{"example/tool:1.0"}, layers: [][]byte{lower, upper}, env: []string{"PATH=/bin", "LANG=C"}}
	files := dockerSaveFiles(t, img)
	p := writeFile(t, filepath.Join(t.TempDir(), "save.tar"), tarOf(t, files))

	got := mustImport(t, s, "example/tool:1.0", p)
	root := got.Rootfs
	if readFile(t, filepath.Join(root, "etc/keep")) != "keep\n" {
		t.Error("etc/keep lost")
	}
	assertMissing(t, filepath.Join(root, "etc/gone"))
	assertMissing(t, filepath.Join(root, "etc/.wh.gone"))
	assertMissing(t, filepath.Join(root, "opt/old"))
	assertMissing(t, filepath.Join(root, "opt/sub"))
	assertMissing(t, filepath.Join(root, "opt/.wh..wh..opq"))
	if readFile(t, filepath.Join(root, "opt/new")) != "new\n" {
		t.Error("opt/new missing")
	}
	assertMode(t, filepath.Join(root, "opt"), 0o750|os.ModeDir)
	if readFile(t, filepath.Join(root, "bin/tool")) != "v2\n" {
		t.Error("bin/tool not replaced by the upper layer")
	}
	if want := digest.FromBytes(img.config(t)).String(); got.ID != want {
		t.Errorf("ID = %s, want the config digest %s", got.ID, want)
	}
	if got.Format != FormatDockerSave || !slices.Equal(got.Env, []string{"PATH=/bin", "LANG=C"}) {
		t.Errorf("Format, Env = %s, %v", got.Format, got.Env)
	}

	// Re-import: same ID, and the published content is reused, not
	// unpacked again (the rootfs folder is the very same inode).
	before, err := os.Stat(root)
	if err != nil {
		t.Fatal(err)
	}
	again := mustImport(t, s, "example/tool:1.0", p)
	after, err := os.Stat(again.Rootfs)
	if err != nil {
		t.Fatal(err)
	}
	if again.ID != got.ID || !os.SameFile(before, after) {
		t.Errorf("re-import: ID %s (want %s), same folder %v", again.ID, got.ID, os.SameFile(before, after))
	}
	if ids := contentIDs(t, s); len(ids) != 1 {
		t.Errorf("content folders %v, want one", ids)
	}
}

// Legacy docker save stores a layer that occurs in several images once and
// links the other occurrences to it with a symlink.
func TestImportDockerSaveLinkedLayer(t *testing.T) {
	s := openStore(t)
	a := mkTar(t, reg("a", "from a\n", 0o644))
	b := mkTar(t, reg("b", "from b\n", 0o644))
	files := dockerSaveFiles(t, testImage{tags: []string{"linked:1"}, layers: [][]byte{a, b}})
	var m []dockerManifestEntry
	if err := decodeJSONBytes(files["manifest.json"], &m); err != nil {
		t.Fatal(err)
	}
	target := m[0].Layers[1]
	m[0].Layers[1] = "linked/layer.tar"
	files["manifest.json"] = mustJSON(t, m)
	ents := []ent{sym("linked/layer.tar", "../"+target)}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		ents = append(ents, reg(name, string(files[name]), 0o644))
	}
	got := mustImport(t, s, "linked:1", writeFile(t, filepath.Join(t.TempDir(), "save.tar"), mkTar(t, ents...)))
	if readFile(t, filepath.Join(got.Rootfs, "b")) != "from b\n" {
		t.Error("the layer behind the symlink was not applied")
	}

	// A link leaving the archive is refused. (A fresh store: in this one
	// the image's ID is already present, so its layers would not be read.)
	s = openStore(t)
	ents[0] = sym("linked/layer.tar", "../../"+target)
	_, err := s.Import(t.Context(), "linked:2", writeFile(t, filepath.Join(t.TempDir(), "save.tar"), mkTar(t, ents...)))
	if !errors.Is(err, ErrBadArchive) || !strings.Contains(err.Error(), "links outside the archive") {
		t.Errorf("symlink out of the archive: %v", err)
	}
}

func decodeJSONBytes(b []byte, v any) error {
	return decodeJSON(&tarSource{path: "test"}, "test", b, v)
}

func TestImportDockerSaveChoosesByName(t *testing.T) {
	s := openStore(t)
	a := testImage{tags: []string{"a:1"}, layers: [][]byte{mkTar(t, reg("which", "a\n", 0o644))}}
	b := testImage{tags: []string{"b:1", "docker.io/library/b:latest"}, layers: [][]byte{mkTar(t, reg("which", "b\n", 0o644))}}
	p := writeFile(t, filepath.Join(t.TempDir(), "two.tar"), tarOf(t, dockerSaveFiles(t, a, b)))

	got := mustImport(t, s, "b", p) // b:latest, the second tag of b
	if readFile(t, filepath.Join(got.Rootfs, "which")) != "b\n" {
		t.Error("imported the wrong image for b")
	}
	got = mustImport(t, s, "docker.io/library/a:1", p)
	if readFile(t, filepath.Join(got.Rootfs, "which")) != "a\n" {
		t.Error("imported the wrong image for a:1")
	}
	_, err := s.Import(t.Context(), "c:1", p)
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "a:1, b:1, docker.io/library/b:latest") {
		t.Errorf("Import of a missing name: %v; want ErrNotFound listing the names", err)
	}
}

func TestImportOCILayout(t *testing.T) {
	s := openStore(t)
	lower := mkTar(t, dir("etc/", 0o755), reg("etc/gone", "x\n", 0o644), reg("etc/keep", "k\n", 0o600))
	upper := mkTar(t, reg("etc/.wh.gone", "", 0o644), sym("etc/link", "keep"))
	img := testImage{tags: []string{"latest", "docker.io/example/oci:latest"}, layers: [][]byte{lower, upper}, env: []string{"A=1"}}
	layout := ociFiles(t, img)
	dirPath := writeTree(t, filepath.Join(t.TempDir(), "layout"), layout.files)
	tarPath := writeFile(t, filepath.Join(t.TempDir(), "layout.tar"), tarOf(t, layout.files))

	fromDir := mustImport(t, s, "example/oci", dirPath)
	assertMissing(t, filepath.Join(fromDir.Rootfs, "etc/gone"))
	assertMode(t, filepath.Join(fromDir.Rootfs, "etc/keep"), 0o600)
	assertLink(t, filepath.Join(fromDir.Rootfs, "etc/link"), "keep")
	if want := digest.FromBytes(img.config(t)).String(); fromDir.ID != want {
		t.Errorf("ID = %s, want the config digest %s", fromDir.ID, want)
	}
	if fromDir.Format != FormatOCI || !slices.Equal(fromDir.Env, []string{"A=1"}) {
		t.Errorf("Format, Env = %s, %v", fromDir.Format, fromDir.Env)
	}
	fromTar := mustImport(t, s, "example/oci:tar", tarPath)
	if fromTar.ID != fromDir.ID || fromTar.Rootfs != fromDir.Rootfs {
		t.Errorf("OCI tar and folder differ: %s vs %s", fromTar.ID, fromDir.ID)
	}
	// The docker save of the same image has the same config, so the same ID.
	save := writeFile(t, filepath.Join(t.TempDir(), "save.tar"), tarOf(t, dockerSaveFiles(t, img)))
	if fromSave := mustImport(t, s, "example/oci:save", save); fromSave.ID != fromDir.ID {
		t.Errorf("docker save of the same image: ID %s, want %s", fromSave.ID, fromDir.ID)
	}
	if ids := contentIDs(t, s); len(ids) != 1 {
		t.Errorf("content folders %v, want one", ids)
	}
}

func TestImportOCIChoosesByRefName(t *testing.T) {
	s := openStore(t)
	one := testImage{tags: []string{"1.0"}, layers: [][]byte{mkTar(t, reg("v", "1\n", 0o644))}}
	two := testImage{tags: []string{"2.0"}, layers: [][]byte{mkTar(t, reg("v", "2\n", 0o644))}}
	full := testImage{tags: []string{"registry.example/team/judge:3.0"}, layers: [][]byte{mkTar(t, reg("v", "3\n", 0o644))}}
	layout := ociFiles(t, one, two, full)
	p := writeTree(t, filepath.Join(t.TempDir(), "layout"), layout.files)

	for name, want := range map[string]string{"x:2.0": "2\n", "x:1.0": "1\n", "registry.example/team/judge:3.0": "3\n"} {
		img := mustImport(t, s, name, p)
		if got := readFile(t, filepath.Join(img.Rootfs, "v")); got != want {
			t.Errorf("%s: got v=%q, want %q", name, got, want)
		}
	}
	_, err := s.Import(t.Context(), "x:4.0", p)
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "1.0, 2.0, registry.example/team/judge:3.0") {
		t.Errorf("Import of a missing name: %v", err)
	}
}

// An image index (multi-platform) inside the layout resolves to this
// machine's platform.
func TestImportOCIIndexPicksPlatform(t *testing.T) {
	s := openStore(t)
	native := testImage{layers: [][]byte{mkTar(t, reg("arch", "native\n", 0o644))}}
	other := testImage{layers: [][]byte{mkTar(t, reg("arch", "other\n", 0o644))}}
	layout := ociFiles(t, other, native)
	layout.manifests[0].Platform = &ocispec.Platform{OS: "linux", Architecture: "s390x"}
	layout.manifests[1].Platform = &ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH}
	nested := mustJSON(t, ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: layout.manifests})
	nd := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: digest.FromBytes(nested), Size: int64(len(nested)),
		Annotations: map[string]string{ocispec.AnnotationRefName: "multi"}}
	layout.files["blobs/sha256/"+nd.Digest.Encoded()] = nested
	layout.manifests = []ocispec.Descriptor{nd}
	layout.writeIndex(t)
	p := writeTree(t, filepath.Join(t.TempDir(), "layout"), layout.files)

	img := mustImport(t, s, "x:multi", p)
	if got := readFile(t, filepath.Join(img.Rootfs, "arch")); got != "native\n" {
		t.Errorf("picked %q, want the native image", got)
	}
}

// Docker 25+ writes `docker save` archives that are OCI layouts as well;
// manifest.json wins.
func TestImportDockerSaveThatIsAlsoOCI(t *testing.T) {
	s := openStore(t)
	img := testImage{tags: []string{"both:1"}, layers: [][]byte{mkTar(t, reg("f", "both\n", 0o644))}}
	layout := ociFiles(t, img)
	config := img.config(t)
	layerTar := img.layers[0]
	files := layout.files
	files["blobs/sha256/"+digest.FromBytes(layerTar).Encoded()] = layerTar
	files["manifest.json"] = mustJSON(t, []dockerManifestEntry{{
		Config:   "blobs/sha256/" + digest.FromBytes(config).Encoded(),
		RepoTags: []string{"both:1"},
		Layers:   []string{"blobs/sha256/" + digest.FromBytes(layerTar).Encoded()},
	}})
	got := mustImport(t, s, "both:1", writeFile(t, filepath.Join(t.TempDir(), "save.tar"), tarOf(t, files)))
	if got.Format != FormatDockerSave || readFile(t, filepath.Join(got.Rootfs, "f")) != "both\n" {
		t.Errorf("Format %s", got.Format)
	}
}

// Device nodes are skipped with a note (see unpacker.filter for why).
func TestImportSkipsDeviceNodes(t *testing.T) {
	s := openStore(t)
	p := writeFile(t, filepath.Join(t.TempDir(), "dev.tar"), mkTar(t,
		dir("dev/", 0o755),
		ent{name: "dev/null", typ: '3', mode: 0o666, major: 1, minor: 3}, // tar.TypeChar
		ent{name: "dev/sda", typ: '4', mode: 0o660, major: 8, minor: 0},  // tar.TypeBlock
		reg("etc/hostname", "box\n", 0o644),
	))
	img := mustImport(t, s, "dev", p)
	assertMissing(t, filepath.Join(img.Rootfs, "dev/null"))
	assertMissing(t, filepath.Join(img.Rootfs, "dev/sda"))
	if readFile(t, filepath.Join(img.Rootfs, "etc/hostname")) != "box\n" {
		t.Error("etc/hostname missing")
	}
	if len(img.Notes) == 0 || !strings.Contains(img.Notes[0], "skipped 2 device node(s): /dev/null, /dev/sda") {
		t.Errorf("Notes = %q", img.Notes)
	}
	if again, err := s.Get("dev"); err != nil || !slices.Equal(again.Notes, img.Notes) {
		t.Errorf("Get: %v, notes %q", err, again.Notes)
	}
}

func TestImportCanceled(t *testing.T) {
	s := openStore(t)
	p := writeFile(t, filepath.Join(t.TempDir(), "r.tar"), mkTar(t, rootfsEntries()...))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.Import(ctx, "x", p); !errors.Is(err, context.Canceled) {
		t.Fatalf("Import with a canceled context: %v", err)
	}
	assertEmptyStore(t, s)
}
