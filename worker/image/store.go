// Package image is the local image store of the runc runtime: container
// images unpacked once into read-only root file systems on local disk,
// deduplicated by content and shared by every task that runs them. The
// layers of docker save, OCI and registry images are stored once each, by
// diff_id, and shared between images: an image's root file system is made
// of hard links into its layers (see layers.go).
//
// The lifecycle of an image, in the style of containerd's content store:
//
//   - Open prepares the store folder and finishes what crashed processes left
//     behind: half-done imports in tmp/ and content no name points to.
//   - Import unpacks a rootfs tar, a `docker save` tar or an OCI image layout
//     (folder or tar) into tmp/, verifies it, then publishes it with one
//     atomic rename under its content ID and points the name at it. The same
//     ID imported again is not unpacked twice: the name is just re-pointed.
//   - Get and List resolve names; they do not protect what they return.
//   - Acquire resolves a name and holds a shared lock on the content for as
//     long as a task runs from it; the returned release function drops it.
//   - Remove drops a name. Content that no other name points to is deleted
//     at once unless a task holds it; then it stays until a later Remove,
//     Open or GC finds it free.
//   - GC deletes content that no name points to and no task holds, and
//     layers that no content lists and no import holds.
//   - Pull fetches from a registry what the store lacks (layers it holds by
//     diff_id are not downloaded), checks the manifest (by digest: its
//     bytes; by tag: the config and layers it names) and imports it.
//
// Published content is never modified: tasks mount it as the lower layer of
// their overlay, so a change would show through in running tasks.
//
// Durability: an Import that returned survives a crash or power loss (the
// unpacked tree is synced with syncfs(2) before the renames that publish
// its layers and its content; name files are written with fsync and
// renamed). A crash at any point leaves either the old state or the new
// one, plus leftovers in tmp/ and layers no content lists, which the next
// Open removes.
//
// Several processes (the worker CLI, foreman-run workers) may use one store
// folder at once. They coordinate with flock(2) only, never with in-process
// state, so a crashed process releases its locks with its file descriptors:
//
//   - root/lock: shared (LOCK_SH) while a name is resolved into a content
//     lock (Acquire) and while an import creates its tmp folder; exclusive
//     (LOCK_EX) to publish, remove or collect. Held for milliseconds:
//     unpacking and deleting trees happen outside it.
//   - content/<alg>/<hex>/lock: LOCK_SH per running task (Acquire); the
//     collector deletes content only if LOCK_EX|LOCK_NB on it succeeds.
//   - layers/<alg>/<hex>/lock: LOCK_SH by an import that reuses the layer,
//     from the check (under the shared store lock) until its image is
//     published; the collector deletes a layer no content lists only if
//     LOCK_EX|LOCK_NB on it succeeds.
//   - tmp/<entry>: each in-flight import or deletion holds LOCK_EX on its
//     folder; cleanup removes only entries whose lock it can take, so it
//     never pulls a folder from under a live import in another process.
//
// On-disk layout under root:
//
//	lock                            the store lock (empty file)
//	names/<sha256 of name>.json     {"name", "id", "created"}: one per name
//	content/<alg>/<hex>/image.json  what Import learned: ID, size, env, format, notes, layers
//	content/<alg>/<hex>/lock        task locks (empty file)
//	content/<alg>/<hex>/rootfs/     the root file system (of hard links into its layers)
//	layers/<alg>/<hex>/tree/        one layer (by diff_id), whiteouts kept as .wh. files
//	layers/<alg>/<hex>/layer.json   {"diff_id", "size"}
//	layers/<alg>/<hex>/lock         import locks (empty file)
//	tmp/import-*/                   imports in progress (or left by a crash), with
//	                                the layers they unpacked, renamed into layers/
//	                                with the image
//	tmp/trash-*/                    content being deleted
//
// The store root is created with mode 0700: an unpacked image may contain
// setuid binaries, and no unprivileged host user has any business in it.
package image

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/kolejka-go/kolejka/internal/atomicfile"
	"github.com/kolejka-go/kolejka/internal/flock"
)

// Errors of the store. Match with errors.Is: messages add the image name,
// the file and the problem.
var (
	// ErrNotFound: no image of that name in the store (or, on Import, no
	// image of that name in a multi-image archive).
	ErrNotFound = errors.New("image not found")
	// ErrInUse: Remove dropped the name, but a running task still holds the
	// content, so its disk space is freed later (next Remove, Open or GC).
	ErrInUse = errors.New("image in use")
	// ErrBadArchive: the input is not an importable image: not an archive,
	// malformed metadata, a missing or corrupt blob, an entry escaping the
	// root, or a size over the store's Limits.
	ErrBadArchive = errors.New("bad image archive")
	// ErrInvalidName: the name is not a valid image reference.
	ErrInvalidName = errors.New("invalid image name")
)

// Image is one name in the store and the content it points to.
type Image struct {
	Name    string    // normalized reference, e.g. docker.io/library/busybox:latest
	ID      string    // "sha256:<hex>": docker/OCI config digest, or sha256 of the uncompressed rootfs tar (for a SIF, of the tar its squashfs reads as)
	Rootfs  string    // absolute path of the read-only unpacked root file system
	Size    int64     // bytes of regular files in Rootfs (hard links counted once)
	Created time.Time // when this name was imported
	Env     []string  // the image config's environment, if any (informational: tasks do not get it)
	Format  string    // what it was imported from: FormatRootfsTar, FormatDockerSave, FormatOCI or FormatSIF
	Notes   []string  // what the import changed on the way, e.g. device nodes it skipped
	// Layers are the diff_ids of the image's layers, bottom first, each
	// stored once in the layer store whatever number of images use it
	// (none for a rootfs tar or a SIF: one tree of their own).
	Layers []string
	// Manifest is the digest of the image manifest the name was imported
	// or pulled with (OCI layouts and pulls; "" otherwise). For a pull by
	// tag it is the digest of the bytes the registry served, checked
	// against the config and layers they name.
	Manifest string
}

// Formats an image can be imported from (Image.Format).
const (
	FormatRootfsTar  = "rootfs-tar"
	FormatDockerSave = "docker-save"
	FormatOCI        = "oci"
)

// Limits bound what one Import may unpack, so a hostile or broken archive
// ends with ErrBadArchive instead of a full disk or an exhausted memory.
// Zero fields take the defaults of DefaultLimits.
type Limits struct {
	// MaxBytes caps the file contents one import unpacks (all layers
	// together) and the size of a compressed archive once decompressed.
	MaxBytes int64
	// MaxEntries caps the tar entries of one import (all layers together).
	MaxEntries int64
	// MaxLayers caps the layers of one image.
	MaxLayers int
	// MaxMetadataBytes caps each JSON document read: manifest.json,
	// index.json, oci-layout, image manifests and configs.
	MaxMetadataBytes int64
}

// DefaultLimits are generous for judging images (a full compiler toolchain
// is a few GiB and ~100k files) and still far below what hurts a node:
// 32 GiB, 4 million entries, 256 layers, 8 MiB per metadata document.
func DefaultLimits() Limits {
	return Limits{
		MaxBytes:         32 << 30,
		MaxEntries:       4_000_000,
		MaxLayers:        256,
		MaxMetadataBytes: 8 << 20,
	}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	l.MaxBytes = cmp.Or(l.MaxBytes, d.MaxBytes)
	l.MaxEntries = cmp.Or(l.MaxEntries, d.MaxEntries)
	l.MaxLayers = cmp.Or(l.MaxLayers, d.MaxLayers)
	l.MaxMetadataBytes = cmp.Or(l.MaxMetadataBytes, d.MaxMetadataBytes)
	return l
}

// Option configures a Store at Open.
type Option func(*Store)

// WithLimits sets the import limits (zero fields keep their defaults).
func WithLimits(l Limits) Option {
	return func(s *Store) { s.limits = l }
}

// Store is an image store folder. It holds no mutable state of its own: all
// coordination is on disk (see the package documentation), so one *Store may
// be used from many goroutines and one folder from many processes.
type Store struct {
	root   string
	limits Limits
}

// Open opens the store at root (e.g. /var/lib/kolejka/images), creating it
// if needed, then cleans up after crashed processes: it removes unlocked
// leftovers in tmp/ and content that no name points to and no task holds.
func Open(root string, opts ...Option) (*Store, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("unable to open image store %s: %w", root, err)
	}
	s := &Store{root: abs}
	for _, o := range opts {
		o(s)
	}
	s.limits = s.limits.withDefaults()
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, fmt.Errorf("unable to open image store: %w", err)
	}
	for _, d := range []string{s.tmpDir(), s.namesDir(), filepath.Join(abs, "content"), s.layersDir()} {
		if err := os.Mkdir(d, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("unable to open image store: %w", err)
		}
	}
	if err := s.GC(); err != nil {
		return nil, fmt.Errorf("unable to open image store %s: %w", abs, err)
	}
	return s, nil
}

// Root is the store's folder.
func (s *Store) Root() string { return s.root }

func (s *Store) tmpDir() string   { return filepath.Join(s.root, "tmp") }
func (s *Store) namesDir() string { return filepath.Join(s.root, "names") }

func (s *Store) contentDir(id digest.Digest) string {
	return filepath.Join(s.root, "content", string(id.Algorithm()), id.Encoded())
}

func (s *Store) nameFile(name string) string {
	sum := sha256.Sum256([]byte(name))
	return filepath.Join(s.namesDir(), hex.EncodeToString(sum[:])+".json")
}

// NormalizeName returns the full form of an image reference the store keys
// names by: "busybox" → "docker.io/library/busybox:latest". A name with a
// digest keeps it and gets no tag.
func NormalizeName(name string) (string, error) {
	r, err := parseRef(name)
	if err != nil {
		return "", fmt.Errorf("%w %q: %w", ErrInvalidName, name, err)
	}
	if r.tag == "" && r.digest == "" {
		r.tag = defaultTag
	}
	return r.String(), nil
}

// EngineName splits an image name as the Docker Engine API takes it: the
// repository in docker's familiar form ("busybox", "ghcr.io/org/judge",
// what the docker command sends) and the tag (latest when the name has
// none) or, for a name with a digest, the digest ("sha256:…") in digest.
func EngineName(name string) (repo, tag string, dgst digest.Digest, err error) {
	r, err := parseRef(name)
	if err != nil {
		return "", "", "", fmt.Errorf("%w %q: %w", ErrInvalidName, name, err)
	}
	if r.digest != "" {
		return r.familiar().name(), "", r.digest, nil
	}
	if r.tag == "" {
		r.tag = defaultTag
	}
	return r.familiar().name(), r.tag, "", nil
}

// familiar is the short form of a normalized name, for messages.
func familiar(name string) string {
	r, err := parseRef(name)
	if err != nil {
		return name
	}
	return r.familiar().String()
}

func notFound(name string) error {
	return fmt.Errorf("%w: %s (import it with `kolejka-worker image import %s FILE`)", ErrNotFound, name, familiar(name))
}

// nameRecord is names/<sha256 of name>.json.
type nameRecord struct {
	Name     string    `json:"name"`
	ID       string    `json:"id"`
	Manifest string    `json:"manifest,omitempty"`
	Created  time.Time `json:"created"`
}

// contentRecord is content/<alg>/<hex>/image.json.
type contentRecord struct {
	ID     string   `json:"id"`
	Size   int64    `json:"size"`
	Env    []string `json:"env,omitempty"`
	Format string   `json:"format"`
	Notes  []string `json:"notes,omitempty"`
	Layers []string `json:"layers,omitempty"` // diff_ids, bottom first: layers/<alg>/<hex>
}

// readJSONFile decodes one of the store's own files, strictly.
func readJSONFile(p string, v any) error {
	b, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("unable to decode %s: %w", p, err)
	}
	return nil
}

func parseID(id string) (digest.Digest, error) {
	d, err := digest.Parse(id)
	if err != nil {
		return "", fmt.Errorf("invalid content ID %q: %w", id, err)
	}
	return d, nil
}

// readName returns the record of a normalized name, or ErrNotFound.
func (s *Store) readName(name string) (*nameRecord, error) {
	var rec nameRecord
	p := s.nameFile(name)
	if err := readJSONFile(p, &rec); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, notFound(name)
		}
		return nil, fmt.Errorf("unable to read image name %s: %w", name, err)
	}
	if rec.Name != name {
		return nil, fmt.Errorf("unable to read image name %s: %s names %q", name, p, rec.Name)
	}
	return &rec, nil
}

// image assembles the Image of a name record from its content record.
func (s *Store) image(rec *nameRecord) (*Image, error) {
	id, err := parseID(rec.ID)
	if err != nil {
		return nil, fmt.Errorf("unable to read image %s: %w", rec.Name, err)
	}
	dir := s.contentDir(id)
	var c contentRecord
	if err := readJSONFile(filepath.Join(dir, "image.json"), &c); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s points to content %s, which is missing; import it again", ErrNotFound, rec.Name, rec.ID)
		}
		return nil, fmt.Errorf("unable to read image %s: %w", rec.Name, err)
	}
	return &Image{
		Name:     rec.Name,
		ID:       c.ID,
		Rootfs:   filepath.Join(dir, "rootfs"),
		Size:     c.Size,
		Created:  rec.Created,
		Env:      c.Env,
		Format:   c.Format,
		Notes:    c.Notes,
		Layers:   c.Layers,
		Manifest: rec.Manifest,
	}, nil
}

// Get returns the image a name points to. The name is normalized first
// ("busybox" finds docker.io/library/busybox:latest). The content may be
// removed as soon as Get returns: to run a task from it, use Acquire.
func (s *Store) Get(name string) (*Image, error) {
	norm, err := NormalizeName(name)
	if err != nil {
		return nil, err
	}
	rec, err := s.readName(norm)
	if err != nil {
		return nil, err
	}
	return s.image(rec)
}

// List returns every image in the store, sorted by name.
func (s *Store) List() ([]*Image, error) {
	recs, err := s.readNames()
	if err != nil {
		return nil, err
	}
	images := make([]*Image, 0, len(recs))
	for _, rec := range recs {
		img, err := s.image(rec)
		if err != nil {
			return nil, fmt.Errorf("unable to list images: %w", err)
		}
		images = append(images, img)
	}
	slices.SortFunc(images, func(a, b *Image) int { return strings.Compare(a.Name, b.Name) })
	return images, nil
}

// readNames reads every name record.
func (s *Store) readNames() ([]*nameRecord, error) {
	entries, err := os.ReadDir(s.namesDir())
	if err != nil {
		return nil, fmt.Errorf("unable to list image names: %w", err)
	}
	var recs []*nameRecord
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		var rec nameRecord
		if err := readJSONFile(filepath.Join(s.namesDir(), e.Name()), &rec); err != nil {
			if errors.Is(err, fs.ErrNotExist) { // removed meanwhile
				continue
			}
			return nil, fmt.Errorf("unable to list image names: %w", err)
		}
		recs = append(recs, &rec)
	}
	return recs, nil
}

// Acquire resolves a name for a task and holds a shared lock on its content
// until release is called, so neither Remove nor GC deletes the root file
// system while the task runs from it. release is safe to call more than
// once. The lock belongs to the open file: if the process dies, the kernel
// drops it.
func (s *Store) Acquire(name string) (img *Image, release func(), err error) {
	norm, err := NormalizeName(name)
	if err != nil {
		return nil, nil, err
	}
	// The store lock (shared) keeps collectors out between reading the name
	// and locking the content: they take it exclusively before they look.
	unlock, err := s.lockStore(flock.Shared)
	if err != nil {
		return nil, nil, err
	}
	defer unlock()
	rec, err := s.readName(norm)
	if err != nil {
		return nil, nil, err
	}
	img, err = s.image(rec)
	if err != nil {
		return nil, nil, err
	}
	id, _ := parseID(img.ID) // validated by image
	lock, err := flockPath(filepath.Join(s.contentDir(id), "lock"), os.O_RDONLY, flock.Shared)
	if err != nil {
		return nil, nil, fmt.Errorf("unable to acquire image %s: %w", norm, err)
	}
	var once sync.Once
	return img, func() { once.Do(func() { _ = lock.Close() }) }, nil
}

// Remove drops a name. The content it pointed to is deleted when no other
// name points to it and no task holds it (see Acquire). If a task holds it,
// the name is gone all the same and Remove returns an error wrapping
// ErrInUse: the disk space is freed by the next Remove, Open or GC after the
// task ends. Any other error means nothing was removed, or (for errors of
// the deletion itself) that the content waits in tmp/ for the next cleanup.
func (s *Store) Remove(name string) error {
	norm, err := NormalizeName(name)
	if err != nil {
		return err
	}
	unlock, err := s.lockStore(flock.Exclusive)
	if err != nil {
		return err
	}
	// A name file that cannot be read (damaged on disk) is removed all the
	// same: `image rm` is how an operator gets rid of it.
	rec, err := s.readName(norm)
	if errors.Is(err, ErrNotFound) {
		unlock()
		return err
	}
	if err := os.Remove(s.nameFile(norm)); err != nil {
		unlock()
		return fmt.Errorf("unable to remove image %s: %w", norm, err)
	}
	if err := atomicfile.SyncDir(s.namesDir()); err != nil {
		unlock()
		return fmt.Errorf("unable to remove image %s: %w", norm, err)
	}
	trash, busy, err := s.collectLocked()
	unlock()
	if derr := deleteTrash(trash); err == nil {
		err = derr
	}
	if err != nil {
		return fmt.Errorf("unable to delete the content of image %s (the name is removed): %w", norm, err)
	}
	if rec != nil && slices.Contains(busy, rec.ID) {
		return fmt.Errorf("%w: image %s is removed, but its content %s is held by a running task and is deleted once no task uses it",
			ErrInUse, norm, rec.ID)
	}
	return nil
}

// GC deletes content that no name points to and no task holds, and the
// leftovers of crashed imports and deletions in tmp/.
func (s *Store) GC() error {
	unlock, err := s.lockStore(flock.Exclusive)
	if err != nil {
		return err
	}
	trash, _, err := s.collectLocked()
	unlock()
	if derr := deleteTrash(trash); err == nil {
		err = derr
	}
	if err != nil {
		return fmt.Errorf("unable to collect unused images: %w", err)
	}
	return nil
}

// trashEntry is a folder in tmp/ this process holds LOCK_EX on and deletes.
type trashEntry struct {
	path string
	lock *os.File
}

// deleteTrash deletes folders claimed by collectLocked. It runs without the
// store lock (deleting a big tree takes a while and must not delay tasks);
// the folder locks keep other cleaners off them meanwhile.
func deleteTrash(trash []trashEntry) error {
	var errs []error
	for _, t := range trash {
		if err := os.RemoveAll(t.path); err != nil {
			errs = append(errs, err)
		}
		_ = t.lock.Close()
	}
	return errors.Join(errs...)
}

// collectLocked runs with the store lock held exclusively. It claims (locks)
// the unlocked leftovers in tmp/ and moves content no name points to into
// tmp/ (one rename, so no half-deleted image ever sits under its final
// name), skipping content a task holds. It returns the folders to delete
// and the IDs of unreferenced content that tasks still hold.
func (s *Store) collectLocked() (trash []trashEntry, busy []string, err error) {
	var errs []error
	// Names being written under the store lock by a dead process.
	if entries, err := os.ReadDir(s.namesDir()); err == nil {
		for _, e := range entries {
			// .tmp-*: the temporary name files of older versions.
			if atomicfile.IsTemporary(e.Name()) || strings.HasPrefix(e.Name(), ".tmp-") {
				if err := os.Remove(filepath.Join(s.namesDir(), e.Name())); err != nil {
					errs = append(errs, err)
				}
			}
		}
	} else {
		errs = append(errs, err)
	}

	entries, err := os.ReadDir(s.tmpDir())
	if err != nil {
		return nil, nil, err
	}
	for _, e := range entries {
		p := filepath.Join(s.tmpDir(), e.Name())
		lock, err := flockPath(p, os.O_RDONLY, flock.TryExclusive)
		if errors.Is(err, flock.ErrLocked) {
			continue // a live import or deletion
		}
		if errors.Is(err, fs.ErrNotExist) {
			continue // an import that ended since ReadDir removed its own folder
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		trash = append(trash, trashEntry{path: p, lock: lock})
	}

	recs, err := s.readNames()
	if err != nil {
		return trash, nil, errors.Join(append(errs, err)...)
	}
	used := make(map[string]bool, len(recs))
	for _, rec := range recs {
		used[rec.ID] = true
	}
	contentRoot := filepath.Join(s.root, "content")
	algs, err := os.ReadDir(contentRoot)
	if err != nil {
		return trash, nil, errors.Join(append(errs, err)...)
	}
	for _, alg := range algs {
		dirs, err := os.ReadDir(filepath.Join(contentRoot, alg.Name()))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, d := range dirs {
			id := alg.Name() + ":" + d.Name()
			if used[id] {
				continue
			}
			t, err := s.claimContent(filepath.Join(contentRoot, alg.Name(), d.Name()))
			switch {
			case errors.Is(err, flock.ErrLocked):
				busy = append(busy, id)
			case err != nil:
				errs = append(errs, fmt.Errorf("unable to delete content %s: %w", id, err))
			default:
				trash = append(trash, t)
			}
		}
	}
	ltrash, err := s.collectLayersLocked()
	if err != nil {
		errs = append(errs, err)
	}
	return append(trash, ltrash...), busy, errors.Join(errs...)
}

// collectLayersLocked claims the layers no content lists and no import
// holds; it runs after the content collection, under the exclusive store
// lock. Content it cannot read (damaged by hand; `image rm` of its name
// deletes it) keeps every layer, and is no error here, so that Open still
// works: a layer deleted under an image would be gone for good, a layer
// kept too long only takes space.
func (s *Store) collectLayersLocked() ([]trashEntry, error) {
	used := map[string]bool{}
	contentRoot := filepath.Join(s.root, "content")
	algs, err := os.ReadDir(contentRoot)
	if err != nil {
		return nil, err
	}
	for _, alg := range algs {
		dirs, err := os.ReadDir(filepath.Join(contentRoot, alg.Name()))
		if err != nil {
			return nil, err
		}
		for _, d := range dirs {
			var c contentRecord
			if err := readJSONFile(filepath.Join(contentRoot, alg.Name(), d.Name(), "image.json"), &c); err != nil {
				return nil, nil //nolint:nilerr // see above
			}
			for _, l := range c.Layers {
				used[l] = true
			}
		}
	}
	var trash []trashEntry
	var errs []error
	algs, err = os.ReadDir(s.layersDir())
	if err != nil {
		return nil, err
	}
	for _, alg := range algs {
		dirs, err := os.ReadDir(filepath.Join(s.layersDir(), alg.Name()))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, d := range dirs {
			id := alg.Name() + ":" + d.Name()
			if used[id] {
				continue
			}
			t, err := s.claimContent(filepath.Join(s.layersDir(), alg.Name(), d.Name()))
			switch {
			case errors.Is(err, flock.ErrLocked): // an import about to use it
			case err != nil:
				errs = append(errs, fmt.Errorf("unable to delete layer %s: %w", id, err))
			default:
				trash = append(trash, t)
			}
		}
	}
	return trash, errors.Join(errs...)
}

// claimContent moves an unreferenced content folder into a locked
// tmp/trash-* folder, unless a task holds its lock (then the error is
// flock.ErrLocked). It runs under the exclusive store lock, so no cleaner can see
// the new trash folder before it is locked, and no Acquire can lock the
// content between the check and the rename.
func (s *Store) claimContent(dir string) (trashEntry, error) {
	taskLock, err := flockPath(filepath.Join(dir, "lock"), os.O_RDONLY, flock.TryExclusive)
	if err != nil && !errors.Is(err, fs.ErrNotExist) { // no lock file: a broken folder, delete it too
		return trashEntry{}, err
	}
	if taskLock != nil {
		defer taskLock.Close()
	}
	dst, err := os.MkdirTemp(s.tmpDir(), "trash-")
	if err != nil {
		return trashEntry{}, err
	}
	lock, err := flockPath(dst, os.O_RDONLY, flock.TryExclusive)
	if err != nil {
		_ = os.Remove(dst)
		return trashEntry{}, err
	}
	// Not synced: after a crash that loses the move, the content is
	// unreferenced where it was, and the next collection claims it again.
	if err := os.Rename(dir, filepath.Join(dst, "content")); err != nil {
		_ = os.Remove(dst)
		lock.Close()
		return trashEntry{}, err
	}
	return trashEntry{path: dst, lock: lock}, nil
}

// lockStore takes the store lock (root/lock) with lock (flock.Shared or
// flock.Exclusive) and returns its release.
func (s *Store) lockStore(lock func(*os.File) error) (func(), error) {
	f, err := flockPath(filepath.Join(s.root, "lock"), os.O_RDWR|os.O_CREATE, lock)
	if err != nil {
		return nil, fmt.Errorf("unable to lock image store %s: %w", s.root, err)
	}
	return func() { _ = f.Close() }, nil
}

// flockPath opens p and locks it with lock (flock.Shared, flock.TryExclusive,
// ...). flock locks belong to the open file description, so two opens of
// one file conflict even within one process (unlike fcntl locks), which is
// what lets goroutines and processes use the same protocol. The lock is
// released when the returned file is closed.
func flockPath(p string, flag int, lock func(*os.File) error) (*os.File, error) {
	f, err := os.OpenFile(p, flag|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, err
	}
	if err := lock(f); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}
