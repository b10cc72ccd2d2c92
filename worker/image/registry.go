package image

// Pull: fetch an image from its registry (the OCI distribution protocol, by
// go-containerregistry) into an OCI image layout in tmp/, then Import that
// layout, so a pull is verified and published exactly as an import is. The
// layout leaves out the layers the store holds; the import uses those.

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ErrUnauthorized: the registry refused the credentials (or wants some and
// none were configured for it).
var ErrUnauthorized = errors.New("registry refused the credentials")

// RegistryConfig is how a node reaches registries ([worker] and [foreman]
// registry_* keys of kolejka.conf).
type RegistryConfig struct {
	// AuthFile (registry_auth) is a file in the format of Docker's
	// config.json ({"auths": {"host:port": {"auth": base64 of user:password}}}),
	// consulted before the user's own Docker config ($DOCKER_CONFIG or
	// ~/.docker/config.json), which is always consulted.
	AuthFile string
	// CAFile (registry_ca) holds PEM certificates trusted for registries
	// besides the system's.
	CAFile string
	// Insecure (registry_insecure) are registries (host:port) reached over
	// plain HTTP or TLS without verifying the certificate: test registries
	// only.
	Insecure []string
}

// Registry pulls images; make it with NewRegistry.
type Registry struct {
	keychain authn.Keychain
	secure   http.RoundTripper
	insecure http.RoundTripper
	hosts    []string // c.Insecure
}

// NewRegistry reads the files the config names. Errors name the file and
// the problem.
func NewRegistry(c RegistryConfig) (*Registry, error) {
	keys := []authn.Keychain{}
	if c.AuthFile != "" {
		k, err := readAuthFile(c.AuthFile)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	keys = append(keys, authn.DefaultKeychain)

	base, ok := remote.DefaultTransport.(*http.Transport)
	if !ok {
		return nil, errors.New("unable to set up registry TLS: unexpected default transport")
	}
	secure := base.Clone()
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("unable to read registry_ca: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("unable to read registry_ca %s: no PEM certificate in it", c.CAFile)
		}
		secure.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	insecure := base.Clone()
	insecure.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // only for the registries registry_insecure names
	for _, h := range c.Insecure {
		if h == "" || strings.Contains(h, "/") {
			return nil, fmt.Errorf("unable to use registry_insecure: %q is not host:port", h)
		}
	}
	return &Registry{keychain: authn.NewMultiKeychain(keys...), secure: secure, insecure: insecure, hosts: slices.Clone(c.Insecure)}, nil
}

// dockerConfig is the part of Docker's config.json that names credentials.
// Not decoded strictly: the file is Docker's, with keys of its own.
type dockerConfig struct {
	Auths map[string]struct {
		Auth          string `json:"auth"`
		Username      string `json:"username"`
		Password      string `json:"password"`
		IdentityToken string `json:"identitytoken"`
	} `json:"auths"`
}

// fileKeychain answers credentials from a registry_auth file.
type fileKeychain map[string]authn.AuthConfig

func readAuthFile(path string) (fileKeychain, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("unable to read registry_auth: %w", err)
	}
	var dc dockerConfig
	if err := json.Unmarshal(b, &dc); err != nil {
		return nil, fmt.Errorf("unable to read registry_auth %s: malformed JSON: %w", path, err)
	}
	k := fileKeychain{}
	for host, a := range dc.Auths {
		cfg := authn.AuthConfig{Username: a.Username, Password: a.Password, IdentityToken: a.IdentityToken}
		if a.Auth != "" {
			raw, err := base64.StdEncoding.DecodeString(a.Auth)
			if err != nil {
				return nil, fmt.Errorf("unable to read registry_auth %s: auths.%s.auth: not base64: %w", path, host, err)
			}
			user, pass, ok := strings.Cut(string(raw), ":")
			if !ok {
				return nil, fmt.Errorf("unable to read registry_auth %s: auths.%s.auth: not base64 of user:password", path, host)
			}
			cfg.Username, cfg.Password = user, pass
		}
		// Docker writes both "host" and "https://host/v1/" forms.
		host = strings.TrimPrefix(strings.TrimPrefix(host, "https://"), "http://")
		host, _, _ = strings.Cut(host, "/")
		k[host] = cfg
	}
	return k, nil
}

// Resolve implements authn.Keychain.
func (k fileKeychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	if cfg, ok := k[r.RegistryStr()]; ok {
		return authn.FromConfig(cfg), nil
	}
	return authn.Anonymous, nil
}

func (r *Registry) isInsecure(host string) bool { return slices.Contains(r.hosts, host) }

// Pull fetches the image name refers to (by tag or digest; an index is
// resolved to linux and this machine's architecture) and stores it under
// name, as Import does: fetched into tmp/, every blob verified against its
// digest, unpacked and published atomically. The manifest is checked: by
// digest, its bytes against the digest asked for (an index entry's against
// the digest the index gives); by tag, the config served against the
// digest the manifest names, and one diff_id per layer; Image.Manifest
// records its digest. Layers the store holds (by diff_id, from any image)
// are not downloaded. If the store already holds the image's content (same
// config digest), only the manifest and config are read and the name is
// pointed at it. Errors name the image, the blob and the problem:
// ErrNotFound (no such image in the registry), ErrUnauthorized,
// ErrBadArchive (a corrupt blob, a manifest, config or layer not matching
// what names it, no image for this platform); on any error the store is
// unchanged.
func (s *Store) Pull(ctx context.Context, reg *Registry, ref string) (*Image, error) {
	norm, err := NormalizeName(ref)
	if err != nil {
		return nil, err
	}
	img, err := s.pull(ctx, reg, norm)
	if err != nil {
		return nil, fmt.Errorf("unable to pull %s: %w", norm, err)
	}
	return img, nil
}

func (s *Store) pull(ctx context.Context, reg *Registry, norm string) (*Image, error) {
	var nameOpts []name.Option
	rt := reg.secure
	parsed, err := name.ParseReference(norm)
	if err != nil {
		return nil, fmt.Errorf("%w %q: %w", ErrInvalidName, norm, err)
	}
	if reg.isInsecure(parsed.Context().RegistryStr()) {
		nameOpts = append(nameOpts, name.Insecure)
		rt = reg.insecure
	}
	ref, err := name.ParseReference(norm, nameOpts...)
	if err != nil {
		return nil, fmt.Errorf("%w %q: %w", ErrInvalidName, norm, err)
	}
	opts := []remote.Option{remote.WithContext(ctx), remote.WithTransport(rt), remote.WithAuthFromKeychain(reg.keychain),
		remote.WithPlatform(v1.Platform{OS: "linux", Architecture: runtime.GOARCH})}
	desc, err := remote.Get(ref, opts...)
	if err != nil {
		return nil, registryError(ref.String(), "manifest", err)
	}
	// By digest: the bytes served must be the ones asked for (by tag there
	// is nothing to check them against but what they name, below).
	if d, ok := ref.(name.Digest); ok {
		want, err := digest.Parse(d.DigestStr())
		if err != nil {
			return nil, fmt.Errorf("%w %q: %w", ErrInvalidName, norm, err)
		}
		if got := want.Algorithm().FromBytes(desc.Manifest); got != want {
			return nil, badArchive(ref.String(), "the manifest served does not match the digest asked for: its bytes hash to %s (corrupt or tampered)", got)
		}
	}
	img, raw, mDigest, err := s.platformImage(ref, desc)
	if err != nil {
		return nil, err
	}
	v, err := s.verifyImage(ref.String(), img, raw, mDigest)
	if err != nil {
		return nil, err
	}
	if img, err := s.link(norm, v.config, mDigest); img != nil || err != nil {
		return img, err
	}

	j, err := s.newJob()
	if err != nil {
		return nil, err
	}
	defer j.close()
	dir := filepath.Join(j.dir, "layout")
	if err := s.fetchLayout(ref.String(), j, img, v, dir); err != nil {
		return nil, err
	}
	return s.importJob(ctx, j, norm, dir, ref.String())
}

// verifiedImage is what a pulled manifest names, checked: the manifest's
// own bytes and digest, the config whose bytes hash to the digest the
// manifest gives, and the diff_ids of that config, one per layer.
type verifiedImage struct {
	manifest     []byte
	manifestType string
	digest       digest.Digest
	config       digest.Digest
	configJSON   []byte
	diffIDs      []digest.Digest
}

// verifyImage checks that the config the registry serves is the one the
// manifest names and that it lists a diff_id for each layer. The layers
// are checked as they are unpacked: their compressed bytes against the
// manifest's digests, their tar streams against the config's diff_ids.
func (s *Store) verifyImage(where string, img v1.Image, raw []byte, mDigest digest.Digest) (*verifiedImage, error) {
	// Parsed from the bytes whose digest was checked, not from whatever
	// go-containerregistry kept.
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, badArchive(where, "manifest %s: %w", mDigest, err)
	}
	config := digest.Digest(m.Config.Digest.String())
	if err := config.Validate(); err != nil {
		return nil, badArchive(where, "manifest %s: config digest: %w", mDigest, err)
	}
	configJSON, err := img.RawConfigFile()
	if err != nil {
		return nil, registryError(where, "config "+string(config), err)
	}
	if int64(len(configJSON)) > s.limits.MaxMetadataBytes {
		return nil, badArchive(where, "config %s is %d bytes, over the limit of %d (Limits.MaxMetadataBytes)", config, len(configJSON), s.limits.MaxMetadataBytes)
	}
	if got := config.Algorithm().FromBytes(configJSON); got != config {
		return nil, badArchive(where, "manifest %s names config %s, but the config served hashes to %s (corrupt or tampered)", mDigest, config, got)
	}
	cfg, err := v1.ParseConfigFile(bytes.NewReader(configJSON))
	if err != nil {
		return nil, badArchive(where, "config %s: %w", config, err)
	}
	if len(m.Layers) > s.limits.MaxLayers {
		return nil, badArchive(where, "the image has %d layers, over the limit of %d (Limits.MaxLayers)", len(m.Layers), s.limits.MaxLayers)
	}
	if len(cfg.RootFS.DiffIDs) != len(m.Layers) {
		return nil, badArchive(where, "manifest %s lists %d layers but config %s has %d diff_ids", mDigest, len(m.Layers), config, len(cfg.RootFS.DiffIDs))
	}
	v := &verifiedImage{manifest: raw, manifestType: string(m.MediaType), digest: mDigest, config: config, configJSON: configJSON}
	if v.manifestType == "" {
		v.manifestType = ocispec.MediaTypeImageManifest
	}
	for i, d := range cfg.RootFS.DiffIDs {
		diffID := digest.Digest(d.String())
		if err := diffID.Validate(); err != nil {
			return nil, badArchive(where, "config %s: diff_id %d: %w", config, i, err)
		}
		v.diffIDs = append(v.diffIDs, diffID)
	}
	return v, nil
}

// platformImage is the image of linux/GOARCH: desc itself, or its entry in
// an index; with the raw bytes of its manifest and their digest, which for
// an index entry is checked against the digest the index gives.
func (s *Store) platformImage(ref name.Reference, desc *remote.Descriptor) (v1.Image, []byte, digest.Digest, error) {
	if desc.Size > s.limits.MaxMetadataBytes || int64(len(desc.Manifest)) > s.limits.MaxMetadataBytes {
		return nil, nil, "", badArchive(ref.String(), "manifest %s is %d bytes, over the limit of %d (Limits.MaxMetadataBytes)", desc.Digest, max(desc.Size, int64(len(desc.Manifest))), s.limits.MaxMetadataBytes)
	}
	switch {
	case desc.MediaType.IsIndex():
		idx, err := desc.ImageIndex()
		if err != nil {
			return nil, nil, "", registryError(ref.String(), "index", err)
		}
		im, err := idx.IndexManifest()
		if err != nil {
			return nil, nil, "", registryError(ref.String(), "index", err)
		}
		var platforms []string
		for _, m := range im.Manifests {
			if m.Platform == nil {
				continue
			}
			if m.Platform.OS == "linux" && m.Platform.Architecture == runtime.GOARCH && m.MediaType.IsImage() {
				what := "manifest " + m.Digest.String()
				img, err := idx.Image(m.Digest)
				if err != nil {
					return nil, nil, "", registryError(ref.String(), what, err)
				}
				raw, err := img.RawManifest()
				if err != nil {
					return nil, nil, "", registryError(ref.String(), what, err)
				}
				if int64(len(raw)) > s.limits.MaxMetadataBytes {
					return nil, nil, "", badArchive(ref.String(), "%s is %d bytes, over the limit of %d (Limits.MaxMetadataBytes)", what, len(raw), s.limits.MaxMetadataBytes)
				}
				want := digest.Digest(m.Digest.String())
				if err := want.Validate(); err != nil {
					return nil, nil, "", badArchive(ref.String(), "index %s: %s: %w", desc.Digest, what, err)
				}
				if got := want.Algorithm().FromBytes(raw); got != want {
					return nil, nil, "", badArchive(ref.String(), "index %s names %s, but the manifest served hashes to %s (corrupt or tampered)", desc.Digest, what, got)
				}
				return img, raw, want, nil
			}
			platforms = append(platforms, m.Platform.OS+"/"+m.Platform.Architecture)
		}
		return nil, nil, "", badArchive(ref.String(), "index %s has no image for linux/%s (it has: %s)",
			desc.Digest, runtime.GOARCH, strings.Join(platforms, ", "))
	case desc.MediaType.IsImage():
		img, err := desc.Image()
		if err != nil {
			return nil, nil, "", registryError(ref.String(), "manifest", err)
		}
		// A single image names its platform only in its config.
		cfg, err := img.ConfigFile()
		if err != nil {
			return nil, nil, "", registryError(ref.String(), "config", err)
		}
		if (cfg.OS != "" && cfg.OS != "linux") || (cfg.Architecture != "" && cfg.Architecture != runtime.GOARCH) {
			return nil, nil, "", badArchive(ref.String(), "image %s is for %s/%s, not linux/%s", desc.Digest, cfg.OS, cfg.Architecture, runtime.GOARCH)
		}
		return img, desc.Manifest, digest.SHA256.FromBytes(desc.Manifest), nil
	default:
		return nil, nil, "", badArchive(ref.String(), "%s has media type %q, neither an image manifest nor an index", desc.Digest, desc.MediaType)
	}
}

// fetchLayout writes the verified image as an OCI image layout in dir: the
// manifest and config as checked, and the layers the store does not hold
// (by diff_id; the job holds those it has until the import publishes),
// each verified against its digest as it arrives and again by the import.
func (s *Store) fetchLayout(where string, j *job, img v1.Image, v *verifiedImage, dir string) error {
	layers, err := img.Layers()
	if err != nil {
		return registryError(where, "manifest", err)
	}
	if len(layers) != len(v.diffIDs) {
		return badArchive(where, "manifest %s lists %d layers but its config has %d diff_ids", v.digest, len(layers), len(v.diffIDs))
	}
	if err := os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o700); err != nil {
		return err
	}
	index, err := json.Marshal(ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{{MediaType: v.manifestType, Digest: v.digest, Size: int64(len(v.manifest))}},
	})
	if err != nil {
		return err
	}
	for _, d := range []digest.Digest{v.digest, v.config} {
		if err := os.MkdirAll(filepath.Join(dir, "blobs", string(d.Algorithm())), 0o700); err != nil {
			return err
		}
	}
	for file, data := range map[string][]byte{
		ocispec.ImageLayoutFile: []byte(`{"imageLayoutVersion":"1.0.0"}`),
		"index.json":            index,
		blobPathOf(v.digest):    v.manifest,
		blobPathOf(v.config):    v.configJSON,
	} {
		if err := os.WriteFile(filepath.Join(dir, file), data, 0o600); err != nil {
			return err
		}
	}
	var total int64
	for i, l := range layers {
		h, err := l.Digest()
		if err != nil {
			return registryError(where, "layer", err)
		}
		if h.Algorithm != "sha256" {
			return badArchive(where, "layer %s: only sha256 digests are supported", h)
		}
		held, err := s.holdLayer(j, v.diffIDs[i])
		if err != nil {
			return fmt.Errorf("unable to check layer %s: %w", v.diffIDs[i], err)
		}
		if held {
			continue // shared with an image the store holds: not downloaded again
		}
		n, err := s.fetchLayer(l, filepath.Join(dir, blobFile(h)), s.limits.MaxBytes-total)
		if err != nil {
			return registryError(where, "layer "+h.String(), err)
		}
		total += n
	}
	return nil
}

func blobFile(h v1.Hash) string { return filepath.Join("blobs", h.Algorithm, h.Hex) }

func blobPathOf(d digest.Digest) string {
	return filepath.Join("blobs", string(d.Algorithm()), d.Encoded())
}

// fetchLayer copies one layer's compressed bytes to path, at most limit of
// them. The same blob listed twice is fetched once.
func (s *Store) fetchLayer(l v1.Layer, path string, limit int64) (int64, error) {
	if fi, err := os.Stat(path); err == nil {
		return fi.Size(), nil
	}
	rc, err := l.Compressed()
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(f, io.LimitReader(rc, limit+1))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && n > limit {
		err = fmt.Errorf("%w: over %d bytes (Limits.MaxBytes)", ErrBadArchive, s.limits.MaxBytes)
	}
	return n, err
}

// registryError classifies an error of go-containerregistry: HTTP statuses
// become ErrNotFound and ErrUnauthorized, digest checks ErrBadArchive.
func registryError(where, what string, err error) error {
	var te *transport.Error
	if errors.As(err, &te) {
		switch te.StatusCode {
		case http.StatusNotFound:
			return fmt.Errorf("%w in the registry: %s: %s: %w", ErrNotFound, where, what, err)
		case http.StatusUnauthorized, http.StatusForbidden:
			return fmt.Errorf("%w (HTTP %d): %s: %s: %w (set them in registry_auth or ~/.docker/config.json)", ErrUnauthorized, te.StatusCode, where, what, err)
		}
	}
	// go-containerregistry's digest checks (its verify.Error is internal):
	// a blob or a manifest by digest whose bytes do not match.
	if msg := err.Error(); strings.Contains(msg, "error verifying") || strings.Contains(msg, "does not match requested digest") {
		return fmt.Errorf("%w: %s: %s does not match its digest (corrupt or tampered): %w", ErrBadArchive, where, what, err)
	}
	return fmt.Errorf("%s: %s: %w", where, what, err)
}
