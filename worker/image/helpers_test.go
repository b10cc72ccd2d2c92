package image

// Test helpers: archives built in the test itself with archive/tar, in the
// three formats, so every test states exactly what it imports.

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ent is one tar entry.
type ent struct {
	name     string
	typ      byte
	mode     int64
	body     string
	link     string
	uid, gid int
	major    int64
	minor    int64
}

func reg(name, body string, mode int64) ent {
	return ent{name: name, typ: tar.TypeReg, mode: mode, body: body}
}
func dir(name string, mode int64) ent { return ent{name: name, typ: tar.TypeDir, mode: mode} }
func sym(name, target string) ent {
	return ent{name: name, typ: tar.TypeSymlink, mode: 0o777, link: target}
}

// hard is a hard link; like real tar writers, give it the mode of its target
// (unpackers apply it to the shared inode).
func hard(name, target string, mode int64) ent {
	return ent{name: name, typ: tar.TypeLink, mode: mode, link: target}
}

var testTime = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

// mkTar writes the entries, in order, as a tar stream.
func mkTar(t testing.TB, ents ...ent) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		hdr := &tar.Header{
			Name: e.name, Typeflag: e.typ, Mode: e.mode, Linkname: e.link,
			Uid: e.uid, Gid: e.gid, Devmajor: e.major, Devminor: e.minor,
			ModTime: testTime, Format: tar.FormatPAX,
		}
		if e.typ == tar.TypeReg {
			hdr.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatalf("tar header %s: %v", e.name, err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatalf("tar body %s: %v", e.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// tarOf packs named files (names ending in "/" are folders) in name order,
// as docker save and `tar -C layout .` would.
func tarOf(t testing.TB, files map[string][]byte) []byte {
	t.Helper()
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var ents []ent
	for _, n := range names {
		if strings.HasSuffix(n, "/") {
			ents = append(ents, dir(n, 0o755))
		} else {
			ents = append(ents, reg(n, string(files[n]), 0o644))
		}
	}
	return mkTar(t, ents...)
}

func gzipped(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func zstdCompressed(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, err := zstd.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func writeFile(t testing.TB, p string, b []byte) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// writeTree writes named files under dir.
func writeTree(t testing.TB, dir string, files map[string][]byte) string {
	t.Helper()
	for n, b := range files {
		if strings.HasSuffix(n, "/") {
			if err := os.MkdirAll(filepath.Join(dir, n), 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		writeFile(t, filepath.Join(dir, n), b)
	}
	return dir
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// testImage is an image for the docker save and OCI builders.
type testImage struct {
	tags   []string // docker RepoTags, or OCI annotations (ref.name first, then io.containerd.image.name)
	layers [][]byte // uncompressed layer tars, bottom first
	env    []string
}

func (img testImage) config(t testing.TB) []byte {
	t.Helper()
	var diffIDs []digest.Digest
	for _, l := range img.layers {
		diffIDs = append(diffIDs, digest.FromBytes(l))
	}
	return mustJSON(t, ocispec.Image{
		Created:  &testTime,
		Platform: ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH},
		Config:   ocispec.ImageConfig{Env: img.env},
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: diffIDs},
	})
}

// dockerSaveFiles lays images out as the legacy `docker save` does:
// manifest.json, <config sha256>.json, <layer>/layer.tar.
func dockerSaveFiles(t testing.TB, images ...testImage) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	var manifest []dockerManifestEntry
	for _, img := range images {
		config := img.config(t)
		configName := digest.FromBytes(config).Encoded() + ".json"
		files[configName] = config
		e := dockerManifestEntry{Config: configName, RepoTags: img.tags}
		for _, l := range img.layers {
			name := digest.FromBytes(l).Encoded() + "/layer.tar"
			files[name] = l
			e.Layers = append(e.Layers, name)
		}
		manifest = append(manifest, e)
	}
	files["manifest.json"] = mustJSON(t, manifest)
	return files
}

// ociLayout describes what ociFiles wrote, for tests that tamper with it.
type ociLayout struct {
	files     map[string][]byte
	manifests []ocispec.Descriptor // index.json entries
	configs   []string             // blob paths, per image
	layers    [][]string           // blob paths, per image
}

// ociFiles lays images out as an OCI image layout with gzip layers.
func ociFiles(t testing.TB, images ...testImage) *ociLayout {
	t.Helper()
	o := &ociLayout{files: map[string][]byte{
		ocispec.ImageLayoutFile: mustJSON(t, ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion}),
	}}
	put := func(mediaType string, b []byte) ocispec.Descriptor {
		d := ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(b), Size: int64(len(b))}
		o.files["blobs/sha256/"+d.Digest.Encoded()] = b
		return d
	}
	for _, img := range images {
		m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest}
		m.Config = put(ocispec.MediaTypeImageConfig, img.config(t))
		var layers []string
		for _, l := range img.layers {
			d := put(ocispec.MediaTypeImageLayerGzip, gzipped(t, l))
			m.Layers = append(m.Layers, d)
			layers = append(layers, "blobs/sha256/"+d.Digest.Encoded())
		}
		md := put(ocispec.MediaTypeImageManifest, mustJSON(t, m))
		md.Annotations = map[string]string{}
		if len(img.tags) > 0 {
			md.Annotations[ocispec.AnnotationRefName] = img.tags[0]
		}
		if len(img.tags) > 1 {
			md.Annotations["io.containerd.image.name"] = img.tags[1]
		}
		o.manifests = append(o.manifests, md)
		o.configs = append(o.configs, "blobs/sha256/"+m.Config.Digest.Encoded())
		o.layers = append(o.layers, layers)
	}
	o.writeIndex(t)
	return o
}

func (o *ociLayout) writeIndex(t testing.TB) {
	o.files["index.json"] = mustJSON(t, ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: o.manifests,
	})
}

func openStore(t testing.TB, opts ...Option) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "images"), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustImport(t testing.TB, s *Store, name, path string) *Image {
	t.Helper()
	img, err := s.Import(t.Context(), name, path)
	if err != nil {
		t.Fatalf("Import(%s, %s): %v", name, path, err)
	}
	return img
}

// contentIDs lists the content folders on disk as IDs.
func contentIDs(t testing.TB, s *Store) []string {
	t.Helper()
	var ids []string
	algs, err := os.ReadDir(filepath.Join(s.Root(), "content"))
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range algs {
		ds, err := os.ReadDir(filepath.Join(s.Root(), "content", a.Name()))
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range ds {
			ids = append(ids, a.Name()+":"+d.Name())
		}
	}
	slices.Sort(ids)
	return ids
}

// layerIDs lists the layer folders on disk as diff_ids.
func layerIDs(t testing.TB, s *Store) []string {
	t.Helper()
	var ids []string
	algs, err := os.ReadDir(filepath.Join(s.Root(), "layers"))
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range algs {
		for _, d := range dirNames(t, filepath.Join(s.Root(), "layers", a.Name())) {
			ids = append(ids, a.Name()+":"+d)
		}
	}
	slices.Sort(ids)
	return ids
}

func dirNames(t testing.TB, p string) []string {
	t.Helper()
	ds, err := os.ReadDir(p)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range ds {
		names = append(names, d.Name())
	}
	return names
}

// assertEmptyStore checks that a failed import changed nothing: no name,
// no content, nothing left in tmp/.
func assertEmptyStore(t testing.TB, s *Store) {
	t.Helper()
	if ids := contentIDs(t, s); len(ids) != 0 {
		t.Errorf("content left behind: %v", ids)
	}
	if n := dirNames(t, filepath.Join(s.Root(), "names")); len(n) != 0 {
		t.Errorf("names left behind: %v", n)
	}
	if ids := layerIDs(t, s); len(ids) != 0 {
		t.Errorf("layers left behind: %v", ids)
	}
	if n := dirNames(t, filepath.Join(s.Root(), "tmp")); len(n) != 0 {
		t.Errorf("tmp/ left behind: %v", n)
	}
}

func readFile(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func assertMissing(t testing.TB, p string) {
	t.Helper()
	if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s should not exist (Lstat: %v)", p, err)
	}
}

func assertMode(t testing.TB, p string, want os.FileMode) {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode() != want {
		t.Errorf("%s: mode %v, want %v", p, fi.Mode(), want)
	}
}

func assertLink(t testing.TB, p, want string) {
	t.Helper()
	got, err := os.Readlink(p)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("%s -> %q, want %q", p, got, want)
	}
}
