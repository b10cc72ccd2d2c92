package tasktype

// This file owns the placeholder syntax: {name} for a parameter, {{ and }}
// for literal braces, nothing else.

import (
	"fmt"
	"strings"
)

// piece is a literal run of a template or, when param is set, a placeholder.
type piece struct {
	lit   string
	param string
}

// compile splits s into pieces; problem says why s is not a template.
func compile(s string) (pieces []piece, problem string) {
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			pieces = append(pieces, piece{lit: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '{' && i+1 < len(s) && s[i+1] == '{', c == '}' && i+1 < len(s) && s[i+1] == '}':
			lit.WriteByte(c)
			i++
		case c == '{':
			end := strings.IndexByte(s[i+1:], '}')
			if end < 0 {
				return nil, fmt.Sprintf("%q has a \"{\" with no \"}\" (write \"{{\" for a literal brace)", s)
			}
			name := s[i+1 : i+1+end]
			if !isIdentifier(name) {
				return nil, fmt.Sprintf("%q has placeholder {%s}: a parameter name is a letter or _ followed by letters, digits and _ (write \"{{\" for a literal brace)", s, name)
			}
			flush()
			pieces = append(pieces, piece{param: name})
			i += end + 1
		case c == '}':
			return nil, fmt.Sprintf("%q has a \"}\" with no \"{\" (write \"}}\" for a literal brace)", s)
		default:
			lit.WriteByte(c)
		}
	}
	flush()
	return pieces, ""
}

// expand fills a compiled template with values, in one pass: braces in a
// value are never read as placeholders.
func expand(pieces []piece, values map[string]string) string {
	var b strings.Builder
	for _, p := range pieces {
		if p.param != "" {
			b.WriteString(values[p.param])
		} else {
			b.WriteString(p.lit)
		}
	}
	return b.String()
}

// params lists the parameters pieces use.
func params(pieces []piece) []string {
	var out []string
	for _, p := range pieces {
		if p.param != "" {
			out = append(out, p.param)
		}
	}
	return out
}

// isIdentifier: a letter or _, then letters, digits and _ (ASCII).
func isIdentifier(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		letter := 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || r == '_'
		if !letter && (i == 0 || r < '0' || r > '9') {
			return false
		}
	}
	return true
}
