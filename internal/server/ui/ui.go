// Package ui is kolejka-server's web UI, served under <prefix>ui/: pages
// rendered on the server with html/template, a stylesheet and a little
// script (live updates over server-sent events) embedded in the binary.
// Every page reads without JavaScript.
//
// The UI decides nothing about who may see or do what: it asks its
// Backend (package server), which answers with the same functions the
// API's handlers use, and turns a refusal into the same status code the
// API answers (403, 404). Sign-in, sessions and the CSRF check are the
// API's too: the same sessionid and csrftoken cookies, so signing in on
// one signs in on the other; forms carry the token in the field
// csrfmiddlewaretoken, as Django's do.
package ui

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/kolejka-go/kolejka/api"
	"github.com/kolejka-go/kolejka/internal/server/store"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed assets
var assetFS embed.FS

// Refused is a request the rules refuse: Code is the HTTP status the API
// answers it with (403, 400), Msg says why.
type Refused struct {
	Code int
	Msg  string
}

func (e *Refused) Error() string { return e.Msg }

// TaskFilter selects a page of the task table; the fields are the form's
// as typed (the backend checks them as the API's /task/list/ does).
type TaskFilter struct {
	State, Queue, Type, Owner, Status, Before string
	Limit                                     int
}

// TaskPage is one page of the task table; Next is the key the next page
// starts after ("" on the last page).
type TaskPage struct {
	Tasks []store.TaskSummary
	Next  string
	All   bool // every user's tasks (an inspector's or manager's view)
}

// TaskView is a task's page.
type TaskView struct {
	store.TaskDetail
	Result       []byte   // the result's JSON, if it has one
	ResultFiles  []string // the result's file names, sorted
	MayCancel    bool
	MayClone     bool
	StatusOfTask string // the result's status
}

// Overview is what the first page shows.
type Overview struct {
	Queues   []store.QueueInfo
	Finished []store.MinuteCount // since a day ago
	Now      time.Time
	// Nodes are the nodes the caller reads (ShowNodes; none for a client).
	Nodes     []api.Node
	ShowNodes bool
}

// NodeList is the nodes page: the nodes the caller reads, the lease their
// health is measured against, and whether the caller drains them.
type NodeList struct {
	Nodes    []api.Node
	Lease    time.Duration
	MayDrain bool
}

// TriggerRef names a schedule or trigger: its owner and name.
type TriggerRef struct{ Owner, Name string }

// Backend is what the UI asks of the server. u is the signed-in caller;
// a lookup of what does not exist is store.ErrNotFound, a refusal a
// *Refused.
type Backend interface {
	// User is the request's caller, nil when anonymous.
	User(r *http.Request) *store.User
	// CSRFToken (re)sends the csrftoken cookie and returns its value.
	CSRFToken(w http.ResponseWriter, r *http.Request) string
	SignIn(w http.ResponseWriter, r *http.Request, name, password string) (bool, error)
	SignOut(w http.ResponseWriter, r *http.Request) error
	// Stopped is closed when the server shuts down: live streams end.
	Stopped() <-chan struct{}
	Now() time.Time

	Tasks(ctx context.Context, u *store.User, f TaskFilter) (TaskPage, error)
	Task(ctx context.Context, u *store.User, key string) (TaskView, error)
	// TaskStates reads the states of the tasks u may read among keys.
	TaskStates(ctx context.Context, u *store.User, keys []string) ([]store.TaskState, error)
	CancelTask(ctx context.Context, u *store.User, key string) error
	CloneTask(ctx context.Context, u *store.User, key string) (string, error)
	// ResultFile opens file name of task key's result.
	ResultFile(ctx context.Context, u *store.User, key, name string) (io.ReadSeekCloser, time.Time, error)

	Overview(ctx context.Context, u *store.User) (Overview, error)
	PauseQueue(ctx context.Context, u *store.User, name string, paused bool) error

	// ReadsNodes says whether u may open the nodes page (for the link).
	ReadsNodes(u *store.User) bool
	// Nodes lists the nodes u reads; Node reads one (the API's rules).
	Nodes(ctx context.Context, u *store.User) (NodeList, error)
	Node(ctx context.Context, u *store.User, name string) (api.Node, bool, error) // bool: u may drain it
	DrainNode(ctx context.Context, u *store.User, name string, drained bool) error

	Runs(ctx context.Context, u *store.User) ([]api.WorkflowInfo, error)
	Run(ctx context.Context, u *store.User, key string) (api.WorkflowInfo, bool, error) // bool: u may change it
	ChangeRun(ctx context.Context, u *store.User, key string, retry bool) error

	Types(ctx context.Context, u *store.User) ([]api.TypeInfo, error)
	Type(ctx context.Context, u *store.User, name string) (api.TypeInfo, []byte, error)
	Triggers(ctx context.Context, u *store.User) ([]api.TriggerInfo, error)
	Trigger(ctx context.Context, u *store.User, ref TriggerRef) (api.TriggerInfo, error)
}

// Options tune the UI.
type Options struct {
	Prefix    string        // the server's prefix ("/" or "/kolejka/"); the UI is under Prefix+"ui/"
	Log       *slog.Logger  // where failures are logged
	PollEvery time.Duration // how often a live stream reads the store (default 1 s)
	MaxStream int           // the most tasks one live stream follows (default 200)
	Streams   int           // the most live streams open at once (default 256); more are 503
}

// UI serves the pages.
type UI struct {
	b    Backend
	opt  Options
	base string // Prefix + "ui/"
	tmpl map[string]*template.Template
	mux  *http.ServeMux
	open chan struct{} // a token per open live stream
}

// New makes the UI over b.
func New(b Backend, opt Options) (*UI, error) {
	if opt.PollEvery <= 0 {
		opt.PollEvery = time.Second
	}
	if opt.MaxStream <= 0 {
		opt.MaxStream = 200
	}
	if opt.Streams <= 0 {
		opt.Streams = 256
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	u := &UI{b: b, opt: opt, base: opt.Prefix + "ui/", tmpl: map[string]*template.Template{}, open: make(chan struct{}, opt.Streams)}
	funcs := template.FuncMap{
		"base":      func() string { return u.base },
		"when":      when,
		"ago":       func(t time.Time) string { return ago(b.Now(), t) },
		"state":     store.State.Lifecycle,
		"join":      strings.Join,
		"pretty":    pretty,
		"hasRole":   func(usr *store.User, role string) bool { return hasRole(usr, role) },
		"drainArgs": func(n api.Node, csrf, back string) drainArgs { return drainArgs{n, csrf, back} },
		"age":       func(secs float64) string { return ago(b.Now(), b.Now().Add(-time.Duration(secs*float64(time.Second)))) },
	}
	pages := []string{"login", "overview", "tasks", "task", "queues", "workflows", "workflow", "types", "type", "triggers", "trigger", "nodes", "node", "error"}
	for _, p := range pages {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/parts.html", "templates/"+p+".html")
		if err != nil {
			return nil, fmt.Errorf("unable to parse the UI's template %s: %w", p, err)
		}
		u.tmpl[p] = t
	}
	u.routes()
	return u, nil
}

func (u *UI) ServeHTTP(w http.ResponseWriter, r *http.Request) { u.mux.ServeHTTP(w, r) }

// page is what every template gets.
type page struct {
	Title string
	User  *store.User
	CSRF  string
	Nav   string // the navigation entry to mark
	Nodes bool   // the caller reads nodes: the navigation links them
	Flash string // a refusal or failure to show above the content
	Data  any
}

// render writes template name with data, status code.
func (u *UI) render(w http.ResponseWriter, r *http.Request, code int, name string, p page) {
	p.User = u.b.User(r)
	p.Nodes = p.User != nil && u.b.ReadsNodes(p.User)
	p.CSRF = u.b.CSRFToken(w, r)
	var buf strings.Builder
	if err := u.tmpl[name].Execute(&buf, p); err != nil {
		u.opt.Log.Error("unable to render a UI page", "page", name, "error", err)
		http.Error(w, "internal server error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	// Nothing from elsewhere: scripts and styles are ours, inline ones none.
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, buf.String())
}

// fail answers err as the API does: 404 for what does not exist, the
// refusal's code, 500 otherwise (logged, not shown).
func (u *UI) fail(w http.ResponseWriter, r *http.Request, err error) {
	var ref *Refused
	code, msg := http.StatusInternalServerError, "internal server error"
	switch {
	case errors.Is(err, store.ErrNotFound):
		code, msg = http.StatusNotFound, "not found"
	case errors.As(err, &ref):
		code, msg = ref.Code, ref.Msg
	default:
		u.opt.Log.Error("UI request failed", "path", r.URL.Path, "error", err)
	}
	u.render(w, r, code, "error", page{Title: http.StatusText(code), Flash: msg})
}

// signedIn returns the caller, or sends an anonymous one to the sign-in
// form (with where to come back) and returns nil.
func (u *UI) signedIn(w http.ResponseWriter, r *http.Request) *store.User {
	if usr := u.b.User(r); usr != nil {
		return usr
	}
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		http.Redirect(w, r, u.base+"login/?next="+urlQueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
	} else {
		u.fail(w, r, &Refused{Code: http.StatusForbidden, Msg: "not signed in"})
	}
	return nil
}

func hasRole(u *store.User, role string) bool {
	if u == nil {
		return false
	}
	switch role {
	case "client":
		return u.Roles.Has(store.RoleClient)
	case "manager":
		return u.Roles.Has(store.RoleManager)
	case "inspector":
		return u.Roles.Has(store.RoleInspector)
	}
	return false
}
