package server

// This file owns routing and what runs around every handler: who the
// caller is (session cookie or bearer token), the CSRF check, the access
// log, the request metrics and panic recovery.
//
// Routes (under the prefix; every path ends with "/"):
//
//	/                          index
//	/login/  /logout/          session
//	/settings/                 server settings and extensions
//	/blob/reference/[<ref>/]   upload; read, query, delete a reference
//	/blob/blob/<sha256>/       dedup (new reference); read, query, delete a blob
//	/task/task/[<key>/]        submit; read, delete a task
//	/task/task/<key>/cancel/   cancel a task (extension)
//	/task/task/<key>/clone/    submit a task again (extension)
//	/task/list/                a user's tasks, newest first (extension)
//	/task/result/[<key>/]      post; read (?wait=N), delete a result
//	/queue/dequeue/            take tasks (body "wait": N to long-poll)
//	/queue/heartbeat/          extend leases (extension)
//	/queue/release/            hand tasks back (extension)
//	/queue/stats/              counts
//	/image/[<name>/]           images: list, push; read, remove (extension "images")
//	/type/[<name>/]            task types: list, put; read, remove (extension "types")
//	/type/<name>/task/         submit a task made from a type (extension "types")
//	/workflow/[<key>/]         workflow runs: list, put; read (extension "workflows")
//	/workflow/<key>/cancel/    cancel a run and its tasks (extension "workflows")
//	/workflow/<key>/retry/     run again what failed, was cancelled or skipped (extension "workflows")
//	/node/[<name>/]            nodes: list; read (extension "nodes")
//	/node/<name>/drain/        hand a node no new task (extension "nodes")
//	/node/<name>/undrain/      hand it tasks again (extension "nodes")
//	/ui/…                      the web UI (package ui; its forms send the CSRF token as a field)
//	/metrics                   Prometheus
//
// Checks happen in Kolejka's order: CSRF (Django's middleware, before any
// view), then sign-in, then the object's existence (404), then the
// caller's right to it (403), then the method (405).

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"github.com/kolejka-go/kolejka/internal/server/auth"
	"github.com/kolejka-go/kolejka/internal/server/store"
)

type ctxKey struct{}

// caller is who made a request.
type caller struct {
	user     *store.User // nil: anonymous
	token    bool        // authenticated by a bearer token (no CSRF)
	badToken bool        // an Authorization header that names no user
	expired  time.Time   // with badToken: the token expired then
}

func callerOf(r *http.Request) caller {
	c, _ := r.Context().Value(ctxKey{}).(caller)
	return c
}

// route is one entry of the table.
type route struct {
	name    string // metric label and log field, e.g. "/task/task/<key>/"
	pattern string // ServeMux pattern below the prefix
	handler http.HandlerFunc
	public  bool // no sign-in, no CSRF (index, metrics)
	form    bool // the CSRF token may come as a form field (the web UI's forms)
}

func (s *Server) routes() http.Handler {
	p := s.cfg.Prefix
	table := []route{
		{name: "/", pattern: "{$}", handler: s.handleIndex, public: true},
		{name: "/login/", pattern: "login/{$}", handler: s.handleLogin},
		{name: "/logout/", pattern: "logout/{$}", handler: s.handleLogout},
		{name: "/settings/", pattern: "settings/{$}", handler: s.handleSettings},
		{name: "/blob/reference/", pattern: "blob/reference/{$}", handler: s.handleReferenceNew},
		{name: "/blob/reference/<ref>/", pattern: "blob/reference/{ref}/{$}", handler: s.handleReference},
		{name: "/blob/blob/<hash>/", pattern: "blob/blob/{hash}/{$}", handler: s.handleBlob},
		{name: "/task/task/", pattern: "task/task/{$}", handler: s.handleTaskNew},
		{name: "/task/task/<key>/", pattern: "task/task/{key}/{$}", handler: s.handleTask},
		{name: "/task/task/<key>/cancel/", pattern: "task/task/{key}/cancel/{$}", handler: s.handleTaskCancel},
		{name: "/task/task/<key>/clone/", pattern: "task/task/{key}/clone/{$}", handler: s.handleTaskClone},
		{name: "/task/list/", pattern: "task/list/{$}", handler: s.handleTaskList},
		{name: "/task/result/", pattern: "task/result/{$}", handler: s.handleResultNew},
		{name: "/task/result/<key>/", pattern: "task/result/{key}/{$}", handler: s.handleResult},
		{name: "/queue/dequeue/", pattern: "queue/dequeue/{$}", handler: s.handleDequeue},
		{name: "/queue/heartbeat/", pattern: "queue/heartbeat/{$}", handler: s.handleHeartbeat},
		{name: "/queue/release/", pattern: "queue/release/{$}", handler: s.handleRelease},
		{name: "/queue/stats/", pattern: "queue/stats/{$}", handler: s.handleStats},
		{name: "/image/", pattern: "image/{$}", handler: s.handleImages},
		{name: "/image/<name>/", pattern: "image/{name}/{$}", handler: s.handleImage},
		{name: "/type/", pattern: "type/{$}", handler: s.handleTypes},
		{name: "/type/<name>/", pattern: "type/{name}/{$}", handler: s.handleType},
		{name: "/type/<name>/task/", pattern: "type/{name}/task/{$}", handler: s.handleTypeTask},
		{name: "/workflow/", pattern: "workflow/{$}", handler: s.handleWorkflows},
		{name: "/workflow/<key>/", pattern: "workflow/{key}/{$}", handler: s.handleWorkflow},
		{name: "/workflow/<key>/cancel/", pattern: "workflow/{key}/cancel/{$}", handler: s.handleWorkflowCancel},
		{name: "/workflow/<key>/retry/", pattern: "workflow/{key}/retry/{$}", handler: s.handleWorkflowRetry},
		{name: "/schedule/", pattern: "schedule/{$}", handler: s.handleSchedules},
		{name: "/schedule/<name>/", pattern: "schedule/{name}/{$}", handler: s.handleSchedule},
		{name: "/schedule/<name>/pause/", pattern: "schedule/{name}/pause/{$}", handler: s.handleSchedulePause},
		{name: "/schedule/<name>/resume/", pattern: "schedule/{name}/resume/{$}", handler: s.handleScheduleResume},
		{name: "/trigger/", pattern: "trigger/{$}", handler: s.handleTriggerList},
		{name: "/trigger/<name>/", pattern: "trigger/{name}/{$}", handler: s.handleTrigger},
		{name: "/trigger/<name>/pause/", pattern: "trigger/{name}/pause/{$}", handler: s.handleTriggerPause},
		{name: "/trigger/<name>/resume/", pattern: "trigger/{name}/resume/{$}", handler: s.handleTriggerResume},
		{name: "/node/", pattern: "node/{$}", handler: s.handleNodes},
		{name: "/node/<name>/", pattern: "node/{name}/{$}", handler: s.handleNode},
		{name: "/node/<name>/drain/", pattern: "node/{name}/drain/{$}", handler: s.handleNodeDrain},
		{name: "/node/<name>/undrain/", pattern: "node/{name}/undrain/{$}", handler: s.handleNodeUndrain},
		{name: "/ui/", pattern: "ui/", handler: s.ui.ServeHTTP, form: true},
		{name: "/metrics", pattern: "metrics", handler: s.metrics.handler().ServeHTTP, public: true},
		{name: "other", pattern: "", handler: func(w http.ResponseWriter, _ *http.Request) { notFound(w) }, public: true},
	}
	mux := http.NewServeMux()
	for _, rt := range table {
		mux.Handle(p+rt.pattern, s.wrap(rt))
	}
	return mux
}

// statusWriter records what a handler answered.
type statusWriter struct {
	http.ResponseWriter
	code  int
	bytes int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (s *Server) wrap(rt route) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		start := time.Now()
		w := &statusWriter{ResponseWriter: rw}
		var c caller
		defer func() {
			if p := recover(); p != nil {
				// Passed on as is: net/http keeps quiet for ErrAbortHandler itself.
				if p == http.ErrAbortHandler { //nolint:errorlint // a recovered value, not a returned error
					panic(p)
				}
				s.log.Error("handler panic", "route", rt.name, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
				if w.code == 0 {
					plain(w, http.StatusInternalServerError, "internal server error")
				}
			}
			code := w.code
			if code == 0 {
				code = http.StatusOK
			}
			d := time.Since(start)
			s.metrics.requests.WithLabelValues(rt.name, fmt.Sprint(code)).Inc()
			s.metrics.latency.WithLabelValues(rt.name).Observe(d.Seconds())
			user := ""
			if c.user != nil {
				user = c.user.Name
			}
			level := slog.LevelInfo
			if code >= 500 {
				level = slog.LevelError
			}
			s.log.LogAttrs(r.Context(), level, "request",
				slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.String("route", rt.name),
				slog.Int("status", code), slog.Int64("bytes", w.bytes), slog.Duration("duration", d),
				slog.String("user", user), slog.String("remote", r.RemoteAddr))
		}()
		if !rt.public {
			var err error
			c, err = s.authenticate(r)
			if err != nil {
				s.internal(w, r, err)
				return
			}
			if c.badToken {
				if !c.expired.IsZero() {
					forbidden(w, "expired bearer token (it expired "+c.expired.Format(time.RFC3339)+"; `kolejka-server token NAME` makes a new one)")
				} else {
					forbidden(w, "invalid bearer token")
				}
				return
			}
			if c.user != nil && c.user.Scope != "" && !scopeAllows(c.user.Scope, rt.name, r) {
				// A webhook's token: it fires its trigger and does nothing
				// else, not even read.
				forbidden(w, "this token may only fire "+c.user.Scope+" (POST /trigger/"+strings.TrimPrefix(c.user.Scope, "trigger:")+"/)")
				return
			}
			if !auth.Safe(r.Method) && !c.token {
				check := auth.CheckCSRF
				if rt.form {
					check = auth.CheckCSRFForm
				}
				if err := check(r, r.TLS != nil, s.cfg.TrustedOrigins); err != nil {
					forbidden(w, "CSRF verification failed: "+err.Error())
					return
				}
			}
		}
		rt.handler(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, c)))
	})
}

// authenticate finds the caller: a bearer token wins over a session
// cookie; an unknown session is anonymous (as Django), an unknown token is
// refused.
func (s *Server) authenticate(r *http.Request) (caller, error) {
	now := s.now()
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, token, found := strings.Cut(h, " ")
		token = strings.TrimSpace(token)
		if !found || !strings.EqualFold(scheme, "Bearer") || token == "" {
			return caller{badToken: true}, nil
		}
		key := "t:" + auth.Digest(token)
		if u, ok := s.auth.get(key, now); ok {
			s.tokenUses.note(key[2:], now)
			return caller{user: &u, token: true}, nil
		}
		u, tok, err := s.db.TokenUser(r.Context(), key[2:], now)
		if errors.Is(err, store.ErrNotFound) {
			return caller{badToken: true}, nil
		}
		if errors.Is(err, store.ErrExpired) {
			return caller{badToken: true, expired: tok.TimeExpire}, nil
		}
		if err != nil {
			return caller{}, err
		}
		s.auth.put(key, u, now, tok.TimeExpire)
		s.tokenUses.note(key[2:], now)
		return caller{user: &u, token: true}, nil
	}
	ck, err := r.Cookie(auth.SessionCookie)
	if err != nil || ck.Value == "" {
		return caller{}, nil //nolint:nilerr // no session cookie (ErrNoCookie): an anonymous caller
	}
	key := "s:" + auth.Digest(ck.Value)
	if u, ok := s.auth.get(key, now); ok {
		return caller{user: &u}, nil
	}
	u, expires, err := s.db.SessionUser(r.Context(), key[2:], now)
	if errors.Is(err, store.ErrNotFound) {
		return caller{}, nil
	}
	if err != nil {
		return caller{}, err
	}
	s.auth.put(key, u, now, expires)
	return caller{user: &u}, nil
}

// signedIn returns the caller's user, or answers 403 and returns nil.
func signedIn(w http.ResponseWriter, r *http.Request) *store.User {
	u := callerOf(r).user
	if u == nil {
		forbidden(w, "not signed in")
	}
	return u
}

// getBy admits a GET or HEAD by a signed-in user and returns the user;
// otherwise it answers (403 not signed in, 405) and returns nil.
func getBy(w http.ResponseWriter, r *http.Request) *store.User {
	u := signedIn(w, r)
	if u == nil {
		return nil
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		notAllowed(w, "GET", "HEAD")
		return nil
	}
	return u
}

// listOrPost dispatches a collection (/type/, /workflow/): a POST goes to
// post and nil is returned; a GET or HEAD by a signed-in user returns the
// user, for the listing; anything else is answered (403 not signed in,
// 405) and nil is returned.
func listOrPost(w http.ResponseWriter, r *http.Request, post http.HandlerFunc) *store.User {
	switch r.Method {
	case http.MethodPost:
		post(w, r)
		return nil
	case http.MethodGet, http.MethodHead:
		return signedIn(w, r)
	}
	if signedIn(w, r) != nil {
		notAllowed(w, "GET", "HEAD", "POST")
	}
	return nil
}

// postBy admits a POST by a signed-in user with any of roles and returns
// the user; otherwise it answers (403 not signed in, 405, 403 refusal, in
// that order, so that an anonymous caller learns nothing more) and returns
// nil.
func postBy(w http.ResponseWriter, r *http.Request, roles store.Role, refusal string) *store.User {
	u := signedIn(w, r)
	if u == nil {
		return nil
	}
	if r.Method != http.MethodPost {
		notAllowed(w, "POST")
		return nil
	}
	if !u.Roles.Any(roles) {
		forbidden(w, refusal)
		return nil
	}
	return u
}

// postBody is postBy that then reads the body, of at most limit bytes. On
// refusal it has answered and returns a nil user.
func (s *Server) postBody(w http.ResponseWriter, r *http.Request, roles store.Role, refusal string, limit int64) (*store.User, []byte) {
	u := postBy(w, r, roles, refusal)
	if u == nil {
		return nil, nil
	}
	body, good := s.readBodyUpTo(w, r, limit)
	if !good {
		return nil, nil
	}
	return u, body
}
