// Command mkarchive packs the test image's rootfs folder (made by
// testdata/image/build.sh) into the three formats the worker's image store
// imports, byte for byte reproducibly:
//
//	OUT/rootfs.tar       a plain rootfs tar (./bin/busybox, ...), owned by root
//	OUT/docker-save.tar  the same rootfs as a `docker save` archive (legacy layout:
//	                     manifest.json, <config sha256>.json, <layer>/layer.tar)
//	OUT/oci/             an OCI image layout folder with one gzip layer
//
// Determinism: entries are written in lexical order, every mtime is -epoch,
// every owner is root, modes come from the folder (build.sh sets them
// explicitly), JSON has a fixed field order and gzip has no name or time in
// its header. So rebuilding from the same .deb gives the same bytes, and the
// docker-save and OCI outputs share one config, hence one image ID.
//
// Usage (from the module root):
//
//	go run ./testdata/image/mkarchive -rootfs OUT/rootfs -out OUT [-name kolejka-test:latest]
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	_ "crypto/sha256" // registers SHA-256 for go-digest
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"time"

	"github.com/distribution/reference"
	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/kolejka-go/kolejka/internal/atomicfile"
)

func main() {
	rootfs := flag.String("rootfs", "", "rootfs folder to pack (required)")
	out := flag.String("out", "", "output folder (required)")
	name := flag.String("name", "kolejka-test:latest", "image name recorded in the docker-save and OCI outputs")
	epoch := flag.Int64("epoch", 1577836800, "mtime of every entry and the image's creation time (Unix seconds)")
	flag.Parse()
	if *rootfs == "" || *out == "" || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: mkarchive -rootfs DIR -out DIR [-name NAME:TAG] [-epoch SECONDS]")
		os.Exit(2)
	}
	if err := run(*rootfs, *out, *name, time.Unix(*epoch, 0).UTC()); err != nil {
		fmt.Fprintln(os.Stderr, "mkarchive:", err)
		os.Exit(1)
	}
}

func run(rootfs, out, name string, mtime time.Time) error {
	named, err := reference.ParseNormalizedNamed(name)
	if err != nil {
		return fmt.Errorf("unable to parse image name %q: %w", name, err)
	}
	tagged, ok := reference.TagNameOnly(named).(reference.NamedTagged)
	if !ok {
		return fmt.Errorf("image name %q must be NAME[:TAG], not a digest", name)
	}

	layer, err := rootfsTar(rootfs, mtime)
	if err != nil {
		return err
	}
	diffID := digest.FromBytes(layer)

	config := ocispec.Image{
		Created:  &mtime,
		Platform: ocispec.Platform{Architecture: runtime.GOARCH, OS: "linux"},
		Config: ocispec.ImageConfig{
			Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
			Cmd: []string{"/bin/sh"},
		},
		RootFS: ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{diffID}},
		History: []ocispec.History{{
			Created:   &mtime,
			CreatedBy: "testdata/image/build.sh: Debian busybox-static and the kolejka test programs",
		}},
	}
	configJSON, err := json.Marshal(config)
	if err != nil {
		return fmt.Errorf("unable to encode image config: %w", err)
	}

	docker, err := dockerSave(layer, configJSON, tagged, mtime)
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(out, "rootfs.tar"), layer, 0o644); err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(out, "docker-save.tar"), docker, 0o644); err != nil {
		return err
	}
	return ociLayout(filepath.Join(out, "oci"), layer, configJSON, tagged)
}

// rootfsTar packs the folder into a tar with entries "./", "./bin/", ... in
// lexical order (filepath.WalkDir's order), owned by root, all with mtime.
func rootfsTar(root string, mtime time.Time) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		hdr := &tar.Header{
			Name:     "./" + filepath.ToSlash(rel),
			Mode:     tarMode(fi.Mode()),
			ModTime:  mtime,
			Uname:    "root",
			Gname:    "root",
			Typeflag: tar.TypeReg,
			Format:   tar.FormatPAX,
		}
		if rel == "." {
			hdr.Name = "./"
		}
		switch {
		case fi.Mode().IsRegular():
			hdr.Size = fi.Size()
		case fi.IsDir():
			hdr.Typeflag = tar.TypeDir
			if rel != "." {
				hdr.Name += "/"
			}
		case fi.Mode()&fs.ModeSymlink != 0:
			hdr.Typeflag = tar.TypeSymlink
			hdr.Mode = 0o777
			if hdr.Linkname, err = os.Readlink(p); err != nil {
				return err
			}
		default:
			return fmt.Errorf("unable to pack %s: unsupported file type %s", p, fi.Mode().Type())
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("unable to pack %s: %w", p, err)
		}
		if hdr.Typeflag == tar.TypeReg {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			if _, err := io.Copy(tw, f); err != nil {
				return fmt.Errorf("unable to pack %s: %w", p, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("unable to pack rootfs %s: %w", root, err)
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("unable to pack rootfs %s: %w", root, err)
	}
	return buf.Bytes(), nil
}

// tarMode converts a Go file mode to the tar (and stat) permission bits,
// keeping setuid, setgid and sticky, which fs.FileMode stores elsewhere.
func tarMode(m fs.FileMode) int64 {
	mode := int64(m.Perm())
	if m&fs.ModeSetuid != 0 {
		mode |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		mode |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		mode |= 0o1000
	}
	return mode
}

// dockerSave builds the legacy `docker save` layout, which docker load and
// our store both accept: the config is named by its sha256, the one layer
// lives in a folder named by its chain ID (for one layer: its diff ID).
func dockerSave(layer, configJSON []byte, name reference.NamedTagged, mtime time.Time) ([]byte, error) {
	configHex := digest.FromBytes(configJSON).Encoded()
	layerID := digest.FromBytes(layer).Encoded()
	manifest, err := json.Marshal([]struct {
		Config   string
		RepoTags []string
		Layers   []string
	}{{
		Config:   configHex + ".json",
		RepoTags: []string{reference.FamiliarString(name)},
		Layers:   []string{layerID + "/layer.tar"},
	}})
	if err != nil {
		return nil, err
	}
	repositories, err := json.Marshal(map[string]map[string]string{
		reference.FamiliarName(name): {name.Tag(): layerID},
	})
	if err != nil {
		return nil, err
	}
	layerJSON, err := json.Marshal(struct {
		ID      string `json:"id"`
		Created string `json:"created"`
		OS      string `json:"os"`
	}{layerID, mtime.Format(time.RFC3339), "linux"})
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{
		configHex + ".json":    configJSON,
		layerID + "/VERSION":   []byte("1.0"),
		layerID + "/json":      layerJSON,
		layerID + "/layer.tar": layer,
		"manifest.json":        manifest,
		"repositories":         repositories,
		layerID + "/":          nil, // a folder
	}
	return tarFiles(files, mtime)
}

// tarFiles writes a tar of the given files (names ending in "/" are folders)
// in lexical order.
func tarFiles(files map[string][]byte, mtime time.Time) ([]byte, error) {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range names {
		hdr := &tar.Header{Name: n, Mode: 0o644, Size: int64(len(files[n])), ModTime: mtime, Typeflag: tar.TypeReg, Format: tar.FormatPAX}
		if n[len(n)-1] == '/' {
			hdr.Typeflag, hdr.Mode, hdr.Size = tar.TypeDir, 0o755, 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("unable to write %s: %w", n, err)
		}
		if _, err := tw.Write(files[n]); err != nil {
			return nil, fmt.Errorf("unable to write %s: %w", n, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// ociLayout writes an OCI image layout folder (image-spec v1.1 layout.md),
// replacing dir as a whole.
func ociLayout(dir string, layer, configJSON []byte, name reference.NamedTagged) error {
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	if err != nil {
		return err
	}
	if _, err := zw.Write(layer); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	layerDesc := descriptor(ocispec.MediaTypeImageLayerGzip, gz.Bytes())
	configDesc := descriptor(ocispec.MediaTypeImageConfig, configJSON)
	manifestJSON, err := json.Marshal(ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    configDesc,
		Layers:    []ocispec.Descriptor{layerDesc},
	})
	if err != nil {
		return err
	}
	manifestDesc := descriptor(ocispec.MediaTypeImageManifest, manifestJSON)
	manifestDesc.Annotations = map[string]string{
		ocispec.AnnotationRefName:  name.Tag(),
		"io.containerd.image.name": name.String(),
	}
	manifestDesc.Platform = &ocispec.Platform{Architecture: runtime.GOARCH, OS: "linux"}
	indexJSON, err := json.Marshal(ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{manifestDesc},
	})
	if err != nil {
		return err
	}
	layoutJSON, err := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
	if err != nil {
		return err
	}

	tmp := dir + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	blobs := filepath.Join(tmp, "blobs", "sha256")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		return err
	}
	files := map[string][]byte{
		filepath.Join(tmp, ocispec.ImageLayoutFile):         layoutJSON,
		filepath.Join(tmp, "index.json"):                    indexJSON,
		filepath.Join(blobs, layerDesc.Digest.Encoded()):    gz.Bytes(),
		filepath.Join(blobs, configDesc.Digest.Encoded()):   configJSON,
		filepath.Join(blobs, manifestDesc.Digest.Encoded()): manifestJSON,
	}
	for p, b := range files {
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return err
		}
	}
	if err := os.RemoveAll(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	// A build output, which a crash makes us build again: not synced.
	return os.Rename(tmp, dir)
}

func descriptor(mediaType string, b []byte) ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(b), Size: int64(len(b))}
}
