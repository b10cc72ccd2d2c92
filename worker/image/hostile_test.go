package image

// Archives are untrusted input: these tests feed broken and hostile ones
// and check the error, and that nothing was written outside the store's
// unpack folder and nothing was left in the store.

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestImportRefusesBadInput(t *testing.T) {
	layer := mkTar(t, reg("etc/hostname", "box\n", 0o644))
	img := testImage{tags: []string{"bad:1"}, layers: [][]byte{layer}}
	dockerWith := func(edit func(files map[string][]byte)) func(t *testing.T, dir string) string {
		return func(t *testing.T, dir string) string {
			files := dockerSaveFiles(t, img)
			edit(files)
			return writeFile(t, filepath.Join(dir, "save.tar"), tarOf(t, files))
		}
	}
	ociWith := func(edit func(o *ociLayout)) func(t *testing.T, dir string) string {
		return func(t *testing.T, dir string) string {
			o := ociFiles(t, img)
			edit(o)
			return writeTree(t, filepath.Join(dir, "layout"), o.files)
		}
	}
	layerName := digest.FromBytes(layer).Encoded() + "/layer.tar"
	configName := digest.FromBytes(img.config(t)).Encoded() + ".json"

	tests := []struct {
		name   string
		limits Limits
		make   func(t *testing.T, dir string) string
		want   string // in the message
	}{
		{"garbage", Limits{}, func(t *testing.T, dir string) string {
			return writeFile(t, filepath.Join(dir, "garbage.tar"), []byte("this is not an archive, just some text\n"))
		}, "not a tar archive"},
		{"garbage gzip", Limits{}, func(t *testing.T, dir string) string {
			return writeFile(t, filepath.Join(dir, "garbage.tar.gz"), gzipped(t, bytes.Repeat([]byte("no tar here "), 100)))
		}, "not a tar archive"},
		{"truncated gzip", Limits{}, func(t *testing.T, dir string) string {
			gz := gzipped(t, mkTar(t, reg("f", strings.Repeat("x", 100000), 0o644)))
			return writeFile(t, filepath.Join(dir, "cut.tar.gz"), gz[:len(gz)/2])
		}, "unable to decompress"},
		{"empty tar", Limits{}, func(t *testing.T, dir string) string {
			return writeFile(t, filepath.Join(dir, "empty.tar"), mkTar(t))
		}, "an empty tar archive"},
		{"folder without oci-layout", Limits{}, func(t *testing.T, dir string) string {
			return writeTree(t, filepath.Join(dir, "folder"), map[string][]byte{"index.json": []byte("{}")})
		}, "not an OCI image layout"},
		{"docker manifest not JSON", Limits{}, dockerWith(func(f map[string][]byte) {
			f["manifest.json"] = []byte("[{")
		}), "manifest.json is not valid JSON"},
		{"docker missing layer", Limits{}, dockerWith(func(f map[string][]byte) {
			delete(f, layerName)
		}), "manifest.json names layer " + layerName + ", which is not in the archive"},
		{"docker missing config", Limits{}, dockerWith(func(f map[string][]byte) {
			delete(f, configName)
		}), configName + " is not in the archive"},
		{"docker tampered config", Limits{}, dockerWith(func(f map[string][]byte) {
			f[configName] = bytes.Replace(f[configName], []byte(`"os":"linux"`), []byte(`"os":"linux" `), 1)
		}), "does not match the digest in its name"},
		{"docker tampered layer", Limits{}, dockerWith(func(f map[string][]byte) {
			f[layerName] = mkTar(t, reg("etc/hostname", "evil\n", 0o644))
		}), "the config's diff_id says"},
		{"docker layer count mismatch", Limits{}, dockerWith(func(f map[string][]byte) {
			f["manifest.json"] = mustJSON(t, []dockerManifestEntry{{Config: configName, Layers: []string{layerName, layerName}}})
		}), "lists 2 layers but config"},
		{"oci tampered layer blob", Limits{}, ociWith(func(o *ociLayout) {
			// Same size, one byte changed (in the gzip trailer).
			b := bytes.Clone(o.files[o.layers[0][0]])
			b[len(b)-1] ^= 1
			o.files[o.layers[0][0]] = b
		}), "does not match its digest"},
		{"oci tampered config blob", Limits{}, ociWith(func(o *ociLayout) {
			o.files[o.configs[0]] = bytes.Replace(o.files[o.configs[0]], []byte("linux"), []byte("LINUX"), 1)
		}), "does not match its digest"},
		{"oci missing manifest", Limits{}, ociWith(func(o *ociLayout) {
			delete(o.files, "blobs/sha256/"+o.manifests[0].Digest.Encoded())
		}), "is not in the folder"},
		{"oci missing layer", Limits{}, ociWith(func(o *ociLayout) {
			delete(o.files, o.layers[0][0])
		}), "which is not in the layout"},
		{"oci wrong layer size", Limits{}, ociWith(func(o *ociLayout) {
			// Rewrite the manifest with a smaller size for the layer.
			mb := o.files["blobs/sha256/"+o.manifests[0].Digest.Encoded()]
			var m ocispec.Manifest
			if err := decodeJSONBytes(mb, &m); err != nil {
				t.Fatal(err)
			}
			m.Layers[0].Size--
			mb = mustJSON(t, m)
			d := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(mb), Size: int64(len(mb))}
			o.files["blobs/sha256/"+d.Digest.Encoded()] = mb
			o.manifests[0] = d
			o.writeIndex(t)
		}), "is larger than the"},
		{"oci bad digest syntax", Limits{}, ociWith(func(o *ociLayout) {
			o.manifests[0].Digest = "sha256:../../../../etc/passwd"
			o.writeIndex(t)
		}), "invalid digest"},
		{"oci layout in a folder of the tar", Limits{}, func(t *testing.T, dir string) string {
			nested := map[string][]byte{}
			for name, b := range ociFiles(t, img).files {
				nested["oci/"+name] = b
			}
			return writeFile(t, filepath.Join(dir, "nested.tar"), tarOf(t, nested))
		}, "holds an OCI image layout inside the folder oci instead of at its top"},
		{"oci layout version", Limits{}, ociWith(func(o *ociLayout) {
			o.files[ocispec.ImageLayoutFile] = []byte(`{"imageLayoutVersion":"2.0.0"}`)
		}), "only 1.x is supported"},
		{"metadata too big", Limits{MaxMetadataBytes: 1024}, dockerWith(func(f map[string][]byte) {
			f["manifest.json"] = append(f["manifest.json"], bytes.Repeat([]byte(" "), 2048)...)
		}), "Limits.MaxMetadataBytes"},
		{"too many entries", Limits{MaxEntries: 10}, func(t *testing.T, dir string) string {
			var ents []ent
			for i := range 20 {
				ents = append(ents, reg(fmt.Sprintf("f%d", i), "x", 0o644))
			}
			return writeFile(t, filepath.Join(dir, "many.tar"), mkTar(t, ents...))
		}, "Limits.MaxEntries"},
		{"too many bytes", Limits{MaxBytes: 1 << 20}, func(t *testing.T, dir string) string {
			return writeFile(t, filepath.Join(dir, "big.tar"), mkTar(t, reg("a", strings.Repeat("x", 600<<10), 0o644), reg("b", strings.Repeat("y", 600<<10), 0o644)))
		}, `entry "b" is 614400 bytes, which takes the import over its limit of 1048576 bytes`},
		{"absurd declared size", Limits{MaxBytes: 1 << 30}, func(t *testing.T, dir string) string {
			return writeFile(t, filepath.Join(dir, "absurd.tar"), absurdTar(t))
		}, `entry "huge" is 1099511627776 bytes`},
		{"decompression bomb", Limits{MaxBytes: 1 << 20}, func(t *testing.T, dir string) string {
			return writeFile(t, filepath.Join(dir, "bomb.tar.gz"), gzipped(t, make([]byte, 4<<20)))
		}, "decompresses to more than 1048576 bytes"},
		{"too many layers", Limits{MaxLayers: 1}, dockerWith(func(f map[string][]byte) {
			two := testImage{tags: []string{"bad:1"}, layers: [][]byte{layer, mkTar(t, reg("x", "", 0o644))}}
			clear(f)
			for k, v := range dockerSaveFiles(t, two) {
				f[k] = v
			}
		}), "Limits.MaxLayers"},
		{"unsupported entry type", Limits{}, func(t *testing.T, dir string) string {
			return writeFile(t, filepath.Join(dir, "odd.tar"), mkTar(t, reg("ok", "", 0o644), ent{name: "cont", typ: tar.TypeCont, mode: 0o644}))
		}, `entry "cont" has tar type "7"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := openStore(t, WithLimits(tc.limits))
			p := tc.make(t, t.TempDir())
			img, err := s.Import(t.Context(), "bad:1", p)
			t.Logf("Import: %v", err)
			if !errors.Is(err, ErrBadArchive) {
				t.Fatalf("Import = %v, %v; want ErrBadArchive", img, err)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), p) {
				t.Errorf("error %q should name %s and say %q", err, p, tc.want)
			}
			assertEmptyStore(t, s)
		})
	}
}

// absurdTar is a tar whose only header declares a 1 TiB file with no data
// behind it.
func absurdTar(t *testing.T) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "huge", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1 << 40}); err != nil {
		t.Fatal(err)
	}
	// Not closed: the header block is already in buf.
	return append(buf.Bytes(), make([]byte, 4096)...)
}

// hostileSetup is a sandbox: the store and a folder outside it that hostile
// archives aim at.
type hostileSetup struct {
	s       *Store
	outside string // must stay as it is
	victim  string // a file in outside
}

func newHostile(t *testing.T) *hostileSetup {
	base := t.TempDir()
	s, err := Open(filepath.Join(base, "store"))
	if err != nil {
		t.Fatal(err)
	}
	h := &hostileSetup{s: s, outside: filepath.Join(base, "outside")}
	h.victim = writeFile(t, filepath.Join(h.outside, "victim"), []byte("untouched\n"))
	return h
}

// check asserts outside holds only the untouched victim with one link, and
// no "pwned" file exists anywhere but inside a published rootfs or layer
// tree.
func (h *hostileSetup) check(t *testing.T) {
	t.Helper()
	entries, err := os.ReadDir(h.outside)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "victim" {
		t.Errorf("outside/ changed: %v", entries)
	}
	fi, err := os.Stat(h.victim)
	if err != nil {
		t.Fatal(err)
	}
	if n := fi.Sys().(*syscall.Stat_t).Nlink; n != 1 || readFile(t, h.victim) != "untouched\n" {
		t.Errorf("victim changed: %d links, %q", n, readFile(t, h.victim))
	}
	base := filepath.Dir(h.outside)
	_ = filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), "pwned") && !strings.Contains(p, "/rootfs/") && !strings.Contains(p, "/tree/") {
			t.Errorf("hostile archive wrote %s", p)
		}
		return nil
	})
}

func TestImportHostileArchives(t *testing.T) {
	absHost := fmt.Sprintf("/kolejka-image-test-%d-pwned", os.Getpid())
	tests := []struct {
		name string
		ents func(h *hostileSetup) []ent
		// want is the error text; "" means the import succeeds safely and
		// inside says where the file must have landed in the rootfs.
		want   string
		inside string
	}{
		{"dot-dot", func(*hostileSetup) []ent {
			return []ent{reg("ok", "", 0o644), reg("../../../../outside/pwned", "x", 0o644)}
		}, `entry "../../../../outside/pwned" points outside the image root`, ""},
		{"dot-dot hidden mid-path", func(*hostileSetup) []ent {
			return []ent{reg("a/b/../../../pwned", "x", 0o644)}
		}, "points outside the image root", ""},
		{"absolute path stays inside", func(*hostileSetup) []ent {
			return []ent{reg(absHost, "x", 0o644)}
		}, "", absHost},
		{"absolute symlink then write through it", func(h *hostileSetup) []ent {
			return []ent{sym("evil", h.outside), reg("evil/pwned", "x", 0o644)}
		}, "", ""}, // lands at rootfs/<outside>/pwned, checked below
		{"relative symlink out then write through it", func(*hostileSetup) []ent {
			return []ent{sym("evil", "../../../../../../../../.."), reg("evil/tmp/pwned", "x", 0o644)}
		}, "unable to unpack", ""},
		{"symlink chain out", func(*hostileSetup) []ent {
			return []ent{sym("a", "b"), sym("b", "../../../../../../.."), reg("a/pwned", "x", 0o644)}
		}, "unable to unpack", ""},
		{"hard link to host /etc/passwd", func(*hostileSetup) []ent {
			return []ent{hard("pwned-passwd", "/etc/passwd", 0o644)}
		}, "unable to unpack", ""}, // resolved in the rootfs, where there is no etc/passwd
		{"hard link to the victim by dot-dot", func(h *hostileSetup) []ent {
			return []ent{hard("pwned-victim", "../../../../../outside/victim", 0o644)}
		}, "outside the image root", ""},
		{"hard link through an absolute symlink", func(h *hostileSetup) []ent {
			return []ent{sym("evil", h.outside), hard("pwned-victim", "evil/victim", 0o644)}
		}, "unable to unpack", ""},
	}
	for _, tc := range tests {
		for _, format := range []string{FormatRootfsTar, FormatDockerSave} {
			t.Run(tc.name+"/"+format, func(t *testing.T) {
				h := newHostile(t)
				tarBytes := mkTar(t, tc.ents(h)...)
				var p string
				if format == FormatRootfsTar {
					p = writeFile(t, filepath.Join(t.TempDir(), "hostile.tar"), tarBytes)
				} else {
					files := dockerSaveFiles(t, testImage{tags: []string{"hostile:1"}, layers: [][]byte{tarBytes}})
					p = writeFile(t, filepath.Join(t.TempDir(), "hostile-save.tar"), tarOf(t, files))
				}
				img, err := h.s.Import(t.Context(), "hostile:1", p)
				t.Logf("Import: %v", err)
				h.check(t)
				assertMissing(t, absHost)
				if tc.want != "" {
					if !errors.Is(err, ErrBadArchive) || !strings.Contains(err.Error(), tc.want) {
						t.Fatalf("Import = %v; want ErrBadArchive saying %q", err, tc.want)
					}
					assertEmptyStore(t, h.s)
					return
				}
				if err != nil {
					t.Fatalf("Import: %v", err)
				}
				if tc.inside != "" {
					if readFile(t, filepath.Join(img.Rootfs, tc.inside)) != "x" {
						t.Errorf("%s not inside the rootfs", tc.inside)
					}
				}
				if strings.HasPrefix(tc.name, "absolute symlink") {
					// Resolved as if the rootfs were /: the write lands in
					// the rootfs, under the path the symlink names.
					if readFile(t, filepath.Join(img.Rootfs, h.outside, "pwned")) != "x" {
						t.Error("write through the absolute symlink did not land inside the rootfs")
					}
					assertLink(t, filepath.Join(img.Rootfs, "evil"), h.outside)
				}
			})
		}
	}
}

// Whiteouts in an upper layer aimed through a lower layer's symlink never
// delete on the host. Each layer is unpacked on its own (as docker's
// overlay2 does), so the upper layer's evil/ is a folder of its own that
// replaces the lower layer's symlink, and its whiteouts act in that folder.
func TestImportHostileWhiteouts(t *testing.T) {
	h := newHostile(t)
	lower := mkTar(t, sym("evil", h.outside), dir(h.outside[1:]+"/", 0o755), reg(h.outside[1:]+"/victim", "inside\n", 0o644))
	upper := mkTar(t,
		reg("evil/.wh.victim", "", 0o644),
		reg("evil/.wh..wh..opq", "", 0o644),
	)
	files := dockerSaveFiles(t, testImage{tags: []string{"wh:1"}, layers: [][]byte{lower, upper}})
	p := writeFile(t, filepath.Join(t.TempDir(), "save.tar"), tarOf(t, files))
	img, err := h.s.Import(t.Context(), "wh:1", p)
	if err != nil {
		t.Fatal(err)
	}
	h.check(t)
	if fi, err := os.Lstat(filepath.Join(img.Rootfs, "evil")); err != nil || !fi.IsDir() {
		t.Errorf("evil is not the upper layer's folder: %v, %v", fi, err)
	}
	if got := readFile(t, filepath.Join(img.Rootfs, h.outside, "victim")); got != "inside\n" {
		t.Errorf("the lower layer's victim inside the rootfs = %q", got)
	}

	// A relative symlink out of the root: replaced the same way, host untouched.
	h = newHostile(t)
	lower = mkTar(t, sym("evil", "../../../../../../../.."+h.outside))
	upper = mkTar(t, reg("evil/.wh.victim", "", 0o644))
	files = dockerSaveFiles(t, testImage{tags: []string{"wh:1"}, layers: [][]byte{lower, upper}})
	p = writeFile(t, filepath.Join(t.TempDir(), "save.tar"), tarOf(t, files))
	img, err = h.s.Import(t.Context(), "wh:1", p)
	if err != nil {
		t.Fatal(err)
	}
	h.check(t)
	if fi, err := os.Lstat(filepath.Join(img.Rootfs, "evil")); err != nil || !fi.IsDir() {
		t.Errorf("evil is not the upper layer's folder: %v, %v", fi, err)
	}
}
