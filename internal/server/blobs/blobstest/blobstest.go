// Package blobstest is the conformance suite of blobs.Store: every
// implementation runs Run against a real backend, so the server can rely
// on the same behaviour from each.
package blobstest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/server/blobs"
)

// Harness is an implementation under test.
type Harness struct {
	// New returns an empty store.
	New func(t *testing.T) blobs.Store
	// Temps counts the store's temporary uploads (written, not committed
	// or discarded).
	Temps func(t *testing.T, s blobs.Store) int
	// PutStray puts an entry that is not a blob where Walk looks.
	PutStray func(t *testing.T, s blobs.Store)
	// Corrupt replaces the bytes stored under hash with others.
	Corrupt func(t *testing.T, s blobs.Store, hash string)
}

// HashOf is the store's name for b.
func HashOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// Put writes and commits b.
func Put(t *testing.T, s blobs.Store, b []byte) blobs.Blob {
	t.Helper()
	tmp, err := s.Write(t.Context(), bytes.NewReader(b), -1)
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	if err := tmp.Commit(t.Context()); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	return tmp.Blob()
}

// All is every blob Walk lists.
func All(t *testing.T, s blobs.Store) map[string]blobs.Info {
	t.Helper()
	m := map[string]blobs.Info{}
	bad, err := s.Walk(t.Context(), func(i blobs.Info) error {
		if _, dup := m[i.Hash]; dup {
			t.Errorf("Walk listed %s twice", i.Hash)
		}
		m[i.Hash] = i
		return nil
	})
	if err != nil || len(bad) != 0 {
		t.Fatalf("Walk: %v, stray %v", err, bad)
	}
	return m
}

func read(t *testing.T, s blobs.Store, hash string) []byte {
	t.Helper()
	r, err := s.Open(t.Context(), hash)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return b
}

func exists(t *testing.T, s blobs.Store, hash string) bool {
	t.Helper()
	ok, err := s.Exists(t.Context(), hash)
	if err != nil {
		t.Fatalf("Exists: %v", err)
	}
	return ok
}

func noTemps(t *testing.T, h Harness, s blobs.Store) {
	t.Helper()
	if n := h.Temps(t, s); n != 0 {
		t.Errorf("%d temporary uploads left", n)
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

// Run runs the suite.
func Run(t *testing.T, h Harness) {
	t.Run("ContentAddressing", func(t *testing.T) {
		s := h.New(t)
		data := []byte("hello, blob")
		tmp, err := s.Write(t.Context(), bytes.NewReader(data), 100)
		if err != nil {
			t.Fatal(err)
		}
		b := tmp.Blob()
		if b.Hash != HashOf(data) || b.Size != int64(len(data)) {
			t.Fatalf("blob %+v", b)
		}
		if exists(t, s, b.Hash) {
			t.Fatal("blob in place before Commit")
		}
		if err := tmp.Commit(t.Context()); err != nil {
			t.Fatal(err)
		}
		if !exists(t, s, b.Hash) {
			t.Fatal("blob not in place after Commit")
		}
		if got := read(t, s, b.Hash); !bytes.Equal(got, data) {
			t.Fatalf("read %q", got)
		}
		r, err := s.Open(t.Context(), b.Hash)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if i := r.Info(); i.Hash != b.Hash || i.Size != b.Size || time.Since(i.ModTime) > time.Hour || time.Until(i.ModTime) > time.Minute {
			t.Errorf("Info %+v", i)
		}
		// What http.ServeContent does: size by seeking to the end, then a range.
		if end, err := r.Seek(0, io.SeekEnd); err != nil || end != b.Size {
			t.Errorf("Seek end: %d %v", end, err)
		}
		if _, err := r.Seek(7, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		if rest, err := io.ReadAll(r); err != nil || string(rest) != "blob" {
			t.Errorf("after Seek(7): %q %v", rest, err)
		}
		if ok, err := blobs.Verify(t.Context(), s, b.Hash); !ok || err != nil {
			t.Errorf("Verify: %v %v", ok, err)
		}
		noTemps(t, h, s)
	})

	// Small and large uploads (a store may treat them apart: the S3 store
	// keeps up to 1 MiB in memory and streams the rest) read back whole.
	t.Run("Sizes", func(t *testing.T) {
		s := h.New(t)
		for _, n := range []int{0, 1, 1 << 20, 1<<20 + 1, 3<<20 + 7} {
			data := make([]byte, n)
			for i := range data {
				data[i] = byte(i*7 + n)
			}
			b := Put(t, s, data)
			if b.Hash != HashOf(data) || b.Size != int64(n) {
				t.Fatalf("%d bytes: blob %+v, want %s", n, b, HashOf(data))
			}
			r, err := s.Open(t.Context(), b.Hash)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(r)
			r.Close()
			if err != nil || !bytes.Equal(got, data) {
				t.Errorf("%d bytes: read back %d bytes (%v)", n, len(got), err)
			}
		}
		noTemps(t, h, s)
	})

	t.Run("Dedup", func(t *testing.T) {
		s := h.New(t)
		data := []byte("twice the same")
		Put(t, s, data)
		Put(t, s, data)
		Put(t, s, []byte("other"))
		all := All(t, s)
		if len(all) != 2 || all[HashOf(data)].Size != int64(len(data)) {
			t.Errorf("blobs %v", all)
		}
		noTemps(t, h, s)
	})

	t.Run("SizeLimit", func(t *testing.T) {
		s := h.New(t)
		if _, err := s.Write(t.Context(), bytes.NewReader(make([]byte, 101)), 100); !errors.Is(err, blobs.ErrTooLarge) {
			t.Errorf("101 bytes with limit 100: %v", err)
		}
		// A large one cut as soon as it passes the limit, not read to its end.
		big := &failingReader{n: 64 << 20}
		if _, err := s.Write(t.Context(), big, 1<<20); !errors.Is(err, blobs.ErrTooLarge) {
			t.Errorf("64 MiB with limit 1 MiB: %v", err)
		}
		if big.n < 32<<20 {
			t.Errorf("read %d bytes past a 1 MiB limit", 64<<20-big.n)
		}
		tmp, err := s.Write(t.Context(), bytes.NewReader(make([]byte, 100)), 100)
		if err != nil {
			t.Fatalf("exactly the limit: %v", err)
		}
		tmp.Discard()
		if _, err := s.Write(t.Context(), &failingReader{n: 5000}, -1); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("cut upload: %v", err)
		}
		if all := All(t, s); len(all) != 0 {
			t.Errorf("blobs after refused uploads: %v", all)
		}
		noTemps(t, h, s)
	})

	t.Run("ConcurrentSameContent", func(t *testing.T) {
		s := h.New(t)
		data := bytes.Repeat([]byte("same bytes from many uploaders "), 10000)
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for range 8 {
			wg.Go(func() {
				tmp, err := s.Write(context.Background(), bytes.NewReader(data), -1)
				if err == nil {
					err = tmp.Commit(context.Background())
				}
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Error(err)
			}
		}
		all := All(t, s)
		if len(all) != 1 || all[HashOf(data)].Size != int64(len(data)) {
			t.Errorf("blobs %v", all)
		}
		if got := read(t, s, HashOf(data)); !bytes.Equal(got, data) {
			t.Error("the blob's bytes differ")
		}
		noTemps(t, h, s)
	})

	t.Run("Remove", func(t *testing.T) {
		s := h.New(t)
		a, b := Put(t, s, []byte("a")), Put(t, s, []byte("b"))
		if err := s.Remove(t.Context(), a.Hash); err != nil {
			t.Fatal(err)
		}
		if exists(t, s, a.Hash) || !exists(t, s, b.Hash) {
			t.Error("Remove removed the wrong blob")
		}
		if err := s.Remove(t.Context(), a.Hash); err != nil {
			t.Errorf("Remove of a missing blob: %v", err)
		}
		if _, err := s.Open(t.Context(), a.Hash); !errors.Is(err, blobs.ErrNotFound) {
			t.Errorf("Open after Remove: %v", err)
		}
	})

	t.Run("Walk", func(t *testing.T) {
		s := h.New(t)
		want := map[string]int64{}
		for i := range 5 {
			data := bytes.Repeat([]byte{byte(i)}, i*1000)
			want[Put(t, s, data).Hash] = int64(len(data))
		}
		// An upload in progress is not a blob yet.
		tmp, err := s.Write(t.Context(), bytes.NewReader([]byte("in flight")), -1)
		if err != nil {
			t.Fatal(err)
		}
		defer tmp.Discard()
		all := All(t, s)
		if len(all) != len(want) {
			t.Errorf("Walk listed %d blobs, want %d", len(all), len(want))
		}
		for h, size := range want {
			if all[h].Size != size {
				t.Errorf("blob %s: %+v, want size %d", h, all[h], size)
			}
		}
		stop := errors.New("stop")
		if _, err := s.Walk(t.Context(), func(blobs.Info) error { return stop }); !errors.Is(err, stop) {
			t.Errorf("Walk's callback error: %v", err)
		}
	})

	t.Run("Strays", func(t *testing.T) {
		if h.PutStray == nil {
			t.Skip("no way to put a stray entry")
		}
		s := h.New(t)
		Put(t, s, []byte("a blob"))
		h.PutStray(t, s)
		n := 0
		bad, err := s.Walk(t.Context(), func(blobs.Info) error { n++; return nil })
		if err != nil || len(bad) != 1 || n != 1 {
			t.Errorf("Walk: %d blobs, stray %v, %v", n, bad, err)
		}
	})

	t.Run("MissingHash", func(t *testing.T) {
		s := h.New(t)
		missing := HashOf([]byte("never stored"))
		if _, err := s.Open(t.Context(), missing); !errors.Is(err, blobs.ErrNotFound) {
			t.Errorf("Open: %v", err)
		}
		if exists(t, s, missing) {
			t.Error("Exists: true")
		}
		if _, err := blobs.Verify(t.Context(), s, missing); !errors.Is(err, blobs.ErrNotFound) {
			t.Errorf("Verify: %v", err)
		}
	})

	t.Run("BadHash", func(t *testing.T) {
		s := h.New(t)
		for _, bad := range []string{"", "abc", HashOf(nil)[:63] + "G", "../" + HashOf(nil)[3:], fmt.Sprintf("%X", sha256.Sum256(nil))} {
			if _, err := s.Open(t.Context(), bad); !errors.Is(err, blobs.ErrBadHash) {
				t.Errorf("Open(%q): %v", bad, err)
			}
			if _, err := s.Exists(t.Context(), bad); !errors.Is(err, blobs.ErrBadHash) {
				t.Errorf("Exists(%q): %v", bad, err)
			}
			if err := s.Remove(t.Context(), bad); !errors.Is(err, blobs.ErrBadHash) {
				t.Errorf("Remove(%q): %v", bad, err)
			}
		}
	})

	t.Run("Verify", func(t *testing.T) {
		if h.Corrupt == nil {
			t.Skip("no way to corrupt a blob")
		}
		s := h.New(t)
		b := Put(t, s, []byte("intact"))
		if ok, err := blobs.Verify(t.Context(), s, b.Hash); !ok || err != nil {
			t.Fatalf("Verify intact: %v %v", ok, err)
		}
		h.Corrupt(t, s, b.Hash)
		if ok, err := blobs.Verify(t.Context(), s, b.Hash); ok || err != nil {
			t.Errorf("Verify corrupt: %v %v", ok, err)
		}
	})

	t.Run("DiscardAndCleanTemp", func(t *testing.T) {
		s := h.New(t)
		tmp, err := s.Write(t.Context(), bytes.NewReader([]byte("dropped")), -1)
		if err != nil {
			t.Fatal(err)
		}
		tmp.Discard()
		noTemps(t, h, s)
		// Large: a store may keep small uploads in memory until Commit.
		if _, err := s.Write(t.Context(), bytes.NewReader(bytes.Repeat([]byte("left by a crash "), 1<<17)), -1); err != nil {
			t.Fatal(err)
		}
		if n := h.Temps(t, s); n != 1 {
			t.Fatalf("%d temporary uploads, want 1", n)
		}
		// An upload younger than the cut-off may be running: kept.
		if n, err := s.CleanTemp(t.Context(), time.Now().Add(-time.Hour)); n != 0 || err != nil {
			t.Errorf("CleanTemp of an hour ago: %d %v", n, err)
		}
		if n := h.Temps(t, s); n != 1 {
			t.Errorf("%d temporary uploads after a CleanTemp that removes none, want 1", n)
		}
		if n, err := s.CleanTemp(t.Context(), time.Now().Add(time.Minute)); n != 1 || err != nil {
			t.Errorf("CleanTemp: %d %v", n, err)
		}
		noTemps(t, h, s)
		if all := All(t, s); len(all) != 0 {
			t.Errorf("blobs %v", all)
		}
	})
}

// Bench measures Write+Commit of distinct blobs of size bytes.
func Bench(b *testing.B, s blobs.Store, size int) {
	data := make([]byte, size)
	b.SetBytes(int64(size))
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		copy(data, fmt.Sprint(i)) // distinct content: no dedup
		tmp, err := s.Write(context.Background(), bytes.NewReader(data), -1)
		if err != nil {
			b.Fatal(err)
		}
		if err := tmp.Commit(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}
