package server

// This file owns /type/ (extension "types"): task types, put as new
// versions, listed, read and removed, and tasks made from them. The rules
// of a type are package tasktype's and its storage the store's; these
// handlers only join them.
//
//	GET    /type/                     the types the caller may use (own, public; inspectors and managers: all)
//	POST   /type/                     clients: a new version of a type (api.TypePut)
//	GET    /type/<name>/[?version=N]  the type (api.TypeAnswer)
//	DELETE /type/<name>/              its owner, managers: every version
//	POST   /type/<name>/task/         clients: a task made from the type (api.TypeTask), answered as POST /task/task/
//
// A private type of another user is not found (404), whatever is asked of
// it: its name is all the owner's claim on a put says of it.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"

	"github.com/kolejka-go/kolejka/api"
	"github.com/kolejka-go/kolejka/internal/server/store"
	"github.com/kolejka-go/kolejka/internal/tasktype"
	"github.com/kolejka-go/kolejka/spec"
)

// typeFile names a type's kolejka_task.json in errors.
func typeFile(name string, version int) string {
	if version == 0 {
		return "type " + name
	}
	return fmt.Sprintf("type %s (version %d)", name, version)
}

// mayUseType: the type's owner, anyone for a public type, inspectors and
// managers for every type.
func mayUseType(u *store.User, t store.TypeRow) bool {
	return t.Owner == u.ID || t.Public || overseer(u)
}

func (s *Server) handleTypes(w http.ResponseWriter, r *http.Request) {
	u := listOrPost(w, r, s.handleTypePut)
	if u == nil {
		return
	}
	rows, err := s.db.Types(r.Context(), u.ID, overseer(u))
	if err != nil {
		s.internal(w, r, err)
		return
	}
	out := &api.TypesAnswer{Types: make([]api.TypeInfo, 0, len(rows))}
	for _, row := range rows {
		info, _, err := typeInfo(row)
		if err != nil {
			s.internal(w, r, err)
			return
		}
		out.Types = append(out.Types, info)
	}
	ok(w, out)
}

// typeInfo describes a stored type version and returns it parsed.
func typeInfo(row store.TypeRow) (api.TypeInfo, *tasktype.Type, error) {
	typ, err := tasktype.Parse(row.Description, typeFile(row.Name, row.Version))
	if err != nil {
		// This server parsed it before storing it.
		return api.TypeInfo{}, nil, fmt.Errorf("unable to read stored type %s version %d: %w", row.Name, row.Version, err)
	}
	typ.Name, typ.Version = row.Name, row.Version
	params := map[string]api.TypeParam{}
	for name, p := range typ.Params() {
		params[name] = api.TypeParam{Default: p.Default, File: p.File}
	}
	return api.TypeInfo{
		Name:       row.Name,
		Owner:      row.OwnerName,
		Params:     params,
		PassEnv:    typ.PassEnv(),
		Public:     row.Public,
		TimeCreate: djangoTime(row.TimeCreate),
		Version:    row.Version,
	}, typ, nil
}

func (s *Server) handleTypePut(w http.ResponseWriter, r *http.Request) {
	u, body := s.postBody(w, r, store.RoleClient, "only clients put task types", s.cfg.MaxJSONBody)
	if u == nil {
		return
	}
	var req api.TypePut
	if err := api.Decode(body, &req); err != nil {
		fail(w, "type: %v", err)
		return
	}
	if err := spec.CheckName(req.Name); err != nil {
		fail(w, "type: name: %v", err)
		return
	}
	if len(bytes.TrimSpace(req.Type)) == 0 || string(req.Type) == "null" {
		fail(w, "type %s: type: missing (the type's kolejka_task.json)", req.Name)
		return
	}
	file := typeFile(req.Name, 0)
	if _, err := tasktype.Parse(req.Type, file); err != nil {
		fail(w, "%v", err)
		return
	}
	// Parse read the task part as spec reads any task; its files are
	// what the store holds references of.
	task, err := spec.ParseTaskExtended(req.Type, file, "params", "pass_env")
	if err != nil {
		fail(w, "%v", err)
		return
	}
	p := spec.NewProblems(file)
	files := make(map[string]string, len(task.Files))
	for _, name := range slices.Sorted(maps.Keys(task.Files)) {
		f := task.Files[name]
		if f.Reference == "" {
			p.Add(fmt.Sprintf("files[%q].reference", name), "missing (the server keeps a type's files as references: upload them first)")
			continue
		}
		files[name] = f.Reference
	}
	if err := p.Err(); err != nil {
		fail(w, "%v", err)
		return
	}
	var desc bytes.Buffer
	if err := json.Compact(&desc, req.Type); err != nil {
		fail(w, "%s: %v", file, err)
		return
	}
	version, err := s.db.PutType(r.Context(), store.NewType{
		Owner:       u.ID,
		ReadAll:     overseer(u),
		Name:        req.Name,
		Public:      req.Public,
		Description: desc.Bytes(),
		Files:       files,
		Now:         s.now(),
	})
	var owned *store.TypeOwnedError
	var fe store.FileErrors
	switch {
	case errors.As(err, &owned):
		fail(w, "type: %v", owned)
	case errors.As(err, &fe):
		fail(w, "%s: %v", file, fe)
	case err != nil:
		s.internal(w, r, err)
	default:
		s.log.Info("task type put", "type", req.Name, "version", version, "user", u.Name, "public", req.Public)
		ok(w, &api.TypePutAnswer{Name: req.Name, Version: version})
	}
}

// typeOf finds the type a request names (path value "name", version from
// ?version= or else the argument, 0 for the latest) for u, who must be
// allowed to use it. On failure it has answered (404, FAIL for a bad
// version, 500) and returns false.
func (s *Server) typeOf(w http.ResponseWriter, r *http.Request, u *store.User, version int) (store.TypeRow, bool) {
	if v := r.URL.Query().Get("version"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			fail(w, "version: %q is not a version (1, 2, …)", v)
			return store.TypeRow{}, false
		}
		version = n
	}
	row, err := s.db.Type(r.Context(), r.PathValue("name"), version)
	if s.lookupFailed(w, r, err) {
		return store.TypeRow{}, false
	}
	if !mayUseType(u, row) {
		notFound(w) // another user's private type: as if there were none
		return store.TypeRow{}, false
	}
	return row, true
}

func (s *Server) handleType(w http.ResponseWriter, r *http.Request) {
	u := signedIn(w, r)
	if u == nil {
		return
	}
	row, found := s.typeOf(w, r, u, 0)
	if !found {
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		info, _, err := typeInfo(row)
		if err != nil {
			s.internal(w, r, err)
			return
		}
		ok(w, &api.TypeAnswer{Info: info, Type: row.Description})
	case http.MethodDelete:
		if !ownerOrManager(w, u, row.Owner, "task type") {
			return
		}
		err := s.db.RemoveType(r.Context(), row.Name)
		if err == nil {
			s.log.Info("task type removed", "type", row.Name, "user", u.Name)
		}
		s.answerDeleted(w, r, err)
	default:
		notAllowed(w, "GET", "HEAD", "DELETE")
	}
}

func (s *Server) handleTypeTask(w http.ResponseWriter, r *http.Request) {
	u, body := s.postBody(w, r, store.RoleClient, "only clients submit tasks", s.cfg.MaxJSONBody)
	if u == nil {
		return
	}
	req, err := api.ParseTypeTask(body)
	if err != nil {
		fail(w, "%v", err)
		return
	}
	row, found := s.typeOf(w, r, u, req.Version)
	if !found {
		return
	}
	task, origin, err := typeTask(row, req)
	if err != nil {
		s.answerSubmit(w, r, err)
		return
	}
	desc, err := s.submit(r.Context(), u, task, origin)
	if s.answerSubmit(w, r, err) {
		ok(w, &api.NewTaskAnswer{Task: desc})
	}
}

// typeTask renders the task req asks of the type version row: the one
// rendering of a type's task, for POST /type/<name>/task/ and a workflow's
// type steps. Errors the user caused are *refusal.
func typeTask(row store.TypeRow, req api.TypeTask) (*spec.Task, *tasktype.Origin, error) {
	_, typ, err := typeInfo(row)
	if err != nil {
		return nil, nil, err
	}
	// A file parameter's file takes the name the user gave it (its
	// placeholder stands for that name), else the parameter's own.
	names := make(map[string]string, len(req.Files))
	for param, f := range req.Files {
		names[param] = f.Name
		if f.Name == "" {
			names[param] = param
		}
	}
	task, origin, err := typ.Render(req.Params, names)
	if err != nil {
		return nil, nil, &refusal{err.Error()}
	}
	for param, f := range req.Files {
		task.Files[names[param]] = spec.File{Reference: f.Reference}
	}
	if req.Queue != "" {
		task.Queue = req.Queue
	}
	task.Limits = task.Limits.Merge(req.Limits)
	return task, origin, nil
}

// passEnv is the dequeue answer's "pass_env": for each task made from a
// type that names host variables, those names (its node passes only the
// ones its own configuration allows). nil when there are none.
func (s *Server) passEnv(tasks []store.Assignment) map[string][]string {
	var out map[string][]string
	for _, a := range tasks {
		if len(a.Origin) == 0 {
			continue
		}
		var o tasktype.Origin
		if err := json.Unmarshal(a.Origin, &o); err != nil {
			// This server wrote it; the task runs without the variables.
			s.log.Error("unable to read a task's origin", "task", a.Key, "error", err)
			continue
		}
		if len(o.PassEnv) == 0 {
			continue
		}
		if out == nil {
			out = map[string][]string{}
		}
		out[a.Key] = o.PassEnv
	}
	return out
}
