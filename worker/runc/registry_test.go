package runc_test

// A real registry on loopback (Debian's docker-registry: distribution's
// registry with filesystem storage, htpasswd basic auth and a self-signed
// TLS certificate made here), the test image pushed to it with skopeo, and
// runc tasks naming it by tag and by digest on a node whose store is empty.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"golang.org/x/crypto/bcrypt"

	"github.com/kolejka-go/kolejka/internal/testenv"
	"github.com/kolejka-go/kolejka/spec"
	"github.com/kolejka-go/kolejka/worker"
	"github.com/kolejka-go/kolejka/worker/image"
	"github.com/kolejka-go/kolejka/worker/image/registrytest"
	"github.com/kolejka-go/kolejka/worker/runc"
	"github.com/kolejka-go/kolejka/worker/workertest"
)

// realRegistry is a running docker-registry.
type realRegistry struct {
	host     string // 127.0.0.1:port
	certDir  string // ca.crt, for skopeo's --dest-cert-dir
	caFile   string // the same certificate, for registry_ca
	authFile string // a Docker config.json with the credentials
	creds    string // user:password
}

// startRegistry runs docker-registry with TLS and basic auth until the
// test ends.
func startRegistry(t testing.TB) *realRegistry {
	t.Helper()
	testenv.RequireRoot(t)
	for _, tool := range []string{"docker-registry", "skopeo"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Missing(t, "%s (testdata/host-deps.sh installs it)", tool)
		}
	}
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	host := l.Addr().String()
	l.Close()

	// A self-signed certificate for 127.0.0.1: its own CA.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "kolejka test registry"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certDir := filepath.Join(dir, "certs")
	if err := os.Mkdir(certDir, 0o700); err != nil {
		t.Fatal(err)
	}
	r := &realRegistry{host: host, certDir: certDir, caFile: filepath.Join(certDir, "ca.crt"), creds: "judge:s3cret"}
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	r.authFile = filepath.Join(dir, "auth.json")
	config := fmt.Sprintf(`version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: %s
http:
  addr: %s
  tls:
    certificate: %s
    key: %s
auth:
  htpasswd:
    realm: kolejka-test
    path: %s
`, filepath.Join(dir, "data"), host, r.caFile, filepath.Join(dir, "key.pem"), filepath.Join(dir, "htpasswd"))
	for name, data := range map[string][]byte{
		r.caFile:                         pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		filepath.Join(dir, "key.pem"):    pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
		filepath.Join(dir, "htpasswd"):   []byte("judge:" + string(hash) + "\n"),
		filepath.Join(dir, "config.yml"): []byte(config),
		r.authFile:                       []byte(`{"auths": {"` + host + `": {"auth": "` + base64.StdEncoding.EncodeToString([]byte(r.creds)) + `"}}}`),
	} {
		if err := os.WriteFile(name, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("docker-registry", "serve", filepath.Join(dir, "config.yml"))
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("docker-registry said:\n%s", out.String())
		}
	})
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConfigFor(t, r.caFile)}, Timeout: 2 * time.Second}
	testenv.WaitFor(t, 20*time.Second, "docker-registry answering", func() bool {
		resp, err := client.Get("https://" + host + "/v2/")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusUnauthorized
	})
	return r
}

// push copies the test image's docker save archive to name:tag in the
// registry and returns its manifest digest.
func (r *realRegistry) push(t testing.TB, repoTag string) string {
	t.Helper()
	digestFile := filepath.Join(t.TempDir(), "digest")
	cmd := exec.Command("skopeo", "copy", "--quiet", "--dest-creds", r.creds, "--dest-cert-dir", r.certDir,
		"--digestfile", digestFile,
		"docker-archive:"+filepath.Join(testenv.TestImage(t), "docker-save.tar"), "docker://"+r.host+"/"+repoTag)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("skopeo copy: %v\n%s", err, out)
	}
	d, err := os.ReadFile(digestFile)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(d))
}

// pullingRuntime is a runc runtime with an empty store that pulls from r.
func pullingRuntime(t testing.TB, r *realRegistry, cfg image.RegistryConfig) (*runc.Runtime, *image.Store) {
	t.Helper()
	requireSeccomp(t)
	dir := t.TempDir()
	store, err := image.Open(filepath.Join(dir, "images"))
	if err != nil {
		t.Fatal(err)
	}
	rt, err := runc.New(filepath.Join(dir, "state"), store)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := image.NewRegistry(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rt.PullFrom(reg, false)
	return rt, store
}

func TestRegistryPullRunsTaskByTagAndDigest(t *testing.T) {
	r := startRegistry(t)
	digest := r.push(t, "kolejka-test:latest")
	rt, store := pullingRuntime(t, r, image.RegistryConfig{CAFile: r.caFile, AuthFile: r.authFile})
	e := workertest.NewEnv(t, rt)

	for _, ref := range []string{r.host + "/kolejka-test:latest", r.host + "/kolejka-test@" + digest} {
		dir, res, err := e.Run(t, task(t, `{"image": "`+ref+`", "args": ["sh", "-c", "echo pulled; kolejka-spin 0.01 >/dev/null"], "stdout": "out"}`), worker.Options{})
		if err != nil || res.Status != spec.StatusOK {
			t.Fatalf("%s: %v %+v", ref, err, res)
		}
		if out, _ := os.ReadFile(filepath.Join(dir, "out")); string(out) != "pulled\n" {
			t.Errorf("%s: out %q", ref, out)
		}
		if _, err := store.Get(ref); err != nil {
			t.Errorf("%s is not in the store after its task: %v", ref, err)
		}
	}
	imgs, err := store.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 2 || imgs[0].ID != imgs[1].ID {
		t.Errorf("store holds %+v, want the two names of one image", imgs)
	}
	e.AssertClean(t)

	// The certificate is trusted only when registry_ca names it.
	untrusted, _ := pullingRuntime(t, r, image.RegistryConfig{AuthFile: r.authFile})
	e2 := workertest.NewEnv(t, untrusted)
	_, res, err := e2.Run(t, task(t, `{"image": "`+r.host+`/kolejka-test:latest", "args": ["true"]}`), worker.Options{})
	if err == nil || res == nil || res.Status != spec.StatusSE || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("without registry_ca: %v %+v, want SE naming the certificate", err, res)
	}
}

// tlsConfigFor trusts the PEM certificate in file.
func tlsConfigFor(t testing.TB, file string) *tls.Config {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		t.Fatalf("no certificate in %s", file)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

// BenchmarkRegistryFirstRun: the first task of an image the node lacks
// (pull from the loopback registry, verify, unpack, publish, then run
// `true`) against `skopeo copy` of the same image from the same registry
// into an OCI layout (fetch and verify only, no unpack, no run), in the
// same run. Each round starts from an empty store and an empty folder.
func BenchmarkRegistryFirstRun(b *testing.B) {
	r := startRegistry(b)
	r.push(b, "kolejka-test:latest")
	ref := r.host + "/kolejka-test:latest"
	var ours, theirs []float64
	for i := 0; i < max(b.N, 5); i++ {
		rt, _ := pullingRuntime(b, r, image.RegistryConfig{CAFile: r.caFile, AuthFile: r.authFile})
		e := workertest.NewEnv(b, rt)
		dir := b.TempDir()
		os.WriteFile(filepath.Join(dir, spec.TaskFile), []byte(`{"image": "`+ref+`", "args": ["true"]}`), 0o644)
		start := time.Now()
		res, err := e.W.Execute(b.Context(), dir, filepath.Join(b.TempDir(), "r"), worker.Options{})
		ours = append(ours, time.Since(start).Seconds()*1000)
		if err != nil || res.Status != spec.StatusOK {
			b.Fatalf("%v %+v", err, res)
		}

		start = time.Now()
		cmd := exec.Command("skopeo", "copy", "--quiet", "--src-creds", r.creds, "--src-cert-dir", r.certDir,
			"docker://"+ref, "oci:"+filepath.Join(b.TempDir(), "oci")+":latest")
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("skopeo copy: %v\n%s", err, out)
		}
		theirs = append(theirs, time.Since(start).Seconds()*1000)
	}
	b.ReportMetric(median(ours), "first-run-ms")
	b.ReportMetric(median(theirs), "skopeo-copy-ms")
	b.ReportMetric(median(ours)/median(theirs), "ratio")
}

// With always (--pull, pull = yes) the runtime pulls before every task: a
// tag moved to a new image runs the new one; without, the store's copy
// runs until the name is removed.
func TestPullAlwaysFollowsAMovedTag(t *testing.T) {
	testenv.RequireRoot(t)
	requireSeccomp(t)
	r := registrytest.New(t)
	base, err := tarball.ImageFromPath(filepath.Join(testenv.TestImage(t), "docker-save.tar"), nil)
	if err != nil {
		t.Fatal(err)
	}
	withMark := func(mark string) v1.Image { return imageWithMark(t, base, mark) }
	ref := r.Host + "/judge:moving"
	r.Push(t, "judge:moving", withMark("one"))

	dir := t.TempDir()
	store, err := image.Open(filepath.Join(dir, "images"))
	if err != nil {
		t.Fatal(err)
	}
	reg, err := image.NewRegistry(image.RegistryConfig{Insecure: []string{r.Host}})
	if err != nil {
		t.Fatal(err)
	}
	lazy, err := runc.New(filepath.Join(dir, "state"), store)
	if err != nil {
		t.Fatal(err)
	}
	lazy.PullFrom(reg, false)
	always, err := runc.New(filepath.Join(dir, "state"), store)
	if err != nil {
		t.Fatal(err)
	}
	always.PullFrom(reg, true)

	mark := func(rt *runc.Runtime) string {
		t.Helper()
		e := workertest.NewEnv(t, rt)
		out, res, err := e.Run(t, task(t, `{"image": "`+ref+`", "args": ["cat", "/mark"], "stdout": "out"}`), worker.Options{})
		if err != nil || res.Status != spec.StatusOK {
			t.Fatalf("%v %+v", err, res)
		}
		b, _ := os.ReadFile(filepath.Join(out, "out"))
		return string(b)
	}
	if got := mark(lazy); got != "one" {
		t.Fatalf("first run: mark %q", got)
	}
	r.Push(t, "judge:moving", withMark("two"))
	if got := mark(lazy); got != "one" {
		t.Errorf("without always: mark %q, want the store's one", got)
	}
	if got := mark(always); got != "two" {
		t.Errorf("with always: mark %q, want the moved tag's two", got)
	}
}

// An image neither the store nor the registry has, and one whose layer is
// corrupt: the task ends SE naming the image and the problem, and the
// store stays empty.
func TestPullFailureIsASystemError(t *testing.T) {
	testenv.RequireRoot(t)
	requireSeccomp(t)
	r := registrytest.New(t)
	img := registrytest.Image(t, "linux", runtime.GOARCH, map[string]string{"a": "1"})
	r.Push(t, "corrupt:1", img)
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	h, err := layers[0].Digest()
	if err != nil {
		t.Fatal(err)
	}
	r.CorruptBlob(h)
	dir := t.TempDir()
	store, err := image.Open(filepath.Join(dir, "images"))
	if err != nil {
		t.Fatal(err)
	}
	rt, err := runc.New(filepath.Join(dir, "state"), store)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := image.NewRegistry(image.RegistryConfig{Insecure: []string{r.Host}})
	if err != nil {
		t.Fatal(err)
	}
	rt.PullFrom(reg, false)
	e := workertest.NewEnv(t, rt)
	for ref, want := range map[string][]string{
		r.Host + "/nosuch:1":  {"image not found", "import it", "in the registry"},
		r.Host + "/corrupt:1": {"layer " + h.String(), "does not match its digest"},
	} {
		_, res, err := e.Run(t, task(t, `{"image": "`+ref+`", "args": ["true"]}`), worker.Options{})
		if res == nil || res.Status != spec.StatusSE || err == nil {
			t.Fatalf("%s: %v %+v, want SE", ref, err, res)
		}
		for _, w := range append(want, ref) {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q does not say %q", ref, err, w)
			}
		}
	}
	if imgs, err := store.List(); err != nil || len(imgs) != 0 {
		t.Errorf("store after failed pulls: %v %v", imgs, err)
	}
	if entries, _ := os.ReadDir(filepath.Join(store.Root(), "tmp")); len(entries) != 0 {
		t.Errorf("tmp/ holds %d entries", len(entries))
	}
	e.AssertClean(t)
}

// pushImage writes img as a docker save archive and copies it to repoTag
// in the registry with skopeo.
func (r *realRegistry) pushImage(t testing.TB, repoTag string, img v1.Image) {
	t.Helper()
	tag, err := name.NewTag(repoTag)
	if err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(t.TempDir(), "save.tar")
	if err := tarball.WriteToFile(archive, tag, img); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("skopeo", "copy", "--quiet", "--dest-creds", r.creds, "--dest-cert-dir", r.certDir,
		"docker-archive:"+archive, "docker://"+r.host+"/"+repoTag)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("skopeo copy: %v\n%s", err, out)
	}
}

// Two images built on the test image, pulled from a real registry by the
// tasks that name them: the base layers are on disk once, and removing one
// image leaves the other running.
func TestPulledImagesShareLayers(t *testing.T) {
	r := startRegistry(t)
	base, err := tarball.ImageFromPath(filepath.Join(testenv.TestImage(t), "docker-save.tar"), nil)
	if err != nil {
		t.Fatal(err)
	}
	baseLayers, err := base.Layers()
	if err != nil {
		t.Fatal(err)
	}
	withMark := func(mark string) v1.Image { return imageWithMark(t, base, mark) }
	r.pushImage(t, "judge/a:1", withMark("a"))
	r.pushImage(t, "judge/b:1", withMark("b"))
	rt, store := pullingRuntime(t, r, image.RegistryConfig{CAFile: r.caFile, AuthFile: r.authFile})
	e := workertest.NewEnv(t, rt)
	mark := func(ref string) string {
		t.Helper()
		out, res, err := e.Run(t, task(t, `{"image": "`+ref+`", "args": ["cat", "/mark"], "stdout": "out"}`), worker.Options{})
		if err != nil || res.Status != spec.StatusOK {
			t.Fatalf("%s: %v %+v", ref, err, res)
		}
		b, _ := os.ReadFile(filepath.Join(out, "out"))
		return string(b)
	}
	refA, refB := r.host+"/judge/a:1", r.host+"/judge/b:1"
	if got := mark(refA); got != "a" {
		t.Fatalf("a: mark %q", got)
	}
	if got := mark(refB); got != "b" {
		t.Fatalf("b: mark %q", got)
	}
	layerDirs := func() []string {
		t.Helper()
		ds, err := os.ReadDir(filepath.Join(store.Root(), "layers", "sha256"))
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, d := range ds {
			out = append(out, d.Name())
		}
		return out
	}
	imgA, err := store.Get(refA)
	if err != nil {
		t.Fatal(err)
	}
	// Distinct base layers (an image may list one twice) plus one mark each.
	distinct := map[string]bool{}
	for _, l := range imgA.Layers[:len(baseLayers)] {
		distinct[l] = true
	}
	if got, want := len(layerDirs()), len(distinct)+2; got != want {
		t.Errorf("%d layer folders, want %d (the base once)", got, want)
	}
	if err := store.Remove(refA); err != nil {
		t.Fatal(err)
	}
	if got, want := len(layerDirs()), len(distinct)+1; got != want {
		t.Errorf("after removing a: %d layer folders, want %d", got, want)
	}
	if got := mark(refB); got != "b" {
		t.Errorf("b after a was removed: mark %q", got)
	}
	e.AssertClean(t)
}

// imageWithMark is base with one more layer holding the file mark.
func imageWithMark(t *testing.T, base v1.Image, mark string) v1.Image {
	t.Helper()
	layers, err := registrytest.Image(t, "linux", runtime.GOARCH, map[string]string{"mark": mark}).Layers()
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(base, layers...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}
