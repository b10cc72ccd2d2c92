package client

// This file splits an image archive into the blobs of an OCI image (its
// manifest, its config, its layers), so that the server stores each layer
// once however many images share it, and a node fetches a layer it has in
// its blob cache from nowhere. Only the simple, common shapes are split: a
// `docker save` or OCI layout holding one image whose manifest is an
// image manifest (not an index). Anything else — a root filesystem tar, a
// SIF file, several images in one archive — is pushed whole (kind
// "archive"), and the node's import reads it as it reads a local file.
// Nothing here trusts the archive: the node's import verifies every
// digest, size and diff_id of what it assembles.

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// layerFile is one blob of a split image: a file to upload and its media
// type (for layers).
type layerFile struct {
	path      string
	mediaType string
}

// maxSplitMetadata bounds the JSON files read while splitting.
const maxSplitMetadata = 4 << 20

// splitImage reads the image at src (an archive or an OCI layout folder)
// and returns its blobs in manifest order: the OCI image manifest, the
// config, the layers. ok is false when the image is not of a shape split
// here (it is then pushed whole). Extracted files go under tmp.
func splitImage(src, tmp string) (blobs []layerFile, ok bool, err error) {
	dir := src
	if fi, err := os.Stat(src); err != nil {
		return nil, false, err
	} else if !fi.IsDir() {
		dir = filepath.Join(tmp, "x")
		isTar, err := extractTar(src, dir)
		if err != nil || !isTar {
			return nil, false, err
		}
	}
	has := func(name string) bool { return exists(filepath.Join(dir, name)) }
	switch {
	case has(ocispec.ImageLayoutFile) && has("index.json"):
		return splitOCI(dir)
	case has("manifest.json"):
		return splitDocker(dir, tmp)
	}
	return nil, false, nil
}

// extractTar extracts the regular files of the tar at src under dir;
// isTar is false when src is not a tar (a SIF file, a compressed rootfs).
// Names leaving dir are refused.
func extractTar(src, dir string) (isTar bool, err error) {
	f, err := os.Open(src)
	if err != nil {
		return false, err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for first := true; ; first = false {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return !first, nil
		}
		if err != nil {
			if first {
				return false, nil
			}
			return false, fmt.Errorf("unable to read %s: %w", src, err)
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		name := path.Clean("/" + hdr.Name)[1:]
		if name == "" || strings.HasPrefix(name, "..") {
			return false, fmt.Errorf("%s: member %q leaves the archive", src, hdr.Name)
		}
		dst := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
			return false, err
		}
		out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return false, fmt.Errorf("unable to extract %s from %s: %w", name, src, err)
		}
		_, err = io.Copy(out, tr)
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return false, fmt.Errorf("unable to extract %s from %s: %w", name, src, err)
		}
	}
}

// readJSON reads the metadata file p into v and reports whether it could:
// a missing, oversized or malformed file means the image is not split
// here, and the node's import of the whole archive says what is wrong.
func readJSON(p string, v any) bool {
	f, err := os.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSplitMetadata+1))
	return err == nil && len(b) <= maxSplitMetadata && json.Unmarshal(b, v) == nil
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// inside is the file name under dir, "" when name leaves it.
func inside(dir, name string) string {
	clean := path.Clean("/" + filepath.ToSlash(name))[1:]
	if clean == "" || strings.HasPrefix(clean, "..") {
		return ""
	}
	return filepath.Join(dir, filepath.FromSlash(clean))
}

func splitOCI(dir string) ([]layerFile, bool, error) {
	var index ocispec.Index
	if !readJSON(filepath.Join(dir, "index.json"), &index) || len(index.Manifests) != 1 || index.Manifests[0].MediaType != ocispec.MediaTypeImageManifest {
		return nil, false, nil
	}
	blob := func(d digest.Digest) string {
		if d.Validate() != nil {
			return ""
		}
		return inside(dir, "blobs/"+string(d.Algorithm())+"/"+d.Encoded())
	}
	mp := blob(index.Manifests[0].Digest)
	var m ocispec.Manifest
	if mp == "" || !readJSON(mp, &m) || blob(m.Config.Digest) == "" {
		return nil, false, nil
	}
	out := []layerFile{{path: mp}, {path: blob(m.Config.Digest)}}
	for _, l := range m.Layers {
		p := blob(l.Digest)
		if p == "" {
			return nil, false, nil
		}
		out = append(out, layerFile{path: p, mediaType: l.MediaType})
	}
	return out, true, nil
}

// splitDocker makes an OCI image manifest for a `docker save` archive of
// one image: its config as the config, its layer tars as layers.
func splitDocker(dir, tmp string) ([]layerFile, bool, error) {
	var entries []struct {
		Config string
		Layers []string
	}
	if !readJSON(filepath.Join(dir, "manifest.json"), &entries) || len(entries) != 1 {
		return nil, false, nil
	}
	e := entries[0]
	config := inside(dir, e.Config)
	if config == "" {
		return nil, false, nil
	}
	desc := func(p, mediaType string) (ocispec.Descriptor, error) {
		sum, size, err := HashFile(p)
		if err != nil {
			return ocispec.Descriptor{}, err
		}
		return ocispec.Descriptor{MediaType: mediaType, Digest: digest.NewDigestFromEncoded(digest.SHA256, sum), Size: size}, nil
	}
	if !exists(config) {
		return nil, false, nil // the node's import of the whole archive says what is missing
	}
	cd, err := desc(config, ocispec.MediaTypeImageConfig)
	if err != nil {
		return nil, false, err
	}
	m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: cd}
	m.SchemaVersion = 2
	out := []layerFile{{}, {path: config}}
	for _, l := range e.Layers {
		p := inside(dir, l)
		if p == "" {
			return nil, false, nil
		}
		if !exists(p) {
			return nil, false, nil
		}
		mt, err := layerMediaType(p)
		if err != nil {
			return nil, false, err
		}
		d, err := desc(p, mt)
		if err != nil {
			return nil, false, err
		}
		m.Layers = append(m.Layers, d)
		out = append(out, layerFile{path: p, mediaType: mt})
	}
	data, err := json.Marshal(m)
	if err != nil {
		return nil, false, err
	}
	out[0].path = filepath.Join(tmp, "manifest.json")
	if err := os.WriteFile(out[0].path, data, 0o600); err != nil {
		return nil, false, err
	}
	return out, true, nil
}

// layerMediaType tells a gzip-compressed layer from a plain tar (docker
// save writes either, by version); the node detects it again anyway.
func layerMediaType(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	head := make([]byte, 2)
	if _, err := io.ReadFull(f, head); err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return "", err
	}
	if bytes.Equal(head, []byte{0x1f, 0x8b}) {
		return ocispec.MediaTypeImageLayerGzip, nil
	}
	if bytes.Equal(head, []byte{0x28, 0xb5}) {
		return ocispec.MediaTypeImageLayerZstd, nil
	}
	return ocispec.MediaTypeImageLayer, nil
}
