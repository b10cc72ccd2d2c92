// Package observerwire holds what both ends of the observer protocol (HTTP/1.1
// over a unix socket, spoken by hand to stay byte-compatible with Kolejka's
// Python client) read the same way: the daemon in internal/observer/daemon
// and the Go client in observer.
package observerwire

import "strings"

// HasToken reports whether a comma-separated header holds token, compared
// without case (Connection: keep-alive, close).
func HasToken(values []string, token string) bool {
	for _, v := range values {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// Clip shortens what the other end sent for an error message.
func Clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
