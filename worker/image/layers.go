package image

// The layer store: every layer of a docker save, OCI or registry image is
// unpacked once, on its own, into layers/<alg>/<hex>/tree (named by its
// diff_id, the digest of its uncompressed tar, checked while unpacking),
// and an image's rootfs is assembled from its layers' trees with hard
// links: two images sharing a base layer share its files' inodes, so the
// layer's data is on disk once however many images use it.
//
// Layer trees keep the layer's whiteouts as the files the tar carries
// (.wh.<name> deletes <name> of the layers below, .wh..wh..opq hides a
// whole folder below); assemble interprets them, in the order of the
// image's layers.
//
// Life cycle, with the same flock protocol as content (see store.go):
//   - an import holds LOCK_SH on layers/<alg>/<hex>/lock of every stored
//     layer it reuses, from the moment it decides to reuse it until its
//     image is published (the lock is taken under the shared store lock,
//     so no collector sees the layer free in between);
//   - layers an import unpacks wait in its tmp/ folder and are renamed into
//     layers/ together with the image, under the exclusive store lock: a
//     failed import leaves no layer behind, and a crash between the renames
//     leaves layers no image names, which the next collection deletes;
//   - a collection deletes a layer that no content's image.json lists and
//     no import holds (LOCK_EX|LOCK_NB on its lock succeeds).
//
// A running task needs no lock on layers: it runs from the image's rootfs,
// whose hard links keep the data even if the layer tree were deleted.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/kolejka-go/kolejka/internal/atomicfile"
	"github.com/kolejka-go/kolejka/internal/flock"
)

// Whiteout names of the image-spec layer format (layer.md).
const (
	whiteoutPrefix = ".wh."
	whiteoutMeta   = ".wh..wh."     // aufs metadata: never part of the file system
	whiteoutOpaque = ".wh..wh..opq" // the folder hides what lower layers put in it
)

// layerRecord is layers/<alg>/<hex>/layer.json.
type layerRecord struct {
	DiffID string `json:"diff_id"`
	Size   int64  `json:"size"` // bytes of regular files in the tree
}

func (s *Store) layersDir() string { return filepath.Join(s.root, "layers") }

func (s *Store) layerDir(d digest.Digest) string {
	return filepath.Join(s.layersDir(), string(d.Algorithm()), d.Encoded())
}

// holdLayer reports whether the store holds the layer d and, if so, keeps
// a shared lock on it in the job until the job closes, so that no
// collection deletes it before the image using it is published.
func (s *Store) holdLayer(j *job, d digest.Digest) (bool, error) {
	if _, ok := j.held[d]; ok {
		return true, nil
	}
	if err := d.Validate(); err != nil {
		return false, err
	}
	unlock, err := s.lockStore(flock.Shared)
	if err != nil {
		return false, err
	}
	defer unlock()
	dir := s.layerDir(d)
	if _, err := os.Stat(filepath.Join(dir, "layer.json")); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		return false, err
	}
	lock, err := flockPath(filepath.Join(dir, "lock"), os.O_RDONLY, flock.Shared)
	if err != nil {
		return false, fmt.Errorf("unable to hold layer %s: %w", d, err)
	}
	j.held[d] = lock
	return true, nil
}

// layerTree is where the tree of layer d is for the job: its own unpacked
// copy, or the store's.
func (s *Store) layerTree(j *job, d digest.Digest) string {
	if dir, ok := j.unpacked[d]; ok {
		return filepath.Join(dir, "tree")
	}
	return filepath.Join(s.layerDir(d), "tree")
}

// unpackLayer unpacks l into a new folder of the job (tree/, layer.json,
// lock), verified against its diff_id, ready to be renamed into layers/.
func (s *Store) unpackLayer(j *job, u *unpacker, l layer) error {
	dir := filepath.Join(j.dir, "layer-"+string(l.diffID.Algorithm())+"-"+l.diffID.Encoded())
	tree := filepath.Join(dir, "tree")
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	if err := os.Mkdir(tree, 0o755); err != nil {
		return err
	}
	if err := os.Chmod(tree, 0o755); err != nil { // Mkdir applied the umask
		return err
	}
	u.dest, u.ownTree = tree, true
	if _, err := u.apply(l); err != nil {
		return err
	}
	size, err := diskSize(tree)
	if err != nil {
		return err
	}
	if err := writeJSONFile(filepath.Join(dir, "layer.json"), layerRecord{DiffID: string(l.diffID), Size: size}); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "lock"), nil, 0o600); err != nil {
		return err
	}
	j.unpacked[l.diffID] = dir
	return nil
}

// publishLayersLocked renames the layers the job unpacked into layers/;
// the caller holds the store lock exclusively. A layer another import
// published meanwhile is kept and ours dropped with the job (the image
// being published then links to our copy: correct, just not shared).
func (s *Store) publishLayersLocked(j *job) error {
	for d, dir := range j.unpacked {
		final := s.layerDir(d)
		if _, err := os.Stat(filepath.Join(final, "layer.json")); err == nil {
			continue
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(final), 0o700); err != nil {
			return err
		}
		// A broken folder under the final name (no layer.json): from
		// before this version's publish protocol, or damaged by hand.
		if err := os.RemoveAll(final); err != nil {
			return err
		}
		// Synced before the image that lists it is published.
		if err := atomicfile.Rename(dir, final); err != nil {
			return fmt.Errorf("unable to publish layer %s: %w", d, err)
		}
	}
	return nil
}

// assemble applies the tree of one layer onto rootfs: files are hard
// linked, folders, symlinks and FIFOs made anew with the layer's metadata,
// and the layer's whiteouts delete what lower layers put in rootfs.
// Every path under rootfs it touches has been made a real folder by the
// pass over its parent, so nothing here follows a symlink an image made.
func assemble(archive string, l layer, tree, rootfs string, chown bool) error {
	a := assembler{archive: archive, l: l, chown: chown}
	if err := a.dir(tree, rootfs, "/"); err != nil {
		return err
	}
	// Folder times last, once nothing is added to them any more.
	for i := len(a.times) - 1; i >= 0; i-- {
		t := a.times[i]
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, t.path, []unix.Timespec{t.atime, t.mtime}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("unable to assemble %s: %w", t.path, err)
		}
	}
	return nil
}

type assembler struct {
	archive string
	l       layer
	chown   bool
	times   []dirTime
	copies  map[uint64]string // inode in the layer → its copy in rootfs, see link
}

// link hard links the layer file src to dst. A file whose inode has run
// out of links (EMLINK: ext4 allows 65000, and a busybox layer links one
// binary ~400 times per image) is copied instead, once per image: its
// other names in this image link to the copy.
func (a *assembler) link(src, dst string, fi fs.FileInfo) error {
	err := os.Link(src, dst)
	if !errors.Is(err, unix.EMLINK) {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return err
	}
	if c, ok := a.copies[st.Ino]; ok {
		if err := os.Link(c, dst); !errors.Is(err, unix.EMLINK) {
			return err
		}
	}
	if err := copyFile(src, dst); err != nil {
		return err
	}
	if err := a.meta(src, dst, false); err != nil {
		return err
	}
	if err := copyXattrs(src, dst); err != nil {
		return err
	}
	if a.copies == nil {
		a.copies = map[uint64]string{}
	}
	a.copies[st.Ino] = dst
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

type dirTime struct {
	path         string
	atime, mtime unix.Timespec
}

// dir merges the layer folder src into the rootfs folder dst (both exist,
// dst is a real folder); name is its path in the image, for messages.
func (a *assembler) dir(src, dst, name string) error {
	if err := a.meta(src, dst, true); err != nil {
		return err
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		return fmt.Errorf("unable to read layer %s: %w", a.l.diffID, err)
	}
	// Whiteouts first: they act on the layers below, not on this one.
	for _, e := range entries {
		n := e.Name()
		switch {
		case n == whiteoutOpaque:
			below, err := os.ReadDir(dst)
			if err != nil {
				return err
			}
			for _, b := range below {
				if err := os.RemoveAll(filepath.Join(dst, b.Name())); err != nil {
					return fmt.Errorf("unable to apply opaque folder %s: %w", name, err)
				}
			}
		case strings.HasPrefix(n, whiteoutMeta):
		case strings.HasPrefix(n, whiteoutPrefix):
			target := strings.TrimPrefix(n, whiteoutPrefix)
			if target == "" || target == "." || target == ".." {
				return badArchive(a.archive, "%swhiteout %q names no file", where(a.l), filepath.Join(name, n))
			}
			if err := os.RemoveAll(filepath.Join(dst, target)); err != nil {
				return fmt.Errorf("unable to apply whiteout %s: %w", filepath.Join(name, n), err)
			}
		}
	}
	for _, e := range entries {
		n := e.Name()
		if strings.HasPrefix(n, whiteoutPrefix) {
			continue
		}
		s, d := filepath.Join(src, n), filepath.Join(dst, n)
		fi, err := os.Lstat(s)
		if err != nil {
			return err
		}
		old, err := os.Lstat(d)
		exists := err == nil
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if fi.IsDir() {
			if exists && !old.IsDir() {
				if err := os.Remove(d); err != nil {
					return err
				}
				exists = false
			}
			if !exists {
				if err := os.Mkdir(d, 0o700); err != nil {
					return err
				}
			}
			if err := a.dir(s, d, filepath.Join(name, n)); err != nil {
				return err
			}
			continue
		}
		// A file replaces whatever was there, a folder with all in it.
		if exists {
			if err := os.RemoveAll(d); err != nil {
				return err
			}
		}
		switch mode := fi.Mode(); {
		case mode.IsRegular():
			if err := a.link(s, d, fi); err != nil {
				return fmt.Errorf("unable to link %s from layer %s: %w", filepath.Join(name, n), a.l.diffID, err)
			}
		case mode&fs.ModeSymlink != 0:
			target, err := os.Readlink(s)
			if err != nil {
				return err
			}
			if err := os.Symlink(target, d); err != nil {
				return err
			}
			if err := a.meta(s, d, false); err != nil {
				return err
			}
		case mode&fs.ModeNamedPipe != 0:
			if err := unix.Mkfifo(d, 0o600); err != nil {
				return err
			}
			if err := a.meta(s, d, false); err != nil {
				return err
			}
		default: // the unpack filter lets nothing else through
			return fmt.Errorf("unable to assemble %s: layer %s holds a %s", filepath.Join(name, n), a.l.diffID, mode.Type())
		}
	}
	return nil
}

// meta gives dst the owner, mode, extended attributes and times of src
// (times of folders later, see assemble).
func (a *assembler) meta(src, dst string, isDir bool) error {
	var st unix.Stat_t
	if err := unix.Lstat(src, &st); err != nil {
		return err
	}
	if a.chown {
		if err := os.Lchown(dst, int(st.Uid), int(st.Gid)); err != nil {
			return err
		}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFLNK {
		// After the chown, which clears setuid bits.
		if err := unix.Chmod(dst, st.Mode&0o7777); err != nil {
			return err
		}
	}
	if isDir {
		if err := copyXattrs(src, dst); err != nil {
			return err
		}
		a.times = append(a.times, dirTime{path: dst, atime: st.Atim, mtime: st.Mtim})
		return nil
	}
	return unix.UtimesNanoAt(unix.AT_FDCWD, dst, []unix.Timespec{st.Atim, st.Mtim}, unix.AT_SYMLINK_NOFOLLOW)
}

// copyXattrs copies extended attributes of a folder (or of a copied file:
// linked files share theirs). Best effort, as the unpack is (BestEffortXattrs).
func copyXattrs(src, dst string) error {
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(src, buf)
	if err != nil || n == 0 {
		return nil //nolint:nilerr // no xattrs, or a file system without them
	}
	for _, key := range strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00") {
		val := make([]byte, 64<<10)
		m, err := unix.Lgetxattr(src, key, val)
		if err != nil {
			continue
		}
		_ = unix.Lsetxattr(dst, key, val[:m], 0)
	}
	return nil
}

// writeJSONFile writes one of the store's own records into a folder that
// is synced (syncfs) before it is published.
func writeJSONFile(p string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return os.WriteFile(p, b, 0o600)
}

// DiskUsage is the bytes of file contents the store holds on disk, each
// counted once however many images share it: the layers' (an image's
// rootfs links to them) plus the images made of one tree of their own
// (rootfs tars, SIFs). Image.Size, by contrast, is one image's whole
// size, shared layers included: a budget over all images should use
// DiskUsage, not a sum of Image.Size.
func (s *Store) DiskUsage() (int64, error) {
	var total int64
	err := s.eachRecord(s.layersDir(), "layer.json", func(b []byte) error {
		var r layerRecord
		if err := json.Unmarshal(b, &r); err != nil {
			return err
		}
		total += r.Size
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("unable to measure the image store: %w", err)
	}
	err = s.eachRecord(filepath.Join(s.root, "content"), "image.json", func(b []byte) error {
		var c contentRecord
		if err := json.Unmarshal(b, &c); err != nil {
			return err
		}
		if len(c.Layers) == 0 {
			total += c.Size
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("unable to measure the image store: %w", err)
	}
	return total, nil
}

// eachRecord calls f with the file name of every <alg>/<hex> folder under
// dir that has one (folders being collected meanwhile are skipped).
func (s *Store) eachRecord(dir, name string, f func([]byte) error) error {
	algs, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, alg := range algs {
		ds, err := os.ReadDir(filepath.Join(dir, alg.Name()))
		if err != nil {
			return err
		}
		for _, d := range ds {
			p := filepath.Join(dir, alg.Name(), d.Name(), name)
			b, err := os.ReadFile(p)
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return err
			}
			if err := f(b); err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
		}
	}
	return nil
}
