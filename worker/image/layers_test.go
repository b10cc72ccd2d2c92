package image

// The layer store: layers shared between images are on disk once, removed
// only with their last image, verified, and never left half-made.

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	digest "github.com/opencontainers/go-digest"

	"github.com/kolejka-go/kolejka/internal/flock"
	"github.com/kolejka-go/kolejka/worker/image/registrytest"
)

func layerDigests(t *testing.T, img v1.Image) []v1.Hash {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var out []v1.Hash
	for _, l := range layers {
		h, err := l.Digest()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, h)
	}
	return out
}

func nlink(t *testing.T, p string) uint64 {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return uint64(fi.Sys().(*syscall.Stat_t).Nlink)
}

func layerFile(s *Store, diffID, name string) string {
	alg, hex, _ := strings.Cut(diffID, ":")
	return filepath.Join(s.Root(), "layers", alg, hex, "tree", name)
}

func TestPullSharesBaseLayer(t *testing.T) {
	r := registrytest.New(t)
	base := map[string]string{"lib/base.so": strings.Repeat("b", 64<<10)}
	a := registrytest.Image(t, "linux", runtime.GOARCH, base, map[string]string{"which": "a\n"})
	b := registrytest.Image(t, "linux", runtime.GOARCH, base, map[string]string{"which": "b\n"})
	if la, lb := layerDigests(t, a), layerDigests(t, b); la[0] != lb[0] || la[1] == lb[1] {
		t.Fatalf("test images do not share exactly their base layer: %v %v", la, lb)
	}
	baseBlob := layerDigests(t, a)[0]
	r.Push(t, "judge/a:1", a)
	r.Push(t, "judge/b:1", b)
	reg := testRegistry(t, RegistryConfig{Insecure: []string{r.Host}})
	s := openStore(t)

	imgA, err := s.Pull(t.Context(), reg, r.Host+"/judge/a:1")
	if err != nil {
		t.Fatal(err)
	}
	before := len(r.Fetched())
	imgB, err := s.Pull(t.Context(), reg, r.Host+"/judge/b:1")
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(r.Fetched()[before:], baseBlob.String()) {
		t.Errorf("the shared base layer %s was downloaded again", baseBlob)
	}
	if len(imgA.Layers) != 2 || len(imgB.Layers) != 2 || imgA.Layers[0] != imgB.Layers[0] {
		t.Fatalf("layers: %v and %v", imgA.Layers, imgB.Layers)
	}
	if readRootfsFile(t, imgA, "which") != "a\n" || readRootfsFile(t, imgB, "which") != "b\n" {
		t.Error("the images' own layers got mixed")
	}

	// On disk: three layer folders, the base once; both rootfs files are
	// the base layer's inode.
	if ids := layerIDs(t, s); len(ids) != 3 || !slices.Contains(ids, imgA.Layers[0]) {
		t.Errorf("layers on disk %v, want three with the base %s once", ids, imgA.Layers[0])
	}
	shared := layerFile(s, imgA.Layers[0], "lib/base.so")
	for _, img := range []*Image{imgA, imgB} {
		fa, err := os.Stat(filepath.Join(img.Rootfs, "lib/base.so"))
		if err != nil {
			t.Fatal(err)
		}
		fl, err := os.Stat(shared)
		if err != nil {
			t.Fatal(err)
		}
		if !os.SameFile(fa, fl) {
			t.Errorf("%s: lib/base.so is not the base layer's file", img.Name)
		}
	}
	if n := nlink(t, shared); n != 3 {
		t.Errorf("base file has %d links, want 3 (layer and two images)", n)
	}
	usage, err := s.DiskUsage()
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(64<<10 + 2 + 2); usage != want {
		t.Errorf("DiskUsage = %d, want %d (the base counted once)", usage, want)
	}
	if imgA.Size != 64<<10+2 {
		t.Errorf("image size %d, want its whole content %d", imgA.Size, 64<<10+2)
	}

	// Removing a leaves b whole; a's own layer goes, the base stays.
	if err := s.Remove(imgA.Name); err != nil {
		t.Fatal(err)
	}
	if ids := layerIDs(t, s); len(ids) != 2 || slices.Contains(ids, imgA.Layers[1]) || !slices.Contains(ids, imgA.Layers[0]) {
		t.Errorf("after removing a: layers %v, want the base and b's", ids)
	}
	if err := s.GC(); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(imgB.Name)
	if err != nil {
		t.Fatal(err)
	}
	if readRootfsFile(t, got, "lib/base.so") != base["lib/base.so"] || nlink(t, shared) != 2 {
		t.Errorf("b lost its base after a was removed (%d links)", nlink(t, shared))
	}
	if err := s.Remove(imgB.Name); err != nil {
		t.Fatal(err)
	}
	assertEmptyStore(t, s)
	if usage, err := s.DiskUsage(); err != nil || usage != 0 {
		t.Errorf("DiskUsage of an empty store = %d, %v", usage, err)
	}
}

// docker save and OCI layouts share layers with each other (by diff_id,
// whatever the compression), and one layer listed twice is unpacked once.
func TestImportSharesLayersAcrossFormats(t *testing.T) {
	s := openStore(t)
	lower := mkTar(t, dir("usr/", 0o755), reg("usr/lib.so", "shared library\n", 0o755), sym("lib", "usr"))
	upperA := mkTar(t, reg("which", "save\n", 0o644))
	upperB := mkTar(t, reg("which", "oci\n", 0o644), reg("usr/.wh.lib.so", "", 0o644))
	saved := writeFile(t, filepath.Join(t.TempDir(), "save.tar"),
		tarOf(t, dockerSaveFiles(t, testImage{tags: []string{"a:1"}, layers: [][]byte{lower, upperA, lower}})))
	a := mustImport(t, s, "a:1", saved)
	o := ociFiles(t, testImage{tags: []string{"b:1"}, layers: [][]byte{lower, upperB}})
	b := mustImport(t, s, "b:1", writeTree(t, t.TempDir(), o.files))

	if ids := layerIDs(t, s); len(ids) != 3 {
		t.Errorf("layers %v, want three (lower once)", ids)
	}
	if len(a.Layers) != 3 || a.Layers[0] != a.Layers[2] || a.Layers[0] != b.Layers[0] {
		t.Errorf("layers of a %v, of b %v", a.Layers, b.Layers)
	}
	if readFile(t, filepath.Join(a.Rootfs, "which")) != "save\n" || readFile(t, filepath.Join(b.Rootfs, "which")) != "oci\n" {
		t.Error("wrong upper layers")
	}
	assertLink(t, filepath.Join(a.Rootfs, "lib"), "usr")
	assertMode(t, filepath.Join(a.Rootfs, "usr/lib.so"), 0o755)
	// b's whiteout deletes in b only, never in the shared layer.
	assertMissing(t, filepath.Join(b.Rootfs, "usr/lib.so"))
	if readFile(t, layerFile(s, a.Layers[0], "usr/lib.so")) != "shared library\n" || readFile(t, filepath.Join(a.Rootfs, "usr/lib.so")) != "shared library\n" {
		t.Error("the whiteout of b reached the shared layer or a")
	}
	if n := nlink(t, layerFile(s, a.Layers[0], "usr/lib.so")); n != 2 {
		t.Errorf("usr/lib.so has %d links, want 2 (layer and a)", n)
	}
}

// Limits.MaxBytes bounds what an import unpacks: a layer the store holds
// is not unpacked again and costs nothing.
func TestImportBudgetCountsStoredLayersOnce(t *testing.T) {
	base := mkTar(t, reg("base", strings.Repeat("b", 80<<10), 0o644))
	top := mkTar(t, reg("top", strings.Repeat("t", 30<<10), 0o644))
	both := writeFile(t, filepath.Join(t.TempDir(), "both.tar"),
		tarOf(t, dockerSaveFiles(t, testImage{tags: []string{"both:1"}, layers: [][]byte{base, top}})))
	baseOnly := writeFile(t, filepath.Join(t.TempDir(), "base.tar"),
		tarOf(t, dockerSaveFiles(t, testImage{tags: []string{"base:1"}, layers: [][]byte{base}})))
	limits := WithLimits(Limits{MaxBytes: 100 << 10})

	fresh := openStore(t, limits)
	if _, err := fresh.Import(t.Context(), "both:1", both); !errors.Is(err, ErrBadArchive) || !strings.Contains(err.Error(), "Limits.MaxBytes") {
		t.Fatalf("110 KiB into a fresh store with a 100 KiB limit: %v", err)
	}
	assertEmptyStore(t, fresh)

	s := openStore(t, limits)
	mustImport(t, s, "base:1", baseOnly)
	img := mustImport(t, s, "both:1", both)
	if readFile(t, filepath.Join(img.Rootfs, "top")) != strings.Repeat("t", 30<<10) {
		t.Error("top missing")
	}
	if ids := layerIDs(t, s); len(ids) != 2 {
		t.Errorf("layers %v, want two", ids)
	}
}

// A corrupt layer or a diff_id mismatch leaves the store as it was: no
// layer of the failed image, not even those that unpacked fine.
func TestPullCorruptLayerLeavesNothing(t *testing.T) {
	r := registrytest.New(t)
	base := map[string]string{"base": "base\n"}
	good := registrytest.Image(t, "linux", runtime.GOARCH, base, map[string]string{"good": "1"})
	bad := registrytest.Image(t, "linux", runtime.GOARCH, map[string]string{"other-base": "x"}, base, map[string]string{"payload": strings.Repeat("p", 8192)})
	r.Push(t, "good:1", good)
	r.Push(t, "bad:1", bad)
	r.CorruptBlob(layerDigests(t, bad)[2])
	reg := testRegistry(t, RegistryConfig{Insecure: []string{r.Host}})

	fresh := openStore(t)
	_, err := fresh.Pull(t.Context(), reg, r.Host+"/bad:1")
	if !errors.Is(err, ErrBadArchive) || !strings.Contains(err.Error(), r.Host+"/bad:1") || !strings.Contains(err.Error(), layerDigests(t, bad)[2].String()) {
		t.Fatalf("corrupt layer: %v, want ErrBadArchive naming the image and the layer", err)
	}
	assertEmptyStore(t, fresh)

	s := openStore(t)
	if _, err := s.Pull(t.Context(), reg, r.Host+"/good:1"); err != nil {
		t.Fatal(err)
	}
	before := layerIDs(t, s)
	if _, err := s.Pull(t.Context(), reg, r.Host+"/bad:1"); !errors.Is(err, ErrBadArchive) {
		t.Fatalf("corrupt layer over a store sharing its base: %v", err)
	}
	if after := layerIDs(t, s); !slices.Equal(before, after) {
		t.Errorf("layers %v → %v", before, after)
	}
	if ids := contentIDs(t, s); len(ids) != 1 {
		t.Errorf("content %v, want good's only", ids)
	}
	if n := dirNames(t, filepath.Join(s.Root(), "tmp")); len(n) != 0 {
		t.Errorf("tmp/ left behind: %v", n)
	}

	// A config whose diff_id is not the layer's content.
	cf, err := good.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.RootFS.DiffIDs[1] = v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("ab", 32)}
	lying, err := mutate.ConfigFile(good, cf)
	if err != nil {
		t.Fatal(err)
	}
	r.Push(t, "lying:1", lying)
	_, err = fresh.Pull(t.Context(), reg, r.Host+"/lying:1")
	if !errors.Is(err, ErrBadArchive) || !strings.Contains(err.Error(), "diff_id says sha256:abab") {
		t.Fatalf("diff_id mismatch: %v", err)
	}
	assertEmptyStore(t, fresh)
}

// By tag there is no digest to check the manifest against: the digest of
// the bytes served is recorded, and what they name must match them.
func TestPullByTagVerifiesManifest(t *testing.T) {
	r := registrytest.New(t)
	img := registrytest.Image(t, "linux", runtime.GOARCH, map[string]string{"a": "1"})
	pushed := r.Push(t, "ok:1", img)
	reg := testRegistry(t, RegistryConfig{Insecure: []string{r.Host}})
	s := openStore(t)
	got, err := s.Pull(t.Context(), reg, r.Host+"/ok:1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Manifest != pushed.String() {
		t.Errorf("recorded manifest %q, want %s", got.Manifest, pushed)
	}
	if again, err := s.Get(got.Name); err != nil || again.Manifest != pushed.String() {
		t.Errorf("Get: manifest %v, %v", again, err)
	}

	// A manifest naming a config whose bytes are not it.
	other := registrytest.Image(t, "linux", runtime.GOARCH, map[string]string{"b": "2"})
	r.Push(t, "badconfig:1", other)
	configName, err := other.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	r.CorruptBlob(configName)
	fresh := openStore(t)
	_, err = fresh.Pull(t.Context(), reg, r.Host+"/badconfig:1")
	if !errors.Is(err, ErrBadArchive) || !strings.Contains(err.Error(), r.Host+"/badconfig:1") || !strings.Contains(err.Error(), "config") {
		t.Fatalf("corrupt config: %v, want ErrBadArchive naming the image and the config", err)
	}
	assertEmptyStore(t, fresh)

	// A manifest listing more layers than its config has diff_ids.
	raw, err := img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	layers := m["layers"].([]any)
	m["layers"] = append(layers, layers[0])
	twice, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	r.Push(t, "extra:1", img)
	r.ServeManifestAt("1", twice) // every tag "1" of the registry from now on
	_, err = fresh.Pull(t.Context(), reg, r.Host+"/extra:1")
	if !errors.Is(err, ErrBadArchive) || !strings.Contains(err.Error(), "lists 2 layers but config") {
		t.Fatalf("layer count mismatch: %v", err)
	}
	assertEmptyStore(t, fresh)
}

// A crash mid-unpack leaves a layer in tmp/; a crash between publishing
// the layers and the image leaves layers no image lists. Open removes both,
// and keeps a layer an import holds.
func TestOpenCleansHalfUnpackedLayers(t *testing.T) {
	root := filepath.Join(t.TempDir(), "images")
	s, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	lower := mkTar(t, reg("lower", "l\n", 0o644))
	upper := mkTar(t, reg("upper", "u\n", 0o644))
	p := writeFile(t, filepath.Join(t.TempDir(), "save.tar"),
		tarOf(t, dockerSaveFiles(t, testImage{tags: []string{"x:1"}, layers: [][]byte{lower, upper}})))
	img := mustImport(t, s, "x:1", p)

	// Half-unpacked: a job folder whose process died (no lock held).
	half := filepath.Join(root, "tmp", "import-crashed", "layer-sha256-"+strings.Repeat("0", 64), "tree")
	writeFile(t, filepath.Join(half, "partial"), []byte("half"))
	// Layers published, image not: drop the name and content by hand.
	if err := os.Remove(s.nameFile(img.Name)); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Dir(img.Rootfs)); err != nil {
		t.Fatal(err)
	}
	// An import about to reuse the lower layer holds it.
	held, err := flockPath(filepath.Join(s.layerDir(digestOf(t, img.Layers[0])), "lock"), os.O_RDONLY, flock.Shared)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(root); err != nil {
		t.Fatal(err)
	}
	if n := dirNames(t, filepath.Join(root, "tmp")); len(n) != 0 {
		t.Errorf("tmp/ after Open: %v", n)
	}
	if ids := layerIDs(t, s); !slices.Equal(ids, []string{img.Layers[0]}) {
		t.Errorf("layers after Open %v, want only the held %s", ids, img.Layers[0])
	}
	held.Close()
	if err := s.GC(); err != nil {
		t.Fatal(err)
	}
	assertEmptyStore(t, s)
}

func digestOf(t *testing.T, s string) digest.Digest {
	t.Helper()
	d, err := parseID(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// Pulls of two images sharing a base layer, at once, with collections
// running meanwhile: both images are whole, the base is in layers/ once,
// and a collection never takes a layer from under an import.
func TestConcurrentPullsShareLayers(t *testing.T) {
	r := registrytest.New(t)
	base := map[string]string{"lib/base.so": strings.Repeat("b", 256<<10)}
	for _, n := range []string{"a", "b", "c"} {
		r.Push(t, "judge/"+n+":1", registrytest.Image(t, "linux", runtime.GOARCH, base, map[string]string{"which": n}))
	}
	reg := testRegistry(t, RegistryConfig{Insecure: []string{r.Host}})
	s := openStore(t)
	done := make(chan struct{})
	gcErr := make(chan error, 1)
	go func() {
		defer close(gcErr)
		for {
			select {
			case <-done:
				return
			default:
			}
			if err := s.GC(); err != nil {
				gcErr <- err
				return
			}
		}
	}()
	errs := make(chan error, 3)
	for _, n := range []string{"a", "b", "c"} {
		go func() {
			img, err := s.Pull(t.Context(), reg, r.Host+"/judge/"+n+":1")
			if err == nil && (readFile(t, filepath.Join(img.Rootfs, "which")) != n || readFile(t, filepath.Join(img.Rootfs, "lib/base.so")) != base["lib/base.so"]) {
				err = errors.New(n + ": wrong content")
			}
			errs <- err
		}()
	}
	for range 3 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	close(done)
	if err := <-gcErr; err != nil {
		t.Fatal(err)
	}
	if err := s.GC(); err != nil {
		t.Fatal(err)
	}
	if ids := layerIDs(t, s); len(ids) != 4 {
		t.Errorf("layers %v, want the base once and three tops", ids)
	}
	for _, n := range []string{"a", "b", "c"} {
		img, err := s.Get(r.Host + "/judge/" + n + ":1")
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range img.Layers {
			if _, err := os.Stat(layerFile(s, l, "")); err != nil {
				t.Errorf("%s: layer %s missing: %v", n, l, err)
			}
		}
	}
}

// A task holding an image keeps its layers: Remove frees them only once
// the task ends.
func TestHeldImageKeepsItsLayers(t *testing.T) {
	s := openStore(t)
	p := writeFile(t, filepath.Join(t.TempDir(), "save.tar"), tarOf(t, dockerSaveFiles(t,
		testImage{tags: []string{"held:1"}, layers: [][]byte{mkTar(t, reg("a", "a\n", 0o644)), mkTar(t, reg("b", "b\n", 0o644))}})))
	img := mustImport(t, s, "held:1", p)
	_, release, err := s.Acquire("held:1")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Remove("held:1"); !errors.Is(err, ErrInUse) {
		t.Fatalf("Remove of a held image: %v, want ErrInUse", err)
	}
	if err := s.GC(); err != nil {
		t.Fatal(err)
	}
	if ids := layerIDs(t, s); len(ids) != 2 || readFile(t, filepath.Join(img.Rootfs, "b")) != "b\n" {
		t.Errorf("while held: layers %v", ids)
	}
	release()
	if err := s.GC(); err != nil {
		t.Fatal(err)
	}
	assertEmptyStore(t, s)
}
