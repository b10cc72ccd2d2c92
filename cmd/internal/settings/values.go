package settings

// This file owns the Values of the kinds of settings the commands read,
// each parsing as the task format and kolejka.conf spell that kind.

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/kolejka-go/kolejka/internal/config"
	"github.com/kolejka-go/kolejka/spec"
)

// String stores the text as it is.
func String(dst *string) Value {
	return func(v string) error { *dst = v; return nil }
}

// Trim gives v the text without surrounding white space.
func Trim(v Value) Value {
	return func(s string) error { return v(strings.TrimSpace(s)) }
}

// Size stores a size in bytes (spec.ParseSize: "64M", "1.5G").
func Size(dst *int64) Value {
	return func(v string) error {
		n, err := spec.ParseSize(v)
		if err != nil {
			return err
		}
		*dst = n
		return nil
	}
}

// SizeOrUnbounded is Size that also takes -1, for "no bound".
func SizeOrUnbounded(dst *int64) Value {
	size := Size(dst)
	return func(v string) error {
		if strings.TrimSpace(v) == "-1" {
			*dst = -1
			return nil
		}
		return size(v)
	}
}

// Duration stores a time (spec.ParseTime: "10" seconds, "500m", "2M", "1D").
func Duration(dst *time.Duration) Value {
	return func(v string) error {
		d, err := spec.ParseTime(v)
		if err != nil {
			return err
		}
		*dst = d
		return nil
	}
}

// PositiveDuration is Duration that refuses zero.
func PositiveDuration(dst *time.Duration) Value {
	return func(v string) error {
		d, err := spec.ParseTime(v)
		if err != nil {
			return err
		}
		if d <= 0 {
			return fmt.Errorf("must be positive, not %q", v)
		}
		*dst = d
		return nil
	}
}

// Int stores a whole number.
func Int(dst *int) Value {
	return func(v string) error {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			return fmt.Errorf("%q is not a whole number", v)
		}
		*dst = n
		return nil
	}
}

// IntAtLeast is Int that refuses numbers below least.
func IntAtLeast(dst *int, least int) Value {
	return func(v string) error {
		var n int
		if err := Int(&n)(v); err != nil {
			return err
		}
		if n < least {
			return fmt.Errorf("must be at least %d", least)
		}
		*dst = n
		return nil
	}
}

// Bool stores a boolean (spec.ParseBool: true/false, yes/no, 1/0).
func Bool(dst *bool) Value {
	return func(v string) error {
		b, err := spec.ParseBool(v)
		if err != nil {
			return err
		}
		*dst = b
		return nil
	}
}

// List stores a comma list, blanks dropped (config.SplitList).
func List(dst *[]string) Value {
	return func(v string) error { *dst = config.SplitList(v); return nil }
}

// LimitList stores limits written "cpus=1,memory=1G" (spec.ParseLimitList),
// replacing the whole of dst.
func LimitList(dst *spec.Limits) Value {
	return func(v string) error {
		l, err := spec.ParseLimitList(v)
		if err != nil {
			return err
		}
		*dst = l
		return nil
	}
}

// limit stores one limit key into dst (spec.ParseLimit), leaving the
// others as they are.
func limit(dst *spec.Limits, key string) Value {
	return func(v string) error { return spec.ParseLimit(dst, key, v) }
}
