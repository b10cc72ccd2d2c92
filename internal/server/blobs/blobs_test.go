package blobs

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func hashOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func tempCount(t *testing.T, s *Store) int {
	t.Helper()
	names, err := s.TempFiles()
	if err != nil {
		t.Fatal(err)
	}
	return len(names)
}

func TestWriteCommit(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("hello, blob")
	tmp, err := s.Write(bytes.NewReader(data), 100)
	if err != nil {
		t.Fatal(err)
	}
	if tmp.Blob.Hash != hashOf(data) || tmp.Blob.Size != int64(len(data)) {
		t.Fatalf("blob %+v", tmp.Blob)
	}
	if s.Exists(tmp.Blob.Hash) {
		t.Fatal("blob in place before Commit")
	}
	if err := tmp.Commit(); err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(s.Root(), tmp.Blob.Hash[:2], tmp.Blob.Hash[2:4], tmp.Blob.Hash)
	if got, _ := os.ReadFile(want); !bytes.Equal(got, data) {
		t.Fatalf("%s holds %q", want, got)
	}
	// The same content again: one file, no temp left.
	tmp2, _ := s.Write(bytes.NewReader(data), 100)
	if err := tmp2.Commit(); err != nil {
		t.Fatal(err)
	}
	var n int
	bad, _ := s.Walk(func(string) error { n++; return nil })
	if n != 1 || len(bad) != 0 || tempCount(t, s) != 0 {
		t.Errorf("%d blobs, %v stray, %d temp", n, bad, tempCount(t, s))
	}
	if ok, err := s.Verify(tmp.Blob.Hash); !ok || err != nil {
		t.Errorf("Verify: %v %v", ok, err)
	}
	if err := s.Remove(tmp.Blob.Hash); err != nil || s.Exists(tmp.Blob.Hash) {
		t.Errorf("Remove: %v", err)
	}
	if err := s.Remove(tmp.Blob.Hash); err != nil {
		t.Errorf("Remove of a missing blob: %v", err)
	}
}

type failingReader struct{ n int }

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, io.ErrUnexpectedEOF
	}
	k := min(len(p), r.n)
	r.n -= k
	return k, nil
}

func TestWriteFailuresLeaveNothing(t *testing.T) {
	s, _ := Open(t.TempDir())
	if _, err := s.Write(bytes.NewReader(make([]byte, 101)), 100); !errors.Is(err, ErrTooLarge) {
		t.Errorf("101 bytes with limit 100: %v", err)
	}
	if tmp, err := s.Write(bytes.NewReader(make([]byte, 100)), 100); err != nil {
		t.Errorf("exactly the limit: %v", err)
	} else {
		tmp.Discard()
	}
	if _, err := s.Write(&failingReader{n: 5000}, -1); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("cut upload: %v", err)
	}
	if n := tempCount(t, s); n != 0 {
		t.Errorf("%d temp files left", n)
	}
}

func TestCleanTempAndStrays(t *testing.T) {
	root := t.TempDir()
	s, _ := Open(root)
	os.WriteFile(filepath.Join(root, "tmp", "upload-123"), []byte("partial"), 0o640)
	os.MkdirAll(filepath.Join(root, "ab", "cd"), 0o750)
	os.WriteFile(filepath.Join(root, "ab", "cd", "notahash"), nil, 0o640)
	if n, err := s.CleanTemp(); n != 1 || err != nil {
		t.Errorf("CleanTemp: %d %v", n, err)
	}
	bad, err := s.Walk(func(string) error { t.Error("stray file reported as a blob"); return nil })
	if err != nil || len(bad) != 1 {
		t.Errorf("Walk: %v %v", bad, err)
	}
	if ValidHash("ABCD") || !ValidHash(hashOf(nil)) {
		t.Error("ValidHash")
	}
}
