package settings

// This file owns the Values of the kinds of settings the commands read,
// each parsing as the task format and kolejka.conf spell that kind.

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/kolejka-go/kolejka/internal/config"
	"github.com/kolejka-go/kolejka/spec"
)

// parsed is the Value storing what parse makes of the text; on an error
// dst keeps its value.
func parsed[T any](dst *T, parse func(string) (T, error)) Value {
	return func(v string) error {
		x, err := parse(v)
		if err != nil {
			return err
		}
		*dst = x
		return nil
	}
}

// String stores the text as it is.
func String(dst *string) Value {
	return func(v string) error { *dst = v; return nil }
}

// Trim gives v the text without surrounding white space.
func Trim(v Value) Value {
	return func(s string) error { return v(strings.TrimSpace(s)) }
}

// Size stores a size in bytes (spec.ParseSize: "64M", "1.5G").
func Size(dst *int64) Value { return parsed(dst, spec.ParseSize) }

// SizeOrUnbounded is Size that also takes -1, for "no bound".
func SizeOrUnbounded(dst *int64) Value {
	return parsed(dst, func(v string) (int64, error) {
		if strings.TrimSpace(v) == "-1" {
			return -1, nil
		}
		return spec.ParseSize(v)
	})
}

// Duration stores a time (spec.ParseTime: "10" seconds, "500m", "2M", "1D").
func Duration(dst *time.Duration) Value { return parsed(dst, spec.ParseTime) }

// PositiveDuration is Duration that refuses zero.
func PositiveDuration(dst *time.Duration) Value {
	return parsed(dst, func(v string) (time.Duration, error) {
		d, err := spec.ParseTime(v)
		if err == nil && d <= 0 {
			err = fmt.Errorf("must be positive, not %q", v)
		}
		return d, err
	})
}

// Int stores a whole number.
func Int(dst *int) Value { return IntAtLeast(dst, math.MinInt) }

// IntAtLeast is Int that refuses numbers below least.
func IntAtLeast(dst *int, least int) Value {
	return parsed(dst, func(v string) (int, error) {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		switch {
		case err != nil:
			return 0, fmt.Errorf("%q is not a whole number", v)
		case n < least:
			return 0, fmt.Errorf("must be at least %d", least)
		}
		return n, nil
	})
}

// Bool stores a boolean (spec.ParseBool: true/false, yes/no, 1/0).
func Bool(dst *bool) Value { return parsed(dst, spec.ParseBool) }

// List stores a comma list, blanks dropped (config.SplitList).
func List(dst *[]string) Value {
	return func(v string) error { *dst = config.SplitList(v); return nil }
}

// LimitList stores limits written "cpus=1,memory=1G" (spec.ParseLimitList),
// replacing the whole of dst.
func LimitList(dst *spec.Limits) Value { return parsed(dst, spec.ParseLimitList) }

// limit stores one limit key into dst (spec.ParseLimit), leaving the
// others as they are.
func limit(dst *spec.Limits, key string) Value {
	return func(v string) error { return spec.ParseLimit(dst, key, v) }
}
