package image

// The three input formats, each turned into a plan: the image's ID (when
// its metadata gives one), its config's environment and its layers in the
// order they are applied.

import (
	"fmt"
	"io"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// plan is what an archive holds for the image being imported.
type plan struct {
	format   string
	id       digest.Digest // "" for a rootfs tar: the digest of its content, known once read
	env      []string
	layers   []layer
	manifest digest.Digest // of the image manifest (OCI layouts and pulls), "" if none
}

// layer is one tar stream to apply.
type layer struct {
	name      string                               // path inside the archive, for messages ("" for a rootfs tar)
	open      func() (io.ReadCloser, int64, error) // the stored (possibly compressed) bytes
	blob      digest.Digest                        // digest of the stored bytes, verified if set
	size      int64                                // size of the stored bytes, verified if >= 0
	diffID    digest.Digest                        // digest of the uncompressed tar, verified if set
	whiteouts bool                                 // a layer (.wh. files delete) rather than a plain rootfs tar
	missing   string                               // why the layer cannot be read, if it is not in the archive (fine if the store has it)
}

// Media types of the docker (schema 2) formats OCI layouts may hold too.
const (
	dockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	dockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
)

// layerMediaTypes are the layer types we can apply; the compression is
// detected from the content anyway.
var layerMediaTypes = []string{
	ocispec.MediaTypeImageLayer,
	ocispec.MediaTypeImageLayerGzip,
	ocispec.MediaTypeImageLayerZstd,
	ocispec.MediaTypeImageLayerNonDistributable,     //lint:ignore SA1019 deprecated for new images; old ones carry it
	ocispec.MediaTypeImageLayerNonDistributableGzip, //lint:ignore SA1019 deprecated for new images; old ones carry it
	ocispec.MediaTypeImageLayerNonDistributableZstd, //lint:ignore SA1019 deprecated for new images; old ones carry it
	"application/vnd.docker.image.rootfs.diff.tar",
	"application/vnd.docker.image.rootfs.diff.tar.gzip",
	"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
}

// planRootfs: the whole (uncompressed) tar is the one layer, applied
// literally (no whiteout processing: a rootfs tar is a file system, not a
// diff).
func planRootfs(src *tarSource) *plan {
	return &plan{
		format: FormatRootfsTar,
		layers: []layer{{
			open: func() (io.ReadCloser, int64, error) {
				return io.NopCloser(io.NewSectionReader(src.f, 0, 1<<62)), -1, nil
			},
			size: -1,
		}},
	}
}

// dockerManifestEntry is one image of a `docker save` manifest.json.
type dockerManifestEntry struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// blobName matches the names docker save gives files it names by content:
// <hex>.json (config, legacy layout) and blobs/<alg>/<hex> (since docker 25).
// Compiled on first use, not at start: runc init re-executes this binary
// for every container, and only imports need it.
var blobName = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^(?:blobs/(sha256|sha512)/([a-f0-9]+)|([a-f0-9]{64})\.json)$`)
})

// digestOfName returns the digest a member's name promises, or "".
func digestOfName(name string) digest.Digest {
	m := blobName().FindStringSubmatch(name)
	switch {
	case m == nil:
		return ""
	case m[3] != "":
		return digest.NewDigestFromEncoded(digest.SHA256, m[3])
	default:
		return digest.NewDigestFromEncoded(digest.Algorithm(m[1]), m[2])
	}
}

// planDocker reads a `docker save` archive: manifest.json lists images, each
// a config (named by its digest) and layer tars in order.
func planDocker(src *tarSource, name string, limits Limits) (*plan, error) {
	b, err := readSmall(src, "manifest.json", limits.MaxMetadataBytes)
	if err != nil {
		return nil, err
	}
	var entries []dockerManifestEntry
	if err := decodeJSON(src, "manifest.json", b, &entries); err != nil {
		return nil, err
	}
	if len(entries) == 0 {
		return nil, badArchive(src.path, "manifest.json lists no image")
	}

	var matched []int
	var labels []string
	for i, e := range entries {
		if len(e.RepoTags) == 0 {
			labels = append(labels, fmt.Sprintf("<untagged %s>", e.Config))
		}
		for _, tag := range e.RepoTags {
			labels = append(labels, tag)
			if norm, err := NormalizeName(tag); err == nil && norm == name && !slices.Contains(matched, i) {
				matched = append(matched, i)
			}
		}
	}
	var e dockerManifestEntry
	switch {
	case len(matched) == 1:
		e = entries[matched[0]]
	case len(matched) > 1:
		return nil, badArchive(src.path, "manifest.json lists %d images named %s", len(matched), name)
	case len(entries) == 1:
		e = entries[0]
	default:
		return nil, fmt.Errorf("%w: %s holds %d images and none is named %s; import one of: %s",
			ErrNotFound, src.path, len(entries), name, strings.Join(labels, ", "))
	}

	configName := cleanArchivePath(e.Config)
	if configName == "" {
		return nil, badArchive(src.path, "manifest.json names config %q, a path outside the archive", e.Config)
	}
	configJSON, err := readSmall(src, configName, limits.MaxMetadataBytes)
	if err != nil {
		return nil, err
	}
	id := digest.FromBytes(configJSON)
	if want := digestOfName(configName); want != "" && want.Algorithm().FromBytes(configJSON) != want {
		return nil, badArchive(src.path, "config %s does not match the digest in its name (corrupt or tampered)", configName)
	}
	var config ocispec.Image
	if err := decodeJSON(src, configName, configJSON, &config); err != nil {
		return nil, err
	}
	if len(e.Layers) > limits.MaxLayers {
		return nil, badArchive(src.path, "the image has %d layers, over the limit of %d (Limits.MaxLayers)", len(e.Layers), limits.MaxLayers)
	}
	if len(config.RootFS.DiffIDs) != len(e.Layers) {
		return nil, badArchive(src.path, "manifest.json lists %d layers but config %s has %d diff_ids", len(e.Layers), configName, len(config.RootFS.DiffIDs))
	}
	p := &plan{format: FormatDockerSave, id: id, env: config.Config.Env}
	for i, l := range e.Layers {
		layerName := cleanArchivePath(l)
		if layerName == "" {
			return nil, badArchive(src.path, "manifest.json names layer %q, a path outside the archive", l)
		}
		if !src.has(layerName) {
			return nil, badArchive(src.path, "manifest.json names layer %s, which is not in the archive", layerName)
		}
		if err := config.RootFS.DiffIDs[i].Validate(); err != nil {
			return nil, badArchive(src.path, "config %s: diff_id %d: %w", configName, i, err)
		}
		p.layers = append(p.layers, layer{
			name:      layerName,
			open:      func() (io.ReadCloser, int64, error) { return src.open(layerName) },
			blob:      digestOfName(layerName),
			size:      -1,
			diffID:    config.RootFS.DiffIDs[i],
			whiteouts: true,
		})
	}
	return p, nil
}

// ociMatches reports whether an index.json entry carries the name: either
// in containerd's io.containerd.image.name, or in the OCI ref name as a full
// reference or as the tag alone.
func ociMatches(d ocispec.Descriptor, name string) bool {
	if full := d.Annotations["io.containerd.image.name"]; full != "" {
		if norm, err := NormalizeName(full); err == nil && norm == name {
			return true
		}
	}
	ref := d.Annotations[ocispec.AnnotationRefName]
	if ref == "" {
		return false
	}
	// A ref name that is only a tag ("latest"), as docker and buildah
	// write it, matches the name's tag.
	if isTag(ref) {
		r, err := parseRef(name)
		return err == nil && r.tag == ref
	}
	norm, err := NormalizeName(ref)
	return err == nil && norm == name
}

func ociLabel(d ocispec.Descriptor) string {
	if full := d.Annotations["io.containerd.image.name"]; full != "" {
		return full
	}
	if ref := d.Annotations[ocispec.AnnotationRefName]; ref != "" {
		return ref
	}
	return "<unnamed " + string(d.Digest) + ">"
}

// planOCI reads an OCI image layout (image-spec layout.md): oci-layout,
// index.json, and blobs/<alg>/<hex> for manifests, configs and layers.
func planOCI(src source, name string, limits Limits) (*plan, error) {
	b, err := readSmall(src, ocispec.ImageLayoutFile, limits.MaxMetadataBytes)
	if err != nil {
		return nil, err
	}
	var layout ocispec.ImageLayout
	if err := decodeJSON(src, ocispec.ImageLayoutFile, b, &layout); err != nil {
		return nil, err
	}
	if !strings.HasPrefix(layout.Version, "1.") {
		return nil, badArchive(src.String(), "oci-layout has imageLayoutVersion %q; only 1.x is supported", layout.Version)
	}
	b, err = readSmall(src, "index.json", limits.MaxMetadataBytes)
	if err != nil {
		return nil, err
	}
	var index ocispec.Index
	if err := decodeJSON(src, "index.json", b, &index); err != nil {
		return nil, err
	}
	if len(index.Manifests) == 0 {
		return nil, badArchive(src.String(), "index.json lists no image")
	}

	var matched []ocispec.Descriptor
	var labels []string
	for _, d := range index.Manifests {
		labels = append(labels, ociLabel(d))
		if ociMatches(d, name) && !slices.ContainsFunc(matched, func(m ocispec.Descriptor) bool { return m.Digest == d.Digest }) {
			matched = append(matched, d)
		}
	}
	var desc ocispec.Descriptor
	switch {
	case len(matched) == 1:
		desc = matched[0]
	case len(matched) > 1:
		return nil, badArchive(src.String(), "index.json lists %d different images named %s", len(matched), name)
	case len(index.Manifests) == 1:
		desc = index.Manifests[0]
	default:
		return nil, fmt.Errorf("%w: %s holds %d images and none is named %s; import one of: %s",
			ErrNotFound, src, len(index.Manifests), name, strings.Join(labels, ", "))
	}

	manifest, manifestDigest, err := ociManifest(src, desc, limits, 0)
	if err != nil {
		return nil, err
	}
	configJSON, err := readBlob(src, manifest.Config, limits.MaxMetadataBytes)
	if err != nil {
		return nil, err
	}
	var config ocispec.Image
	if err := decodeJSON(src, "config "+string(manifest.Config.Digest), configJSON, &config); err != nil {
		return nil, err
	}
	if len(manifest.Layers) > limits.MaxLayers {
		return nil, badArchive(src.String(), "the image has %d layers, over the limit of %d (Limits.MaxLayers)", len(manifest.Layers), limits.MaxLayers)
	}
	if len(config.RootFS.DiffIDs) != len(manifest.Layers) {
		return nil, badArchive(src.String(), "manifest %s lists %d layers but its config has %d diff_ids",
			desc.Digest, len(manifest.Layers), len(config.RootFS.DiffIDs))
	}
	p := &plan{format: FormatOCI, id: manifest.Config.Digest, env: config.Config.Env, manifest: manifestDigest}
	for i, l := range manifest.Layers {
		if !slices.Contains(layerMediaTypes, l.MediaType) {
			return nil, badArchive(src.String(), "layer %s has media type %q, which is not a layer tar", l.Digest, l.MediaType)
		}
		blob, err := blobPath(src, l.Digest)
		if err != nil {
			return nil, err
		}
		// A pull leaves out the layers the store holds.
		missing := ""
		if !src.has(blob) {
			missing = fmt.Sprintf("manifest %s names layer %s, which is not in the layout", desc.Digest, blob)
		}
		if err := config.RootFS.DiffIDs[i].Validate(); err != nil {
			return nil, badArchive(src.String(), "config %s: diff_id %d: %w", manifest.Config.Digest, i, err)
		}
		p.layers = append(p.layers, layer{
			name:      blob,
			open:      func() (io.ReadCloser, int64, error) { return src.open(blob) },
			blob:      l.Digest,
			size:      l.Size,
			diffID:    config.RootFS.DiffIDs[i],
			whiteouts: true,
			missing:   missing,
		})
	}
	return p, nil
}

// ociManifest resolves a descriptor to an image manifest, choosing this
// machine's platform (linux/GOARCH) in image indexes.
func ociManifest(src source, desc ocispec.Descriptor, limits Limits, depth int) (*ocispec.Manifest, digest.Digest, error) {
	if depth > 4 {
		return nil, "", badArchive(src.String(), "image indexes nested too deep at %s", desc.Digest)
	}
	b, err := readBlob(src, desc, limits.MaxMetadataBytes)
	if err != nil {
		return nil, "", err
	}
	what := "manifest " + string(desc.Digest)
	switch desc.MediaType {
	case ocispec.MediaTypeImageManifest, dockerManifest:
		var m ocispec.Manifest
		if err := decodeJSON(src, what, b, &m); err != nil {
			return nil, "", err
		}
		if err := m.Config.Digest.Validate(); err != nil {
			return nil, "", badArchive(src.String(), "%s: config digest: %w", what, err)
		}
		return &m, desc.Digest, nil
	case ocispec.MediaTypeImageIndex, dockerManifestList:
		var idx ocispec.Index
		if err := decodeJSON(src, "index "+string(desc.Digest), b, &idx); err != nil {
			return nil, "", err
		}
		var platforms []string
		for _, m := range idx.Manifests {
			if m.Platform != nil && m.Platform.OS == "linux" && m.Platform.Architecture == runtime.GOARCH {
				return ociManifest(src, m, limits, depth+1)
			}
			if m.Platform != nil {
				platforms = append(platforms, m.Platform.OS+"/"+m.Platform.Architecture)
			}
		}
		if len(idx.Manifests) == 1 && idx.Manifests[0].Platform == nil {
			return ociManifest(src, idx.Manifests[0], limits, depth+1)
		}
		return nil, "", badArchive(src.String(), "index %s has no image for linux/%s (it has: %s)",
			desc.Digest, runtime.GOARCH, strings.Join(platforms, ", "))
	default:
		return nil, "", badArchive(src.String(), "%s has media type %q, neither an image manifest nor an index", desc.Digest, desc.MediaType)
	}
}
