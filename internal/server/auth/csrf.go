package auth

// This file owns the CSRF check, as Django's CsrfViewMiddleware does it for
// Kolejka's client (which echoes the csrftoken cookie in X-CSRFToken and
// sends its server URL as Referer):
//
//   - "safe" methods (GET, HEAD, OPTIONS, TRACE) are never checked;
//   - the X-CSRFToken header must equal the csrftoken cookie (double
//     submit: a foreign page can make the browser send the cookie but
//     cannot read it to put it in a header);
//   - over HTTPS the Referer must be present and same-origin (scheme, host
//     and port), as Django's strict referer check;
//   - over plain HTTP Django does not look at the Referer. We do where it
//     is given: a foreign host is refused. An absent Referer is accepted on
//     HTTP, as Django does, since the token already proves the request came
//     from someone who could read the cookie. Host names are compared
//     without scheme and port on HTTP, so a TLS-terminating proxy in front
//     (client says https://host, we see http with Host: host) works.

import (
	"crypto/subtle"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// CSRF failures; the server answers them with 403 and the reason.
var (
	ErrCSRFCookie     = errors.New("CSRF cookie not set")
	ErrCSRFToken      = errors.New("CSRF token missing or incorrect")
	ErrNoReferer      = errors.New("referer checking failed: no Referer")
	ErrBadReferer     = errors.New("referer checking failed: Referer is malformed")
	ErrInsecureRefer  = errors.New("referer checking failed: Referer is insecure while host is secure")
	ErrForeignReferer = errors.New("referer checking failed: Referer does not match any trusted origin")
)

// Cookie names, as Django's defaults (Kolejka's client reads them by name).
const (
	CSRFCookie    = "csrftoken"
	SessionCookie = "sessionid"
	CSRFHeader    = "X-CSRFToken"
)

// Safe reports whether method needs no CSRF check (RFC 9110 safe methods).
func Safe(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}

// CheckCSRF checks an unsafe request authenticated (or about to be) by
// cookies. secure says whether it came over TLS; trusted lists extra
// origins ("host" or "host:port") allowed in Referer.
func CheckCSRF(r *http.Request, secure bool, trusted []string) error {
	if err := checkReferer(r, secure, trusted); err != nil {
		return err
	}
	return checkToken(r, r.Header.Get(CSRFHeader))
}

// checkToken compares the token a request carries with its cookie.
func checkToken(r *http.Request, token string) error {
	c, err := r.Cookie(CSRFCookie)
	if err != nil || c.Value == "" {
		return ErrCSRFCookie
	}
	if token == "" || subtle.ConstantTimeCompare([]byte(token), []byte(c.Value)) != 1 {
		return ErrCSRFToken
	}
	return nil
}

// CSRFField is the form field an HTML form carries the token in (Django's
// name).
const CSRFField = "csrfmiddlewaretoken"

// CheckCSRFForm is CheckCSRF that also takes the token from the form
// field CSRFField of a form-encoded body, as Django does for its forms
// (the header wins when both are given). It parses the form: only for
// handlers that read the body as a form, of at most maxFormBody bytes.
func CheckCSRFForm(r *http.Request, secure bool, trusted []string) error {
	if err := checkReferer(r, secure, trusted); err != nil {
		return err
	}
	token := r.Header.Get(CSRFHeader)
	if token == "" {
		r.Body = http.MaxBytesReader(nil, r.Body, maxFormBody)
		token = r.PostFormValue(CSRFField)
	}
	return checkToken(r, token)
}

// maxFormBody bounds a form's body: the UI's forms are a few fields.
const maxFormBody = 64 << 10

func checkReferer(r *http.Request, secure bool, trusted []string) error {
	ref := r.Header.Get("Referer")
	if ref == "" {
		if secure {
			return ErrNoReferer
		}
		return nil
	}
	u, err := url.Parse(ref)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return ErrBadReferer
	}
	if secure {
		if u.Scheme != "https" {
			return ErrInsecureRefer
		}
		if sameHostPort(u.Host, "https", r.Host, "https") {
			return nil
		}
	} else if strings.EqualFold(u.Hostname(), hostname(r.Host)) {
		return nil
	}
	for _, t := range trusted {
		if strings.EqualFold(t, u.Host) || strings.EqualFold(t, u.Hostname()) {
			return nil
		}
	}
	return ErrForeignReferer
}

// sameHostPort compares two host[:port], filling in the default port of
// each one's scheme.
func sameHostPort(a, schemeA, b, schemeB string) bool {
	return strings.EqualFold(withPort(a, schemeA), withPort(b, schemeB))
}

func withPort(hostport, scheme string) string {
	if _, _, err := net.SplitHostPort(hostport); err == nil {
		return hostport
	}
	port := "80"
	if scheme == "https" {
		port = "443"
	}
	return net.JoinHostPort(strings.Trim(hostport, "[]"), port)
}

func hostname(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return strings.Trim(hostport, "[]")
}
