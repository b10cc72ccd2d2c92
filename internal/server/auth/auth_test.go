package auth

import (
	"net/http/httptest"
	"strings"
	"testing"
)

func TestPassword(t *testing.T) {
	h, err := HashPassword("secret")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Errorf("hash %q", h)
	}
	if ok, err := CheckPassword(h, "secret"); !ok || err != nil {
		t.Errorf("right password: %v %v", ok, err)
	}
	if ok, _ := CheckPassword(h, "Secret"); ok {
		t.Error("wrong password accepted")
	}
	h2, _ := HashPassword("secret")
	if h2 == h {
		t.Error("no salt")
	}
	for _, bad := range []string{"", "plain", "$argon2i$v=19$m=1,t=1,p=1$AAAA$AAAA", "$argon2id$v=19$m=0,t=1,p=1$AAAA$AAAA"} {
		if _, err := CheckPassword(bad, "x"); err != ErrBadHash {
			t.Errorf("%q: %v", bad, err)
		}
	}
	if k := RandomKey(16); len(k) != 32 || k == RandomKey(16) {
		t.Errorf("RandomKey %q", k)
	}
}

func TestCSRF(t *testing.T) {
	for _, c := range []struct {
		name           string
		secure         bool
		cookie, header string
		referer, host  string
		trusted        []string
		want           error
	}{
		{"ok http", false, "tok0123456789abc", "tok0123456789abc", "http://h:8000/k/", "h:8000", nil, nil},
		{"ok http without referer", false, "tok0123456789abc", "tok0123456789abc", "", "h", nil, nil},
		{"http foreign", false, "tok0123456789abc", "tok0123456789abc", "http://evil/", "h", nil, ErrForeignReferer},
		{"no cookie", false, "", "tok0123456789abc", "", "h", nil, ErrCSRFCookie},
		{"wrong header", false, "tok0123456789abc", "other", "", "h", nil, ErrCSRFToken},
		{"https ok", true, "tok0123456789abc", "tok0123456789abc", "https://h/k/", "h", nil, nil},
		{"https default port", true, "tok0123456789abc", "tok0123456789abc", "https://h:443/", "h", nil, nil},
		{"https no referer", true, "tok0123456789abc", "tok0123456789abc", "", "h", nil, ErrNoReferer},
		{"https insecure referer", true, "tok0123456789abc", "tok0123456789abc", "http://h/", "h", nil, ErrInsecureRefer},
		{"https other port", true, "tok0123456789abc", "tok0123456789abc", "https://h:8443/", "h", nil, ErrForeignReferer},
		{"https trusted", true, "tok0123456789abc", "tok0123456789abc", "https://proxy/", "h", []string{"proxy"}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "http://"+c.host+"/k/task/task/", nil)
			r.Host = c.host
			if c.cookie != "" {
				r.Header.Set("Cookie", CSRFCookie+"="+c.cookie)
			}
			r.Header.Set(CSRFHeader, c.header)
			if c.referer != "" {
				r.Header.Set("Referer", c.referer)
			}
			if err := CheckCSRF(r, c.secure, c.trusted); err != c.want {
				t.Errorf("got %v, want %v", err, c.want)
			}
		})
	}
}
