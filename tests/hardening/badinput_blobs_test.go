package hardening_test

// A blob store the server cannot use (extension "blobs in S3"): a bucket
// that does not exist, credentials the S3 server refuses, an endpoint that
// does not answer, a malformed blobs URL. Each stops the server's start
// with one line naming the setting, and nothing is created: no data
// folder, no bucket, no object. The S3 server is a real SeaweedFS with one
// identity (s3test).

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/kolejka-go/kolejka/internal/server"
	"github.com/kolejka-go/kolejka/internal/server/blobs/s3test"
	"github.com/kolejka-go/kolejka/tests/hardening"
)

func TestBadInputBlobs(t *testing.T) {
	// Not parallel: BB02 sets AWS_* variables.
	srv := s3test.Start(t)
	good := srv.Bucket(t)
	base := server.Config{Blobs: s3test.URL(good), BlobsAccessKey: good.AccessKey, BlobsSecretKey: good.SecretKey}

	bucketObjects := func(t *testing.T) int {
		n := 0
		for obj := range srv.Client().ListObjects(t.Context(), good.Bucket, minio.ListObjectsOptions{Recursive: true}) {
			if obj.Err != nil {
				t.Fatal(obj.Err)
			}
			n++
		}
		return n
	}
	// refused opens a server with cfg and checks the one-line refusal and
	// that nothing was made.
	refused := func(t *testing.T, r *hardening.Row, cfg server.Config, want string) {
		t.Helper()
		cfg.DataDir = filepath.Join(t.TempDir(), "data")
		start := time.Now()
		s, err := server.Open(cfg)
		took := time.Since(start)
		if err == nil {
			s.Close()
			t.Fatalf("blobs %q: the server opened", cfg.Blobs)
		}
		r.Observe("blobs %q: %v (in %v)", cfg.Blobs, err, took.Round(time.Millisecond))
		if !errors.Is(err, server.ErrConfig) || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("Open: %v; want one line with %q", err, want)
		}
		if took > 20*time.Second {
			t.Errorf("the refusal took %v", took)
		}
		if _, err := os.Stat(cfg.DataDir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the data folder was created (%v)", err)
		}
		if n := bucketObjects(t); n != 0 {
			t.Errorf("%d objects in the bucket", n)
		}
	}

	t.Run("BB01", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BB01", "blobs in S3: the bucket named by blobs does not exist",
			"the start stops with one line: the bucket does not exist (naming blobs); no bucket, data folder or object created")
		cfg := base
		cfg.Blobs = strings.Replace(cfg.Blobs, "s3://", "s3://missing-", 1)
		refused(t, r, cfg, "the bucket does not exist (create it, or fix the bucket in blobs)")
		if ok, err := srv.Client().BucketExists(t.Context(), "missing-"+good.Bucket); ok || err != nil {
			t.Errorf("the missing bucket: exists %v, %v", ok, err)
		}
	})
	t.Run("BB02", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BB02", "blobs in S3: a wrong secret key, an unknown access key, no key at all (anonymous), the keys in AWS_* variables wrong",
			"the start stops with one line: the credentials were refused (naming blobs_access_key/blobs_secret_key and AWS_*); nothing created")
		cfg := base
		cfg.BlobsSecretKey = "wrong-secret"
		refused(t, r, cfg, "the credentials were refused (blobs_access_key and blobs_secret_key, or AWS_ACCESS_KEY_ID")
		cfg = base
		cfg.BlobsAccessKey = "nobody"
		refused(t, r, cfg, "the credentials were refused")
		cfg = base
		cfg.BlobsAccessKey, cfg.BlobsSecretKey = "", ""
		t.Setenv("AWS_ACCESS_KEY_ID", "")
		refused(t, r, cfg, "the credentials were refused")
		t.Setenv("AWS_ACCESS_KEY_ID", good.AccessKey)
		t.Setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret")
		refused(t, r, cfg, "the credentials were refused")
	})
	t.Run("BB03", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BB03", "blobs in S3: the endpoint does not answer (a closed loopback port)",
			"the start stops within seconds with one line: the endpoint does not answer (naming endpoint= of blobs); nothing created")
		cfg := base
		cfg.Blobs = "s3://" + good.Bucket + "?endpoint=http://127.0.0.1:1&region=us-east-1"
		refused(t, r, cfg, "the endpoint does not answer (endpoint= in blobs)")
	})
	t.Run("BB04", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BB04", "blobs: malformed URLs (a folder path, no bucket, a bad bucket name, a path, keys in the URL, an unknown parameter, an endpoint without scheme)",
			"the start stops with one line naming blobs and the problem; nothing created")
		for raw, want := range map[string]string{
			"/srv/blobs":                             "want empty (the data folder) or s3://",
			"s3://":                                  "no bucket",
			"s3://Bad_Bucket":                        `bucket "Bad_Bucket"`,
			"s3://" + good.Bucket + "/dir":           "a path after the bucket is not supported",
			"s3://k:s@" + good.Bucket:                "credentials do not belong in the URL",
			"s3://" + good.Bucket + "?bucket=x":      `unknown parameter "bucket"`,
			"s3://" + good.Bucket + "?endpoint=h:80": "want http(s)://host[:port]",
		} {
			cfg := base
			cfg.Blobs = raw
			refused(t, r, cfg, want)
		}
	})
	t.Run("BB05", func(t *testing.T) {
		r := caseOf(t, hardening.BadInput, "BB05", "blobs in S3: blobs_access_key without blobs_secret_key",
			"the start stops with one line: the two keys go together; nothing created")
		cfg := base
		cfg.BlobsSecretKey = ""
		refused(t, r, cfg, "blobs_access_key and blobs_secret_key go together")
	})
}
