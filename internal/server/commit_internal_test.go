package server

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
)

// An upload whose client went away after its bytes arrived (a node killed
// mid-post) stores nothing: the file moved into place is removed again,
// though the request's context is gone: no file stays without a row
// until the next start.
func TestUploadOfAGoneClientLeavesNoFile(t *testing.T) {
	s, err := Open(Config{DataDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	tmp, err := s.blobs.Write(t.Context(), strings.NewReader("bytes of a node that died"), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the client is gone
	r := httptest.NewRequest("POST", "/blob/reference/", nil).WithContext(ctx)
	if _, err := s.commitBlob(r, tmp, 1); err == nil {
		t.Fatal("a reference was recorded for a request that had ended")
	}
	if ok, err := s.blobs.Exists(t.Context(), tmp.Blob().Hash); ok || err != nil {
		t.Errorf("blob file %s stays without a row (%v)", tmp.Blob().Hash, err)
	}
}
