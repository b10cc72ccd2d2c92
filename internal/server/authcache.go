package server

// This file owns the cache of who a credential is. Every request presents
// a session cookie or a bearer token, and looking it up is a database read
// (a cgo call) on every request; the cache answers repeated ones from
// memory for a few seconds. Logging out and changing a password in this
// process drop entries at once, and in every replica through the relay
// (forgetCredentials, relay.go); a change made by an admin command in
// another process is seen within authCacheTTL, or at once on PostgreSQL
// (the admin command publishes it too). It also owns the record of
// bearer tokens' last use (tokenUses).

import (
	"sync"
	"time"

	"github.com/kolejka-go/kolejka/internal/server/store"
)

const (
	authCacheTTL  = 5 * time.Second
	authCacheSize = 10_000
)

type authEntry struct {
	user    store.User
	expires time.Time
}

type authCache struct {
	mu sync.Mutex
	m  map[string]authEntry // by credential digest ("s:" session, "t:" token)
}

func (c *authCache) get(key string, now time.Time) (store.User, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[key]
	if !ok || !now.Before(e.expires) {
		return store.User{}, false
	}
	return e.user, true
}

// put remembers key's user until expires (at most authCacheTTL from now).
func (c *authCache) put(key string, u store.User, now, expires time.Time) {
	if limit := now.Add(authCacheTTL); expires.IsZero() || expires.After(limit) {
		expires = limit
	}
	u.Password = ""
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= authCacheSize {
		c.m = make(map[string]authEntry)
	}
	c.m[key] = authEntry{user: u, expires: expires}
}

func (c *authCache) drop(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, key)
}

func (c *authCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m = nil
}

// tokenUses remembers when each bearer token (by digest) was last used,
// until the collection pass or shutdown writes them down
// (store.RecordTokenUses): "last used" costs a map write per request and
// one transaction per pass, and serving a request never writes for it.
type tokenUses struct {
	mu sync.Mutex
	m  map[string]time.Time
}

func (t *tokenUses) note(digest string, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = make(map[string]time.Time)
	}
	if prev, ok := t.m[digest]; !ok || now.After(prev) {
		t.m[digest] = now
	}
}

// take returns the uses noted since the last take.
func (t *tokenUses) take() map[string]time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.m
	t.m = nil
	return m
}
