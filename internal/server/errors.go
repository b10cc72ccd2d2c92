package server

import (
	"errors"

	"github.com/kolejka-go/kolejka/internal/server/store"
)

// Sentinel errors of the server's Go API. Store errors pass through
// wrapped, so errors.Is(err, ErrNotFound) works on both.
var (
	// ErrConfig is an invalid configuration.
	ErrConfig = errors.New("bad configuration")
	// ErrLocked is a data folder another server is using.
	ErrLocked = errors.New("data folder in use by another server")
	// ErrClosed is a server after Shutdown or Close.
	ErrClosed = errors.New("server closed")
	// ErrNotFound is an unknown user, task or object.
	ErrNotFound = store.ErrNotFound
	// ErrExists is a user name already taken.
	ErrExists = store.ErrExists
	// ErrInvalid is a bad argument of an admin call (user name, password).
	ErrInvalid = errors.New("invalid argument")
)
