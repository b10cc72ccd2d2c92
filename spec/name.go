package spec

// This file owns the rule for the names of grid objects a user picks:
// queues and task types. They appear in URLs, command lines, metric labels
// and file names, so they are kept to characters none of those quote.

import (
	"fmt"
	"strings"
)

// MaxNameLength is the longest name of a queue or task type.
const MaxNameLength = 64

// DefaultQueue is the queue of a task that names none: the only queue
// Kolejka's clients and foremen know.
const DefaultQueue = "default"

// CheckName reports why s is not a name of a queue or task type: 1 to
// MaxNameLength characters among ASCII letters, digits, '_', '-' and '.',
// starting with a letter or a digit.
func CheckName(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("empty name")
	case len(s) > MaxNameLength:
		return fmt.Errorf("%q is longer than %d characters", s[:16]+"…", MaxNameLength)
	case !isAlnum(s[0]):
		return fmt.Errorf("%q is not a name: it must start with a letter or a digit", s)
	}
	if i := strings.IndexFunc(s, func(r rune) bool { return r > 127 || !(isAlnum(byte(r)) || r == '_' || r == '-' || r == '.') }); i >= 0 {
		return fmt.Errorf("%q is not a name: only letters, digits, '_', '-' and '.' (found %q)", s, []rune(s[i:])[0])
	}
	return nil
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}
