package hardening_test

// Registry pulls of the runc runtime's image store (worker/image Pull)
// from a registry that serves bad content: a corrupt layer, a manifest not
// matching its digest, an index or image for another platform only, an
// unknown image, wrong credentials. Each is refused naming the image and
// the problem, and the store is the same file for file as before (nothing
// half-imported, nothing left in tmp/).

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/kolejka-go/kolejka/tests/hardening"
	"github.com/kolejka-go/kolejka/worker/image"
	"github.com/kolejka-go/kolejka/worker/image/registrytest"
)

// storeFiles lists every path under the store with its size, to compare.
func storeFiles(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		out = append(out, fmt.Sprintf("%s %v %d", rel, fi.Mode().Type(), fi.Size()))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestBadInputRegistry(t *testing.T) {
	t.Parallel()
	r := registrytest.New(t)
	other := "arm64"
	if runtime.GOARCH == "arm64" {
		other = "amd64"
	}
	good := registrytest.Image(t, "linux", runtime.GOARCH, map[string]string{"good": "1"})
	r.Push(t, "good:1", good)

	corrupt := registrytest.Image(t, "linux", runtime.GOARCH, map[string]string{"base": "b"}, map[string]string{"payload": strings.Repeat("x", 4096)})
	r.Push(t, "corrupt:1", corrupt)
	layers, err := corrupt.Layers()
	if err != nil {
		t.Fatal(err)
	}
	badLayer, err := layers[1].Digest()
	if err != nil {
		t.Fatal(err)
	}
	r.CorruptBlob(badLayer)

	swapped := registrytest.Image(t, "linux", runtime.GOARCH, map[string]string{"swapped": "1"})
	swappedDigest := r.Push(t, "swapped:1", swapped)
	evil, err := registrytest.Image(t, "linux", runtime.GOARCH, map[string]string{"evil": "1"}).RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	r.ServeManifest(swappedDigest, evil)

	r.PushIndex(t, "foreign:1", registrytest.Index(t, registrytest.Image(t, "linux", other, map[string]string{"a": "1"}),
		registrytest.Image(t, "windows", runtime.GOARCH, map[string]string{"b": "1"})))
	r.Push(t, "foreign-single:1", registrytest.Image(t, "linux", other, map[string]string{"a": "1"}))

	s, err := image.Open(filepath.Join(t.TempDir(), "images"))
	if err != nil {
		t.Fatal(err)
	}
	reg, err := image.NewRegistry(image.RegistryConfig{Insecure: []string{r.Host}})
	if err != nil {
		t.Fatal(err)
	}
	// The store holds an image already: it must stay as it is.
	if _, err := s.Pull(t.Context(), reg, r.Host+"/good:1"); err != nil {
		t.Fatal(err)
	}

	refused := func(t *testing.T, row *hardening.Row, reg *image.Registry, ref string, kind error, want ...string) {
		t.Helper()
		before := storeFiles(t, s.Root())
		_, err := s.Pull(t.Context(), reg, ref)
		if err == nil {
			t.Fatalf("%s: pulled", ref)
		}
		if !errors.Is(err, kind) {
			t.Errorf("%s: %v, want %v", ref, err, kind)
		}
		checkFragments(t, err.Error(), want)
		after := storeFiles(t, s.Root())
		if !slices.Equal(before, after) {
			t.Errorf("the store changed: %v → %v", before, after)
		}
		if _, err := s.Get(ref); err == nil {
			t.Errorf("%s is in the store", ref)
		}
		row.Observe("error %q; store unchanged (%d paths), tmp/ empty", err.Error(), len(after))
	}
	const expect = "refused naming the image and the problem; the store is the same, file for file; nothing in tmp/"

	t.Run("BI01", func(t *testing.T) {
		row := caseOf(t, hardening.BadInput, "BI01", "registry pull: a layer whose bytes do not match its digest", expect)
		refused(t, row, reg, r.Host+"/corrupt:1", image.ErrBadArchive, r.Host+"/corrupt:1", "layer "+badLayer.String(), "does not match its digest")
	})
	t.Run("BI02", func(t *testing.T) {
		row := caseOf(t, hardening.BadInput, "BI02", "registry pull by digest: the registry serves another manifest than the digest names", expect)
		ref := r.Host + "/swapped@" + swappedDigest.String()
		refused(t, row, reg, ref, image.ErrBadArchive, r.Host+"/swapped", swappedDigest.String(), "does not match")
	})
	t.Run("BI03", func(t *testing.T) {
		row := caseOf(t, hardening.BadInput, "BI03", "registry pull: an index with images for other platforms only", expect)
		refused(t, row, reg, r.Host+"/foreign:1", image.ErrBadArchive, r.Host+"/foreign:1", "no image for linux/"+runtime.GOARCH, "linux/"+other, "windows/"+runtime.GOARCH)
	})
	t.Run("BI04", func(t *testing.T) {
		row := caseOf(t, hardening.BadInput, "BI04", "registry pull: a single image built for another architecture", expect)
		refused(t, row, reg, r.Host+"/foreign-single:1", image.ErrBadArchive, r.Host+"/foreign-single:1", "linux/"+other, "not linux/"+runtime.GOARCH)
	})
	t.Run("BI05", func(t *testing.T) {
		row := caseOf(t, hardening.BadInput, "BI05", "registry pull: an image the registry does not have (404), by tag and by digest", expect)
		refused(t, row, reg, r.Host+"/nosuch:1", image.ErrNotFound, r.Host+"/nosuch:1", "in the registry")
		refused(t, row, reg, r.Host+"/good@sha256:"+strings.Repeat("0", 64), image.ErrNotFound, "good@sha256:000", "in the registry")
	})
	t.Run("BI06", func(t *testing.T) {
		row := caseOf(t, hardening.BadInput, "BI06", "registry pull: wrong credentials (401), from registry_auth", expect)
		locked := registrytest.New(t)
		locked.Push(t, "private:1", good)
		locked.RequireAuth("judge", "right")
		authFile := filepath.Join(t.TempDir(), "auth.json")
		if err := os.WriteFile(authFile, []byte(`{"auths": {"`+locked.Host+`": {"username": "judge", "password": "wrong"}}}`), 0o600); err != nil {
			t.Fatal(err)
		}
		withAuth, err := image.NewRegistry(image.RegistryConfig{Insecure: []string{locked.Host}, AuthFile: authFile})
		if err != nil {
			t.Fatal(err)
		}
		refused(t, row, withAuth, locked.Host+"/private:1", image.ErrUnauthorized, locked.Host+"/private:1", "401", "registry_auth")
	})
}
