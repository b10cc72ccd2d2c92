package server_test

import (
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/kolejka-go/kolejka/internal/server"
)

// CSRF as Django checks it for Kolejka's client, on plain HTTP.
func TestCSRF(t *testing.T) {
	e := newEnv(t, func(c *server.Config) { c.TrustedOrigins = []string{"proxy.example.org"} })
	e.standardUsers()
	task := []byte(`{"image": "busybox", "args": ["true"], "requires": ["nobody"]}`)

	post := func(c *pyClient, csrf, referer string) answer {
		req, _ := http.NewRequest("POST", c.url("/task/task/"), strings.NewReader(string(task)))
		if csrf != "-" {
			req.Header.Set("X-CSRFToken", csrf)
		}
		if referer != "-" {
			req.Header.Set("Referer", referer)
		}
		resp, err := c.hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return readAnswer(t, resp)
	}
	alice := e.py("alice")
	good := alice.cookie("csrftoken")
	cases := []struct {
		name, csrf, referer string
		want                int
		reason              string
	}{
		{"token and same-origin referer", good, e.base, 200, ""},
		{"missing token", "-", e.base, 403, "CSRF token missing or incorrect"},
		{"wrong token", "0123456789abcdef0123456789abcdef", e.base, 403, "CSRF token missing or incorrect"},
		{"foreign referer", good, "http://evil.example.com/kolejka/", 403, "Referer does not match"},
		{"malformed referer", good, "not a url", 403, "Referer is malformed"},
		{"missing referer on plain HTTP (accepted, as Django)", good, "-", 200, ""},
		{"trusted proxy origin", good, "https://proxy.example.org/kolejka/", 200, ""},
		{"https referer of the same host (TLS-terminating proxy)", good, strings.Replace(e.base, "http://", "https://", 1), 200, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := e.count("tasks")
			a := post(alice, c.csrf, c.referer)
			if a.code != c.want {
				t.Fatalf("got %v, want %d", a, c.want)
			}
			if c.want == 403 {
				if !strings.Contains(string(a.body), c.reason) {
					t.Errorf("reason %q lacks %q", a.body, c.reason)
				}
				if n := e.count("tasks"); n != before {
					t.Errorf("refused request stored a task: %d → %d", before, n)
				}
			}
		})
	}

	t.Run("no csrf cookie", func(t *testing.T) {
		c := newPyClient(t, e.base)
		c.login("alice", password("alice"))
		// Drop the csrftoken cookie, keep the session.
		jar, _ := cookiejar.New(nil)
		u := mustURL(e.base)
		for _, ck := range c.jar.Cookies(u) {
			if ck.Name == "sessionid" {
				jar.SetCookies(u, []*http.Cookie{ck})
			}
		}
		c.jar, c.hc.Jar = jar, jar
		a := post(c, good, e.base)
		if a.code != 403 || !strings.Contains(string(a.body), "CSRF cookie not set") {
			t.Errorf("got %v", a)
		}
	})
	t.Run("login needs the token too", func(t *testing.T) {
		c := newPyClient(t, e.base)
		c.get("/logout/")
		req, _ := http.NewRequest("POST", c.url("/login/"), strings.NewReader("username=alice&password="+password("alice")))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Referer", e.base)
		resp, err := c.hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if a := readAnswer(t, resp); a.code != 403 || c.cookie("sessionid") != "" {
			t.Errorf("login without CSRF token: %v (session %q)", a, c.cookie("sessionid"))
		}
	})
	t.Run("bearer needs no csrf", func(t *testing.T) {
		a := e.tok("alice").do("POST", "/task/task/", task)
		mustOK(t, a)
	})
	t.Run("bad login", func(t *testing.T) {
		c := newPyClient(t, e.base)
		a := c.login("alice", "wrong")
		if a.code != 200 || a.status() != "FAIL" || c.cookie("sessionid") != "" {
			t.Errorf("bad password: %v", a)
		}
		a = c.login("nobody", "x")
		if a.code != 200 || a.status() != "FAIL" {
			t.Errorf("unknown user: %v", a)
		}
		if a := c.get("/settings/"); a.code != 403 {
			t.Errorf("settings after failed login: %v", a)
		}
	})
	t.Run("csrf token rotates at login", func(t *testing.T) {
		c := newPyClient(t, e.base)
		c.get("/logout/")
		before := c.cookie("csrftoken")
		c.complex("POST", "/login/", "application/x-www-form-urlencoded", []byte("username=bob&password="+password("bob")))
		if after := c.cookie("csrftoken"); after == "" || after == before {
			t.Errorf("csrftoken %q → %q", before, after)
		}
		mustOK(t, c.post("/task/task/", task))
	})
}

// Over HTTPS the Referer is required and must be https and same-origin.
func TestCSRFOverTLS(t *testing.T) {
	e := newEnv(t)
	e.standardUsers()
	ts := httptest.NewTLSServer(e.srv.Handler())
	defer ts.Close()
	base := ts.URL + "/kolejka/"
	c := newPyClient(t, base)
	c.hc = ts.Client()
	c.hc.Jar = c.jar
	mustOK(t, c.login("alice", password("alice")))
	token := c.cookie("csrftoken")
	body := `{"image": "busybox", "args": ["true"], "requires": ["nobody"]}`
	for _, tc := range []struct {
		name, referer string
		want          int
		reason        string
	}{
		{"same origin", base, 200, ""},
		{"missing referer", "", 403, "no Referer"},
		{"insecure referer", strings.Replace(base, "https://", "http://", 1), 403, "insecure"},
		{"other port", "https://127.0.0.1:1/kolejka/", 403, "does not match"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", base+"task/task/", strings.NewReader(body))
			req.Header.Set("X-CSRFToken", token)
			if tc.referer != "" {
				req.Header.Set("Referer", tc.referer)
			}
			resp, err := c.hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			a := readAnswer(t, resp)
			if a.code != tc.want || !strings.Contains(string(a.body), tc.reason) {
				t.Errorf("got %v, want %d %q", a, tc.want, tc.reason)
			}
		})
	}
}
