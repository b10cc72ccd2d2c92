package image

import (
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/kolejka-go/kolejka/worker/image/registrytest"
)

func testRegistry(t testing.TB, c RegistryConfig) *Registry {
	t.Helper()
	// No credentials of the machine's user reach the test.
	t.Setenv("HOME", t.TempDir())
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	r, err := NewRegistry(c)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func readRootfsFile(t *testing.T, img *Image, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(img.Rootfs, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestPullByTagAndDigest(t *testing.T) {
	r := registrytest.New(t)
	pushed := registrytest.Image(t, "linux", runtime.GOARCH,
		map[string]string{"base.txt": "base\n", "over.txt": "old\n"},
		map[string]string{"over.txt": "new\n"})
	digest := r.Push(t, "judge/cpp:1", pushed)
	configName, err := pushed.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	reg := testRegistry(t, RegistryConfig{Insecure: []string{r.Host}})
	s := openStore(t)

	img, err := s.Pull(t.Context(), reg, r.Host+"/judge/cpp:1")
	if err != nil {
		t.Fatal(err)
	}
	if img.ID != configName.String() {
		t.Errorf("ID = %s, want the config digest %s", img.ID, configName)
	}
	if got := readRootfsFile(t, img, "over.txt"); got != "new\n" {
		t.Errorf("over.txt = %q, want the upper layer's", got)
	}
	if got := readRootfsFile(t, img, "base.txt"); got != "base\n" {
		t.Errorf("base.txt = %q", got)
	}
	layers, err := pushed.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var layerDigests []string
	for _, l := range layers {
		h, err := l.Digest()
		if err != nil {
			t.Fatal(err)
		}
		layerDigests = append(layerDigests, h.String())
		if !slices.Contains(r.Fetched(), h.String()) {
			t.Errorf("layer %s was not downloaded (downloads: %v)", h, r.Fetched())
		}
	}

	// By digest: same content, so the store reuses it and fetches no layer.
	before := len(r.Fetched())
	byDigest, err := s.Pull(t.Context(), reg, r.Host+"/judge/cpp@"+digest.String())
	if err != nil {
		t.Fatal(err)
	}
	if byDigest.ID != img.ID || byDigest.Rootfs != img.Rootfs {
		t.Errorf("by digest: %s at %s, by tag %s at %s", byDigest.ID, byDigest.Rootfs, img.ID, img.Rootfs)
	}
	for _, d := range r.Fetched()[before:] {
		if slices.Contains(layerDigests, d) {
			t.Errorf("pulling an image the store holds downloaded its layer %s again", d)
		}
	}
	if !strings.Contains(byDigest.Name, "@sha256:") {
		t.Errorf("name %q lost its digest", byDigest.Name)
	}
	if got, err := s.Get(r.Host + "/judge/cpp:1"); err != nil || got.ID != img.ID {
		t.Errorf("Get by tag after pulls: %v, %v", got, err)
	}
	if ids := contentIDs(t, s); len(ids) != 1 {
		t.Errorf("content %v, want one", ids)
	}
	if entries, _ := os.ReadDir(filepath.Join(s.Root(), "tmp")); len(entries) != 0 {
		t.Errorf("tmp/ holds %d entries after the pulls", len(entries))
	}
}

func TestPullIndexChoosesPlatform(t *testing.T) {
	r := registrytest.New(t)
	other := "arm64"
	if runtime.GOARCH == "arm64" {
		other = "amd64"
	}
	mine := registrytest.Image(t, "linux", runtime.GOARCH, map[string]string{"arch": runtime.GOARCH})
	theirs := registrytest.Image(t, "linux", other, map[string]string{"arch": other})
	r.PushIndex(t, "multi:latest", registrytest.Index(t, theirs, mine))
	s := openStore(t)
	img, err := s.Pull(t.Context(), testRegistry(t, RegistryConfig{Insecure: []string{r.Host}}), r.Host+"/multi")
	if err != nil {
		t.Fatal(err)
	}
	if got := readRootfsFile(t, img, "arch"); got != runtime.GOARCH {
		t.Errorf("pulled the image of %s, want %s", got, runtime.GOARCH)
	}
}

func TestPullCredentials(t *testing.T) {
	r := registrytest.New(t)
	r.Push(t, "private:1", registrytest.Image(t, "linux", runtime.GOARCH, map[string]string{"secret": "s"}))
	r.RequireAuth("judge", "pa:ss")
	authFile := filepath.Join(t.TempDir(), "auth.json")
	auth := base64.StdEncoding.EncodeToString([]byte("judge:pa:ss"))
	if err := os.WriteFile(authFile, []byte(`{"auths": {"`+r.Host+`": {"auth": "`+auth+`"}}, "credsStore": ""}`), 0o600); err != nil {
		t.Fatal(err)
	}
	s := openStore(t)
	ref := r.Host + "/private:1"
	_, err := s.Pull(t.Context(), testRegistry(t, RegistryConfig{Insecure: []string{r.Host}}), ref)
	if !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), "private") {
		t.Fatalf("without credentials: %v, want ErrUnauthorized naming the image", err)
	}
	if _, err := s.Pull(t.Context(), testRegistry(t, RegistryConfig{Insecure: []string{r.Host}, AuthFile: authFile}), ref); err != nil {
		t.Fatalf("with registry_auth: %v", err)
	}

	// The user's Docker config is read too ($DOCKER_CONFIG/config.json).
	s2 := openStore(t)
	reg := testRegistry(t, RegistryConfig{Insecure: []string{r.Host}})
	dc := os.Getenv("DOCKER_CONFIG")
	if err := os.WriteFile(filepath.Join(dc, "config.json"), []byte(`{"auths": {"`+r.Host+`": {"auth": "`+auth+`"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Pull(t.Context(), reg, ref); err != nil {
		t.Fatalf("with $DOCKER_CONFIG/config.json: %v", err)
	}
}

func TestNewRegistryBadFiles(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.pem")
	badJSON := filepath.Join(dir, "auth.json")
	badAuth := filepath.Join(dir, "auth2.json")
	for p, body := range map[string]string{notPEM: "hello", badJSON: `{"auths": `, badAuth: `{"auths": {"r:5000": {"auth": "bm9jb2xvbg=="}}}`} {
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		cfg  RegistryConfig
		want []string
	}{
		{RegistryConfig{CAFile: notPEM}, []string{"registry_ca", notPEM, "no PEM certificate"}},
		{RegistryConfig{CAFile: filepath.Join(dir, "none")}, []string{"registry_ca", "no such file"}},
		{RegistryConfig{AuthFile: badJSON}, []string{"registry_auth", badJSON, "malformed JSON"}},
		{RegistryConfig{AuthFile: badAuth}, []string{"registry_auth", "auths.r:5000.auth", "user:password"}},
		{RegistryConfig{Insecure: []string{"http://r:5000/"}}, []string{"registry_insecure", "not host:port"}},
	} {
		_, err := NewRegistry(c.cfg)
		if err == nil {
			t.Errorf("%+v: no error", c.cfg)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%+v: %v, want it to say %q", c.cfg, err, w)
			}
		}
	}
}
