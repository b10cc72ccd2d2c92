package s3_test

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/kolejka-go/kolejka/internal/server/blobs"
	"github.com/kolejka-go/kolejka/internal/server/blobs/blobstest"
	blobss3 "github.com/kolejka-go/kolejka/internal/server/blobs/s3"
	"github.com/kolejka-go/kolejka/internal/server/blobs/s3test"
)

func TestMain(m *testing.M) {
	code := m.Run()
	s3test.Stop()
	os.Exit(code)
}

func open(t *testing.T) blobs.Store {
	srv := s3test.Start(t)
	s, err := blobss3.Open(t.Context(), srv.Bucket(t), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	blobstest.Run(t, blobstest.Harness{
		New: open,
		Temps: func(t *testing.T, s blobs.Store) int {
			n, err := s.(*blobss3.Store).Temps(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			return n
		},
		PutStray: func(t *testing.T, s blobs.Store) {
			st := s.(*blobss3.Store)
			if _, err := st.Client().PutObject(t.Context(), st.Bucket(), "sha256/nothash", strings.NewReader("x"), 1, minio.PutObjectOptions{}); err != nil {
				t.Fatal(err)
			}
		},
		Corrupt: func(t *testing.T, s blobs.Store, hash string) {
			st := s.(*blobss3.Store)
			if _, err := st.Client().PutObject(t.Context(), st.Bucket(), blobss3.BlobPrefix+hash, strings.NewReader("rotten"), 6, minio.PutObjectOptions{}); err != nil {
				t.Fatal(err)
			}
		},
	})
}

// Each start-up failure names the setting to fix and creates nothing.
func TestOpenRefuses(t *testing.T) {
	srv := s3test.Start(t)
	good := srv.Bucket(t)
	cases := []struct {
		name string
		o    func(o blobss3.Options) blobss3.Options
		want string
	}{
		{"missing bucket", func(o blobss3.Options) blobss3.Options { o.Bucket = "no-such-bucket"; return o }, "the bucket does not exist"},
		{"wrong secret", func(o blobss3.Options) blobss3.Options { o.SecretKey = "wrong"; return o }, "the credentials were refused (blobs_access_key"},
		{"unknown key", func(o blobss3.Options) blobss3.Options { o.AccessKey = "nobody"; return o }, "the credentials were refused"},
		{"anonymous", func(o blobss3.Options) blobss3.Options { o.AccessKey, o.SecretKey = "", ""; return o }, "the credentials were refused"},
		{"one key of two", func(o blobss3.Options) blobss3.Options { o.SecretKey = ""; return o }, "blobs_access_key and blobs_secret_key go together"},
		{"unreachable endpoint", func(o blobss3.Options) blobss3.Options { o.Endpoint = "http://127.0.0.1:1"; return o }, "the endpoint does not answer (endpoint= in blobs)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("AWS_ACCESS_KEY_ID", "")
			start := time.Now()
			_, err := blobss3.Open(t.Context(), c.o(good), 10*time.Second)
			if !errors.Is(err, blobss3.ErrConfig) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Open: %v, want ErrConfig with %q", err, c.want)
			}
			if d := time.Since(start); d > 15*time.Second {
				t.Errorf("took %v", d)
			}
		})
	}
	if ok, _ := srv.Client().BucketExists(t.Context(), "no-such-bucket"); ok {
		t.Error("a bucket was created")
	}
	n := 0
	for obj := range srv.Client().ListObjects(t.Context(), good.Bucket, minio.ListObjectsOptions{Recursive: true}) {
		if obj.Err != nil {
			t.Fatal(obj.Err)
		}
		n++
	}
	if n != 0 {
		t.Errorf("%d objects in the bucket after refused opens", n)
	}
}

func TestParseURL(t *testing.T) {
	o, err := blobss3.ParseURL("s3://bkt?endpoint=http://127.0.0.1:9000&region=eu-west-1")
	if err != nil || o.Bucket != "bkt" || o.Endpoint != "http://127.0.0.1:9000" || o.Region != "eu-west-1" {
		t.Errorf("%+v %v", o, err)
	}
	if o, err := blobss3.ParseURL("s3://bkt"); err != nil || o.Endpoint != "https://s3.amazonaws.com" || o.Region != "us-east-1" {
		t.Errorf("defaults: %+v %v", o, err)
	}
	for raw, want := range map[string]string{
		"s3://":                            "no bucket",
		"s3://bkt/dir":                     "a path after the bucket",
		"s3://k:s@bkt":                     "credentials do not belong in the URL",
		"s3://bkt?endpoint=ftp://x":        "want http(s)://host[:port]",
		"s3://bkt?endpoint=127.0.0.1:9000": "want http(s)://host[:port]",
		"s3://bkt?bucket=x":                `unknown parameter "bucket"`,
		"s3://bkt?region=a&region=b":       "region given 2 times",
		"http://b":                         "the scheme must be s3://",
		"s3://b":                           "Bucket name cannot be shorter than 3 characters",
		"s3://Upper_Case":                  `bucket "Upper_Case"`,
	} {
		if _, err := blobss3.ParseURL(raw); !errors.Is(err, blobss3.ErrConfig) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", raw, err, want)
		}
	}
}

func BenchmarkS3Put1MiB(b *testing.B) {
	srv := s3test.Start(b)
	s, err := blobss3.Open(b.Context(), srv.Bucket(b), 10*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	blobstest.Bench(b, s, 1<<20)
}
