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
// request has none, and returns its value.
func (s *Server) ensureCSRFCookie(w http.ResponseWriter, r *http.Request) string {
	token := ""
	if c, err := r.Cookie(auth.CSRFCookie); err == nil && validCSRFToken(c.Value) {
		token = c.Value
	}
	if token == "" {
		token = auth.RandomKey(16)
	}
	s.setCSRFCookie(w, r, token)
	return token
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
		good, err = s.signIn(w, r, form.Get("username"), form.Get("password"))
		switch {
		case err != nil:
			s.internal(w, r, err)
		case !good:
			fail(w, "invalid username or password")
		default:
			ok(w, &api.Envelope{})
		}
	default:
		notAllowed(w, "GET", "HEAD", "POST")
	}
}

func (s *Server) handleLogout(w http.ResponseWriter, r *http.Request) {
	if err := s.signOut(w, r); err != nil {
		s.internal(w, r, err)
		return
	}
	ok(w, &api.Envelope{})
}

// signIn checks name and password and, when they match, starts a session:
// it drops the request's old one, sets the sessionid cookie and rotates
// csrftoken as Django does. On a mismatch it (re)sends csrftoken and
// returns false. The API's /login/ and the UI's sign-in both use it.
func (s *Server) signIn(w http.ResponseWriter, r *http.Request, name, password string) (bool, error) {
	u, err := s.db.UserByName(r.Context(), name)
	if errors.Is(err, store.ErrNotFound) {
		auth.WasteTime(password)
		s.ensureCSRFCookie(w, r)
		return false, nil
	}
	if err != nil {
		return false, err
	}
	good, err := auth.CheckPassword(u.Password, password)
	if err != nil || !good {
		if err != nil {
			s.log.Error("unreadable password hash", "user", u.Name, "error", err)
		}
		s.ensureCSRFCookie(w, r)
		return false, nil
	}
	if c, err := r.Cookie(auth.SessionCookie); err == nil && c.Value != "" {
		if err := s.db.DeleteSession(r.Context(), auth.Digest(c.Value)); err != nil {
			return false, err
		}
		// After the delete: a replica that re-reads finds it gone.
		s.forgetCredentials("s:" + auth.Digest(c.Value))
	}
	id := auth.RandomKey(32)
	now := s.now()
	if err := s.db.CreateSession(r.Context(), auth.Digest(id), u.ID, now, now.Add(s.cfg.SessionAge)); err != nil {
		return false, err
	}
	http.SetCookie(w, &http.Cookie{
		Name: auth.SessionCookie, Value: id, Path: "/", MaxAge: int(s.cfg.SessionAge.Seconds()),
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteLaxMode,
	})
	// Django rotates the CSRF token at login.
	s.setCSRFCookie(w, r, auth.RandomKey(16))
	return true, nil
}

// signOut ends the request's session, if any, and (re)sends csrftoken.
func (s *Server) signOut(w http.ResponseWriter, r *http.Request) error {
	if c, err := r.Cookie(auth.SessionCookie); err == nil && c.Value != "" {
		if err := s.db.DeleteSession(r.Context(), auth.Digest(c.Value)); err != nil {
			return err
		}
		// After the delete: a replica that re-reads finds it gone.
		s.forgetCredentials("s:" + auth.Digest(c.Value))
		http.SetCookie(w, &http.Cookie{Name: auth.SessionCookie, Value: "", Path: "/", MaxAge: -1,
			HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteLaxMode})
	}
	s.ensureCSRFCookie(w, r)
	return nil
}

// extensions are what this server offers beyond Kolejka, announced in
// /settings/ (api.Ext*): callbacks only when some callback hosts are
// allowed.
func (s *Server) extensions() []string {
	ext := []string{api.ExtBearer, api.ExtHeartbeat, api.ExtLongPoll, api.ExtDequeueDefaults, api.ExtRelease, api.ExtQueues, api.ExtTypes,
		api.ExtTaskList, api.ExtTaskDetail, api.ExtCancel, api.ExtClone, api.ExtWorkflows, api.ExtTriggers, api.ExtNodes, api.ExtImages, api.ExtRoomWake}
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
