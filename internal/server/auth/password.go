// Package auth holds the server's credentials arithmetic: password hashes
// (argon2id), random keys for sessions, tokens and references, and the
// Django-compatible CSRF checks Kolejka's Python client is written against.
// It keeps no state: storing what it makes is the caller's job.
package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"

	"golang.org/x/crypto/argon2"
)

// ErrBadHash is a stored password hash this package cannot read.
var ErrBadHash = errors.New("unreadable password hash")

// Argon2id parameters: OWASP's recommended minimum (19 MiB, 2 passes, one
// lane). A login costs ~20–40 ms of one core and 19 MiB for that time, slow
// enough to make guessing expensive and cheap enough for Kolejka's client,
// which signs in once per process (the Python foreman once per task).
const (
	argonTime    = 2
	argonMemory  = 19 * 1024 // KiB
	argonThreads = 1
	argonKeyLen  = 32
	saltLen      = 16
)

// HashPassword returns the PHC string of password:
// $argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>, base64 without padding.
func HashPassword(password string) (string, error) {
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("unable to make salt: %w", err)
	}
	key := argon2.IDKey([]byte(password), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, argonMemory, argonTime, argonThreads, b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// CheckPassword reports whether password matches the PHC string encoded,
// in time independent of where they differ.
func CheckPassword(encoded, password string) (bool, error) {
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false, ErrBadHash
	}
	var version int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return false, ErrBadHash
	}
	var m, t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil || m == 0 || t == 0 || p == 0 {
		return false, ErrBadHash
	}
	b64 := base64.RawStdEncoding
	salt, err := b64.DecodeString(parts[4])
	if err != nil {
		return false, ErrBadHash
	}
	want, err := b64.DecodeString(parts[5])
	if err != nil || len(want) == 0 {
		return false, ErrBadHash
	}
	got := argon2.IDKey([]byte(password), salt, t, m, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// dummyHash is checked against when a login names an unknown user, so that
// the answer takes as long as for a known one. Made on first use.
var dummyHash = sync.OnceValue(func() string {
	h, err := HashPassword("kolejka: no such user")
	if err != nil {
		panic(err)
	}
	return h
})

// WasteTime does the work of one password check, for unknown users.
func WasteTime(password string) { _, _ = CheckPassword(dummyHash(), password) }

// RandomKey returns n random bytes as lower-case hex (2n characters):
// 16 bytes give Kolejka's uuid4().hex-sized task and reference keys.
func RandomKey(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		// crypto/rand never fails on Linux ≥ 3.17; if it does, nothing
		// random can be made and going on would hand out guessable keys.
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	return hex.EncodeToString(b)
}

// NewToken returns a bearer token: "kt_" and 32 random bytes in hex.
func NewToken() string { return "kt_" + RandomKey(32) }

// Digest is what the database keeps of a secret (session id, token): its
// SHA-256 in hex. A stolen database copy gives no usable session.
func Digest(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}
