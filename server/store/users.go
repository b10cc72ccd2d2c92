package store

// This file owns users, their roles, login sessions and bearer tokens.
// Secrets (session ids, tokens) are stored as digests made by the caller.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Role is a set of Kolejka's groups.
type Role int

// Kolejka's groups: clients submit tasks and upload blobs, processors
// (nodes) dequeue and post results, inspectors read everything, managers
// read and delete everything.
const (
	RoleClient Role = 1 << iota
	RoleProcessor
	RoleInspector
	RoleManager
)

// Has reports whether r includes every role of want.
func (r Role) Has(want Role) bool { return r&want == want }

// Any reports whether r includes one of the roles of want.
func (r Role) Any(want Role) bool { return r&want != 0 }

// String lists the roles, e.g. "clients,processors".
func (r Role) String() string {
	var names []string
	for _, x := range []struct {
		r    Role
		name string
	}{{RoleClient, "clients"}, {RoleProcessor, "processors"}, {RoleInspector, "inspectors"}, {RoleManager, "managers"}} {
		if r.Has(x.r) {
			names = append(names, x.name)
		}
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ",")
}

// User is an account.
type User struct {
	ID       int64
	Name     string
	Roles    Role
	Password string // PHC hash
}

// CreateUser adds a user; ErrExists if the name is taken.
func (s *Store) CreateUser(ctx context.Context, name, passwordHash string, roles Role, now time.Time) (User, error) {
	var u User
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO users (name, password, roles, time_create) VALUES (?, ?, ?, ?)`,
			name, passwordHash, int(roles), us(now))
		if isUnique(err) {
			return fmt.Errorf("unable to add user %q: %w", name, ErrExists)
		}
		if err != nil {
			return fmt.Errorf("unable to add user %q: %w", name, err)
		}
		id, _ := res.LastInsertId()
		u = User{ID: id, Name: name, Roles: roles, Password: passwordHash}
		return nil
	})
	return u, err
}

// SetPassword replaces a user's password hash and ends its sessions.
func (s *Store) SetPassword(ctx context.Context, name, passwordHash string) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		var id int64
		err := tx.QueryRowContext(ctx, `UPDATE users SET password = ? WHERE name = ? RETURNING id`, passwordHash, name).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("unable to set password of %q: %w", name, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("unable to set password of %q: %w", name, err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM sessions WHERE user_id = ?`, id); err != nil {
			return fmt.Errorf("unable to end sessions of %q: %w", name, err)
		}
		return nil
	})
}

// UserByName finds a user.
func (s *Store) UserByName(ctx context.Context, name string) (User, error) {
	var u User
	var roles int
	err := s.r.QueryRowContext(ctx, `SELECT id, name, roles, password FROM users WHERE name = ?`, name).
		Scan(&u.ID, &u.Name, &roles, &u.Password)
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, fmt.Errorf("unable to find user %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return User{}, fmt.Errorf("unable to find user %q: %w", name, err)
	}
	u.Roles = Role(roles)
	return u, nil
}

// CreateSession records a login session (by the digest of its id).
func (s *Store) CreateSession(ctx context.Context, digest string, userID int64, now, expire time.Time) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO sessions (hash, user_id, time_create, time_expire) VALUES (?, ?, ?, ?)`,
			digest, userID, us(now), us(expire))
		if err != nil {
			return fmt.Errorf("unable to create session: %w", err)
		}
		return nil
	})
}

// SessionUser returns the user of a live session and when it expires.
func (s *Store) SessionUser(ctx context.Context, digest string, now time.Time) (User, time.Time, error) {
	var u User
	var roles int
	var expire int64
	err := s.r.QueryRowContext(ctx, `
		SELECT u.id, u.name, u.roles, s.time_expire FROM sessions s JOIN users u ON u.id = s.user_id
		WHERE s.hash = ? AND s.time_expire > ?`, digest, us(now)).Scan(&u.ID, &u.Name, &roles, &expire)
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, time.Time{}, ErrNotFound
	}
	if err != nil {
		return User{}, time.Time{}, fmt.Errorf("unable to read session: %w", err)
	}
	u.Roles = Role(roles)
	return u, fromUS(expire), nil
}

// DeleteSession ends a session; an unknown one is not an error.
func (s *Store) DeleteSession(ctx context.Context, digest string) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM sessions WHERE hash = ?`, digest); err != nil {
			return fmt.Errorf("unable to end session: %w", err)
		}
		return nil
	})
}

// DeleteExpiredSessions removes sessions past their expiry.
func (s *Store) DeleteExpiredSessions(ctx context.Context, now time.Time) (int64, error) {
	var n int64
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM sessions WHERE time_expire <= ?`, us(now))
		if err != nil {
			return fmt.Errorf("unable to remove expired sessions: %w", err)
		}
		n, _ = res.RowsAffected()
		return nil
	})
	return n, err
}

// CreateToken records a bearer token (by its digest) for the user name.
func (s *Store) CreateToken(ctx context.Context, name, digest string, now time.Time) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO tokens (hash, user_id, time_create) SELECT ?, id, ? FROM users WHERE name = ?`,
			digest, us(now), name)
		if err != nil {
			return fmt.Errorf("unable to create token for %q: %w", name, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("unable to create token for %q: %w", name, ErrNotFound)
		}
		return nil
	})
}

// TokenUser returns the user of a bearer token.
func (s *Store) TokenUser(ctx context.Context, digest string) (User, error) {
	var u User
	var roles int
	err := s.r.QueryRowContext(ctx, `
		SELECT u.id, u.name, u.roles FROM tokens t JOIN users u ON u.id = t.user_id WHERE t.hash = ?`, digest).
		Scan(&u.ID, &u.Name, &roles)
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, ErrNotFound
	}
	if err != nil {
		return User{}, fmt.Errorf("unable to read token: %w", err)
	}
	u.Roles = Role(roles)
	return u, nil
}
