// Package registrytest serves an OCI registry over loopback HTTP for tests
// (go-containerregistry's in-memory registry), with switches that make it
// misbehave as a broken or hostile registry would: a corrupt blob, a
// manifest that is not the one its digest names, credentials it demands.
package registrytest

import (
	"archive/tar"
	"bytes"
	"io"
	"log"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Registry is a running registry. Host is its host:port, to be listed as
// insecure (it speaks plain HTTP).
type Registry struct {
	Host string

	mu        sync.Mutex
	corrupt   map[string]bool   // blob digest → serve it with a byte flipped
	manifests map[string][]byte // manifest digest → serve these bytes instead
	user      string
	pass      string
	fetched   []string // blob digests downloaded, in order
}

// New starts a registry, stopped at the test's end.
func New(t testing.TB) *Registry {
	t.Helper()
	r := &Registry{corrupt: map[string]bool{}, manifests: map[string][]byte{}}
	inner := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.serve(inner, w, req)
	}))
	t.Cleanup(srv.Close)
	r.Host = strings.TrimPrefix(srv.URL, "http://")
	return r
}

func (r *Registry) serve(inner http.Handler, w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	user, pass := r.user, r.pass
	r.mu.Unlock()
	if user != "" {
		u, p, ok := req.BasicAuth()
		if !ok || u != user || p != pass {
			w.Header().Set("WWW-Authenticate", `Basic realm="registrytest"`)
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
			return
		}
	}
	last := req.URL.Path[strings.LastIndex(req.URL.Path, "/")+1:]
	if req.Method == http.MethodGet && strings.Contains(req.URL.Path, "/blobs/") {
		r.mu.Lock()
		r.fetched = append(r.fetched, last)
		bad := r.corrupt[last]
		r.mu.Unlock()
		if bad {
			rec := httptest.NewRecorder()
			inner.ServeHTTP(rec, req)
			body := rec.Body.Bytes()
			if len(body) > 0 {
				body[len(body)/2] ^= 0xff
			}
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.Code)
			_, _ = w.Write(body)
			return
		}
	}
	if req.Method == http.MethodGet && strings.Contains(req.URL.Path, "/manifests/") {
		r.mu.Lock()
		body, swapped := r.manifests[last]
		r.mu.Unlock()
		if swapped {
			rec := httptest.NewRecorder()
			inner.ServeHTTP(rec, req)
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.Header().Del("Content-Length")
			w.WriteHeader(rec.Code)
			_, _ = w.Write(body)
			return
		}
	}
	inner.ServeHTTP(w, req)
}

// RequireAuth makes every request need these basic credentials.
func (r *Registry) RequireAuth(user, pass string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.user, r.pass = user, pass
}

// CorruptBlob makes the registry serve the blob with one byte flipped.
func (r *Registry) CorruptBlob(h v1.Hash) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.corrupt[h.String()] = true
}

// ServeManifest makes the registry answer a request for the manifest
// with this digest with body instead.
func (r *Registry) ServeManifest(h v1.Hash, body []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.manifests[h.String()] = body
}

// ServeManifestAt is ServeManifest for a request by tag (or by digest):
// reference is the last element of the request path.
func (r *Registry) ServeManifestAt(reference string, body []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.manifests[reference] = body
}

// Fetched lists the digests of the blobs downloaded so far, in order.
func (r *Registry) Fetched() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.fetched)
}

// Ref is repo:tag (or repo@digest) in this registry.
func (r *Registry) Ref(t testing.TB, repo string) name.Reference {
	t.Helper()
	ref, err := name.ParseReference(r.Host+"/"+repo, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

// Push stores img as repo:tag and returns its manifest digest.
func (r *Registry) Push(t testing.TB, repoTag string, img v1.Image) v1.Hash {
	t.Helper()
	if err := remote.Write(r.Ref(t, repoTag), img); err != nil {
		t.Fatalf("push %s: %v", repoTag, err)
	}
	h, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// PushIndex stores idx as repo:tag and returns its digest.
func (r *Registry) PushIndex(t testing.TB, repoTag string, idx v1.ImageIndex) v1.Hash {
	t.Helper()
	if err := remote.WriteIndex(r.Ref(t, repoTag), idx); err != nil {
		t.Fatalf("push %s: %v", repoTag, err)
	}
	h, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// Image is an image for os/arch of one layer per files map (name →
// content, regular files of mode 0644).
func Image(t testing.TB, os, arch string, layers ...map[string]string) v1.Image {
	t.Helper()
	img := empty.Image
	for _, files := range layers {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		// In name order: the same files make the same layer, so tests can
		// build images that share one.
		for _, n := range slices.Sorted(maps.Keys(files)) {
			body := files[n]
			if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
				t.Fatal(err)
			}
			if _, err := io.WriteString(tw, body); err != nil {
				t.Fatal(err)
			}
		}
		if err := tw.Close(); err != nil {
			t.Fatal(err)
		}
		b := buf.Bytes()
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
		if err != nil {
			t.Fatal(err)
		}
		if img, err = mutate.AppendLayers(img, l); err != nil {
			t.Fatal(err)
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = os, arch
	cf.Config.Env = []string{"PATH=/bin"}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// Index is an index of the images, each under the platform of its config.
func Index(t testing.TB, imgs ...v1.Image) v1.ImageIndex {
	t.Helper()
	var adds []mutate.IndexAddendum
	for _, img := range imgs {
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: cf.OS, Architecture: cf.Architecture}}})
	}
	return mutate.AppendManifests(empty.Index, adds...)
}
