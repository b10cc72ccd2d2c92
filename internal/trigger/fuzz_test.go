package trigger

import (
	"testing"
	"time"
)

// FuzzParseSchedule feeds ParseSchedule anything. It may refuse, but never
// panic; a schedule it accepts reads back from its own fields, has a first
// tick strictly after any time in this century, and that tick is due at
// itself, as the tick.
func FuzzParseSchedule(f *testing.F) {
	f.Add("*/5 * * * *", "Europe/Warsaw", "", int64(0))
	f.Add("30 2 * * *", "Europe/Warsaw", "", int64(7_654_321))
	f.Add("0 0 29 2 *", "", "", int64(123_456_789))
	f.Add("@weekly", "America/Sao_Paulo", "", int64(-99_999_999))
	f.Add("", "", "1.5s", int64(42))
	f.Add("CRON_TZ=UTC * * * * *", "", "", int64(0))
	f.Add("TZ=", "", "", int64(0))
	f.Add("0-59/7,3 1-5 */2 JAN-mar sun", "Australia/Lord_Howe", "", int64(1))
	f.Fuzz(func(t *testing.T, cronExpr, tz, every string, offset int64) {
		s, err := ParseSchedule(cronExpr, tz, every)
		if err != nil {
			if s != nil {
				t.Fatal("refused but returned a schedule")
			}
			return
		}
		c, z, e := s.Fields()
		if again, err := ParseSchedule(c, z, e); err != nil || again.String() != s.String() {
			t.Fatalf("%s: its fields %q %q %q read back as %v, %v", s, c, z, e, again, err)
		}
		// Any second of 2001-2094, where robfig's five-year horizon always
		// holds a tick of an accepted expression (from 2096 on, 29 February
		// is eight years away: 2100 is no leap year).
		base := time.Date(2048, 1, 1, 0, 0, 0, 0, time.UTC)
		span := int64(46 * 365 * 24 * 3600)
		at := base.Add(time.Duration(offset%span) * time.Second)
		first := s.First(at)
		if !first.After(at) {
			t.Fatalf("%s: First(%s) = %s", s, at, first)
		}
		tick, following, due := s.Due(first, first)
		if !due || !tick.Equal(first) || !following.After(first) {
			t.Fatalf("%s: Due(%s, itself) = %s, %s, %v", s, first, tick, following, due)
		}
		if _, following, due := s.Due(first, first.Add(-time.Nanosecond)); due || !following.Equal(first) {
			t.Fatalf("%s: Due before the tick is due (following %s)", s, following)
		}
	})
}
