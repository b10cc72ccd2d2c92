package image

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/kolejka-go/kolejka/internal/atomicfile"
	"github.com/kolejka-go/kolejka/internal/flock"
	"github.com/kolejka-go/kolejka/internal/testenv"
)

// The test binary doubles as a second process holding a task lock, for
// TestAcquireAcrossProcesses.
func TestMain(m *testing.M) {
	testenv.RunHelpers(testenv.Helpers{"acquire": acquireHelper})
	os.Exit(m.Run())
}

// acquireHelper acquires "<root>\n<name>", says "held <id>" on stdout and
// holds the image until stdin closes (or it is killed).
func acquireHelper(spec string) int {
	root, name, _ := strings.Cut(spec, "\n")
	s, err := Open(root)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	img, release, err := s.Acquire(name)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("held", img.ID)
	_, _ = io.Copy(io.Discard, os.Stdin)
	release()
	return 0
}

func smallRootfs(t *testing.T, marker string) string {
	return writeFile(t, filepath.Join(t.TempDir(), "rootfs.tar"), mkTar(t,
		dir("bin/", 0o755), reg("bin/marker", marker, 0o644)))
}

func TestGetNormalizesNames(t *testing.T) {
	s := openStore(t)
	p := smallRootfs(t, "busybox\n")
	img := mustImport(t, s, "busybox", p)
	if img.Name != "docker.io/library/busybox:latest" {
		t.Errorf("Name = %s", img.Name)
	}
	for _, name := range []string{"busybox", "busybox:latest", "library/busybox", "docker.io/library/busybox:latest"} {
		got, err := s.Get(name)
		if err != nil {
			t.Errorf("Get(%s): %v", name, err)
			continue
		}
		if got.Name != img.Name || got.ID != img.ID || got.Rootfs != img.Rootfs || got.Created.IsZero() {
			t.Errorf("Get(%s) = %+v, want %+v", name, got, img)
		}
	}
	_, err := s.Get("busybox:1.36")
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "docker.io/library/busybox:1.36") ||
		!strings.Contains(err.Error(), "kolejka-worker image import busybox:1.36") {
		t.Errorf("Get of a missing image: %v", err)
	}
	if _, err := s.Get("Not A Name"); !errors.Is(err, ErrInvalidName) {
		t.Errorf("Get of an invalid name: %v", err)
	}
	if _, err := s.Import(t.Context(), "bad name!", p); !errors.Is(err, ErrInvalidName) {
		t.Errorf("Import under an invalid name: %v", err)
	}

	mustImport(t, s, "zeta", smallRootfs(t, "zeta\n"))
	mustImport(t, s, "ghcr.io/team/alpha:2", smallRootfs(t, "alpha\n"))
	list, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, i := range list {
		names = append(names, i.Name)
		if readFile(t, filepath.Join(i.Rootfs, "bin/marker")) == "" {
			t.Errorf("%s: empty marker", i.Name)
		}
	}
	want := []string{"docker.io/library/busybox:latest", "docker.io/library/zeta:latest", "ghcr.io/team/alpha:2"}
	if !slices.Equal(names, want) {
		t.Errorf("List = %v, want %v", names, want)
	}
}

func TestRemoveKeepsSharedContent(t *testing.T) {
	s := openStore(t)
	p := smallRootfs(t, "shared\n")
	a := mustImport(t, s, "a", p)
	b := mustImport(t, s, "b", p)
	if a.ID != b.ID || len(contentIDs(t, s)) != 1 {
		t.Fatalf("same tar under two names: IDs %s, %s; content %v", a.ID, b.ID, contentIDs(t, s))
	}
	if err := s.Remove("a"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get("a"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after Remove: %v", err)
	}
	if got, err := s.Get("b"); err != nil || readFile(t, filepath.Join(got.Rootfs, "bin/marker")) != "shared\n" {
		t.Errorf("b lost its content: %v", err)
	}
	if ids := contentIDs(t, s); !slices.Equal(ids, []string{a.ID}) {
		t.Errorf("content after removing one of two names: %v", ids)
	}
	if err := s.Remove("docker.io/library/b:latest"); err != nil {
		t.Fatal(err)
	}
	assertEmptyStore(t, s)
	if err := s.Remove("b"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Remove: %v", err)
	}
}

func TestAcquireKeepsContentUntilRelease(t *testing.T) {
	s := openStore(t)
	p := smallRootfs(t, "running\n")
	mustImport(t, s, "task-image", p)
	img, release, err := s.Acquire("task-image")
	if err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(img.Rootfs, "bin/marker")

	err = s.Remove("task-image")
	if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), img.ID) {
		t.Fatalf("Remove of a held image: %v; want ErrInUse naming %s", err, img.ID)
	}
	if _, err := s.Get("task-image"); !errors.Is(err, ErrNotFound) {
		t.Errorf("the name should be gone: %v", err)
	}
	if err := s.GC(); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(s.Root()); err != nil { // Open collects too
		t.Fatal(err)
	}
	if readFile(t, marker) != "running\n" {
		t.Fatal("content deleted under a running task")
	}

	// Importing it again while held reuses the held content.
	again := mustImport(t, s, "task-image", p)
	if again.Rootfs != img.Rootfs {
		t.Errorf("re-import unpacked again: %s vs %s", again.Rootfs, img.Rootfs)
	}
	if err := s.Remove("task-image"); !errors.Is(err, ErrInUse) {
		t.Errorf("Remove: %v", err)
	}

	release()
	release() // harmless
	if ids := contentIDs(t, s); len(ids) != 1 {
		t.Fatalf("content went away before GC: %v", ids)
	}
	if err := s.GC(); err != nil {
		t.Fatal(err)
	}
	assertEmptyStore(t, s)

	if _, _, err := s.Acquire("task-image"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Acquire of a removed image: %v", err)
	}
}

// A task lock held by another process protects the content; when that
// process dies (SIGKILL, no cleanup), the kernel drops the lock and GC can
// collect.
func TestAcquireAcrossProcesses(t *testing.T) {
	s := openStore(t)
	img := mustImport(t, s, "shared", smallRootfs(t, "x\n"))

	holder := testenv.StartHelper(t, "acquire", s.Root()+"\nshared", nil)
	if line := holder.Line(); line != "held "+img.ID {
		t.Fatalf("helper said %q", line)
	}

	if err := s.Remove("shared"); !errors.Is(err, ErrInUse) {
		t.Errorf("Remove while another process holds the image: %v", err)
	}
	if err := s.GC(); err != nil {
		t.Fatal(err)
	}
	if ids := contentIDs(t, s); len(ids) != 1 {
		t.Fatalf("content collected while held by another process: %v", ids)
	}

	holder.Kill()
	if err := s.GC(); err != nil {
		t.Fatal(err)
	}
	assertEmptyStore(t, s)
}

func TestOpenCleansCrashLeftovers(t *testing.T) {
	s := openStore(t)
	keep := mustImport(t, s, "keep", smallRootfs(t, "keep\n"))
	root := s.Root()

	// What crashed processes leave: an import half done, a deletion half
	// done, a name file half written, content no name points to.
	writeFile(t, filepath.Join(root, "tmp/import-123/content/rootfs/bin/half"), []byte("half"))
	writeFile(t, filepath.Join(root, "tmp/trash-456/content/rootfs/bin/old"), []byte("old"))
	writeFile(t, filepath.Join(root, "names/.tmp-789"), []byte(`{"name":`))
	half, err := atomicfile.Create(filepath.Join(root, "names", "half.json"), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	half.WriteString(`{"name":`)
	half.File.Close() // neither committed nor aborted
	orphan := filepath.Join(root, "content/sha256", strings.Repeat("ab", 32))
	writeFile(t, filepath.Join(orphan, "rootfs/f"), []byte("orphan"))
	writeFile(t, filepath.Join(orphan, "lock"), nil)
	// And an import in progress in another process: locked, so it stays.
	live := filepath.Join(root, "tmp/import-live")
	writeFile(t, filepath.Join(live, "content/rootfs/f"), []byte("live"))
	lock, err := flockPath(live, os.O_RDONLY, flock.Exclusive)
	if err != nil {
		t.Fatal(err)
	}

	s2, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	if got := dirNames(t, filepath.Join(root, "tmp")); !slices.Equal(got, []string{"import-live"}) {
		t.Errorf("tmp/ after Open: %v, want only the live import", got)
	}
	if got := dirNames(t, filepath.Join(root, "names")); len(got) != 1 || strings.HasPrefix(got[0], ".") {
		t.Errorf("names/ after Open: %v", got)
	}
	if ids := contentIDs(t, s2); !slices.Equal(ids, []string{keep.ID}) {
		t.Errorf("content after Open: %v, want only %s", ids, keep.ID)
	}
	if img, err := s2.Get("keep"); err != nil || readFile(t, filepath.Join(img.Rootfs, "bin/marker")) != "keep\n" {
		t.Errorf("keep damaged: %v", err)
	}

	lock.Close() // the other process ends without cleaning up
	if err := s2.GC(); err != nil {
		t.Fatal(err)
	}
	if got := dirNames(t, filepath.Join(root, "tmp")); len(got) != 0 {
		t.Errorf("tmp/ after GC: %v", got)
	}
}

func TestConcurrentImports(t *testing.T) {
	s := openStore(t)
	save := writeFile(t, filepath.Join(t.TempDir(), "save.tar"), tarOf(t, dockerSaveFiles(t, testImage{
		tags: []string{"same:1"}, layers: [][]byte{mkTar(t, rootfsEntries()...), mkTar(t, reg("etc/.wh.secret", "", 0o644))},
	})))
	rootfs := writeFile(t, filepath.Join(t.TempDir(), "rootfs.tar"), mkTar(t, rootfsEntries()...))

	var wg sync.WaitGroup
	results := make([]*Image, 6)
	errs := make([]error, 6)
	for i := range results {
		wg.Go(func() {
			if i < 2 {
				results[i], errs[i] = s.Import(t.Context(), "same:1", save)
			} else {
				results[i], errs[i] = s.Import(t.Context(), fmt.Sprintf("rootfs:%d", i), rootfs)
			}
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("import %d: %v", i, err)
		}
	}
	if results[0].ID != results[1].ID || results[0].Rootfs != results[1].Rootfs {
		t.Errorf("concurrent docker imports differ: %s, %s", results[0].ID, results[1].ID)
	}
	for _, r := range results[3:] {
		if r.ID != results[2].ID {
			t.Errorf("concurrent rootfs imports differ: %s, %s", r.ID, results[2].ID)
		}
	}
	if ids := contentIDs(t, s); len(ids) != 2 {
		t.Errorf("content folders %v, want two", ids)
	}
	if n := dirNames(t, filepath.Join(s.Root(), "tmp")); len(n) != 0 {
		t.Errorf("tmp/ not cleaned: %v", n)
	}
	checkRootfs(t, results[2].Rootfs)
	assertMissing(t, filepath.Join(results[0].Rootfs, "etc/secret"))
}

// Tasks acquiring and releasing while the name is removed and re-imported:
// whenever Acquire succeeds, the root file system stays whole until release.
func TestAcquireRacesRemove(t *testing.T) {
	s := openStore(t)
	p := smallRootfs(t, "whole\n")
	mustImport(t, s, "racy", p)
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			for range 50 {
				img, release, err := s.Acquire("racy")
				if errors.Is(err, ErrNotFound) {
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				b, err := os.ReadFile(filepath.Join(img.Rootfs, "bin/marker"))
				release()
				if err != nil || string(b) != "whole\n" {
					t.Errorf("held rootfs damaged: %q, %v", b, err)
					return
				}
			}
		})
	}
	wg.Go(func() {
		for range 30 {
			if err := s.Remove("racy"); err != nil && !errors.Is(err, ErrInUse) && !errors.Is(err, ErrNotFound) {
				t.Error(err)
			}
			if _, err := s.Import(t.Context(), "racy", p); err != nil {
				t.Error(err)
			}
		}
	})
	wg.Wait()
	if err := s.GC(); err != nil {
		t.Fatal(err)
	}
	if ids := contentIDs(t, s); len(ids) != 1 {
		t.Errorf("content after the race: %v, want one", ids)
	}
}
