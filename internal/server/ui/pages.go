package ui

// This file owns the UI's routes and pages.

import (
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/kolejka-go/kolejka/api"
	"github.com/kolejka-go/kolejka/internal/server/store"
)

func (u *UI) routes() {
	b := u.base
	m := http.NewServeMux()
	assets, _ := fs.Sub(assetFS, "assets")
	m.Handle("GET "+b+"assets/", http.StripPrefix(b+"assets/", assetServer(http.FileServerFS(assets))))
	m.HandleFunc("GET "+b+"{$}", u.show("overview", u.overview))
	m.HandleFunc(b+"login/{$}", u.login)
	m.HandleFunc("POST "+b+"logout/{$}", u.logout)
	m.HandleFunc("GET "+b+"tasks/{$}", u.show("tasks", u.tasks))
	m.HandleFunc("GET "+b+"task/{key}/{$}", u.show("task", u.task))
	m.HandleFunc("POST "+b+"task/{key}/cancel/{$}", u.act(u.taskCancel))
	m.HandleFunc("POST "+b+"task/{key}/clone/{$}", u.act(u.taskClone))
	m.HandleFunc("GET "+b+"task/{key}/file/{name...}", u.withUser(u.taskFile))
	m.HandleFunc("GET "+b+"queues/{$}", listPage(u, "queues", "Queues", u.b.Overview))
	m.HandleFunc("POST "+b+"queue/{name}/pause/{$}", u.act(u.queuePause(true)))
	m.HandleFunc("POST "+b+"queue/{name}/resume/{$}", u.act(u.queuePause(false)))
	m.HandleFunc("GET "+b+"nodes/{$}", listPage(u, "nodes", "Nodes", u.b.Nodes))
	m.HandleFunc("GET "+b+"node/{name}/{$}", u.show("node", u.node))
	m.HandleFunc("POST "+b+"node/{name}/drain/{$}", u.act(u.nodeDrain(true)))
	m.HandleFunc("POST "+b+"node/{name}/undrain/{$}", u.act(u.nodeDrain(false)))
	m.HandleFunc("GET "+b+"workflows/{$}", listPage(u, "workflows", "Workflows", u.b.Runs))
	m.HandleFunc("GET "+b+"workflow/{key}/{$}", u.show("workflow", u.workflow))
	m.HandleFunc("POST "+b+"workflow/{key}/cancel/{$}", u.act(u.workflowChange(false)))
	m.HandleFunc("POST "+b+"workflow/{key}/retry/{$}", u.act(u.workflowChange(true)))
	m.HandleFunc("GET "+b+"types/{$}", listPage(u, "types", "Types", u.b.Types))
	m.HandleFunc("GET "+b+"type/{name}/{$}", u.show("type", u.typePage))
	m.HandleFunc("GET "+b+"triggers/{$}", listPage(u, "triggers", "Schedules and triggers", u.b.Triggers))
	m.HandleFunc("GET "+b+"trigger/{owner}/{name}/{$}", u.show("trigger", u.trigger))
	m.HandleFunc("GET "+b+"events/{$}", u.events)
	m.HandleFunc(b, func(w http.ResponseWriter, r *http.Request) {
		u.fail(w, r, store.ErrNotFound)
	})
	u.mux = m
}

// assetServer marks the embedded assets cacheable for an hour.
func assetServer(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		h.ServeHTTP(w, r)
	})
}

// withUser serves the requests of signed-in users (others are sent to
// sign in): serve answers, or returns the error to answer.
func (u *UI) withUser(serve func(w http.ResponseWriter, r *http.Request, usr *store.User) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		usr := u.signedIn(w, r)
		if usr == nil {
			return
		}
		if err := serve(w, r, usr); err != nil {
			u.fail(w, r, err)
		}
	}
}

// show serves template name with the page get makes for the signed-in
// user, or answers get's error.
func (u *UI) show(name string, get func(r *http.Request, usr *store.User) (page, error)) http.HandlerFunc {
	return u.withUser(func(w http.ResponseWriter, r *http.Request, usr *store.User) error {
		p, err := get(r, usr)
		if err != nil {
			return err
		}
		u.render(w, r, http.StatusOK, name, p)
		return nil
	})
}

// listPage serves template name (also its navigation entry), titled
// title, with what list gives the signed-in user.
func listPage[T any](u *UI, name, title string, list func(context.Context, *store.User) (T, error)) http.HandlerFunc {
	return u.show(name, func(r *http.Request, usr *store.User) (page, error) {
		v, err := list(r.Context(), usr)
		return page{Title: title, Nav: name, Data: v}, err
	})
}

// act serves a form's POST: do acts for the signed-in user and says where
// to go next (a 303), or the error to answer.
func (u *UI) act(do func(r *http.Request, usr *store.User) (string, error)) http.HandlerFunc {
	return u.withUser(func(w http.ResponseWriter, r *http.Request, usr *store.User) error {
		to, err := do(r, usr)
		if err != nil {
			return err
		}
		http.Redirect(w, r, to, http.StatusSeeOther)
		return nil
	})
}

func urlQueryEscape(s string) string { return url.QueryEscape(s) }

// safeNext is where to go after signing in: a path of the UI, nothing
// else (no open redirect).
func (u *UI) safeNext(next string) string {
	if strings.HasPrefix(next, u.base) && !strings.HasPrefix(next, "//") && !strings.ContainsAny(next, "\\\r\n") {
		return next
	}
	return u.base
}

func (u *UI) login(w http.ResponseWriter, r *http.Request) {
	next := u.safeNext(r.FormValue("next"))
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		if u.b.User(r) != nil {
			http.Redirect(w, r, next, http.StatusSeeOther)
			return
		}
		u.render(w, r, http.StatusOK, "login", page{Title: "Sign in", Data: next})
	case http.MethodPost:
		good, err := u.b.SignIn(w, r, r.PostFormValue("username"), r.PostFormValue("password"))
		if err != nil {
			u.fail(w, r, err)
			return
		}
		if !good {
			u.render(w, r, http.StatusForbidden, "login", page{Title: "Sign in", Flash: "invalid username or password", Data: next})
			return
		}
		http.Redirect(w, r, next, http.StatusSeeOther)
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

func (u *UI) logout(w http.ResponseWriter, r *http.Request) {
	if err := u.b.SignOut(w, r); err != nil {
		u.fail(w, r, err)
		return
	}
	http.Redirect(w, r, u.base+"login/", http.StatusSeeOther)
}

// overviewData is the overview's page.
type overviewData struct {
	Overview
	Hour, Day chart
	Health    healthCounts
}

func (u *UI) overview(r *http.Request, usr *store.User) (page, error) {
	o, err := u.b.Overview(r.Context(), usr)
	if err != nil {
		return page{}, err
	}
	d := overviewData{Overview: o,
		Hour:   finishedChart(o.Finished, o.Now, time.Hour, time.Minute),
		Day:    finishedChart(o.Finished, o.Now, 24*time.Hour, 15*time.Minute),
		Health: countHealth(o.Nodes)}
	return page{Title: "Overview", Nav: "overview", Data: d}, nil
}

// tasksData is the task table's page.
type tasksData struct {
	TaskPage
	Filter  TaskFilter
	NextURL string
	States  []string
	Keys    string // the listed tasks' keys, space-separated, for the live stream
}

func (u *UI) tasks(r *http.Request, usr *store.User) (page, error) {
	q := r.URL.Query()
	f := TaskFilter{State: q.Get("state"), Queue: q.Get("queue"), Type: q.Get("type"), Owner: q.Get("owner"),
		Status: q.Get("status"), Before: q.Get("before")}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			return page{}, &Refused{Code: http.StatusBadRequest, Msg: `limit: "` + s + `" is not a whole number`}
		}
		f.Limit = n
	}
	p, err := u.b.Tasks(r.Context(), usr, f)
	if err != nil {
		return page{}, err
	}
	d := tasksData{TaskPage: p, Filter: f, States: []string{api.StateQueued, api.StateRunning, api.StateDone, api.StateCancelled}}
	if p.Next != "" {
		q.Set("before", p.Next)
		d.NextURL = u.base + "tasks/?" + q.Encode()
	}
	keys := make([]string, 0, len(p.Tasks))
	for _, t := range p.Tasks {
		keys = append(keys, t.Key)
	}
	d.Keys = strings.Join(keys, " ")
	return page{Title: "Tasks", Nav: "tasks", Data: d}, nil
}

// taskData is a task's page.
type taskData struct {
	TaskView
	Spec       map[string]any
	SpecJSON   string
	ResultJSON string
	ResultMap  map[string]any
	Preview    string // the start of the result's stdout file
	PreviewOf  string
	Stats      []measure // the result's measured stats, flattened
}

// measure is one measured value of a result's stats ("memory.max_usage").
type measure struct{ Name, Value string }

// flatten lists the scalars of a result's stats by their dotted paths,
// sorted, leaving out what was not measured (empty objects).
func flatten(prefix string, v any, out []measure) []measure {
	switch v := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			out = flatten(strings.TrimPrefix(prefix+"."+k, "."), v[k], out)
		}
	case nil:
	default:
		b, _ := json.Marshal(v)
		out = append(out, measure{Name: prefix, Value: strings.Trim(string(b), `"`)})
	}
	return out
}

// previewBytes is how much of a result's stdout the task page shows.
const previewBytes = 4096

func (u *UI) task(r *http.Request, usr *store.User) (page, error) {
	key := r.PathValue("key")
	v, err := u.b.Task(r.Context(), usr, key)
	if err != nil {
		return page{}, err
	}
	d := taskData{TaskView: v, SpecJSON: pretty(v.Description), ResultJSON: pretty(v.Result)}
	_ = json.Unmarshal(v.Description, &d.Spec)
	if len(v.Result) > 0 {
		_ = json.Unmarshal(v.Result, &d.ResultMap)
		d.Stats = flatten("", d.ResultMap["stats"], nil)
		if out, _ := d.ResultMap["stdout"].(string); out != "" {
			if f, _, err := u.b.ResultFile(r.Context(), usr, key, out); err == nil {
				buf := make([]byte, previewBytes)
				n, _ := io.ReadFull(f, buf) // a shorter file is all there is
				f.Close()
				d.Preview, d.PreviewOf = strings.ToValidUTF8(string(buf[:n]), "\uFFFD"), out
			}
		}
	}
	return page{Title: "Task " + key, Nav: "tasks", Flash: r.URL.Query().Get("flash"), Data: d}, nil
}

func (u *UI) taskCancel(r *http.Request, usr *store.User) (string, error) {
	key := r.PathValue("key")
	return u.base + "task/" + url.PathEscape(key) + "/", u.b.CancelTask(r.Context(), usr, key)
}

// taskClone goes to the clone's page.
func (u *UI) taskClone(r *http.Request, usr *store.User) (string, error) {
	key, err := u.b.CloneTask(r.Context(), usr, r.PathValue("key"))
	return u.base + "task/" + url.PathEscape(key) + "/", err
}

func (u *UI) taskFile(w http.ResponseWriter, r *http.Request, usr *store.User) error {
	name := r.PathValue("name")
	f, mod, err := u.b.ResultFile(r.Context(), usr, r.PathValue("key"), name)
	if err != nil {
		return err
	}
	defer f.Close()
	// Always a download of bytes: a result's file never renders as a page
	// of this origin (it could hold a script).
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", "attachment; filename*=UTF-8''"+url.PathEscape(path.Base(name)))
	w.Header().Set("X-Content-Type-Options", "nosniff")
	http.ServeContent(w, r, "", mod, f)
	return nil
}

func (u *UI) queuePause(paused bool) func(*http.Request, *store.User) (string, error) {
	return func(r *http.Request, usr *store.User) (string, error) {
		return u.base + "queues/", u.b.PauseQueue(r.Context(), usr, r.PathValue("name"), paused)
	}
}

// workflowData is a run's page.
type workflowData struct {
	api.WorkflowInfo
	Graph     graph
	MayChange bool
}

func (u *UI) workflow(r *http.Request, usr *store.User) (page, error) {
	run, may, err := u.b.Run(r.Context(), usr, r.PathValue("key"))
	if err != nil {
		return page{}, err
	}
	d := workflowData{WorkflowInfo: run, Graph: runGraph(run), MayChange: may}
	return page{Title: "Workflow " + run.Key, Nav: "workflows", Data: d}, nil
}

func (u *UI) workflowChange(retry bool) func(*http.Request, *store.User) (string, error) {
	return func(r *http.Request, usr *store.User) (string, error) {
		key := r.PathValue("key")
		return u.base + "workflow/" + url.PathEscape(key) + "/", u.b.ChangeRun(r.Context(), usr, key, retry)
	}
}

// typeData is a type's page.
type typeData struct {
	api.TypeInfo
	Definition string
}

func (u *UI) typePage(r *http.Request, usr *store.User) (page, error) {
	info, def, err := u.b.Type(r.Context(), usr, r.PathValue("name"))
	if err != nil {
		return page{}, err
	}
	return page{Title: "Type " + info.Name, Nav: "types", Data: typeData{info, pretty(def)}}, nil
}

func (u *UI) trigger(r *http.Request, usr *store.User) (page, error) {
	t, err := u.b.Trigger(r.Context(), usr, TriggerRef{Owner: r.PathValue("owner"), Name: r.PathValue("name")})
	return page{Title: t.Kind + " " + t.Name, Nav: "triggers", Data: t}, err
}

// pretty indents JSON for reading; what does not parse is shown as it is.
func pretty(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return string(b)
	}
	// As written, < and > included: the template escapes them for HTML.
	var out strings.Builder
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return string(b)
	}
	return strings.TrimSuffix(out.String(), "\n")
}

// when writes a time for a table ("" for none).
func when(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04:05")
}

// ago says how long ago t was, roughly.
func ago(now, t time.Time) string {
	if t.IsZero() {
		return ""
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		return "now"
	case d < time.Minute:
		return strconv.Itoa(int(d.Seconds())) + " s"
	case d < time.Hour:
		return strconv.Itoa(int(d.Minutes())) + " min"
	case d < 48*time.Hour:
		return strconv.Itoa(int(d.Hours())) + " h"
	}
	return strconv.Itoa(int(d.Hours()/24)) + " d"
}
