package server

// This file owns the index, sign-in and sign-out, and the settings, as
// Kolejka's client uses them: GET /logout/ (clears the session, sets the
// csrftoken cookie), POST /login/ with form fields username and password
// (sets sessionid, rotates csrftoken as Django does), then GET /settings/.

import (
	"errors"
	"net/http"
	"net/url"

	"github.com/kolejka-go/kolejka/api"
	"github.com/kolejka-go/kolejka/internal/server/auth"
	"github.com/kolejka-go/kolejka/internal/server/store"
	"github.com/kolejka-go/kolejka/spec"
)

// csrfCookieAge is Django's CSRF_COOKIE_AGE (one year).
const csrfCookieAge = 31449600

func (s *Server) handleIndex(w http.ResponseWriter, r *http.Request) {
	s.ensureCSRFCookie(w, r)
	plain(w, http.StatusOK, "INDEX")
}

// ensureCSRFCookie (re)sends the csrftoken cookie, making one if the
// request has none.
func (s *Server) ensureCSRFCookie(w http.ResponseWriter, r *http.Request) {
	token := ""
	if c, err := r.Cookie(auth.CSRFCookie); err == nil && validCSRFToken(c.Value) {
		token = c.Value
	}
	if token == "" {
		token = auth.RandomKey(16)
	}
	s.setCSRFCookie(w, r, token)
}

func (s *Server) setCSRFCookie(w http.ResponseWriter, r *http.Request, token string) {
	http.SetCookie(w, &http.Cookie{
		Name: auth.CSRFCookie, Value: token, Path: "/", MaxAge: csrfCookieAge,
		Secure: r.TLS != nil, SameSite: http.SameSiteLaxMode,
	})
}

func validCSRFToken(v string) bool {
	if len(v) < 16 || len(v) > 64 {
		return false
	}
	for _, c := range v {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

func (s *Server) handleLogin(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		s.ensureCSRFCookie(w, r)
		ok(w, &api.Envelope{})
	case http.MethodPost:
		body, good := s.readBody(w, r)
		if !good {
			return
		}
		form, err := url.ParseQuery(string(body))
		if err != nil {
			fail(w, "login: the body is not a form (%v)", err)
			return
		}
		name, password := form.Get("username"), form.Get("password")
		u, err := s.db.UserByName(r.Context(), name)
		if errors.Is(err, store.ErrNotFound) {
			auth.WasteTime(password)
			s.ensureCSRFCookie(w, r)
			fail(w, "invalid username or password")
			return
		}
		if err != nil {
			s.internal(w, r, err)
			return
		}
		good, err = auth.CheckPassword(u.Password, password)
		if err != nil || !good {
			if err != nil {
				s.log.Error("unreadable password hash", "user", u.Name, "error", err)
			}
			s.ensureCSRFCookie(w, r)
			fail(w, "invalid username or password")
			return
		}
		if c, err := r.Cookie(auth.SessionCookie); err == nil && c.Value != "" {
			s.auth.drop("s:" + auth.Digest(c.Value))
			if err := s.db.DeleteSession(r.Context(), auth.Digest(c.Value)); err != nil {
				s.internal(w, r, err)
				return
			}
		}
		id := auth.RandomKey(32)
		now := s.now()
		if err := s.db.CreateSession(r.Context(), auth.Digest(id), u.ID, now, now.Add(s.cfg.SessionAge)); err != nil {
			s.internal(w, r, err)
			return
		}
		http.SetCookie(w, &http.Cookie{
			Name: auth.SessionCookie, Value: id, Path: "/", MaxAge: int(s.cfg.SessionAge.Seconds()),
			HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteLaxMode,
		})
		// Django rotates the CSRF token at login.
		s.setCSRFCookie(w, r, auth.RandomKey(16))
		ok(w, &api.Envelope{})
	default:
		notAllowed(w, "GET", "HEAD", "POST")
	}
}

func (s *Server) handleLogout(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(auth.SessionCookie); err == nil && c.Value != "" {
		s.auth.drop("s:" + auth.Digest(c.Value))
		if err := s.db.DeleteSession(r.Context(), auth.Digest(c.Value)); err != nil {
			s.internal(w, r, err)
			return
		}
		http.SetCookie(w, &http.Cookie{Name: auth.SessionCookie, Value: "", Path: "/", MaxAge: -1,
			HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteLaxMode})
	}
	s.ensureCSRFCookie(w, r)
	ok(w, &api.Envelope{})
}

// extensions are what this server offers beyond Kolejka, announced in
// /settings/ (api.Ext*): callbacks only when some callback hosts are
// allowed.
func (s *Server) extensions() []string {
	ext := []string{api.ExtBearer, api.ExtHeartbeat, api.ExtLongPoll, api.ExtDequeueDefaults, api.ExtRelease, api.ExtQueues, api.ExtTypes,
		api.ExtTaskList, api.ExtTaskDetail, api.ExtCancel, api.ExtClone, api.ExtWorkflows, api.ExtTriggers, api.ExtNodes}
	if len(s.cfg.CallbackHosts) > 0 {
		ext = append(ext, api.ExtCallbacks)
	}
	return ext
}

func (s *Server) handleSettings(w http.ResponseWriter, r *http.Request) {
	if getBy(w, r) == nil {
		return
	}
	s.ensureCSRFCookie(w, r)
	ok(w, &api.SettingsAnswer{Settings: api.Settings{
		BlobHashAlgorithm: "sha256",
		Extensions:        s.extensions(),
		LeaseTime:         spec.FormatTime(s.cfg.LeaseTime),
		Limits:            s.cfg.Limits,
		MaxResultBody:     spec.FormatSize(s.cfg.MaxResultBody),
		MaxWait:           spec.FormatTime(s.cfg.MaxWait),
	}})
}
