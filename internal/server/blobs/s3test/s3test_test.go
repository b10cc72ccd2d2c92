package s3test_test

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/kolejka-go/kolejka/internal/server/blobs/s3test"
)

// A weed of the test's own refuses requests once killed, and after a
// restart answers again with the objects it held.
func TestKillRestart(t *testing.T) {
	srv := s3test.New(t)
	o := srv.Bucket(t)
	c := srv.Client()
	data := []byte("kept across a restart")
	if _, err := c.PutObject(t.Context(), o.Bucket, "k", bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	srv.Kill(t)
	if srv.Running() {
		t.Fatal("Running after Kill")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if _, err := c.StatObject(ctx, o.Bucket, "k", minio.StatObjectOptions{}); err == nil {
		t.Fatal("a killed weed answered")
	}
	began := time.Now()
	srv.Restart(t)
	t.Logf("restart took %v", time.Since(began).Round(time.Millisecond))
	obj, err := c.GetObject(t.Context(), o.Bucket, "k", minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	got, err := io.ReadAll(obj)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("after the restart: %q, %v", got, err)
	}
}
