package image

// Random access to the files of an image archive (a tar file or an OCI
// layout folder), with size limits and digest verification. Everything read
// here is untrusted: names are checked to stay inside the archive, and every
// blob named by a digest is verified while it is read.

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	// Digest algorithms OCI blobs may use (image-spec descriptor.md).
	_ "crypto/sha256"
	_ "crypto/sha512"
)

// badArchive builds an ErrBadArchive error naming the archive; format may
// use %w for a cause.
func badArchive(archive, format string, args ...any) error {
	return fmt.Errorf("%w: %s: "+format, append([]any{ErrBadArchive, archive}, args...)...)
}

// source is read access to the files of an archive by slash-separated path.
type source interface {
	// open returns the regular file at name and its size.
	open(name string) (io.ReadCloser, int64, error)
	// has reports whether name exists.
	has(name string) bool
	// String is the archive's path, for messages.
	String() string
}

// tarSource reads files out of an uncompressed tar file through an index of
// its entries, so a `docker save` archive (whose manifest.json comes last)
// is read in one pass over the headers and then by random access.
type tarSource struct {
	path    string
	f       *os.File
	entries map[string]tarEntry
	count   int64
}

type tarEntry struct {
	offset, size int64
	typeflag     byte
	linkname     string
	sparse       bool
}

// cleanArchivePath turns an archive member name into a clean relative path,
// or "" if it would leave the archive.
func cleanArchivePath(name string) string {
	p := path.Clean(strings.TrimLeft(name, "/"))
	if p == "." || !filepath.IsLocal(p) {
		return ""
	}
	return p
}

// indexTar reads every header of the tar file f (skipping file data with
// seeks) and records where each entry's data starts.
func indexTar(archive string, f *os.File, limits Limits) (*tarSource, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("unable to read %s: %w", archive, err)
	}
	ts := &tarSource{path: archive, f: f, entries: map[string]tarEntry{}}
	// tar.Reader reads headers straight from f (no read-ahead) and skips
	// data by seeking, so after Next the file offset is where data starts.
	tr := tar.NewReader(f)
	last := ""
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if ts.count == 0 {
				return nil, badArchive(archive, "not a tar archive (nor a gzip, zstd, xz or bzip2 compressed one), nor an OCI layout folder: %w", err)
			}
			return nil, badArchive(archive, "unable to read the tar entry after %q: %w", last, err)
		}
		ts.count++
		if ts.count > limits.MaxEntries {
			return nil, badArchive(archive, "more than %d entries (Limits.MaxEntries)", limits.MaxEntries)
		}
		if hdr.Size > limits.MaxBytes {
			return nil, badArchive(archive, "entry %q is %d bytes, over the limit of %d bytes (Limits.MaxBytes)", hdr.Name, hdr.Size, limits.MaxBytes)
		}
		last = hdr.Name
		off, err := f.Seek(0, io.SeekCurrent)
		if err != nil {
			return nil, fmt.Errorf("unable to read %s: %w", archive, err)
		}
		name := cleanArchivePath(hdr.Name)
		if name == "" {
			continue // never opened by name; the unpacker judges such entries itself
		}
		_, sparse := hdr.PAXRecords["GNU.sparse.major"]
		ts.entries[name] = tarEntry{
			offset:   off,
			size:     hdr.Size,
			typeflag: hdr.Typeflag,
			linkname: hdr.Linkname,
			sparse:   sparse || hdr.Typeflag == tar.TypeGNUSparse,
		}
	}
	return ts, nil
}

func (t *tarSource) String() string { return t.path }

// nestedLayout returns the top-level folder of the tar that is an OCI image
// layout (oci-layout, index.json and blobs/ in it), or "".
func (t *tarSource) nestedLayout() string {
	for name := range t.entries {
		dir, base := path.Split(name)
		if base != ocispec.ImageLayoutFile || strings.Count(dir, "/") != 1 || !t.has(dir+"index.json") {
			continue
		}
		for other := range t.entries {
			if strings.HasPrefix(other, dir+"blobs/") {
				return strings.TrimSuffix(dir, "/")
			}
		}
	}
	return ""
}

func (t *tarSource) has(name string) bool {
	_, ok := t.entries[name]
	return ok
}

// open follows symbolic and hard links between members (docker save links
// identical layers to one another) and returns a reader of the data.
func (t *tarSource) open(name string) (io.ReadCloser, int64, error) {
	orig := name
	for hops := 0; ; hops++ {
		e, ok := t.entries[name]
		if !ok {
			return nil, 0, badArchive(t.path, "%s is not in the archive", describeLink(orig, name))
		}
		if hops > 16 {
			return nil, 0, badArchive(t.path, "%s: too many links", orig)
		}
		switch e.typeflag {
		case tar.TypeReg:
			if e.sparse {
				return nil, 0, badArchive(t.path, "%s is a sparse file, which image archives do not use", orig)
			}
			return io.NopCloser(io.NewSectionReader(t.f, e.offset, e.size)), e.size, nil
		case tar.TypeSymlink:
			target := e.linkname
			if !strings.HasPrefix(target, "/") {
				target = path.Join(path.Dir(name), target)
			}
			name = cleanArchivePath(target)
		case tar.TypeLink:
			name = cleanArchivePath(e.linkname)
		default:
			return nil, 0, badArchive(t.path, "%s is not a regular file", describeLink(orig, name))
		}
		if name == "" {
			return nil, 0, badArchive(t.path, "%s links outside the archive", orig)
		}
	}
}

func describeLink(orig, name string) string {
	if orig == name {
		return orig
	}
	return fmt.Sprintf("%s (linked to %s)", orig, name)
}

// dirSource reads an OCI layout folder. os.Root keeps symbolic links inside
// the folder from reaching the rest of the host.
type dirSource struct {
	path string
	root *os.Root
}

func openDirSource(dir string) (*dirSource, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("unable to open %s: %w", dir, err)
	}
	return &dirSource{path: dir, root: root}, nil
}

func (d *dirSource) String() string { return d.path }

func (d *dirSource) has(name string) bool {
	_, err := d.root.Stat(filepath.FromSlash(name))
	return err == nil
}

func (d *dirSource) open(name string) (io.ReadCloser, int64, error) {
	f, err := d.root.Open(filepath.FromSlash(name))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, 0, badArchive(d.path, "%s is not in the folder", name)
		}
		return nil, 0, badArchive(d.path, "unable to open %s: %w", name, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("unable to read %s: %w", filepath.Join(d.path, name), err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, 0, badArchive(d.path, "%s is not a regular file", name)
	}
	return f, fi.Size(), nil
}

func (d *dirSource) Close() error { return d.root.Close() }

// readSmall reads a metadata file whole, refusing more than limit bytes.
func readSmall(src source, name string, limit int64) ([]byte, error) {
	rc, size, err := src.open(name)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	if size > limit {
		return nil, badArchive(src.String(), "%s is %d bytes, over the limit of %d for metadata (Limits.MaxMetadataBytes)", name, size, limit)
	}
	b, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, badArchive(src.String(), "unable to read %s: %w", name, err)
	}
	if int64(len(b)) > limit {
		return nil, badArchive(src.String(), "%s is over the limit of %d bytes for metadata (Limits.MaxMetadataBytes)", name, limit)
	}
	return b, nil
}

// decodeJSON decodes metadata written by other tools: unknown fields are
// normal there (docker adds its own), trailing data is not.
func decodeJSON(src source, name string, b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(v); err != nil {
		return badArchive(src.String(), "%s is not valid JSON of the expected shape: %w", name, err)
	}
	if dec.More() {
		return badArchive(src.String(), "%s has data after its JSON document", name)
	}
	return nil
}

// blobPath is where an OCI layout keeps the blob of a digest. The digest is
// validated first, so the path cannot leave blobs/.
func blobPath(src source, d digest.Digest) (string, error) {
	if err := d.Validate(); err != nil {
		return "", badArchive(src.String(), "invalid digest %q: %w", d, err)
	}
	return "blobs/" + string(d.Algorithm()) + "/" + d.Encoded(), nil
}

// readBlob reads a metadata blob of an OCI layout and verifies its size and
// digest against the descriptor.
func readBlob(src source, desc ocispec.Descriptor, limit int64) ([]byte, error) {
	name, err := blobPath(src, desc.Digest)
	if err != nil {
		return nil, err
	}
	if desc.Size > limit {
		return nil, badArchive(src.String(), "%s is %d bytes, over the limit of %d for metadata (Limits.MaxMetadataBytes)", name, desc.Size, limit)
	}
	b, err := readSmall(src, name, limit)
	if err != nil {
		return nil, err
	}
	if int64(len(b)) != desc.Size {
		return nil, badArchive(src.String(), "%s is %d bytes, but its descriptor says %d", name, len(b), desc.Size)
	}
	if got := desc.Digest.Algorithm().FromBytes(b); got != desc.Digest {
		return nil, badArchive(src.String(), "%s does not match its digest: its content hashes to %s", name, got)
	}
	return b, nil
}

// verifyingReader checks, at EOF, that what it read has the expected size
// and digest; a mismatch is returned instead of io.EOF, so whoever reads the
// stream to its end cannot miss it.
type verifyingReader struct {
	r        io.Reader
	archive  string
	name     string
	want     digest.Digest
	verifier digest.Verifier
	size     int64 // expected; -1 if unknown
	n        int64
	err      error // sticky: the result once known
}

func newVerifyingReader(r io.Reader, archive, name string, want digest.Digest, size int64) *verifyingReader {
	return &verifyingReader{r: r, archive: archive, name: name, want: want, verifier: want.Verifier(), size: size}
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	n, err := v.r.Read(p)
	v.n += int64(n)
	_, _ = v.verifier.Write(p[:n]) // hashes never fail
	switch {
	case v.size >= 0 && v.n > v.size:
		v.err = badArchive(v.archive, "%s is larger than the %d bytes its descriptor says", v.name, v.size)
	case errors.Is(err, io.EOF):
		v.err = v.check()
	case err != nil:
		v.err = err
	}
	return n, v.err
}

func (v *verifyingReader) check() error {
	if v.size >= 0 && v.n != v.size {
		return badArchive(v.archive, "%s is %d bytes, but its descriptor says %d", v.name, v.n, v.size)
	}
	if !v.verifier.Verified() {
		return badArchive(v.archive, "%s does not match its digest %s (corrupt or tampered blob)", v.name, v.want)
	}
	return io.EOF
}

// finish reads what is left and returns the verification result (nil if
// the blob is intact).
func (v *verifyingReader) finish() error {
	if _, err := io.Copy(io.Discard, v); err != nil {
		return err
	}
	return nil
}
