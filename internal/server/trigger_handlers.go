package server

// This file owns the HTTP API of schedules and triggers (extension
// "triggers", docs/triggers.md): /schedule/ and /trigger/ (list, put,
// show with the recent firings, remove, pause, resume) and the webhook
// POST /trigger/<name>/. A name belongs to its owner: each user has one
// name space for both, and /…/<name>/ is the caller's (a manager or
// inspector names another's with ?owner=USER). What a put is checked for
// and what a firing does are triggers.go's.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/kolejka-go/kolejka/api"
	"github.com/kolejka-go/kolejka/internal/server/auth"
	"github.com/kolejka-go/kolejka/internal/server/store"
	"github.com/kolejka-go/kolejka/internal/trigger"
)

// maxIdempotencyKey bounds a webhook's Idempotency-Key header.
const maxIdempotencyKey = 200

// triggerScope is the scope of a token that may only fire trigger name.
func triggerScope(name string) string { return "trigger:" + name }

func (s *Server) handleSchedules(w http.ResponseWriter, r *http.Request) {
	s.handleTriggers(w, r, true)
}
func (s *Server) handleTriggerList(w http.ResponseWriter, r *http.Request) {
	s.handleTriggers(w, r, false)
}

// handleTriggers lists (GET) or puts (POST) schedules or triggers.
func (s *Server) handleTriggers(w http.ResponseWriter, r *http.Request, schedules bool) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		u := signedIn(w, r)
		if u == nil {
			return
		}
		rows, err := s.db.Triggers(r.Context(), u.ID, overseer(u), schedules)
		if err != nil {
			s.internal(w, r, err)
			return
		}
		out := make([]api.TriggerInfo, 0, len(rows))
		for _, row := range rows {
			info, err := triggerInfo(row)
			if err != nil {
				s.internal(w, r, err)
				return
			}
			out = append(out, info)
		}
		ok(w, &api.TriggersAnswer{Triggers: out})
	case http.MethodPost:
		s.handleTriggerPut(w, r, schedules)
	default:
		notAllowed(w, "GET", "HEAD", "POST")
	}
}

// triggerInfo describes a trigger's row.
func triggerInfo(row store.TriggerRow) (api.TriggerInfo, error) {
	put, err := readSpec(row)
	if err != nil {
		return api.TriggerInfo{}, err
	}
	info := api.TriggerInfo{
		Cron: put.Cron, Every: put.Every, TZ: put.TZ, Overlap: put.Overlap, On: put.On,
		Kind: row.Kind, Name: row.Name, Owner: row.OwnerName, Paused: row.Paused, Version: row.Version,
		Target: describeTarget(put.Target), TimeCreate: djangoTime(row.TimeCreate),
	}
	if !row.NextFire.IsZero() && !row.Paused {
		info.NextFire = row.NextFire.UTC().Format(time.RFC3339Nano)
	}
	return info, nil
}

// describeTarget says what a target starts, in words.
func describeTarget(t api.TriggerTarget) string {
	switch {
	case t.Workflow != nil:
		return "workflow"
	case t.Type != "":
		return "type " + t.Type
	default:
		return "task"
	}
}

// handleTriggerPut checks and records a put (see the checks below, each
// a FAIL naming the field, with nothing recorded).
func (s *Server) handleTriggerPut(w http.ResponseWriter, r *http.Request, schedules bool) {
	u, body := s.postBody(w, r, store.RoleClient, "only clients put schedules and triggers", s.cfg.MaxJSONBody)
	if u == nil {
		return
	}
	put, err := api.ParseTriggerPut(body)
	if err != nil {
		fail(w, "%v", err)
		return
	}
	put, next, err := s.checkTriggerPut(r.Context(), u, put, schedules)
	if err != nil {
		s.answerSubmit(w, r, err)
		return
	}
	works, refs, err := s.checkTarget(r.Context(), u, put)
	if err == nil {
		err = s.checkLoop(r.Context(), u, put, works)
	}
	if err != nil {
		s.answerSubmit(w, r, err)
		return
	}
	data, err := json.Marshal(put)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	version, err := s.db.PutTrigger(r.Context(), store.NewTrigger{
		Owner: u.ID, Name: put.Name, Kind: put.Kind, Spec: data, Files: refs,
		ReadAll: overseer(u), NextFire: next, Now: s.now(),
	})
	var fe store.FileErrors
	var ke *store.KindError
	switch {
	case errors.As(err, &fe):
		// Each File is already a field's name (target.files["x"]).
		msgs := make([]string, len(fe))
		for i, e := range fe {
			msgs[i] = fmt.Sprintf("%s.reference: reference %q %s", e.File, e.Ref, e.Problem)
		}
		fail(w, "%s", strings.Join(msgs, "\n"))
		return
	case errors.As(err, &ke):
		fail(w, "name: %v", ke)
		return
	case err != nil:
		s.internal(w, r, err)
		return
	}
	s.log.Info("trigger put", "name", put.Name, "kind", put.Kind, "version", version, "user", u.Name)
	s.wakeTriggers()
	ok(w, &api.TriggerPutAnswer{Name: put.Name, Version: version})
}

// checkTriggerPut checks a put's name, kind, schedule and filter, and
// returns it as it is stored (the filter's statuses canonical, the
// overlap named) with a schedule's first tick.
func (s *Server) checkTriggerPut(_ context.Context, _ *store.User, put api.TriggerPut, schedules bool) (api.TriggerPut, time.Time, error) {
	if err := trigger.CheckName(put.Name); err != nil {
		return put, time.Time{}, &refusal{err.Error()}
	}
	var next time.Time
	if schedules {
		if put.Kind == "" {
			put.Kind = api.TriggerSchedule
		}
		if put.Kind != api.TriggerSchedule {
			return put, next, refuse("kind: %q: /schedule/ takes schedules (kind %q); put triggers under /trigger/", put.Kind, api.TriggerSchedule)
		}
		sch, err := trigger.ParseSchedule(put.Cron, put.TZ, put.Every)
		if err != nil {
			return put, next, &refusal{err.Error()}
		}
		if put.Overlap, err = trigger.ParseOverlap(put.Overlap); err != nil {
			return put, next, &refusal{err.Error()}
		}
		next = sch.First(s.now())
	} else {
		switch put.Kind {
		case api.TriggerResult, api.TriggerRun, api.TriggerRequest:
		case "":
			return put, next, refuse("kind: missing (%s, %s or %s)", api.TriggerResult, api.TriggerRun, api.TriggerRequest)
		default:
			return put, next, refuse("kind: %q is not a trigger's kind (%s, %s or %s; schedules go under /schedule/)", put.Kind, api.TriggerResult, api.TriggerRun, api.TriggerRequest)
		}
		for field, given := range map[string]bool{"cron": put.Cron != "", "every": put.Every != "", "tz": put.TZ != "", "overlap": put.Overlap != ""} {
			if given {
				return put, next, refuse("%s: a %s trigger has no schedule (schedules go under /schedule/)", field, put.Kind)
			}
		}
	}
	on, err := trigger.CheckOn(put.Kind, put.On)
	if err != nil {
		return put, next, &refusal{err.Error()}
	}
	put.On = on
	return put, next, nil
}

// triggerFor finds the trigger a request names (path value "name"; a
// manager's or inspector's ?owner=USER for another's): the caller's, of
// the sort of the route. change: a manager may change another's, an
// inspector only read. On failure it has answered and returns false.
func (s *Server) triggerFor(w http.ResponseWriter, r *http.Request, u *store.User, schedules, change bool) (store.TriggerRow, bool) {
	owner := u.ID
	if name := r.URL.Query().Get("owner"); name != "" && name != u.Name {
		if why := mayNameTriggerOwner(u, change); why != "" {
			forbidden(w, why)
			return store.TriggerRow{}, false
		}
		o, err := s.db.UserByName(r.Context(), name)
		if s.lookupFailed(w, r, err) {
			return store.TriggerRow{}, false
		}
		owner = o.ID
	}
	row, err := s.db.Trigger(r.Context(), owner, r.PathValue("name"))
	if s.lookupFailed(w, r, err) {
		return store.TriggerRow{}, false
	}
	if (row.Kind == api.TriggerSchedule) != schedules {
		notFound(w) // the other sort's name: not under this route
		return store.TriggerRow{}, false
	}
	return row, true
}

// mayNameTriggerOwner: managers name another user's schedules and
// triggers, inspectors only to read (change false); otherwise the refusal.
func mayNameTriggerOwner(u *store.User, change bool) string {
	if u.Roles.Has(store.RoleManager) || (!change && u.Roles.Has(store.RoleInspector)) {
		return ""
	}
	return "only managers (inspectors, to read) name another user's schedules and triggers"
}

func (s *Server) handleSchedule(w http.ResponseWriter, r *http.Request) {
	s.handleOneTrigger(w, r, true)
}
func (s *Server) handleTrigger(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost {
		s.handleWebhook(w, r)
		return
	}
	s.handleOneTrigger(w, r, false)
}

// handleOneTrigger shows (GET, with ?fires=N of its latest firings,
// default 20) or removes (DELETE) a schedule or trigger.
func (s *Server) handleOneTrigger(w http.ResponseWriter, r *http.Request, schedules bool) {
	u := signedIn(w, r)
	if u == nil {
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		row, found := s.triggerFor(w, r, u, schedules, false)
		if !found {
			return
		}
		n := 20
		if v := r.URL.Query().Get("fires"); v != "" {
			var err error
			if n, err = strconv.Atoi(v); err != nil || n < 0 || n > keepFires {
				fail(w, "fires: %q is not a number of firings (0 to %d)", v, keepFires)
				return
			}
		}
		s.answerTrigger(w, r, row, n)
	case http.MethodDelete:
		if !u.Roles.Any(store.RoleClient | store.RoleManager) {
			forbidden(w, "only clients and managers remove schedules and triggers")
			return
		}
		row, found := s.triggerFor(w, r, u, schedules, true)
		if !found {
			return
		}
		if err := s.db.DeleteTrigger(r.Context(), row.ID); s.lookupFailed(w, r, err) {
			return
		}
		s.log.Info("trigger removed", "name", row.Name, "owner", row.OwnerName, "user", u.Name)
		ok(w, &api.Envelope{})
	default:
		allowed := []string{"GET", "HEAD", "DELETE"}
		if !schedules {
			allowed = append(allowed, "POST")
		}
		notAllowed(w, allowed...)
	}
}

// answerTrigger answers with the trigger and its n latest firings.
func (s *Server) answerTrigger(w http.ResponseWriter, r *http.Request, row store.TriggerRow, n int) {
	info, err := s.triggerDetail(r.Context(), row, n)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	ok(w, &api.TriggerAnswer{Trigger: info})
}

// triggerDetail describes a trigger with its n latest firings.
func (s *Server) triggerDetail(ctx context.Context, row store.TriggerRow, n int) (api.TriggerInfo, error) {
	info, err := triggerInfo(row)
	if err != nil || n <= 0 {
		return info, err
	}
	fires, err := s.db.Fires(ctx, row.ID, n)
	if err != nil {
		return info, err
	}
	for _, f := range fires {
		if f.TaskKnown {
			f.Status = f.TaskState.Lifecycle()
		}
		info.Fires = append(info.Fires, api.TriggerFire{
			Fire: f.Fire, Key: f.Key, Reason: f.Reason, Started: f.Started, State: f.State, Status: f.Status,
			Time: f.TimeCreate.UTC().Format(time.RFC3339Nano),
		})
	}
	return info, nil
}

func (s *Server) handleSchedulePause(w http.ResponseWriter, r *http.Request) {
	s.pauseTrigger(w, r, true, true)
}
func (s *Server) handleScheduleResume(w http.ResponseWriter, r *http.Request) {
	s.pauseTrigger(w, r, true, false)
}
func (s *Server) handleTriggerPause(w http.ResponseWriter, r *http.Request) {
	s.pauseTrigger(w, r, false, true)
}
func (s *Server) handleTriggerResume(w http.ResponseWriter, r *http.Request) {
	s.pauseTrigger(w, r, false, false)
}

// pauseTrigger pauses or resumes a schedule or trigger (its owner or a
// manager). A resumed schedule's next tick is the first after now: the
// ticks it missed while paused do not fire.
func (s *Server) pauseTrigger(w http.ResponseWriter, r *http.Request, schedules, pause bool) {
	u := postBy(w, r, store.RoleClient|store.RoleManager, "only clients and managers pause schedules and triggers")
	if u == nil {
		return
	}
	row, found := s.triggerFor(w, r, u, schedules, true)
	if !found {
		return
	}
	var next time.Time
	if !pause && schedules {
		put, err := readSpec(row)
		if err != nil {
			s.internal(w, r, err)
			return
		}
		sch, err := trigger.ParseSchedule(put.Cron, put.TZ, put.Every)
		if err != nil {
			s.internal(w, r, err)
			return
		}
		next = sch.First(s.now())
	}
	if err := s.db.PauseTrigger(r.Context(), row.ID, pause, next); s.lookupFailed(w, r, err) {
		return
	}
	s.wakeTriggers()
	row, err := s.db.TriggerByID(r.Context(), row.ID)
	if s.lookupFailed(w, r, err) {
		return
	}
	s.answerTrigger(w, r, row, 0)
}

// handleWebhook fires a request trigger of the caller: POST
// /trigger/<name>/, a JSON object of parameters as the body. A request
// the target refuses records nothing; a replay with the same
// Idempotency-Key answers what the first request started.
func (s *Server) handleWebhook(w http.ResponseWriter, r *http.Request) {
	u, body := s.postBody(w, r, store.RoleClient, "only clients fire triggers", s.cfg.MaxJSONBody)
	if u == nil {
		return
	}
	row, found := s.triggerFor(w, r, u, false, true)
	if !found {
		return
	}
	if row.Kind != api.TriggerRequest {
		fail(w, "trigger %s fires on the end of a %s, not on requests", row.Name, map[string]string{api.TriggerResult: "task", api.TriggerRun: "workflow run"}[row.Kind])
		return
	}
	if row.Paused {
		fail(w, "trigger %s is paused", row.Name)
		return
	}
	params, err := api.ParseWebhookParams(body)
	if err != nil {
		fail(w, "%v", err)
		return
	}
	id := r.Header.Get("Idempotency-Key")
	if len(id) > maxIdempotencyKey || strings.ContainsFunc(id, func(c rune) bool { return c < ' ' || c == 0x7f }) {
		fail(w, "Idempotency-Key: at most %d printable characters", maxIdempotencyKey)
		return
	}
	if id == "" {
		id = auth.RandomKey(16)
	}
	// strict: a request the target refuses (an unknown parameter, a
	// missing one) is a FAIL naming it, and records no firing.
	res, err := s.fire(r.Context(), row, fireSource{fire: "request:" + id, params: params, strict: true})
	if errors.Is(err, store.ErrTriggerGone) {
		fail(w, "trigger %s was paused or removed", row.Name)
		return
	}
	if err != nil {
		s.answerSubmit(w, r, err)
		return
	}
	if res.Fire.State != store.FireStarted {
		fail(w, "trigger %s: %s", row.Name, res.Fire.Reason)
		return
	}
	ok(w, &api.TriggerFireAnswer{Key: res.Fire.Key, Started: res.Fire.Started})
}

// scopeAllows reports whether a token of scope may make request r on
// route: a trigger's token fires that trigger, and nothing else but read
// the server's settings (the same for everyone), which every client reads
// when it connects: without them kolejka-client could not fire it.
func scopeAllows(scope string, route string, r *http.Request) bool {
	if route == "/settings/" && r.Method == http.MethodGet {
		return true
	}
	return route == "/trigger/<name>/" && r.Method == http.MethodPost && scope == triggerScope(r.PathValue("name")) &&
		r.URL.Query().Get("owner") == ""
}
