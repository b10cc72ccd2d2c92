package spec

// This file owns the value parsers shared by task files, CLI flags and INI
// configuration: sizes, times, big integers, whole numbers and booleans.
//
// Kolejka parses a quantity by stripping the string, peeling known suffix
// characters off its end (each multiplies) and handing the rest to Python's
// float(). We keep that grammar but compute exactly: the decimal number and
// the unit product are multiplied as rationals and rounded half to even, as
// Python's round() and timedelta do. For everything Kolejka writes this gives
// Kolejka's value; unlike a float it also reads back every int64 exactly.

import (
	"fmt"
	"math"
	"math/big"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

const (
	// maxUnits caps the suffixes of one quantity: nobody writes "64kkkkkk",
	// and the cap keeps the exact arithmetic small for hostile input.
	maxUnits = 16
	// maxDigits caps the significant digits of a number (Python's own limit
	// for int() of a string), for the same reason.
	maxDigits = 4300
)

// decimal is an exact decimal number: digits × 10^exp, with digits free of
// leading and trailing zeros ("" is zero).
type decimal struct {
	neg    bool
	digits string
	exp    int64
}

// scanDecimal reads the longest prefix of s in Python float() syntax without
// inf/nan: [+-] digits [. digits] [(e|E) [+-] digits], at least one digit in
// the mantissa. It returns how many bytes that prefix has; ok is false if s
// does not start with a number at all.
func scanDecimal(s string) (d decimal, n int, ok bool) {
	i := 0
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		d.neg = s[i] == '-'
		i++
	}
	intStart := i
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	intPart := s[intStart:i]
	fracPart := ""
	if i < len(s) && s[i] == '.' {
		j := i + 1
		for j < len(s) && isDigit(s[j]) {
			j++
		}
		if intPart != "" || j > i+1 {
			fracPart = s[i+1 : j]
			i = j
		}
	}
	if intPart == "" && fracPart == "" {
		return decimal{}, 0, false
	}
	var exp int64
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		j := i + 1
		neg := false
		if j < len(s) && (s[j] == '+' || s[j] == '-') {
			neg = s[j] == '-'
			j++
		}
		k := j
		for k < len(s) && isDigit(s[k]) {
			// Saturate: anything past 10^±(10^12) is as good as infinite.
			if exp < 1e12 {
				exp = exp*10 + int64(s[k]-'0')
			}
			k++
		}
		if k > j {
			if neg {
				exp = -exp
			}
			i = k
		} else {
			exp = 0
		}
	}
	digits := strings.TrimLeft(intPart+fracPart, "0")
	exp -= int64(len(fracPart))
	for len(digits) > 0 && digits[len(digits)-1] == '0' {
		digits = digits[:len(digits)-1]
		exp++
	}
	if digits == "" {
		exp = 0
	}
	d.digits, d.exp = digits, exp
	return d, i, true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// scale is a product of unit multipliers, kept exact as num/den.
type scale struct {
	num, den *big.Int
	log10    float64 // log10(num/den), to rule out huge values cheaply
}

func unitScale() scale { return scale{big.NewInt(1), big.NewInt(1), 0} }

func (s scale) times(num, den int64) scale {
	return scale{
		num:   new(big.Int).Mul(s.num, big.NewInt(num)),
		den:   new(big.Int).Mul(s.den, big.NewInt(den)),
		log10: s.log10 + math.Log10(float64(num)) - math.Log10(float64(den)),
	}
}

// quantityGrammar describes one kind of quantity for parseQuantity.
type quantityGrammar struct {
	what string // "size", "time", "big integer": used in error messages
	// base is the multiplier of a bare number: seconds are counted in
	// microseconds.
	base int64
	// unit returns the multiplier of a suffix character.
	unit func(r rune) (num, den int64, ok bool)
	// unknown explains an unknown suffix character.
	unknown func(r rune) string
}

// parseQuantity splits s into a decimal number and its unit product the way
// Kolejka does. The problem it returns is a phrase without the value; ""
// means success.
func parseQuantity(s string, g quantityGrammar) (decimal, scale, string) {
	t := strings.TrimSpace(s)
	if t == "" {
		return decimal{}, scale{}, "empty"
	}
	sc := unitScale().times(g.base, 1)
	end, units := len(t), 0
	for end > 0 {
		r, size := utf8.DecodeLastRuneInString(t[:end])
		num, den, ok := g.unit(r)
		if !ok {
			break
		}
		if units++; units > maxUnits {
			return decimal{}, scale{}, fmt.Sprintf("more than %d unit suffixes", maxUnits)
		}
		sc = sc.times(num, den)
		end -= size
	}
	// Python's float() strips the number again, so "64 M" is 64M.
	num := strings.TrimSpace(t[:end])
	if num == "" {
		if units > 0 {
			return decimal{}, scale{}, "no number before the unit"
		}
		return decimal{}, scale{}, "no number"
	}
	d, n, ok := scanDecimal(num)
	if ok && n == len(num) {
		return d, sc, ""
	}
	if isNonFinite(num) {
		return decimal{}, scale{}, "not a finite number"
	}
	if !ok {
		return decimal{}, scale{}, "not a number"
	}
	// Name the first character that is neither number nor unit: in "64MiB"
	// that is the "i" Kolejka's peeling stopped at.
	for _, r := range num[n:] {
		if _, _, ok := g.unit(r); ok {
			continue
		}
		switch {
		case r == '_':
			return decimal{}, scale{}, `"_" is not allowed in numbers`
		case unicode.IsLetter(r) || unicode.IsSymbol(r):
			return decimal{}, scale{}, fmt.Sprintf("unknown unit %q %s", string(r), g.unknown(r))
		}
		break
	}
	return decimal{}, scale{}, "malformed number"
}

// isNonFinite reports whether s is one of Python's float() spellings of an
// infinity or NaN, to say so rather than "not a number".
func isNonFinite(s string) bool {
	s = strings.TrimLeft(s, "+-")
	for _, w := range []string{"inf", "infinity", "nan"} {
		if strings.EqualFold(s, w) {
			return true
		}
	}
	return false
}

// rounding says how toInt64 treats a value that is not whole.
type rounding bool

const (
	roundHalfEven rounding = true  // Python round(): to nearest, ties to even
	requireWhole  rounding = false // not whole is an error
)

// toInt64 computes d × sc as a non-negative int64. Problems are phrases:
// "negative", "too large", "not a whole number".
func toInt64(d decimal, sc scale, mode rounding) (int64, string) {
	if d.digits == "" {
		return 0, ""
	}
	if d.neg {
		return 0, "negative"
	}
	// d × sc lies in [10^(mag-1), 10^mag); rule out the huge and the tiny
	// before doing exact arithmetic on them.
	mag := float64(len(d.digits)) + float64(d.exp) + sc.log10
	if mag-1 > 19.001 { // above 10^19 > MaxInt64
		return 0, "too large"
	}
	if mag < -1 { // below 0.1
		if mode == requireWhole {
			return 0, "not a whole number"
		}
		return 0, ""
	}
	if len(d.digits) > maxDigits {
		return 0, fmt.Sprintf("more than %d digits", maxDigits)
	}
	num, ok := new(big.Int).SetString(d.digits, 10)
	if !ok {
		return 0, "malformed number"
	}
	den := new(big.Int).Set(sc.den)
	num.Mul(num, sc.num)
	if d.exp >= 0 {
		num.Mul(num, new(big.Int).Exp(big.NewInt(10), big.NewInt(d.exp), nil))
	} else {
		den.Mul(den, new(big.Int).Exp(big.NewInt(10), big.NewInt(-d.exp), nil))
	}
	q, r := new(big.Int).QuoRem(num, den, new(big.Int))
	if r.Sign() != 0 {
		if mode == requireWhole {
			return 0, "not a whole number"
		}
		switch new(big.Int).Lsh(r, 1).Cmp(den) {
		case 1:
			q.Add(q, big.NewInt(1))
		case 0:
			if q.Bit(0) == 1 {
				q.Add(q, big.NewInt(1))
			}
		}
	}
	if !q.IsInt64() {
		return 0, "too large"
	}
	return q.Int64(), ""
}

func sizeGrammar() quantityGrammar {
	return quantityGrammar{
		what:    "size",
		base:    1,
		unit:    anyCaseUnits(sizeUnits),
		unknown: func(rune) string { return "(use b, k, m, g, t, p)" },
	}
}

// sizeUnits are the size suffixes, powers of 1024.
var sizeUnits = map[rune]int64{'b': 1, 'k': 1 << 10, 'm': 1 << 20, 'g': 1 << 30, 't': 1 << 40, 'p': 1 << 50}

// anyCaseUnits is the unit function of whole multipliers, by their
// lower-case suffix, written in either case.
func anyCaseUnits(multipliers map[rune]int64) func(rune) (int64, int64, bool) {
	return func(r rune) (int64, int64, bool) {
		m, ok := multipliers[asciiLower(r)]
		return m, 1, ok
	}
}

// timeGrammar counts in microseconds, Kolejka's (timedelta's) resolution; a
// bare number is seconds.
func timeGrammar() quantityGrammar {
	return quantityGrammar{
		what: "time",
		base: 1e6,
		unit: func(r rune) (int64, int64, bool) {
			switch r {
			case 'W':
				return 7 * 24 * 3600, 1, true
			case 'D':
				return 24 * 3600, 1, true
			case 'H':
				return 3600, 1, true
			case 'M':
				return 60, 1, true
			case 's':
				return 1, 1, true
			case 'm':
				return 1, 1e3, true
			case 'µ': // U+00B5 MICRO SIGN, as Kolejka's source spells it
				return 1, 1e6, true
			case 'n':
				return 1, 1e9, true
			}
			return 0, 0, false
		},
		unknown: func(r rune) string {
			const use = "use W, D, H, M, s, m, µ, n; units are case-sensitive"
			switch r {
			case 'μ':
				return "(that is U+03BC GREEK SMALL LETTER MU; microseconds are µ, U+00B5 MICRO SIGN)"
			case 'u':
				return "(microseconds are µ, U+00B5 MICRO SIGN; " + use + ")"
			case 'w', 'd', 'h', 'S':
				return fmt.Sprintf("(did you mean %q? %s)", string(otherCase(r)), use)
			}
			return "(" + use + ")"
		},
	}
}

// asciiLower lower-cases ASCII letters only: unicode.ToLower would turn the
// Kelvin sign into a "k".
func asciiLower(r rune) rune {
	if 'A' <= r && r <= 'Z' {
		return r + ('a' - 'A')
	}
	return r
}

func otherCase(r rune) rune {
	if unicode.IsUpper(r) {
		return unicode.ToLower(r)
	}
	return unicode.ToUpper(r)
}

func bigIntGrammar() quantityGrammar {
	return quantityGrammar{
		what:    "big integer",
		base:    1,
		unit:    anyCaseUnits(bigIntUnits),
		unknown: func(rune) string { return "(use k, m, g, t, p: powers of 1000)" },
	}
}

// bigIntUnits are the big integer suffixes, powers of 1000.
var bigIntUnits = map[rune]int64{'k': 1e3, 'm': 1e6, 'g': 1e9, 't': 1e12, 'p': 1e15}

// parseWith parses s by grammar g; the problem is a phrase, "" on success.
func parseWith(s string, g quantityGrammar, mode rounding) (int64, string) {
	d, sc, problem := parseQuantity(s, g)
	if problem != "" {
		return 0, problem
	}
	return toInt64(d, sc, mode)
}

func parseSize(s string) (int64, string) { return parseWith(s, sizeGrammar(), roundHalfEven) }

func parseBigInt(s string) (int64, string) { return parseWith(s, bigIntGrammar(), requireWhole) }

func parseTime(s string) (time.Duration, string) {
	us, problem := parseWith(s, timeGrammar(), roundHalfEven)
	if problem != "" {
		return 0, problem
	}
	if us > math.MaxInt64/int64(time.Microsecond) {
		return 0, "too large (at most 2562047H, about 292 years)"
	}
	return time.Duration(us) * time.Microsecond, ""
}

// ParseSize parses a size in bytes: a number, or a number followed by one or
// more suffixes that multiply: b=1, k=1024, m=1024², g=1024³, t=1024⁴,
// p=1024⁵, in any case. "64M" is 67108864, "1.5G" 1610612736, "64MB"
// 67108864. The number may be fractional or in exponent form ("1e3k"); the
// result is rounded to the nearest byte, ties to even, as Kolejka's
// int(round(x)). Surrounding white space is ignored.
func ParseSize(s string) (int64, error) { return parseValue(s, sizeGrammar().what, parseSize) }

// ParseTime parses a time: a number of seconds, or a number followed by
// case-sensitive suffixes that multiply: W week, D day, H hour, M minute,
// s second, m millisecond, µ (U+00B5) microsecond, n nanosecond. "500m" is
// half a second, "2M" two minutes, "10" ten seconds. The result is rounded to
// whole microseconds (Kolejka keeps a timedelta), ties to even.
func ParseTime(s string) (time.Duration, error) { return parseValue(s, timeGrammar().what, parseTime) }

// ParseBigInt parses a count with decimal SI suffixes: k=10³, m=10⁶,
// g=10⁹, t=10¹², p=10¹⁵ (in any case; several multiply). The number may be
// fractional if the product is whole: "1.5k" is 1500, "1.5" is an error.
func ParseBigInt(s string) (int64, error) { return parseValue(s, bigIntGrammar().what, parseBigInt) }

// parseValue runs parse, whose problem is a phrase ("" on success), and
// makes the problem the error of a public parser: `"64MiB" is not a size:
// unknown unit "i"`. what names the kind of value.
func parseValue[T any](s, what string, parse func(string) (T, string)) (T, error) {
	v, problem := parse(s)
	if problem != "" {
		var zero T
		return zero, fmt.Errorf("%q is not a %s: %s", s, what, problem)
	}
	return v, nil
}

// parseCount parses a whole number written as Python's int() reads it,
// without digit separators: [+-]digits, surrounded by optional white space.
func parseCount(s string) (int64, string) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, "empty"
	}
	d, n, ok := scanDecimal(t)
	if !ok || n != len(t) {
		return 0, "not a whole number"
	}
	digits := strings.TrimLeft(t, "+-")
	for i := 0; i < len(digits); i++ {
		if !isDigit(digits[i]) {
			return 0, "not a whole number"
		}
	}
	return toInt64(d, unitScale(), requireWhole)
}

// ParseBool parses true/false, yes/no or 1/0, in any case, with surrounding
// white space. Anything else is an error (Kolejka reads every other string,
// "maybe" included, as true).
func ParseBool(s string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "true", "yes", "1":
		return true, nil
	case "false", "no", "0":
		return false, nil
	}
	return false, fmt.Errorf("%q is not a boolean (use true/false, yes/no, 1/0)", s)
}
