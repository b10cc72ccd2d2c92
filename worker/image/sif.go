package image

// Singularity / Apptainer images (SIF). A SIF file holds data objects; the
// one that matters here is the primary system partition, a squashfs of the
// root file system. unsquashfs (Debian's squashfs-tools) extracts it into
// the import's job folder; that tree is then read back as a tar stream and
// goes through the same unpacker as a rootfs tar, so the same policy holds
// (names and hard links inside the root, device nodes skipped, limits) and
// go-archive writes the final tree, symlinks confined to it.
//
// unsquashfs itself must not write outside its folder: since 4.5.1 it
// refuses names holding "/" or "..", and duplicate names in a directory (a
// symlink, then a directory of the same name to write through it), so older
// versions are refused. Before extracting, its listing is checked against
// Limits, so a squashfs that expands to more than the import may hold is
// refused before it fills the disk.

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/apptainer/sif/v2/pkg/sif"
	"golang.org/x/sys/unix"
)

// FormatSIF: a Singularity / Apptainer image file (Image.Format).
const FormatSIF = "sif"

// sifMagic is at offset 32 of every SIF file, after the launch script line.
var sifMagic = []byte("SIF_MAGIC\x00")

// isSIF reports whether f starts like a SIF file; f's offset is not moved.
func isSIF(f *os.File) bool {
	b := make([]byte, 32+len(sifMagic))
	n, _ := f.ReadAt(b, 0)
	return n == len(b) && bytes.Equal(b[32:], sifMagic)
}

// planSIF finds the SIF's root partition, extracts it into the job folder
// and plans one layer: a tar stream of what was extracted.
func planSIF(ctx context.Context, j *job, path string, f *os.File, limits Limits) (*plan, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("unable to read %s: %w", path, err)
	}
	fimg, err := sif.LoadContainer(f, sif.OptLoadWithCloseOnUnload(false))
	if err != nil {
		return nil, badArchive(path, "not a readable SIF file: %w", err)
	}
	// f is closed by the caller; unloading only drops the parsed header.
	defer func() { _ = fimg.UnloadContainer() }()
	d, err := fimg.GetDescriptor(sif.WithPartitionType(sif.PartPrimSys))
	if err != nil {
		return nil, badArchive(path, "the SIF file has no primary system partition (the root file system): %w", err)
	}
	fsType, _, arch, err := d.PartitionMetadata()
	if err != nil {
		return nil, badArchive(path, "partition %d: %w", d.ID(), err)
	}
	// A root for another CPU would fail only when a task starts; "unknown"
	// (the SIF does not say) is taken as this machine's.
	if arch != runtime.GOARCH && arch != "unknown" {
		return nil, badArchive(path, "the root partition is for %s; this machine is %s", arch, runtime.GOARCH)
	}
	if fsType != sif.FsSquash {
		return nil, badArchive(path, "the root partition (%d) is %s, not squashfs", d.ID(), fsType)
	}
	if d.Offset() < 0 || d.Size() <= 0 || d.Offset()+d.Size() > fi.Size() {
		return nil, badArchive(path, "the root partition (%d) lies at bytes %d..%d, past the end of the %d-byte file (truncated?)",
			d.ID(), d.Offset(), d.Offset()+d.Size(), fi.Size())
	}
	if err := checkSquashfs(path, f, d.Offset(), d.Size()); err != nil {
		return nil, err
	}
	unsquashfs, err := findUnsquashfs(ctx)
	if err != nil {
		return nil, err
	}
	if err := checkSquashfsListing(ctx, unsquashfs, path, d.Offset(), limits); err != nil {
		return nil, err
	}
	tree := filepath.Join(j.dir, "squashfs-root")
	if err := runUnsquashfs(ctx, unsquashfs, path, d.Offset(), "-dest", tree); err != nil {
		return nil, err
	}
	// unsquashfs makes the folder from the squashfs's root inode: a
	// directory, in any squashfs it reads without error.
	if fi, err := os.Lstat(tree); err != nil || !fi.IsDir() {
		return nil, badArchive(path, "the squashfs's root is not a directory")
	}
	return &plan{
		format: FormatSIF,
		layers: []layer{{
			open: func() (io.ReadCloser, int64, error) {
				pr, pw := io.Pipe()
				go func() { pw.CloseWithError(tarTree(tree, pw)) }()
				return pr, -1, nil
			},
			size: -1,
		}},
	}, nil
}

// checkSquashfs reads the squashfs superblock: the magic, and that the
// bytes it says it uses lie within the partition (unsquashfs would
// otherwise read whatever follows it in the SIF file).
func checkSquashfs(path string, f *os.File, off, size int64) error {
	sb := make([]byte, 96)
	if _, err := f.ReadAt(sb, off); err != nil || size < int64(len(sb)) {
		return badArchive(path, "the root partition is too short for a squashfs superblock (truncated?)")
	}
	if string(sb[:4]) != "hsqs" {
		return badArchive(path, "the root partition is not a squashfs (magic %q)", sb[:4])
	}
	if major := binary.LittleEndian.Uint16(sb[28:]); major != 4 {
		return badArchive(path, "the root partition is squashfs version %d; only 4 is supported", major)
	}
	if used := binary.LittleEndian.Uint64(sb[40:]); used > uint64(size) {
		return badArchive(path, "the squashfs says it is %d bytes, but its partition has %d (truncated or corrupt)", used, size)
	}
	return nil
}

// findUnsquashfs finds unsquashfs and refuses versions before 4.5.1, which
// follow names out of their destination folder.
func findUnsquashfs(ctx context.Context) (string, error) {
	p, err := exec.LookPath("unsquashfs")
	if err != nil {
		return "", fmt.Errorf("unable to import a SIF file: unsquashfs is not installed (Debian package squashfs-tools): %w", err)
	}
	out, _ := exec.CommandContext(ctx, p, "-version").Output() // it exits non-zero after printing, in some versions
	first, _, _ := strings.Cut(string(out), "\n")
	var maj, mid, low int
	if _, err := fmt.Sscanf(first, "unsquashfs version %d.%d.%d", &maj, &mid, &low); err != nil {
		if _, err := fmt.Sscanf(first, "unsquashfs version %d.%d", &maj, &mid); err != nil {
			return "", fmt.Errorf("unable to import a SIF file: cannot tell the version of %s from %q", p, first)
		}
	}
	if maj*10000+mid*100+low < 40501 {
		return "", fmt.Errorf("unable to import a SIF file: %s is version %d.%d.%d; 4.5.1 or newer is needed (older ones write outside their folder for hostile images)", p, maj, mid, low)
	}
	return p, nil
}

// checkSquashfsListing lists the squashfs (-lln: one line per entry, the
// size third) and refuses it if extracting would break Limits.
func checkSquashfsListing(ctx context.Context, unsquashfs, path string, off int64, limits Limits) error {
	cmd := exec.CommandContext(ctx, unsquashfs, "-no-progress", "-offset", strconv.FormatInt(off, 10), "-lln", path)
	var stderr bytes.Buffer
	cmd.Stderr = &limitedBuffer{b: &stderr, n: 4096}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("unable to run %s: %w", unsquashfs, err)
	}
	var entries, total int64
	var over error
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() && over == nil {
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 || len(fields[0]) != 10 {
			continue // not an entry (a header line, or the rest of a name with a newline)
		}
		entries++
		if size, err := strconv.ParseInt(fields[2], 10, 64); err == nil && fields[0][0] == '-' {
			total += size
		}
		switch {
		case entries > limits.MaxEntries:
			over = badArchive(path, "the squashfs has more than %d entries (Limits.MaxEntries)", limits.MaxEntries)
		case total > limits.MaxBytes:
			over = badArchive(path, "the squashfs holds more than %d bytes (Limits.MaxBytes)", limits.MaxBytes)
		}
	}
	if over != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return over
	}
	_, _ = io.Copy(io.Discard, stdout)
	if err := cmd.Wait(); err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		return badArchive(path, "the squashfs root partition is unreadable (unsquashfs -lln: %v): %s", err, lastLines(stderr.String()))
	}
	return nil
}

// runUnsquashfs extracts the squashfs at off in path; any error of
// unsquashfs fails the import (-strict-errors), blamed on the image.
func runUnsquashfs(ctx context.Context, unsquashfs, path string, off int64, args ...string) error {
	args = append([]string{"-no-progress", "-quiet", "-no-xattrs", "-strict-errors",
		"-offset", strconv.FormatInt(off, 10)}, args...)
	cmd := exec.CommandContext(ctx, unsquashfs, append(args, path)...)
	var out bytes.Buffer
	cmd.Stdout = &limitedBuffer{b: &out, n: 8192}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Run(); err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			return fmt.Errorf("unable to run %s: %w", unsquashfs, err)
		}
		if strings.Contains(out.String(), "No space left on device") {
			return fmt.Errorf("unable to extract the squashfs of %s: %s", path, lastLines(out.String()))
		}
		return badArchive(path, "unable to extract the squashfs root partition (unsquashfs: %v): %s", err, lastLines(out.String()))
	}
	return nil
}

// lastLines keeps the end of a tool's output for an error message.
func lastLines(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > 4 {
		lines = lines[len(lines)-4:]
	}
	return strings.Join(lines, "; ")
}

// limitedBuffer keeps the first n bytes written and drops the rest.
type limitedBuffer struct {
	b *bytes.Buffer
	n int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.n - l.b.Len(); room > 0 {
		l.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// tarTree writes the tree under root to w as a tar stream, in WalkDir's
// (lexical) order so one tree always gives the same bytes, hence the same
// image ID. Hard links become tar hard links; sockets, which tar cannot
// hold, are left out. Owner names are left empty: the host's user
// database says nothing about the image's.
func tarTree(root string, w io.Writer) error {
	tw := tar.NewWriter(w)
	type inode struct{ dev, ino uint64 }
	seen := map[inode]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if fi.Mode()&fs.ModeSocket != 0 {
			return nil
		}
		link := ""
		if fi.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return fmt.Errorf("unable to archive %s: %w", rel, err)
		}
		hdr.Name = filepath.ToSlash(rel)
		if fi.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uname, hdr.Gname = "", ""
		hdr.AccessTime, hdr.ChangeTime = time.Time{}, time.Time{}
		hdr.Format = tar.FormatPAX
		st, _ := fi.Sys().(*syscall.Stat_t)
		if fi.Mode().IsRegular() && st != nil && st.Nlink > 1 {
			key := inode{uint64(st.Dev), st.Ino}
			if first, ok := seen[key]; ok {
				hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
			} else {
				seen[key] = hdr.Name
			}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("unable to archive %s: %w", rel, err)
		}
		if hdr.Typeflag != tar.TypeReg {
			return nil
		}
		// O_NOFOLLOW: the entry was a regular file when listed, and stays
		// one here or fails.
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("unable to read %s: %w", rel, err)
		}
		file := os.NewFile(uintptr(fd), p)
		defer file.Close()
		if _, err := io.CopyN(tw, file, hdr.Size); err != nil {
			return fmt.Errorf("unable to read %s: %w", rel, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return tw.Close()
}
