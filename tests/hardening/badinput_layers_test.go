package hardening_test

// The layer store of the runc runtime's image store (worker/image): pulls
// whose manifest, config or layers do not match each other, into a store
// that already holds an image sharing their base layer, and a layer whose
// whiteout names no file. Each is refused naming the image and what
// mismatched, and the store is the same file for file as before: no new
// layer, the shared base layer untouched, nothing in tmp/.

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/kolejka-go/kolejka/tests/hardening"
	"github.com/kolejka-go/kolejka/worker/image"
	"github.com/kolejka-go/kolejka/worker/image/registrytest"
)

func TestBadInputLayers(t *testing.T) {
	t.Parallel()
	r := registrytest.New(t)
	base := map[string]string{"lib/base.so": strings.Repeat("b", 4096)}
	img := func(files map[string]string) v1.Image {
		return registrytest.Image(t, "linux", runtime.GOARCH, base, files)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	r.Push(t, "good:1", img(map[string]string{"good": "1"}))

	badConfig := img(map[string]string{"c": "1"})
	r.Push(t, "badconfig:1", badConfig)
	configName, err := badConfig.ConfigName()
	must(err)
	r.CorruptBlob(configName)

	extra := img(map[string]string{"e": "1"})
	r.Push(t, "extra:7", extra)
	raw, err := extra.RawManifest()
	must(err)
	var m map[string]any
	must(json.Unmarshal(raw, &m))
	m["layers"] = append(m["layers"].([]any), m["layers"].([]any)[0])
	extraManifest, err := json.Marshal(m)
	must(err)
	r.ServeManifestAt("7", extraManifest)

	honest := img(map[string]string{"l": "1"})
	cf, err := honest.ConfigFile()
	must(err)
	cf = cf.DeepCopy()
	cf.RootFS.DiffIDs[1] = v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("ab", 32)}
	lying, err := mutate.ConfigFile(honest, cf)
	must(err)
	r.Push(t, "lying:1", lying)

	corruptTop := img(map[string]string{"t": strings.Repeat("t", 8192)})
	r.Push(t, "corrupttop:1", corruptTop)
	layers, err := corruptTop.Layers()
	must(err)
	topDigest, err := layers[1].Digest()
	must(err)
	r.CorruptBlob(topDigest)

	mine := img(map[string]string{"i": "1"})
	r.PushIndex(t, "idx:1", registrytest.Index(t, mine))
	mineDigest, err := mine.Digest()
	must(err)
	otherManifest, err := img(map[string]string{"other": "1"}).RawManifest()
	must(err)
	r.ServeManifestAt(mineDigest.String(), otherManifest)

	s, err := image.Open(filepath.Join(t.TempDir(), "images"))
	must(err)
	reg, err := image.NewRegistry(image.RegistryConfig{Insecure: []string{r.Host}})
	must(err)
	good, err := s.Pull(t.Context(), reg, r.Host+"/good:1")
	must(err)
	if len(good.Layers) != 2 {
		t.Fatalf("good has layers %v", good.Layers)
	}

	refused := func(t *testing.T, row *hardening.Row, do func() error, kind error, want ...string) {
		t.Helper()
		before := storeFiles(t, s.Root())
		err := do()
		if err == nil {
			t.Fatal("accepted")
		}
		if !errors.Is(err, kind) {
			t.Errorf("%v, want %v", err, kind)
		}
		checkFragments(t, err.Error(), want)
		after := storeFiles(t, s.Root())
		if !slices.Equal(before, after) {
			t.Errorf("the store changed: %v → %v", before, after)
		}
		if got, err := s.Get(good.Name); err != nil || !slices.Equal(got.Layers, good.Layers) {
			t.Errorf("the image sharing the base layer changed: %+v, %v", got, err)
		}
		row.Observe("error %q; store unchanged (%d paths), base layer kept, tmp/ empty", err.Error(), len(after))
	}
	pull := func(ref string) func() error {
		return func() error { _, err := s.Pull(t.Context(), reg, r.Host+"/"+ref); return err }
	}
	const expect = "refused naming the image and what mismatched; no layer added, the shared base layer kept; the store is the same, file for file"

	t.Run("BI30", func(t *testing.T) {
		row := caseOf(t, hardening.BadInput, "BI30", "registry pull by tag: the config served is not the one the manifest names", expect)
		refused(t, row, pull("badconfig:1"), image.ErrBadArchive, r.Host+"/badconfig:1", "config", configName.String())
	})
	t.Run("BI31", func(t *testing.T) {
		row := caseOf(t, hardening.BadInput, "BI31", "registry pull by tag: a manifest listing more layers than its config has diff_ids", expect)
		refused(t, row, pull("extra:7"), image.ErrBadArchive, r.Host+"/extra:7", "lists 3 layers but config", "2 diff_ids")
	})
	t.Run("BI32", func(t *testing.T) {
		row := caseOf(t, hardening.BadInput, "BI32", "registry pull: a layer whose content is not its config's diff_id", expect)
		refused(t, row, pull("lying:1"), image.ErrBadArchive, r.Host+"/lying:1: layer", "diff_id says sha256:"+strings.Repeat("ab", 32), "corrupt or tampered")
	})
	t.Run("BI33", func(t *testing.T) {
		row := caseOf(t, hardening.BadInput, "BI33", "registry pull: a corrupt top layer over a base layer the store holds", expect)
		refused(t, row, pull("corrupttop:1"), image.ErrBadArchive, r.Host+"/corrupttop:1", "layer "+topDigest.String(), "does not match its digest")
	})
	t.Run("BI34", func(t *testing.T) {
		row := caseOf(t, hardening.BadInput, "BI34", "registry pull by tag of an index: the platform manifest served is not the digest the index names", expect)
		refused(t, row, pull("idx:1"), image.ErrBadArchive, r.Host+"/idx:1", mineDigest.String())
	})
	t.Run("BI35", func(t *testing.T) {
		row := caseOf(t, hardening.BadInput, "BI35", "import: a layer whose whiteout .wh... names the parent folder", expect)
		lower := layerTar(t, map[string]string{"etc/keep": "k"})
		upper := layerTar(t, map[string]string{"etc/.wh...": ""})
		p := dockerSave(t, lower, upper)
		refused(t, row, func() error { _, err := s.Import(t.Context(), "whiteout:1", p); return err },
			image.ErrBadArchive, "whiteout", `/etc/.wh...`, "names no file")
	})
}

// layerTar is an uncompressed layer of regular files, in name order.
func layerTar(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range slices.Sorted(maps.Keys(files)) {
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(files[n])), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(files[n])); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// dockerSave writes a `docker save` archive of one image of these layers
// (bottom first) and returns its path.
func dockerSave(t *testing.T, layers ...[]byte) string {
	t.Helper()
	sum := func(b []byte) string { h := sha256.Sum256(b); return hex.EncodeToString(h[:]) }
	var diffIDs, names []string
	files := map[string][]byte{}
	for _, l := range layers {
		diffIDs = append(diffIDs, "sha256:"+sum(l))
		name := sum(l) + "/layer.tar"
		names = append(names, name)
		files[name] = l
	}
	config, err := json.Marshal(map[string]any{
		"architecture": runtime.GOARCH, "os": "linux",
		"rootfs": map[string]any{"type": "layers", "diff_ids": diffIDs},
	})
	if err != nil {
		t.Fatal(err)
	}
	files[sum(config)+".json"] = config
	manifest, err := json.Marshal([]map[string]any{{"Config": sum(config) + ".json", "RepoTags": []string{"whiteout:1"}, "Layers": names}})
	if err != nil {
		t.Fatal(err)
	}
	files["manifest.json"] = manifest
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range slices.Sorted(maps.Keys(files)) {
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(files[n])), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(files[n]); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "save.tar")
	if err := os.WriteFile(p, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
