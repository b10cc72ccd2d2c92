package image

// Import: detect the format, plan, unpack into tmp/, publish atomically.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/moby/go-archive/compression"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/kolejka-go/kolejka/internal/atomicfile"
	"github.com/kolejka-go/kolejka/internal/flock"
)

// Import reads the image at path and stores it under name.
//
// The format is detected from the content:
//   - a folder with an oci-layout file: an OCI image layout;
//   - a tar (possibly gzip, zstd, xz or bzip2 compressed) with manifest.json
//     at its top: a `docker save` archive (newer docker writes archives that
//     are OCI layouts too; manifest.json is preferred then);
//   - a tar with oci-layout and index.json: an OCI image layout;
//   - any other tar: a root file system;
//   - a Singularity / Apptainer SIF file: its squashfs root partition is
//     the root file system (see sif.go).
//
// If a docker save or OCI archive holds several images, the one named name
// (RepoTags, or the OCI ref name / io.containerd.image.name annotation) is
// imported; if none is, an archive of one image imports that one; otherwise
// the error wraps ErrNotFound and lists the names the archive has.
//
// The image is unpacked into tmp/ and renamed into content/ in one step
// once complete and synced, so a crash never leaves a half image under a
// final name. Content with the same ID that is already stored is reused (a
// docker save or OCI image's ID is its config digest, known before
// unpacking, so nothing is unpacked again). Errors caused by the input wrap
// ErrBadArchive and name the archive, the member and the problem; on any
// error the store is unchanged.
func (s *Store) Import(ctx context.Context, name, path string) (*Image, error) {
	norm, err := NormalizeName(name)
	if err != nil {
		return nil, err
	}
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	img, err := s.importImage(ctx, norm, path)
	if err != nil {
		return nil, fmt.Errorf("unable to import %s: %w", norm, err)
	}
	return img, nil
}

func (s *Store) importImage(ctx context.Context, norm, path string) (*Image, error) {
	j, err := s.newJob()
	if err != nil {
		return nil, err
	}
	defer j.close()
	return s.importJob(ctx, j, norm, path, path)
}

// importJob imports in the job j; a pull passes the job that already holds
// the stored layers it did not download, and the image reference as where
// (the name errors about layers give the input, instead of path).
func (s *Store) importJob(ctx context.Context, j *job, norm, path, where string) (*Image, error) {
	p, closeSrc, err := s.plan(ctx, j, norm, path)
	if err != nil {
		return nil, err
	}
	defer closeSrc()

	if p.id != "" {
		if img, err := s.link(norm, p.id, p.manifest); img != nil || err != nil {
			return img, err
		}
	}
	// Before anything is unpacked: each layer of an image must be in the
	// archive or in the store.
	for _, l := range p.layers {
		if !l.whiteouts {
			continue
		}
		held, err := s.holdLayer(j, l.diffID)
		if err != nil {
			return nil, fmt.Errorf("unable to check layer %s: %w", l.diffID, err)
		}
		if !held && l.missing != "" {
			return nil, badArchive(where, "%s", l.missing)
		}
	}

	content := filepath.Join(j.dir, "content")
	rootfs := filepath.Join(content, "rootfs")
	if err := os.Mkdir(content, 0o700); err != nil {
		return nil, err
	}
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		return nil, err
	}
	// The mode of / in the container; Mkdir applied the umask.
	if err := os.Chmod(rootfs, 0o755); err != nil {
		return nil, err
	}
	chown := os.Geteuid() == 0
	u := newUnpacker(ctx, where, rootfs, s.limits, chown)
	var layers []string
	for _, l := range p.layers {
		if !l.whiteouts {
			// A root file system tar (or a SIF's): one tree, unpacked in
			// place, its digest the ID.
			u.dest = rootfs
			diffID, err := u.apply(l)
			if err != nil {
				return nil, err
			}
			p.id = diffID
			continue
		}
		// A layer: unpacked once into the layer store (unless it is
		// there), then its tree linked into the rootfs. Layers the store
		// holds cost nothing of the import's budget.
		// Asked again: an import running alongside may have published
		// the layer since the check above.
		_, done := j.unpacked[l.diffID]
		held := false
		if !done {
			if held, err = s.holdLayer(j, l.diffID); err != nil {
				return nil, fmt.Errorf("unable to check layer %s: %w", l.diffID, err)
			}
		}
		if !held && !done {
			if err := s.unpackLayer(j, u, l); err != nil {
				return nil, err
			}
		}
		if err := assemble(where, l, s.layerTree(j, l.diffID), rootfs, chown); err != nil {
			return nil, err
		}
		layers = append(layers, string(l.diffID))
	}
	size, err := diskSize(rootfs)
	if err != nil {
		return nil, err
	}
	rec := contentRecord{ID: string(p.id), Size: size, Env: p.env, Format: p.format, Notes: u.notes(), Layers: layers}
	if err := writeJSONFile(filepath.Join(content, "image.json"), rec); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(content, "lock"), nil, 0o600); err != nil {
		return nil, err
	}
	// Everything unpacked reaches the disk before the rename publishes it:
	// syncfs is one call for the whole tree, where fsync would be one per file.
	if err := unix.Syncfs(int(j.lock.Fd())); err != nil {
		return nil, fmt.Errorf("unable to sync the unpacked image: %w", err)
	}
	return s.publish(j, norm, p.id, p.manifest, content)
}

// plan opens the input and reads its metadata.
func (s *Store) plan(ctx context.Context, j *job, name, path string) (*plan, func(), error) {
	nothing := func() {}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, nothing, err
	}
	if fi.IsDir() {
		src, err := openDirSource(path)
		if err != nil {
			return nil, nothing, err
		}
		// src is only read: its Close loses nothing.
		if !src.has(ocispec.ImageLayoutFile) {
			_ = src.Close()
			return nil, nothing, badArchive(path, "a folder, but not an OCI image layout (it has no oci-layout file)")
		}
		p, err := planOCI(src, name, s.limits)
		if err != nil {
			_ = src.Close()
			return nil, nothing, err
		}
		return p, func() { _ = src.Close() }, nil
	}

	f, err := os.Open(path)
	if err != nil {
		return nil, nothing, err
	}
	closeF := func() { f.Close() }
	if isSIF(f) {
		p, err := planSIF(ctx, j, path, f, s.limits)
		if err != nil {
			closeF()
			return nil, nothing, err
		}
		return p, closeF, nil
	}
	if f, err = s.decompressed(j, path, f); err != nil {
		closeF()
		return nil, nothing, err
	}
	closeF = func() { f.Close() }
	src, err := indexTar(path, f, s.limits)
	if err != nil {
		closeF()
		return nil, nothing, err
	}
	var p *plan
	switch {
	case src.has("manifest.json"):
		p, err = planDocker(src, name, s.limits)
	case src.has(ocispec.ImageLayoutFile) && src.has("index.json"):
		p, err = planOCI(src, name, s.limits)
	case src.count == 0:
		err = badArchive(path, "an empty tar archive")
	case src.nestedLayout() != "":
		// Imported as a rootfs it would "work" and give a useless image.
		dir := src.nestedLayout()
		err = badArchive(path, "holds an OCI image layout inside the folder %s instead of at its top; "+
			"import that folder, or a tar of its content (tar -C %s -cf layout.tar .)", dir, dir)
	default:
		p = planRootfs(src)
	}
	if err != nil {
		closeF()
		return nil, nothing, err
	}
	return p, closeF, nil
}

// decompressed returns f itself if it is not compressed; otherwise it
// decompresses it into the job folder (the formats need random access) and
// returns that file, bounded by Limits.MaxBytes.
func (s *Store) decompressed(j *job, path string, f *os.File) (*os.File, error) {
	magic := make([]byte, 10)
	n, err := io.ReadFull(f, magic)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("unable to read %s: %w", path, err)
	}
	if compression.Detect(magic[:n]) == compression.None {
		return f, nil
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("unable to read %s: %w", path, err)
	}
	dec, err := compression.DecompressStream(f)
	if err != nil {
		return nil, badArchive(path, "unable to decompress: %w", err)
	}
	defer dec.Close()
	out, err := os.OpenFile(filepath.Join(j.dir, "archive.tar"), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	n64, err := io.Copy(out, io.LimitReader(dec, s.limits.MaxBytes+1))
	if err == nil && n64 > s.limits.MaxBytes {
		err = badArchive(path, "decompresses to more than %d bytes (Limits.MaxBytes)", s.limits.MaxBytes)
	} else if err != nil && !errors.Is(err, ErrBadArchive) {
		err = badArchive(path, "unable to decompress: %w", err)
	}
	if err != nil {
		out.Close()
		return nil, err
	}
	return out, nil
}

// link points name at already stored content with this ID, if there is
// some; (nil, nil) means there is none and the image must be unpacked.
func (s *Store) link(name string, id, manifest digest.Digest) (*Image, error) {
	unlock, err := s.lockStore(flock.Exclusive)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if _, err := os.Stat(filepath.Join(s.contentDir(id), "image.json")); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	return s.writeName(name, id, manifest)
}

// publish moves the layers the job unpacked and then its content into
// place (unless the same ID got there first: then ours is dropped with the
// job) and points name at it.
func (s *Store) publish(j *job, name string, id, manifest digest.Digest, content string) (*Image, error) {
	unlock, err := s.lockStore(flock.Exclusive)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := s.publishLayersLocked(j); err != nil {
		return nil, err
	}
	final := s.contentDir(id)
	if _, err := os.Stat(filepath.Join(final, "image.json")); errors.Is(err, fs.ErrNotExist) {
		parent := filepath.Dir(final)
		if err := os.MkdirAll(parent, 0o700); err != nil {
			return nil, err
		}
		if err := atomicfile.Rename(content, final); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, err
	}
	return s.writeName(name, id, manifest)
}

// writeName points name at id; the caller holds the store lock exclusively.
func (s *Store) writeName(name string, id, manifest digest.Digest) (*Image, error) {
	rec := nameRecord{Name: name, ID: string(id), Manifest: string(manifest), Created: time.Now().UTC()}
	b, err := json.Marshal(rec)
	if err != nil {
		return nil, err
	}
	if err := atomicfile.WriteFile(s.nameFile(name), b, 0o600); err != nil {
		return nil, err
	}
	return s.image(&rec)
}

// job is an import's folder in tmp/, locked for as long as the import runs
// so that cleanups in other processes leave it alone.
type job struct {
	dir      string
	lock     *os.File
	held     map[digest.Digest]*os.File // stored layers it uses, locked shared (see layers.go)
	unpacked map[digest.Digest]string   // layers it unpacked: their folders in dir
}

// newJob creates and locks the folder under the shared store lock, which
// keeps cleanups (exclusive) from seeing it before it is locked.
func (s *Store) newJob() (*job, error) {
	unlock, err := s.lockStore(flock.Shared)
	if err != nil {
		return nil, err
	}
	defer unlock()
	dir, err := os.MkdirTemp(s.tmpDir(), "import-")
	if err != nil {
		return nil, fmt.Errorf("unable to start import: %w", err)
	}
	lock, err := flockPath(dir, os.O_RDONLY, flock.TryExclusive)
	if err != nil {
		_ = os.Remove(dir)
		return nil, fmt.Errorf("unable to start import: %w", err)
	}
	return &job{dir: dir, lock: lock, held: map[digest.Digest]*os.File{}, unpacked: map[digest.Digest]string{}}, nil
}

// close deletes what is left of the job (everything, unless it was
// published) and then drops the lock.
func (j *job) close() {
	_ = os.RemoveAll(j.dir)
	for _, f := range j.held {
		_ = f.Close()
	}
	_ = j.lock.Close()
}

// diskSize sums the sizes of the regular files under dir, counting files
// with several hard links once.
func diskSize(dir string) (int64, error) {
	type inode struct{ dev, ino uint64 }
	seen := map[inode]bool{}
	var total int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Nlink > 1 {
			key := inode{uint64(st.Dev), st.Ino}
			if seen[key] {
				return nil
			}
			seen[key] = true
		}
		total += fi.Size()
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("unable to measure %s: %w", dir, err)
	}
	return total, nil
}
