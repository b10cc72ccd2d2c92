package main

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/kolejka-go/kolejka/cmd/internal/cliexit"
	"github.com/kolejka-go/kolejka/worker/image"
	"github.com/kolejka-go/kolejka/worker/image/registrytest"
)

// `image pull` takes [worker] registry_insecure and images, stores the
// image under its name, and refuses an image the registry lacks with exit
// 2, naming it.
func TestImagePull(t *testing.T) {
	r := registrytest.New(t)
	r.Push(t, "judge:1", registrytest.Image(t, "linux", runtime.GOARCH, map[string]string{"judge": "yes"}))
	dir := t.TempDir()
	conf := filepath.Join(dir, "kolejka.conf")
	store := filepath.Join(dir, "images")
	if err := os.WriteFile(conf, []byte("[worker]\nimages = "+store+"\nregistry_insecure = "+r.Host+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code := cliexit.Run(app(), []string{"kolejka-worker", "--config-file", conf, "image", "pull", r.Host + "/judge:1"}); code != 0 {
		t.Fatalf("image pull: exit %d", code)
	}
	st, err := image.Open(store)
	if err != nil {
		t.Fatal(err)
	}
	img, err := st.Get(r.Host + "/judge:1")
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(img.Rootfs, "judge")); err != nil || string(b) != "yes" {
		t.Errorf("the pulled image's file: %q, %v", b, err)
	}
	if code := cliexit.Run(app(), []string{"kolejka-worker", "--config-file", conf, "image", "pull", r.Host + "/nosuch:1"}); code != cliexit.Usage {
		t.Errorf("pull of an unknown image: exit %d, want %d", code, cliexit.Usage)
	}
	if imgs, err := st.List(); err != nil || len(imgs) != 1 || !strings.HasSuffix(imgs[0].Name, "/judge:1") {
		t.Errorf("store after the refused pull: %v, %v", imgs, err)
	}
}
