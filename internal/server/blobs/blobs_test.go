package blobs_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/server/blobs"
	"github.com/kolejka-go/kolejka/internal/server/blobs/blobstest"
)

func openFolder(t *testing.T) blobs.Store {
	s, err := blobs.OpenFolder(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestFolderConformance(t *testing.T) {
	blobstest.Run(t, blobstest.Harness{
		New: openFolder,
		Temps: func(t *testing.T, s blobs.Store) int {
			names, err := s.(*blobs.Folder).TempFiles()
			if err != nil {
				t.Fatal(err)
			}
			return len(names)
		},
		PutStray: func(t *testing.T, s blobs.Store) {
			dir := filepath.Join(s.(*blobs.Folder).Root(), "ab", "cd")
			if err := os.MkdirAll(dir, 0o750); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "notahash"), nil, 0o640); err != nil {
				t.Fatal(err)
			}
		},
		Corrupt: func(t *testing.T, s blobs.Store, hash string) {
			if err := os.WriteFile(s.(*blobs.Folder).Path(hash), []byte("rotten"), 0o640); err != nil {
				t.Fatal(err)
			}
		},
	})
}

// The folder's layout is what operators and the hardening tests look at.
func TestFolderLayout(t *testing.T) {
	s, err := blobs.OpenFolder(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("hello, blob")
	b := blobstest.Put(t, s, data)
	want := filepath.Join(s.Root(), b.Hash[:2], b.Hash[2:4], b.Hash)
	if s.Path(b.Hash) != want {
		t.Errorf("Path %s, want %s", s.Path(b.Hash), want)
	}
	if got, _ := os.ReadFile(want); !bytes.Equal(got, data) {
		t.Fatalf("%s holds %q", want, got)
	}
	// A leftover of a crashed process: CleanTemp at start-up removes it.
	if err := os.WriteFile(filepath.Join(s.Root(), "tmp", "upload-123"), []byte("partial"), 0o640); err != nil {
		t.Fatal(err)
	}
	if n, err := s.CleanTemp(t.Context(), time.Now().Add(time.Second)); n != 1 || err != nil {
		t.Errorf("CleanTemp: %d %v", n, err)
	}
	if blobs.ValidHash("ABCD") || !blobs.ValidHash(blobstest.HashOf(nil)) {
		t.Error("ValidHash")
	}
}

func BenchmarkFolderPut1MiB(b *testing.B) {
	s, err := blobs.OpenFolder(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	blobstest.Bench(b, s, 1<<20)
}
