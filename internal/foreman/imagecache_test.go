package foreman

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/clock"
	"github.com/kolejka-go/kolejka/internal/testenv"
	"github.com/kolejka-go/kolejka/worker/image"
)

// rootfsTar writes a tiny root file system: one file of size bytes whose
// content depends on seed (so that each image has its own content ID).
func rootfsTar(t *testing.T, seed string, size int) string {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	data := bytes.Repeat([]byte(seed), size/len(seed)+1)[:size]
	tw.WriteHeader(&tar.Header{Name: "data", Mode: 0o644, Size: int64(size), Typeflag: tar.TypeReg})
	tw.Write(data)
	tw.Close()
	p := filepath.Join(t.TempDir(), seed+".tar")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func names(t *testing.T, st ImageStore) []string {
	t.Helper()
	imgs, err := st.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, img := range imgs {
		out = append(out, img.Names...)
	}
	slices.Sort(out)
	return out
}

func short(name string) string {
	n, _ := image.NormalizeName(name)
	return n
}

// The runc store under a budget: images tasks used are removed least
// recently used first, never one a running task uses; images no task used
// are left alone; the order of use survives a restart.
func TestImageCacheRunc(t *testing.T) {
	testenv.RequireRoot(t) // unpacking a rootfs keeps owners
	dir := t.TempDir()
	st, err := image.Open(filepath.Join(dir, "images"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, n := range []string{"a", "b", "c", "operator"} {
		if _, err := st.Import(ctx, n+":1", rootfsTar(t, n, 1000)); err != nil {
			t.Fatal(err)
		}
	}
	// A second name for a's content: counted once, removed together.
	if _, err := st.Import(ctx, "a-alias:1", rootfsTar(t, "a", 1000)); err != nil {
		t.Fatal(err)
	}
	store := RuncImages{Store: st}
	record := filepath.Join(dir, "images.json")
	cache, err := OpenImageCache(store, 2500, record, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	clk := clock.NewFake(time.Now())
	cache.clock = clk
	use := func(name string) func() {
		rel, err := cache.Acquire(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		clk.Advance(time.Second) // the next use is the more recent
		return rel
	}
	use("a:1")()
	use("a-alias:1")()
	relB := use("b:1") // b stays in use
	use("c:1")()       // a, b, c = 3000 > 2500: a (least recent, not in use) goes
	want := []string{short("b:1"), short("c:1"), short("operator:1")}
	if got := names(t, store); !slices.Equal(got, want) {
		t.Fatalf("after the budget: %v, want %v", got, want)
	}
	// b in use, c newer: nothing can go; over budget is allowed while in use.
	if _, err := st.Import(ctx, "d:1", rootfsTar(t, "d", 2000)); err != nil {
		t.Fatal(err)
	}
	use("d:1")() // b (in use) 1000 + c 1000 + d 2000: c goes, then b cannot
	want = []string{short("b:1"), short("d:1"), short("operator:1")}
	if got := names(t, store); !slices.Equal(got, want) {
		t.Fatalf("with b in use: %v, want %v", got, want)
	}
	relB()

	// Reopened, the cache remembers that d was used after b.
	cache, err = OpenImageCache(store, 2000, record, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	cache.clock = clk
	if err := cache.Enforce(ctx); err != nil {
		t.Fatal(err)
	}
	want = []string{short("d:1"), short("operator:1")}
	if got := names(t, store); !slices.Equal(got, want) {
		t.Fatalf("after a restart: %v, want %v (b used before d)", got, want)
	}
	// No budget: nothing removed, uses still recorded.
	cache, _ = OpenImageCache(store, 0, record, quietLog())
	cache.clock = clk
	use("operator:1")()
	if got := names(t, store); !slices.Equal(got, want) {
		t.Errorf("without a budget: %v", got)
	}
	data, _ := os.ReadFile(record)
	if !strings.Contains(string(data), short("operator:1")) {
		t.Errorf("record %s lacks the use of operator:1", data)
	}
}

// The Docker engine's images under a budget. Only images tasks of this
// cache used are touched, so the test's own images (unique names) are the
// only candidates: images of other tests on the engine are safe.
func TestImageCacheDocker(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireDocker(t)
	img := testenv.TestImage(t)
	ctx := context.Background()
	prefix := fmt.Sprintf("kolejka-foreman-test-%d", time.Now().UnixNano())
	var made []string
	for i := range 3 {
		name := fmt.Sprintf("%s-%d:latest", prefix, i)
		// A label per image: each is its own image (same layer, so the
		// engine stores the bytes once, but counts each image's size).
		out, err := exec.Command("docker", "import", "--change", fmt.Sprintf("LABEL n=%d", i),
			filepath.Join(img, "rootfs.tar"), name).CombinedOutput()
		if err != nil {
			t.Fatalf("docker import: %v: %s", err, out)
		}
		made = append(made, name)
	}
	t.Cleanup(func() {
		for _, n := range made {
			exec.Command("docker", "rmi", "-f", n).Run()
		}
	})
	store, err := NewDockerImages()
	if err != nil {
		t.Fatal(err)
	}
	imgs, err := store.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var size int64
	for _, im := range imgs {
		if slices.Contains(im.Names, short(made[0])) {
			size = im.Size
		}
	}
	if size == 0 {
		t.Fatalf("image %s not listed", made[0])
	}
	cache, err := OpenImageCache(store, 2*size+size/2, filepath.Join(t.TempDir(), "images.json"), quietLog())
	if err != nil {
		t.Fatal(err)
	}
	clk := clock.NewFake(time.Now())
	cache.clock = clk
	for _, n := range made {
		rel, err := cache.Acquire(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		rel()
		clk.Advance(time.Second) // the next use is the more recent
	}
	have := names(t, store)
	if slices.Contains(have, short(made[0])) || !slices.Contains(have, short(made[1])) || !slices.Contains(have, short(made[2])) {
		t.Errorf("after using three images in a budget of two and a half: %v; want %s gone", have, made[0])
	}
	if !slices.Contains(have, short("kolejka-test:latest")) && exec.Command("docker", "image", "inspect", "kolejka-test:latest").Run() == nil {
		t.Error("an image no task of this cache used was removed")
	}
}
