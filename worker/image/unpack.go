package image

// Applying layers. Each tar stream goes through a filter before go-archive
// writes it to disk:
//
//	stored bytes → blob digest check → decompress → diff ID hash → filter → go-archive
//
// go-archive (moby/go-archive) does the writing: every path is resolved
// through os.Root (openat-style, symlinks confined to the unpack folder, an
// absolute symlink target resolved as if the folder were /), hard link
// targets must lie inside, and layers' .wh. whiteouts delete what lower
// layers made. The filter in front of it enforces our own policy with clear
// errors: names and link targets must stay inside, sizes and entry counts
// stay within Limits, and device nodes are skipped (see below).
//
// We call archive.Unpack and archive.UnpackLayer rather than Untar and
// ApplyLayer: those set the process-wide umask to 0 for the duration, which
// would leak into files other goroutines of a worker create meanwhile. The
// Unpack functions set every mode explicitly, so the umask does not matter.

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"sync"
	"syscall"

	"github.com/moby/go-archive"
	"github.com/moby/go-archive/compression"
	digest "github.com/opencontainers/go-digest"
)

// unpacker applies the layers of one import into dest, with one budget of
// bytes and entries for all of them.
type unpacker struct {
	ctx         context.Context
	archive     string
	dest        string
	chown       bool // preserve owners (needs root)
	ownTree     bool // each layer goes into a tree of its own (the layer store), whiteouts kept
	bytesLeft   int64
	entriesLeft int64
	limits      Limits
	devices     []string // device nodes skipped
}

func newUnpacker(ctx context.Context, archive, dest string, limits Limits, chown bool) *unpacker {
	return &unpacker{
		ctx: ctx, archive: archive, dest: dest, chown: chown,
		bytesLeft: limits.MaxBytes, entriesLeft: limits.MaxEntries, limits: limits,
	}
}

// notes says what the filter changed, for Image.Notes.
func (u *unpacker) notes() []string {
	var notes []string
	if n := len(u.devices); n > 0 {
		shown := u.devices[:min(n, 5)]
		more := ""
		if n > len(shown) {
			more = fmt.Sprintf(" and %d more", n-len(shown))
		}
		notes = append(notes, fmt.Sprintf("skipped %d device node(s): %s%s (the runtime provides /dev)", n, strings.Join(shown, ", "), more))
	}
	if !u.chown {
		notes = append(notes, "file owners not preserved: the import did not run as root")
	}
	return notes
}

// where prefixes messages about a layer's entries.
func where(l layer) string {
	if l.name == "" {
		return ""
	}
	return "layer " + l.name + ": "
}

// apply writes one layer into u.dest and returns the digest of its
// uncompressed tar stream.
func (u *unpacker) apply(l layer) (digest.Digest, error) {
	if err := u.ctx.Err(); err != nil {
		return "", err
	}
	rc, _, err := l.open()
	if err != nil {
		return "", err
	}
	defer rc.Close()
	var stored io.Reader = rc
	var verifier *verifyingReader
	if l.blob != "" {
		verifier = newVerifyingReader(rc, u.archive, l.name, l.blob, l.size)
		stored = verifier
	}
	dec, err := compression.DecompressStream(stored)
	if err != nil {
		return "", badArchive(u.archive, "%sunable to decompress: %w", where(l), err)
	}
	// Closed before the stored stream is read to its end: an external
	// decompressor (unpigz, xz) may still be reading it until then.
	closeDec := sync.OnceValue(dec.Close)
	defer func() { _ = closeDec() }() // on the way out of a failure, whose error is the news
	diff := digest.SHA256.Digester()
	plain := io.TeeReader(dec, diff.Hash())

	pr, pw := io.Pipe()
	filterDone := make(chan error, 1)
	go func() {
		err := u.filter(l, plain, pw)
		if err == nil {
			// Whatever follows the end-of-archive blocks still belongs
			// to the stream the diff ID (and the blob digest) covers.
			if _, cerr := io.Copy(io.Discard, plain); cerr != nil {
				err = u.readError(l, cerr)
			}
		}
		pw.CloseWithError(err)
		filterDone <- err
	}()
	opts := &archive.TarOptions{NoLchown: !u.chown, BestEffortXattrs: true}
	var werr error
	// A layer unpacked on its own into the layer store keeps its whiteouts
	// as files (assemble applies them); UnpackLayer would drop them.
	if l.whiteouts && !u.ownTree {
		_, werr = archive.UnpackLayer(u.dest, pr, opts)
	} else {
		werr = archive.Unpack(pr, u.dest, opts)
	}
	// Unblock the filter if go-archive stopped early, then wait for it.
	pr.CloseWithError(errUnpackStopped)
	ferr := <-filterDone

	if ferr != nil || werr != nil {
		if err := u.ctx.Err(); err != nil {
			return "", err
		}
		// A corrupt blob is the likeliest cause of whatever went wrong
		// (a decompression or tar error, say): check it and report that.
		if verifier != nil {
			_ = closeDec()
			if verr := verifier.finish(); errors.Is(verr, ErrBadArchive) {
				return "", verr
			}
		}
		if ferr != nil && (errors.Is(ferr, ErrBadArchive) || werr == nil) {
			return "", ferr
		}
		return "", u.writeError(l, werr)
	}
	if err := closeDec(); err != nil {
		return "", badArchive(u.archive, "%sunable to decompress: %w", where(l), err)
	}
	if verifier != nil {
		if err := verifier.finish(); err != nil {
			return "", u.readError(l, err)
		}
	}
	got := diff.Digest()
	if l.diffID != "" && got != l.diffID {
		return "", badArchive(u.archive, "%sits content hashes to %s, but the config's diff_id says %s (corrupt or tampered layer)", where(l), got, l.diffID)
	}
	return got, nil
}

// readError classifies an error reading the stored stream.
func (u *unpacker) readError(l layer, err error) error {
	if errors.Is(err, ErrBadArchive) {
		return err
	}
	return badArchive(u.archive, "%sunable to read: %w", where(l), err)
}

// writeError classifies an error of go-archive: trouble on our side (disk
// full, I/O, permissions) stays itself; anything else comes from what the
// archive asked for (a path through a symlink out of the root, a hard link
// to a missing file, ...) and is the archive's fault.
func (u *unpacker) writeError(l layer, err error) error {
	for _, local := range []syscall.Errno{syscall.ENOSPC, syscall.EDQUOT, syscall.EIO, syscall.EROFS,
		syscall.ENOMEM, syscall.EMFILE, syscall.ENFILE, syscall.EACCES} {
		if errors.Is(err, local) {
			return fmt.Errorf("unable to unpack %s: %s%w", u.archive, where(l), err)
		}
	}
	return badArchive(u.archive, "%sunable to unpack: %w", where(l), err)
}

// filter copies the tar stream r to w entry by entry, enforcing the policy
// in the file comment. Device nodes are skipped, not refused: images built
// from full distributions sometimes carry /dev entries, the runtime mounts
// its own /dev over them anyway, and a device node left in the store would
// give any host user who can reach the folder a door to that device.
func (u *unpacker) filter(l layer, r io.Reader, w io.Writer) error {
	tr := tar.NewReader(r)
	tw := tar.NewWriter(w)
	prev := "" // for messages about unreadable headers
	for {
		if err := u.ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if prev == "" {
				return badArchive(u.archive, "%snot a tar stream: %w", where(l), err)
			}
			return badArchive(u.archive, "%sunable to read the tar entry after %q: %w", where(l), prev, err)
		}
		prev = hdr.Name
		if u.entriesLeft--; u.entriesLeft < 0 {
			return badArchive(u.archive, "%smore than %d entries in all layers (Limits.MaxEntries)", where(l), u.limits.MaxEntries)
		}
		// A leading "/" is allowed: go-archive treats /etc/passwd as
		// etc/passwd under the root, as every unpacker of images does.
		name := path.Clean(strings.TrimLeft(hdr.Name, "/"))
		if name != "." && cleanArchivePath(hdr.Name) == "" {
			return badArchive(u.archive, "%sentry %q points outside the image root", where(l), hdr.Name)
		}
		switch hdr.Typeflag {
		case tar.TypeReg, tar.TypeDir, tar.TypeSymlink, tar.TypeFifo:
		case tar.TypeLink:
			if cleanArchivePath(hdr.Linkname) == "" {
				return badArchive(u.archive, "%shard link %q points to %q, outside the image root", where(l), hdr.Name, hdr.Linkname)
			}
		case tar.TypeChar, tar.TypeBlock:
			u.devices = append(u.devices, "/"+name)
			continue
		case tar.TypeXGlobalHeader:
			continue
		default:
			return badArchive(u.archive, "%sentry %q has tar type %q, which images do not use", where(l), hdr.Name, string(hdr.Typeflag))
		}
		if _, sparse := hdr.PAXRecords["GNU.sparse.major"]; sparse {
			return badArchive(u.archive, "%sentry %q is a sparse file, which images do not use", where(l), hdr.Name)
		}
		if hdr.Size < 0 || hdr.Size > u.bytesLeft {
			return badArchive(u.archive, "%sentry %q is %d bytes, which takes the import over its limit of %d bytes (Limits.MaxBytes)",
				where(l), hdr.Name, hdr.Size, u.limits.MaxBytes)
		}
		u.bytesLeft -= hdr.Size
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("unable to pass on entry %q: %w", hdr.Name, err)
		}
		if _, err := io.Copy(tw, tr); err != nil {
			if errors.Is(err, errUnpackStopped) {
				return err
			}
			return u.readError(l, fmt.Errorf("entry %q: %w", hdr.Name, err))
		}
	}
	return tw.Close()
}

// errUnpackStopped is what the filter's writes fail with once go-archive
// stopped reading; go-archive's own error is the one to report then.
var errUnpackStopped = errors.New("unpacking stopped")
