package server

// This file owns the Go admin API the kolejka-server commands use (adduser,
// passwd, token, lstask, rmtask, unassign). It works on a Server from Open
// or OpenAdmin; from OpenAdmin next to a running server, a change that
// server should react to at once (a task returned to the queue) is seen by
// its waiting nodes at their next dequeue.

import (
	"context"
	"fmt"
	"time"

	"github.com/kolejka-go/kolejka/server/auth"
	"github.com/kolejka-go/kolejka/server/store"
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

// SetPassword changes a user's password and ends the user's sessions.
func (s *Server) SetPassword(ctx context.Context, name, password string) error {
	if password == "" {
		return fmt.Errorf("unable to set password of %q: %w: empty password", name, ErrInvalid)
	}
	h, err := auth.HashPassword(password)
	if err != nil {
		return fmt.Errorf("unable to set password of %q: %w", name, err)
	}
	if err := s.db.SetPassword(ctx, name, h); err != nil {
		return err
	}
	s.auth.clear() // the user's sessions ended
	return nil
}

// NewToken creates a bearer token for the user and returns it; only its
// digest is stored, so it cannot be shown again.
func (s *Server) NewToken(ctx context.Context, name string) (string, error) {
	token := auth.NewToken()
	if err := s.db.CreateToken(ctx, name, auth.Digest(token), s.now()); err != nil {
		return "", err
	}
	return token, nil
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
		if err == store.ErrNotFound {
			continue
		}
		if err != nil {
			return n, err
		}
		n++
		s.results.Signal(k)
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
		s.queue.Signal()
	}
	return keys, nil
}
