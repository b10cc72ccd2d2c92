package spec

// This file owns how values are spelled when written: sizes as "<bytes>b" and
// times as Python's str(timedelta.total_seconds()) + "s", which is what
// Kolejka writes and what its parsers read back.

import (
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"
)

// FormatSize writes a size as Kolejka does: the number of bytes and "b".
func FormatSize(n int64) string {
	return strconv.FormatInt(n, 10) + "b"
}

// FormatTime writes a time as Kolejka does: seconds in Python's float repr
// and "s", e.g. "10.0s", "0.5s", "1e-06s". The duration is first rounded to
// whole microseconds (ties to even), Kolejka's resolution.
func FormatTime(d time.Duration) string {
	us := roundMicroseconds(d)
	// Python divides the exact integer of microseconds by 10⁶ with one
	// correct rounding; big.Rat does the same (float64(us)/1e6 would round
	// twice above 2⁵³).
	secs, _ := new(big.Rat).SetFrac64(us, 1_000_000).Float64()
	return pythonFloatRepr(secs) + "s"
}

// roundMicroseconds rounds d to whole microseconds, ties to even.
func roundMicroseconds(d time.Duration) int64 {
	q, r := int64(d)/1000, int64(d)%1000
	switch {
	case r > 500 || (r == 500 && q%2 != 0):
		q++
	case r < -500 || (r == -500 && q%2 != 0):
		q--
	}
	return q
}

// pythonFloatRepr spells x as Python's repr(float) does: the shortest digits
// that read back as x; fixed notation when 1e-4 <= |x| < 1e16, always with a
// digit after the point; otherwise d[.ddd]e±XX with at least two exponent
// digits.
func pythonFloatRepr(x float64) string {
	switch {
	case math.IsNaN(x):
		return "nan"
	case math.IsInf(x, 1):
		return "inf"
	case math.IsInf(x, -1):
		return "-inf"
	case x == 0:
		if math.Signbit(x) {
			return "-0.0"
		}
		return "0.0"
	}
	sign := ""
	if x < 0 {
		sign, x = "-", -x
	}
	// Go's shortest round-trip digits are the same as Python's (both pick
	// the shortest, then the closest to x); only the layout differs.
	e := strconv.FormatFloat(x, 'e', -1, 64) // "d.ddde±XX"
	mant, exp, _ := strings.Cut(e, "e")
	digits := strings.Replace(mant, ".", "", 1)
	exp10, _ := strconv.Atoi(exp)
	point := exp10 + 1 // x = 0.digits × 10^point
	var b strings.Builder
	b.WriteString(sign)
	if -4 < point && point <= 16 {
		switch {
		case point <= 0:
			b.WriteString("0.")
			b.WriteString(strings.Repeat("0", -point))
			b.WriteString(digits)
		case point >= len(digits):
			b.WriteString(digits)
			b.WriteString(strings.Repeat("0", point-len(digits)))
			b.WriteString(".0")
		default:
			b.WriteString(digits[:point])
			b.WriteByte('.')
			b.WriteString(digits[point:])
		}
		return b.String()
	}
	b.WriteByte(digits[0])
	if len(digits) > 1 {
		b.WriteByte('.')
		b.WriteString(digits[1:])
	}
	b.WriteByte('e')
	if exp10 < 0 {
		b.WriteByte('-')
		exp10 = -exp10
	} else {
		b.WriteByte('+')
	}
	if exp10 < 10 {
		b.WriteByte('0')
	}
	b.WriteString(strconv.Itoa(exp10))
	return b.String()
}

// pythonNumberString turns a JSON number literal into what Kolejka's str()
// makes of the value Python's json module reads: an integer literal stays as
// written (Python ints are unbounded), anything with a fraction or exponent
// is a float in repr form. ok is false for floats out of range (Python would
// write "inf").
func pythonNumberString(literal string) (string, bool) {
	if !strings.ContainsAny(literal, ".eE") {
		if literal == "-0" {
			return "0", true
		}
		return literal, true
	}
	f, err := strconv.ParseFloat(literal, 64)
	if err != nil || math.IsInf(f, 0) {
		return "", false
	}
	return pythonFloatRepr(f), true
}
