package store

// This file owns users, their roles, login sessions and bearer tokens.
// Secrets (session ids, tokens) are stored as digests made by the caller.

import (
	"context"
	"database/sql"
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
	// Scope, for a user signed in by a scoped token, is all the token may
	// do: "trigger:NAME", fire the user's trigger NAME. "" for any other.
	Scope string
}

// CreateUser adds a user; ErrExists if the name is taken.
func (s *Store) CreateUser(ctx context.Context, name, passwordHash string, roles Role, now time.Time) (User, error) {
	var u User
	err := s.write(ctx, func(tx *sql.Tx) error {
		var id int64
		err := tx.QueryRowContext(ctx, `INSERT INTO users (name, password, roles, time_create) VALUES (?, ?, ?, ?) RETURNING id`,
			name, passwordHash, int(roles), us(now)).Scan(&id)
		if isUnique(err) {
			return fmt.Errorf("unable to add user %q: %w", name, ErrExists)
		}
		if err != nil {
			return fmt.Errorf("unable to add user %q: %w", name, err)
		}
		u = User{ID: id, Name: name, Roles: roles, Password: passwordHash}
		return nil
	})
	return u, err
}

// SetPassword replaces a user's password hash, ends its sessions and
// revokes its bearer tokens: whoever knew the old password may have made
// either. It returns how many sessions and tokens went.
func (s *Store) SetPassword(ctx context.Context, name, passwordHash string) (sessions, tokens int64, err error) {
	err = s.write(ctx, func(tx *sql.Tx) error {
		var id int64
		err := tx.QueryRowContext(ctx, `UPDATE users SET password = ? WHERE name = ? RETURNING id`, passwordHash, name).Scan(&id)
		if err != nil {
			return fmt.Errorf("unable to set password of %q: %w", name, notFound(err))
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM sessions WHERE user_id = ?`, id)
		if err != nil {
			return fmt.Errorf("unable to end sessions of %q: %w", name, err)
		}
		sessions, _ = res.RowsAffected()
		res, err = tx.ExecContext(ctx, `DELETE FROM tokens WHERE user_id = ?`, id)
		if err != nil {
			return fmt.Errorf("unable to revoke tokens of %q: %w", name, err)
		}
		tokens, _ = res.RowsAffected()
		return nil
	})
	return sessions, tokens, err
}

// UserByName finds a user.
func (s *Store) UserByName(ctx context.Context, name string) (User, error) {
	var u User
	var roles int
	err := s.r.QueryRowContext(ctx, `SELECT id, name, roles, password FROM users WHERE name = ?`, name).
		Scan(&u.ID, &u.Name, &roles, &u.Password)
	if err != nil {
		return User{}, fmt.Errorf("unable to find user %q: %w", name, notFound(err))
	}
	u.Roles = Role(roles)
	return u, nil
}

// CreateSession records a login session (by the digest of its id).
func (s *Store) CreateSession(ctx context.Context, digest string, userID int64, now, expire time.Time) error {
	_, err := s.writeOne(ctx, "create session", `INSERT INTO sessions (hash, user_id, time_create, time_expire) VALUES (?, ?, ?, ?)`,
		digest, userID, us(now), us(expire))
	return err
}

// SessionUser returns the user of a live session and when it expires.
func (s *Store) SessionUser(ctx context.Context, digest string, now time.Time) (User, time.Time, error) {
	var u User
	var roles int
	var expire int64
	err := s.r.QueryRowContext(ctx, `
		SELECT u.id, u.name, u.roles, s.time_expire FROM sessions s JOIN users u ON u.id = s.user_id
		WHERE s.hash = ? AND s.time_expire > ?`, digest, us(now)).Scan(&u.ID, &u.Name, &roles, &expire)
	if err != nil {
		return User{}, time.Time{}, rowErr(err, "read session")
	}
	u.Roles = Role(roles)
	return u, fromUS(expire), nil
}

// DeleteSession ends a session; an unknown one is not an error.
func (s *Store) DeleteSession(ctx context.Context, digest string) error {
	_, err := s.writeOne(ctx, "end session", `DELETE FROM sessions WHERE hash = ?`, digest)
	return err
}

// DeleteExpiredSessions removes sessions past their expiry.
func (s *Store) DeleteExpiredSessions(ctx context.Context, now time.Time) (int64, error) {
	return s.writeOne(ctx, "remove expired sessions", `DELETE FROM sessions WHERE time_expire <= ?`, us(now))
}

// Token is one bearer token as the admin commands show it (never the
// token itself: only its digest is stored).
type Token struct {
	ID         string // the start of the digest: what revoke takes
	Prefix     string // the start of the token ("kt_1a2b3c4d"); "" for tokens older than the column
	User       string
	TimeCreate time.Time
	TimeExpire time.Time // zero: never (tokens made before expiry existed)
	TimeUsed   time.Time // zero: no use recorded (see RecordTokenUses)
	Scope      string    // "" or "trigger:NAME" (User.Scope)
}

// TokenIDLength is how many hex digits of its digest name a token.
const TokenIDLength = 12

// CreateToken records a bearer token (by its digest) for the user name,
// valid until expire. ErrNotFound if there is no such user; ErrExists if
// another token has the same id (the first TokenIDLength digits of the
// digest: the caller makes a new token).
func (s *Store) CreateToken(ctx context.Context, name, digest, prefix, scope string, now, expire time.Time) (Token, error) {
	t := Token{ID: digest[:TokenIDLength], Prefix: prefix, User: name, TimeCreate: now.UTC(), TimeExpire: expire.UTC(), Scope: scope}
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `
			INSERT INTO tokens (hash, user_id, time_create, id, prefix, time_expire, scope)
			SELECT ?, id, ?, ?, ?, ?, ? FROM users WHERE name = ?`,
			digest, us(now), t.ID, prefix, us(expire), scope, name)
		// A digest already stored clashes on tokens_id too (the id is its
		// start), which SQLite checks before the table's primary key: any
		// clash is a UNIQUE one (TestTokenClash).
		if isUnique(err) {
			return fmt.Errorf("unable to create token for %q: %w", name, ErrExists)
		}
		if err != nil {
			return fmt.Errorf("unable to create token for %q: %w", name, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("unable to create token for %q: %w", name, ErrNotFound)
		}
		return nil
	})
	return t, err
}

// TokenUser returns the user of a bearer token and the token's row:
// ErrNotFound for an unknown (or revoked) token, ErrExpired for one past
// its expiry.
func (s *Store) TokenUser(ctx context.Context, digest string, now time.Time) (User, Token, error) {
	var u User
	var t Token
	var roles int
	var tc int64
	var expire, used sql.NullInt64
	var id sql.NullString
	err := s.r.QueryRowContext(ctx, `
		SELECT u.id, u.name, u.roles, t.id, t.prefix, t.time_create, t.time_expire, t.time_used, t.scope
		FROM tokens t JOIN users u ON u.id = t.user_id WHERE t.hash = ?`, digest).
		Scan(&u.ID, &u.Name, &roles, &id, &t.Prefix, &tc, &expire, &used, &t.Scope)
	if err != nil {
		return User{}, Token{}, rowErr(err, "read token")
	}
	u.Roles, u.Scope = Role(roles), t.Scope
	t.ID, t.User, t.TimeCreate, t.TimeExpire, t.TimeUsed = id.String, u.Name, fromUS(tc), fromNullUS(expire), fromNullUS(used)
	if expire.Valid && expire.Int64 <= us(now) {
		return User{}, t, ErrExpired
	}
	return u, t, nil
}

// RecordTokenUses stores when each token (by digest) was last used, where
// that is later than what is stored. The server keeps uses in memory and
// calls this from its collection pass and at shutdown, so that serving a
// request never writes for it (a refused request changes nothing).
func (s *Store) RecordTokenUses(ctx context.Context, uses map[string]time.Time) error {
	if len(uses) == 0 {
		return nil
	}
	return s.write(ctx, func(tx *sql.Tx) error {
		for digest, at := range uses {
			if _, err := tx.ExecContext(ctx, `UPDATE tokens SET time_used = ? WHERE hash = ? AND (time_used IS NULL OR time_used < ?)`,
				us(at), digest, us(at)); err != nil {
				return fmt.Errorf("unable to record token use: %w", err)
			}
		}
		return nil
	})
}

// Tokens lists the bearer tokens of user name, oldest first; ErrNotFound
// if there is no such user.
func (s *Store) Tokens(ctx context.Context, name string) ([]Token, error) {
	var uid int64
	if err := s.r.QueryRowContext(ctx, `SELECT id FROM users WHERE name = ?`, name).Scan(&uid); err != nil {
		return nil, fmt.Errorf("unable to list tokens of %q: %w", name, notFound(err))
	}
	return queryRows(ctx, s.r, fmt.Sprintf("list tokens of %q", name), func(rows *sql.Rows) (Token, error) {
		t := Token{User: name}
		var id sql.NullString
		var tc int64
		var expire, used sql.NullInt64
		if err := rows.Scan(&id, &t.Prefix, &tc, &expire, &used, &t.Scope); err != nil {
			return Token{}, err
		}
		t.ID, t.TimeCreate, t.TimeExpire, t.TimeUsed = id.String, fromUS(tc), fromNullUS(expire), fromNullUS(used)
		return t, nil
	}, `SELECT id, prefix, time_create, time_expire, time_used, scope FROM tokens WHERE user_id = ? ORDER BY time_create, id`, uid)
}

// RevokeTokens deletes the tokens of user name with the given ids, or all
// of them when ids is empty, and returns how many went. An id that is not
// one of the user's tokens is an ErrNotFound naming it, and then nothing
// is revoked.
func (s *Store) RevokeTokens(ctx context.Context, name string, ids []string) (int64, error) {
	var n int64
	err := s.write(ctx, func(tx *sql.Tx) error {
		n = 0
		var uid int64
		if err := tx.QueryRowContext(ctx, `SELECT id FROM users WHERE name = ?`, name).Scan(&uid); err != nil {
			return fmt.Errorf("unable to revoke tokens of %q: %w", name, notFound(err))
		}
		if len(ids) == 0 {
			res, err := tx.ExecContext(ctx, `DELETE FROM tokens WHERE user_id = ?`, uid)
			if err != nil {
				return fmt.Errorf("unable to revoke tokens of %q: %w", name, err)
			}
			n, _ = res.RowsAffected()
			return nil
		}
		for _, id := range ids {
			res, err := tx.ExecContext(ctx, `DELETE FROM tokens WHERE user_id = ? AND id = ?`, uid, id)
			if err != nil {
				return fmt.Errorf("unable to revoke token %s of %q: %w", id, name, err)
			}
			k, _ := res.RowsAffected()
			if k == 0 {
				return fmt.Errorf("unable to revoke token %s: %q has no token with that id: %w", id, name, ErrNotFound)
			}
			n += k
		}
		return nil
	})
	return n, err
}

// DeleteExpiredTokens removes tokens past their expiry.
func (s *Store) DeleteExpiredTokens(ctx context.Context, now time.Time) (int64, error) {
	return s.writeOne(ctx, "remove expired tokens", `DELETE FROM tokens WHERE time_expire <= ?`, us(now))
}
