package store

// This file owns images pushed to the server (extension "images"). An
// image's name is global, as a task's "image" is (any task of any user may
// name it), and belongs to the user who first pushed it: only they push it
// again (replacing its manifest) or remove it, with managers. Its blobs'
// references are held in image_files, so a reference an image uses cannot
// be deleted (InUseError) and its blob is never collected.
//
// What a manifest means is package api's: the store keeps it as given,
// with the references it names, each checked to be the pusher's and to
// hold the digest and size the manifest states.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// NewImage is an image to record.
type NewImage struct {
	Owner int64
	// ReadAll: the owner may use any user's references (inspectors,
	// managers), as in a task.
	ReadAll  bool
	Name     string // normalized
	Manifest []byte
	// Blobs are the manifest's blobs: reference → "sha256:<hex>" and size.
	Blobs []ImageBlob
	Now   time.Time
}

// ImageBlob is one blob an image's manifest names.
type ImageBlob struct {
	Ref    string
	Digest string // "sha256:<hex>"
	Size   int64
}

// ImageRow is one image.
type ImageRow struct {
	ID         int64
	Name       string
	Owner      int64
	OwnerName  string
	Manifest   []byte
	Size       int64
	TimeCreate time.Time
}

// ImageOwnedError is a push of an image name another user owns.
type ImageOwnedError struct {
	Name  string
	Owner string
}

func (e *ImageOwnedError) Error() string {
	return fmt.Sprintf("name: the image %q belongs to user %s (the first to push it); choose another name", e.Name, e.Owner)
}

// PutImage records img, replacing the manifest of an image of the same
// name its owner pushed before. A *ImageOwnedError when another user owns
// the name, a FileErrors when a blob's reference is unknown, not the
// pusher's to use or not the blob the manifest states; nothing is recorded
// then.
func (s *Store) PutImage(ctx context.Context, img NewImage) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		var owner int64
		var ownerName string
		err := tx.QueryRowContext(ctx, `SELECT i.user_id, u.name FROM images i JOIN users u ON u.id = i.user_id WHERE i.name = ?`, img.Name).Scan(&owner, &ownerName)
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return fmt.Errorf("unable to read image %s: %w", img.Name, err)
		case owner != img.Owner:
			return &ImageOwnedError{Name: img.Name, Owner: ownerName}
		}
		files := make(map[string]string, len(img.Blobs))
		for i, b := range img.Blobs {
			files[fmt.Sprintf("manifest.blobs[%d]", i)] = b.Ref
		}
		if err := checkRefs(ctx, tx, files, img.Owner, img.ReadAll, nil); err != nil {
			return err
		}
		var errs FileErrors
		var size int64
		for i, b := range img.Blobs {
			var hash string
			var n int64
			err := tx.QueryRowContext(ctx, `SELECT b.hash, b.size FROM refs r JOIN blobs b ON b.hash = r.blob WHERE r.key = ?`, b.Ref).Scan(&hash, &n)
			if err != nil {
				return fmt.Errorf("unable to read reference: %w", err)
			}
			name := fmt.Sprintf("manifest.blobs[%d]", i)
			if "sha256:"+hash != b.Digest {
				errs = append(errs, &FileError{File: name, Ref: b.Ref, Problem: fmt.Sprintf("holds sha256:%s, not the manifest's digest %s", hash, b.Digest)})
			} else if n != b.Size {
				errs = append(errs, &FileError{File: name, Ref: b.Ref, Problem: fmt.Sprintf("holds %d bytes, not the manifest's size %d", n, b.Size)})
			}
			size += n
		}
		if len(errs) > 0 {
			return errs
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM images WHERE name = ?`, img.Name); err != nil {
			return fmt.Errorf("unable to replace image %s: %w", img.Name, err)
		}
		var id int64
		err = tx.QueryRowContext(ctx, `
			INSERT INTO images (user_id, name, manifest, size, time_create) VALUES (?, ?, ?, ?, ?) RETURNING id`,
			img.Owner, img.Name, img.Manifest, size, us(img.Now)).Scan(&id)
		if err != nil {
			return fmt.Errorf("unable to record image %s: %w", img.Name, err)
		}
		for _, b := range img.Blobs {
			if _, err := tx.ExecContext(ctx, `INSERT INTO image_files (image_id, ref) VALUES (?, ?) ON CONFLICT DO NOTHING`, id, b.Ref); err != nil {
				return fmt.Errorf("unable to record image blob: %w", err)
			}
		}
		return nil
	})
}

const imageColumns = `i.id, i.name, i.user_id, u.name, i.manifest, i.size, i.time_create`

func scanImage(row scanner) (ImageRow, error) {
	var r ImageRow
	var tc int64
	if err := row.Scan(&r.ID, &r.Name, &r.Owner, &r.OwnerName, &r.Manifest, &r.Size, &tc); err != nil {
		return ImageRow{}, err
	}
	r.TimeCreate = fromUS(tc)
	return r, nil
}

// Images lists every image by name.
func (s *Store) Images(ctx context.Context) ([]ImageRow, error) {
	return queryRows(ctx, s.r, "list images", func(rows *sql.Rows) (ImageRow, error) { return scanImage(rows) }, `
		SELECT `+imageColumns+` FROM images i JOIN users u ON u.id = i.user_id ORDER BY i.name`)
}

// Image reads the image name; ErrNotFound if there is none.
func (s *Store) Image(ctx context.Context, name string) (ImageRow, error) {
	r, err := scanImage(s.r.QueryRowContext(ctx, `SELECT `+imageColumns+` FROM images i JOIN users u ON u.id = i.user_id WHERE i.name = ?`, name))
	if err != nil {
		return ImageRow{}, rowErr(err, "read image")
	}
	return r, nil
}

// RemoveImage removes the image name and its blobs' links (the references
// stay their owner's); ErrNotFound if there is no such image.
func (s *Store) RemoveImage(ctx context.Context, name string) error {
	n, err := s.writeOne(ctx, "remove image", `DELETE FROM images WHERE name = ?`, name)
	if err == nil && n == 0 {
		return ErrNotFound
	}
	return err
}

// ReferenceOfImage reports whether ref is a blob of some image: nodes
// may read it (any task of any user may name any image).
func (s *Store) ReferenceOfImage(ctx context.Context, ref string) (bool, error) {
	var one int
	err := s.r.QueryRowContext(ctx, `SELECT 1 FROM image_files WHERE ref = ? LIMIT 1`, ref).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("unable to check reference use: %w", err)
	}
	return true, nil
}
