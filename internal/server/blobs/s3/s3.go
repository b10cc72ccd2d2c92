// Package s3 is the blob store in an S3-compatible bucket (blobs.Store),
// for servers whose blobs outlive or outgrow one machine's disk.
//
// Layout: a blob is the object sha256/<hash>; an upload streams into
// tmp/<random> (a multipart upload, invisible until complete) while it is
// hashed and its size capped, and Commit copies it server-side to its hash
// key and deletes the temporary object. S3 puts and copies are atomic, so
// a partial object never exists under a hash key: a crash leaves only
// tmp/ objects or incomplete multipart uploads, which CleanTemp removes.
//
// Commit copies even when the blob exists: that refreshes the object's
// LastModified, which the server's garbage collector reads so that it
// never removes an object another replica has just committed (see the
// server's gc.go).
//
// Once open, any request the S3 server fails or does not answer (it is
// down, unreachable, refuses the keys, answers 5xx) is blobs.ErrBackend,
// naming the bucket and endpoint, and a read of an open blob that breaks
// mid-stream is too: the server answers those 503 and changes nothing, and
// the next request tries S3 again, so an outage ends without a restart.
package s3

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/s3utils"

	"github.com/kolejka-go/kolejka/internal/server/blobs"
)

// Key prefixes in the bucket.
const (
	BlobPrefix = "sha256/"
	TempPrefix = "tmp/"
)

// partSize is the multipart upload's part: each running upload buffers
// one part in memory. 8 MiB × 10,000 parts caps a blob at 80 GB.
const partSize = 8 << 20

// ErrConfig is a blobs URL or credentials the store cannot use.
var ErrConfig = errors.New("invalid S3 blob store setting")

// Options say where the bucket is and how to sign in.
type Options struct {
	Bucket   string
	Endpoint string // URL: http(s)://host[:port]
	Region   string
	// AccessKey and SecretKey; both empty: AWS_ACCESS_KEY_ID and
	// AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), else anonymous.
	AccessKey, SecretKey string
}

// IsURL reports whether a blobs setting names an S3 bucket (else it is a
// folder).
func IsURL(s string) bool { return strings.HasPrefix(s, "s3://") }

// ParseURL reads s3://BUCKET?endpoint=URL&region=REGION. Without endpoint
// the bucket is on AWS (https://s3.amazonaws.com); region defaults to
// us-east-1.
func ParseURL(raw string) (Options, error) {
	bad := func(format string, a ...any) (Options, error) {
		return Options{}, fmt.Errorf("%w: blobs %q: %s", ErrConfig, raw, fmt.Sprintf(format, a...))
	}
	u, err := url.Parse(raw)
	if err != nil {
		return bad("not a URL")
	}
	if u.Scheme != "s3" {
		return bad("the scheme must be s3://")
	}
	if u.User != nil {
		return bad("credentials do not belong in the URL: use blobs_access_key and blobs_secret_key, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
	}
	if u.Host == "" {
		return bad("no bucket: s3://BUCKET?endpoint=…")
	}
	if u.Path != "" && u.Path != "/" {
		return bad("a path after the bucket is not supported")
	}
	if err := s3utils.CheckValidBucketNameStrict(u.Host); err != nil {
		return bad("bucket %q: %v", u.Host, err)
	}
	o := Options{Bucket: u.Host, Endpoint: "https://s3.amazonaws.com", Region: "us-east-1"}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return bad("query: %v", err)
	}
	for k, v := range q {
		if len(v) != 1 {
			return bad("%s given %d times", k, len(v))
		}
		switch k {
		case "endpoint":
			o.Endpoint = v[0]
		case "region":
			o.Region = v[0]
		default:
			return bad("unknown parameter %q (known: endpoint, region)", k)
		}
	}
	e, err := url.Parse(o.Endpoint)
	if err != nil || (e.Scheme != "http" && e.Scheme != "https") || e.Host == "" || (e.Path != "" && e.Path != "/") || e.RawQuery != "" {
		return bad("endpoint %q: want http(s)://host[:port]", o.Endpoint)
	}
	return o, nil
}

// Store is a blob store in a bucket.
type Store struct {
	c        *minio.Client
	bucket   string
	endpoint string
}

var _ blobs.Store = (*Store)(nil)

// Open connects to the bucket and checks, within timeout, that it exists
// and that the credentials may list it: a missing bucket, refused
// credentials or an endpoint that does not answer is an error naming the
// setting to fix.
func Open(ctx context.Context, o Options, timeout time.Duration) (*Store, error) {
	e, err := url.Parse(o.Endpoint)
	if err != nil {
		return nil, fmt.Errorf("%w: endpoint %q: %v", ErrConfig, o.Endpoint, err)
	}
	if (o.AccessKey == "") != (o.SecretKey == "") {
		return nil, fmt.Errorf("%w: blobs_access_key and blobs_secret_key go together: one is empty", ErrConfig)
	}
	var creds *credentials.Credentials
	switch {
	case o.AccessKey != "":
		creds = credentials.NewStaticV4(o.AccessKey, o.SecretKey, "")
	case os.Getenv("AWS_ACCESS_KEY_ID") != "":
		creds = credentials.NewEnvAWS()
	default:
		creds = credentials.NewStatic("", "", "", credentials.SignatureAnonymous)
	}
	c, err := minio.New(e.Host, &minio.Options{
		Creds:        creds,
		Secure:       e.Scheme == "https",
		Region:       o.Region,
		BucketLookup: minio.BucketLookupPath,
		// A few retries: the start-up check must fail in seconds, not
		// retry an unreachable endpoint for minutes.
		MaxRetries: 3,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: endpoint %q: %v", ErrConfig, o.Endpoint, err)
	}
	s := &Store{c: c, bucket: o.Bucket, endpoint: o.Endpoint}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := s.check(ctx); err != nil {
		return nil, fmt.Errorf("unable to open blob store s3://%s at %s: %w", o.Bucket, o.Endpoint, err)
	}
	return s, nil
}

// check lists one key: the cheapest call that proves the bucket exists
// and the credentials may read it (HEAD bucket has no body to say which
// of the two failed).
func (s *Store) check(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the listing after its first answer
	obj, ok := <-s.c.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{MaxKeys: 1, Prefix: BlobPrefix})
	if ok && obj.Err != nil {
		return explain(obj.Err)
	}
	return ctx.Err()
}

// explain names the setting behind an S3 error.
func explain(err error) error {
	code := minio.ToErrorResponse(err).Code
	var ne net.Error
	switch {
	case code == "NoSuchBucket":
		return fmt.Errorf("%w: the bucket does not exist (create it, or fix the bucket in blobs): %v", ErrConfig, err)
	case slices.Contains([]string{"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken", "AuthorizationHeaderMalformed"}, code):
		return fmt.Errorf("%w: the credentials were refused (blobs_access_key and blobs_secret_key, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY): %v", ErrConfig, err)
	case errors.As(err, &ne), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%w: the endpoint does not answer (endpoint= in blobs): %v", ErrConfig, err)
	}
	return err
}

// failed is an S3 request that failed once the store is open: the store's
// fault, never the caller's (blobs.ErrBackend), naming the bucket.
func (s *Store) failed(action string, err error) error {
	return fmt.Errorf("unable to %s: %w: s3://%s at %s: %w", action, blobs.ErrBackend, s.bucket, s.endpoint, explain(err))
}

func blobKey(hash string) string { return BlobPrefix + hash }

// Bucket is the store's bucket.
func (s *Store) Bucket() string { return s.bucket }

// Client is the S3 client (for tests and diagnostics).
func (s *Store) Client() *minio.Client { return s.c }

// capture is the upload's body: it hashes what passes, caps it, and keeps
// the body's own error, which minio-go may wrap beyond recognition.
type capture struct {
	r   io.Reader
	n   int64
	err error
}

func (c *capture) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if err != nil && err != io.EOF && c.err == nil {
		c.err = err
	}
	return n, err
}

// smallBlob is the size up to which an upload is kept in memory and put
// under its hash at Commit in one request, not streamed to tmp/ and copied
// (five requests to the S3 server, most of an upload's time).
const smallBlob = 1 << 20

// Write streams r into a temporary object, hashing it; a blob of at most
// smallBlob bytes is held in memory instead.
func (s *Store) Write(ctx context.Context, r io.Reader, limit int64) (blobs.Temp, error) {
	h := blobs.Hasher()
	in := io.TeeReader(blobs.LimitReader(r, limit), h)
	head := make([]byte, smallBlob+1)
	n, err := readHead(in, head)
	switch {
	case errors.Is(err, blobs.ErrTooLarge):
		return nil, blobs.ErrTooLarge
	case errors.Is(err, io.EOF):
		return &temp{s: s, data: head[:n], blob: blobs.Blob{Hash: blobs.Digest(h), Size: int64(n)}}, nil
	case err != nil:
		return nil, fmt.Errorf("unable to receive blob: %w", err)
	}
	key := TempPrefix + rand.Text()
	body := &capture{r: io.MultiReader(bytes.NewReader(head), in)}
	_, err = s.c.PutObject(ctx, s.bucket, key, body, -1, minio.PutObjectOptions{
		PartSize:    partSize,
		ContentType: "application/octet-stream",
	})
	if err == nil && body.err != nil {
		// minio-go takes io.ErrUnexpectedEOF for the end of the body: a
		// cut upload is stored whole unless refused here.
		err = body.err
	}
	if err != nil {
		// minio-go aborts the multipart upload; a complete object cannot
		// exist, but a retry that succeeded after an error could: drop it.
		_ = s.c.RemoveObject(context.WithoutCancel(ctx), s.bucket, key, minio.RemoveObjectOptions{})
		if errors.Is(body.err, blobs.ErrTooLarge) {
			return nil, blobs.ErrTooLarge
		}
		if body.err != nil {
			return nil, fmt.Errorf("unable to receive blob: %w", body.err)
		}
		return nil, s.failed("store upload", err)
	}
	return &temp{s: s, key: key, blob: blobs.Blob{Hash: blobs.Digest(h), Size: body.n}}, nil
}

// readHead fills buf from r. It returns io.EOF only at the body's own end
// (unlike io.ReadFull, whose io.ErrUnexpectedEOF would hide a body cut
// short with that very error, as net/http's is), nil when buf is full.
func readHead(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// temp is an upload in tmp/ (key), or a small one in memory (data).
type temp struct {
	s    *Store
	key  string
	data []byte
	blob blobs.Blob
}

var _ blobs.Temp = (*temp)(nil)

func (t *temp) Blob() blobs.Blob { return t.blob }

func (t *temp) Discard() {
	if t.key == "" {
		return
	}
	_ = t.s.c.RemoveObject(context.Background(), t.s.bucket, t.key, minio.RemoveObjectOptions{})
}

// Commit copies the temporary object to its hash key (server-side, in
// parts past 5 GiB) and removes it. The copy is made even if the blob
// exists, to date it now (see the package doc).
func (t *temp) Commit(ctx context.Context) error {
	if t.key == "" {
		// One single-part put: S3 shows the object whole or not at all,
		// and a put over an existing blob dates it now, as the copy does.
		_, err := t.s.c.PutObject(ctx, t.s.bucket, blobKey(t.blob.Hash), bytes.NewReader(t.data), int64(len(t.data)),
			minio.PutObjectOptions{ContentType: "application/octet-stream", DisableMultipart: true})
		if err != nil {
			return t.s.failed("put blob in place", err)
		}
		return nil
	}
	defer t.Discard()
	_, err := t.s.c.ComposeObject(ctx,
		minio.CopyDestOptions{Bucket: t.s.bucket, Object: blobKey(t.blob.Hash)},
		minio.CopySrcOptions{Bucket: t.s.bucket, Object: t.key})
	if err != nil {
		return t.s.failed("move blob into place", err)
	}
	return nil
}

// reader is an open object; minio.Object reads lazily and seeks.
type reader struct {
	*minio.Object
	s    *Store
	info blobs.Info
}

func (r reader) Info() blobs.Info { return r.info }

// Read reads the object; a read that fails (S3 went away mid-stream: the
// connection cut, a short body) is blobs.ErrBackend, never a clean end.
func (r reader) Read(p []byte) (int, error) {
	n, err := r.Object.Read(p)
	if err != nil && err != io.EOF { //nolint:errorlint // io.EOF is returned bare by contract
		err = r.s.failed("read blob", err)
	}
	return n, err
}

func notFound(err error) bool {
	code := minio.ToErrorResponse(err).Code
	return code == "NoSuchKey" || code == "NotFound"
}

// Open opens the blob of hash for reading.
func (s *Store) Open(ctx context.Context, hash string) (blobs.Reader, error) {
	if !blobs.ValidHash(hash) {
		return nil, blobs.ErrBadHash
	}
	obj, err := s.c.GetObject(ctx, s.bucket, blobKey(hash), minio.GetObjectOptions{})
	if err != nil {
		return nil, s.failed("open blob", err)
	}
	st, err := obj.Stat()
	if err != nil {
		_ = obj.Close() // the Stat error is the news
		if notFound(err) {
			return nil, fmt.Errorf("unable to open blob %s: %w", hash, blobs.ErrNotFound)
		}
		return nil, s.failed("open blob", err)
	}
	return reader{obj, s, blobs.Info{Blob: blobs.Blob{Hash: hash, Size: st.Size}, ModTime: st.LastModified}}, nil
}

// Exists reports whether the blob's object is in place.
func (s *Store) Exists(ctx context.Context, hash string) (bool, error) {
	if !blobs.ValidHash(hash) {
		return false, blobs.ErrBadHash
	}
	_, err := s.c.StatObject(ctx, s.bucket, blobKey(hash), minio.StatObjectOptions{})
	if notFound(err) {
		return false, nil
	}
	if err != nil {
		return false, s.failed("look for blob", err)
	}
	return true, nil
}

// Remove deletes the blob's object; a missing one is not an error.
func (s *Store) Remove(ctx context.Context, hash string) error {
	if !blobs.ValidHash(hash) {
		return blobs.ErrBadHash
	}
	if err := s.c.RemoveObject(ctx, s.bucket, blobKey(hash), minio.RemoveObjectOptions{}); err != nil && !notFound(err) {
		return s.failed("remove blob", err)
	}
	return nil
}

// Walk lists the bucket: objects under sha256/ named by a hash are blobs,
// anything else but tmp/ is reported in bad.
func (s *Store) Walk(ctx context.Context, fn func(blobs.Info) error) (bad []string, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops the listing when fn fails
	for obj := range s.c.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Recursive: true}) {
		if obj.Err != nil {
			return bad, s.failed("walk blob store", obj.Err)
		}
		if strings.HasPrefix(obj.Key, TempPrefix) {
			continue
		}
		hash, ok := strings.CutPrefix(obj.Key, BlobPrefix)
		if !ok || !blobs.ValidHash(hash) {
			bad = append(bad, "s3://"+s.bucket+"/"+obj.Key)
			continue
		}
		if err := fn(blobs.Info{Blob: blobs.Blob{Hash: hash, Size: obj.Size}, ModTime: obj.LastModified}); err != nil {
			return bad, fmt.Errorf("unable to walk blob store: %w", err)
		}
	}
	return bad, nil
}

// CleanTemp removes tmp/ objects and incomplete multipart uploads begun
// before before: what a crashed server left. Other replicas' uploads
// running now are younger, if before is far enough back.
func (s *Store) CleanTemp(ctx context.Context, before time.Time) (int, error) {
	n := 0
	for obj := range s.c.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: TempPrefix, Recursive: true}) {
		if obj.Err != nil {
			return n, s.failed("list temporary uploads", obj.Err)
		}
		if !obj.LastModified.Before(before) {
			continue
		}
		if err := s.c.RemoveObject(ctx, s.bucket, obj.Key, minio.RemoveObjectOptions{}); err != nil && !notFound(err) {
			return n, s.failed("remove temp leftover", err)
		}
		n++
	}
	for up := range s.c.ListIncompleteUploads(ctx, s.bucket, TempPrefix, true) {
		if up.Err != nil {
			return n, s.failed("list unfinished uploads", up.Err)
		}
		if !up.Initiated.Before(before) {
			continue
		}
		if err := s.c.RemoveIncompleteUpload(ctx, s.bucket, up.Key); err != nil {
			return n, s.failed("abort unfinished upload", err)
		}
		n++
	}
	return n, nil
}

// Temps counts the tmp/ objects (for tests and diagnostics).
func (s *Store) Temps(ctx context.Context) (int, error) {
	n := 0
	for obj := range s.c.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: TempPrefix, Recursive: true}) {
		if obj.Err != nil {
			return n, explain(obj.Err)
		}
		n++
	}
	return n, nil
}
