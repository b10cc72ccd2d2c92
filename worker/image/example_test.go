package image_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/kolejka-go/kolejka/worker/image"
)

// writeRootfsTar writes a root file system tar with one file, as
// `docker export` or `tar -C rootfs -c .` would.
func writeRootfsTar(path, file, body string) error {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: file, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	if _, err := tw.Write([]byte(body)); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

// Import an image once, then find it by name: what `kolejka-worker image
// import judge:1.0 rootfs.tar` and the runtime do.
func ExampleStore_Import() {
	dir, err := os.MkdirTemp("", "kolejka-image-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	archive := filepath.Join(dir, "rootfs.tar")
	if err := writeRootfsTar(archive, "./etc/motd", "hello from the image\n"); err != nil {
		log.Fatal(err)
	}

	store, err := image.Open(filepath.Join(dir, "images"))
	if err != nil {
		log.Fatal(err)
	}
	// The format is detected from the content: rootfs tar, docker save or OCI.
	if _, err := store.Import(context.Background(), "judge:1.0", archive); err != nil {
		log.Fatal(err)
	}
	img, err := store.Get("judge:1.0") // normalized: docker.io/library/judge:1.0
	if err != nil {
		log.Fatal(err)
	}
	motd, err := os.ReadFile(filepath.Join(img.Rootfs, "etc/motd"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(img.Name)
	fmt.Println(img.Format)
	fmt.Print(string(motd))
	// Output:
	// docker.io/library/judge:1.0
	// rootfs-tar
	// hello from the image
}

// A task holds its image with Acquire; removing the image meanwhile drops
// the name at once and frees the disk space after the task.
func ExampleStore_Acquire() {
	dir, err := os.MkdirTemp("", "kolejka-image-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	archive := filepath.Join(dir, "rootfs.tar")
	if err := writeRootfsTar(archive, "./bin/judge", "#!/bin/sh\n"); err != nil {
		log.Fatal(err)
	}
	store, err := image.Open(filepath.Join(dir, "images"))
	if err != nil {
		log.Fatal(err)
	}
	if _, err := store.Import(context.Background(), "judge", archive); err != nil {
		log.Fatal(err)
	}

	img, release, err := store.Acquire("judge")
	if err != nil {
		log.Fatal(err)
	}
	// ... the runtime mounts img.Rootfs as the lower layer of the task's overlay ...
	err = store.Remove("judge")
	fmt.Println("removed while in use:", errors.Is(err, image.ErrInUse))
	_, err = os.Stat(filepath.Join(img.Rootfs, "bin/judge"))
	fmt.Println("rootfs still there:", err == nil)

	release() // the task ended
	if err := store.GC(); err != nil {
		log.Fatal(err)
	}
	_, err = os.Stat(img.Rootfs)
	fmt.Println("rootfs after GC:", errors.Is(err, os.ErrNotExist))
	// Output:
	// removed while in use: true
	// rootfs still there: true
	// rootfs after GC: true
}
