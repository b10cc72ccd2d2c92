package server

// This file owns the Go admin API the kolejka-server commands use (adduser,
// passwd, token, lstask, rmtask, unassign). It works on a Server from Open
// or OpenAdmin; from OpenAdmin next to a running server, a change that
// server should react to at once (a task returned to the queue) is seen by
// its waiting nodes at their next dequeue.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/kolejka-go/kolejka/internal/server/auth"
	"github.com/kolejka-go/kolejka/internal/server/store"
	"github.com/kolejka-go/kolejka/internal/trigger"
)

// Role is a set of Kolejka's groups; combine with |.
type Role = store.Role

// Kolejka's groups.
const (
	Clients    = store.RoleClient    // submit tasks, upload blobs
	Processors = store.RoleProcessor // nodes: dequeue, post results
	Inspectors = store.RoleInspector // read everything
	Managers   = store.RoleManager   // read and delete everything
)

// TaskFilter selects tasks for ListTasks (nil fields do not filter):
// Assigned "has an assignee" (resolved tasks keep theirs), Resolved "has
// had a result accepted".
type TaskFilter = store.TaskFilter

// TaskInfo is one task of ListTasks.
type TaskInfo = store.Task

// validName is Django's user name rule: 1–150 of letters, digits and @.+-_.
func validName(name string) error {
	if name == "" || len(name) > 150 {
		return fmt.Errorf("%w: user name must have 1 to 150 characters", ErrInvalid)
	}
	for _, r := range name {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '@' || r == '.' || r == '+' || r == '-' || r == '_') {
			return fmt.Errorf("%w: user name %q: only letters, digits and @.+-_ allowed", ErrInvalid, name)
		}
	}
	return nil
}

// AddUser creates a user with a password and roles.
func (s *Server) AddUser(ctx context.Context, name, password string, roles Role) error {
	if err := validName(name); err != nil {
		return fmt.Errorf("unable to add user: %w", err)
	}
	if password == "" {
		return fmt.Errorf("unable to add user %q: %w: empty password", name, ErrInvalid)
	}
	h, err := auth.HashPassword(password)
	if err != nil {
		return fmt.Errorf("unable to add user %q: %w", name, err)
	}
	_, err = s.db.CreateUser(ctx, name, h, roles, s.now())
	return err
}

// SetPassword changes a user's password, ends the user's sessions and
// revokes the user's bearer tokens (whoever knew the old password may
// have made either), and returns how many of each went. A server in
// another process stops accepting them within authCacheTTL.
func (s *Server) SetPassword(ctx context.Context, name, password string) (sessions, tokens int64, err error) {
	if password == "" {
		return 0, 0, fmt.Errorf("unable to set password of %q: %w: empty password", name, ErrInvalid)
	}
	h, err := auth.HashPassword(password)
	if err != nil {
		return 0, 0, fmt.Errorf("unable to set password of %q: %w", name, err)
	}
	sessions, tokens, err = s.db.SetPassword(ctx, name, h)
	if err != nil {
		return 0, 0, err
	}
	s.forgetCredentials("") // the user's sessions and tokens ended
	return sessions, tokens, nil
}

// Token is one bearer token as ListTokens shows it.
type Token = store.Token

// NewToken creates a bearer token for the user, valid for the configured
// TokenAge, and returns it; only its digest is stored, so it cannot be
// shown again.
func (s *Server) NewToken(ctx context.Context, name string) (string, error) {
	token, _, err := s.NewTokenFor(ctx, name, 0)
	return token, err
}

// NewTokenFor is NewToken valid for age (≤ 0: the configured TokenAge),
// also returning the token's row as ListTokens shows it.
func (s *Server) NewTokenFor(ctx context.Context, name string, age time.Duration) (string, Token, error) {
	return s.NewScopedToken(ctx, name, "", age)
}

// NewScopedToken is NewTokenFor for a token that may only fire the user's
// trigger named trigger ("": a token that may do all the user may). The
// trigger need not exist yet: the token fires whatever the user puts
// under that name.
func (s *Server) NewScopedToken(ctx context.Context, name, triggerName string, age time.Duration) (string, Token, error) {
	scope := ""
	if triggerName != "" {
		if err := trigger.CheckName(triggerName); err != nil {
			return "", Token{}, fmt.Errorf("%w: trigger: %w", ErrInvalid, err)
		}
		scope = "trigger:" + triggerName
	}
	if age <= 0 {
		age = s.cfg.TokenAge
	}
	now := s.now()
	var err error
	for range 3 {
		token := auth.NewToken()
		// The prefix shown is "kt_" and 8 hex digits of the secret's 64:
		// enough for its holder to recognise it, 224 bits left unknown.
		var row Token
		row, err = s.db.CreateToken(ctx, name, auth.Digest(token), token[:3+8], scope, now, now.Add(age))
		if errors.Is(err, store.ErrExists) {
			continue // two digests share their first 48 bits: draw again
		}
		if err != nil {
			return "", Token{}, err
		}
		return token, row, nil
	}
	return "", Token{}, err
}

// ListTokens lists the user's bearer tokens, oldest first.
func (s *Server) ListTokens(ctx context.Context, name string) ([]Token, error) {
	return s.db.Tokens(ctx, name)
}

// RevokeTokens deletes the user's tokens named by id (as ListTokens shows
// it, or the token itself), or all of them when none is named, and returns
// how many went. An id that is not the user's changes nothing and is an
// ErrNotFound error naming it. A server in another process stops
// accepting them within authCacheTTL; this one at once.
func (s *Server) RevokeTokens(ctx context.Context, name string, ids ...string) (int64, error) {
	for i, id := range ids {
		if strings.HasPrefix(id, "kt_") && len(id) > 3+8 {
			ids[i] = auth.Digest(id)[:store.TokenIDLength]
		}
	}
	n, err := s.db.RevokeTokens(ctx, name, ids)
	if err != nil {
		return 0, err
	}
	s.forgetCredentials("")
	return n, nil
}

// ListTasks lists tasks in submission order.
func (s *Server) ListTasks(ctx context.Context, f TaskFilter) ([]TaskInfo, error) {
	return s.db.ListTasks(ctx, f)
}

// RemoveTasks deletes the tasks named (with their results) and returns how
// many existed.
func (s *Server) RemoveTasks(ctx context.Context, keys ...string) (int, error) {
	n := 0
	for _, k := range keys {
		err := s.db.DeleteTask(ctx, k)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return n, err
		}
		n++
		s.signalResult(k)
	}
	return n, nil
}

// Unassign returns to the queue the unresolved tasks assigned longer than
// age ago, whatever their lease says, and returns their keys.
func (s *Server) Unassign(ctx context.Context, age time.Duration) ([]string, error) {
	now := s.now()
	keys, err := s.db.Unassign(ctx, now.Add(-age), now)
	if err != nil {
		return nil, err
	}
	if len(keys) > 0 {
		s.signalQueue()
	}
	return keys, nil
}
