package trigger

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func mustSchedule(t testing.TB, cronExpr, tz, every string) *Schedule {
	t.Helper()
	s, err := ParseSchedule(cronExpr, tz, every)
	if err != nil {
		t.Fatalf("ParseSchedule(%q, %q, %q): %v", cronExpr, tz, every, err)
	}
	return s
}

func mustZone(t testing.TB, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func TestParseScheduleRefusals(t *testing.T) {
	for _, tc := range []struct {
		name, cron, tz, every string
		want                  []string // the error's prefix (its field), then words it holds
	}{
		{"neither", "", "", "", []string{"cron, every: ", "one of them"}},
		{"blank", "  ", "", " ", []string{"cron, every: ", "one of them"}},
		{"both", "* * * * *", "", "1M", []string{"cron, every: ", "not both"}},
		{"tz alone", "", "UTC", "", []string{"cron, every: "}},
		{"tz with every", "", "Europe/Warsaw", "30s", []string{"tz: ", "only a cron schedule"}},
		{"bad cron", "61 * * * *", "", "", []string{"cron: ", `"61 * * * *"`, "above maximum"}},
		{"cron garbage", "every day", "", "", []string{"cron: ", "2 fields"}},
		{"cron bad name", "0 0 * foo *", "", "", []string{"cron: ", "foo"}},
		{"cron zero step", "*/0 * * * *", "", "", []string{"cron: ", "positive"}},
		{"six fields", "0 */5 * * * *", "", "", []string{"cron: ", "six fields", "seconds"}},
		{"seven fields", "0 0 0 * * * *", "", "", []string{"cron: ", "7 fields"}},
		{"@every", "@every 5m", "", "", []string{"cron: ", "@every", "every"}},
		{"@every alone", "@every", "", "", []string{"cron: ", "@every"}},
		{"unknown descriptor", "@reboot", "", "", []string{"cron: ", "not a descriptor", "@hourly"}},
		{"descriptor with more", "@daily 5", "", "", []string{"cron: ", "not a descriptor"}},
		{"CRON_TZ", "CRON_TZ=Europe/Warsaw 0 0 * * *", "", "", []string{"cron: ", "give the zone as tz"}},
		{"TZ", "TZ=UTC 0 0 * * *", "", "", []string{"cron: ", "give the zone as tz"}},
		{"TZ without a space", "TZ=UTC", "", "", []string{"cron: ", "give the zone as tz"}},
		{"unknown tz", "0 0 * * *", "Mars/Olympus", "", []string{`tz: unknown time zone "Mars/Olympus"`}},
		{"Local tz", "0 0 * * *", "Local", "", []string{`tz: unknown time zone "Local"`}},
		{"localtime tz", "0 0 * * *", "localtime", "", []string{`tz: unknown time zone "localtime"`}},
		{"tz path", "0 0 * * *", "../../etc/passwd", "", []string{`tz: unknown time zone`}},
		{"never fires", "0 0 30 2 *", "", "", []string{"cron: ", "never fires"}},
		{"never fires, 31 April", "0 0 31 4,6,9,11 *", "Europe/Warsaw", "", []string{"cron: ", "never fires"}},
		{"every 0", "", "", "0", []string{"every: ", "shorter than 1s"}},
		{"every 500ms", "", "", "500m", []string{"every: ", `"500m" is shorter than 1s`}},
		{"every negative", "", "", "-5s", []string{"every: "}},
		{"every garbage", "", "", "soon", []string{"every: ", "not a time"}},
		{"every Go duration", "", "", "1h", []string{"every: ", "not a time"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := ParseSchedule(tc.cron, tc.tz, tc.every)
			if err == nil {
				t.Fatalf("accepted as %s", s)
			}
			if !strings.HasPrefix(err.Error(), tc.want[0]) {
				t.Errorf("error %q does not start with %q", err, tc.want[0])
			}
			for _, w := range tc.want[1:] {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not hold %q", err, w)
				}
			}
			if s != nil {
				t.Error("refused but returned a schedule")
			}
		})
	}
}

func TestParseScheduleAccepts(t *testing.T) {
	for _, tc := range []struct {
		cron, tz, every string
		str             string
		fields          [3]string
	}{
		{"*/5 * * * *", "Europe/Warsaw", "", `cron "*/5 * * * *" in Europe/Warsaw`, [3]string{"*/5 * * * *", "Europe/Warsaw", ""}},
		{"  0   3 * * MON-FRI ", "", "", `cron "0 3 * * MON-FRI" in UTC`, [3]string{"0 3 * * MON-FRI", "UTC", ""}},
		{"@daily", "America/New_York", "", `cron "@daily" in America/New_York`, [3]string{"@daily", "America/New_York", ""}},
		{"0 0 29 2 *", "", "", `cron "0 0 29 2 *" in UTC`, [3]string{"0 0 29 2 *", "UTC", ""}},
		{"0 0 30 2 5", "", "", `cron "0 0 30 2 5" in UTC`, [3]string{"0 0 30 2 5", "UTC", ""}}, // day OR weekday: Fridays
		{"", "", "30s", "every 30s", [3]string{"", "", "30s"}},
		{"", "", "1500m", "every 1.5s", [3]string{"", "", "1.5s"}},
		{"", "", "1", "every 1s", [3]string{"", "", "1s"}},
		{"", "", "2H", "every 7200s", [3]string{"", "", "7200s"}},
	} {
		s := mustSchedule(t, tc.cron, tc.tz, tc.every)
		if got := s.String(); got != tc.str {
			t.Errorf("String of %q %q %q = %q, want %q", tc.cron, tc.tz, tc.every, got, tc.str)
		}
		c, z, e := s.Fields()
		if [3]string{c, z, e} != tc.fields {
			t.Errorf("Fields of %q %q %q = %q, want %q", tc.cron, tc.tz, tc.every, [3]string{c, z, e}, tc.fields)
		}
		// The canonical fields read back into the same schedule.
		again := mustSchedule(t, c, z, e)
		if again.String() != s.String() {
			t.Errorf("Fields %q read back as %s, not %s", [3]string{c, z, e}, again, s)
		}
	}
}

func TestFirst(t *testing.T) {
	created := time.Date(2026, 5, 4, 10, 17, 42, 123456789, time.UTC)
	warsaw := mustZone(t, "Europe/Warsaw")
	for _, tc := range []struct {
		cron, tz, every string
		want            time.Time
	}{
		{"", "", "30s", created.Add(30 * time.Second)},
		{"*/5 * * * *", "", "", time.Date(2026, 5, 4, 10, 20, 0, 0, time.UTC)},
		{"0 9 * * *", "Europe/Warsaw", "", time.Date(2026, 5, 5, 9, 0, 0, 0, warsaw)}, // 12:17 in Warsaw: tomorrow
		{"@hourly", "", "", time.Date(2026, 5, 4, 11, 0, 0, 0, time.UTC)},
		{"@monthly", "Asia/Kathmandu", "", time.Date(2026, 6, 1, 0, 0, 0, 0, mustZone(t, "Asia/Kathmandu"))},
	} {
		s := mustSchedule(t, tc.cron, tc.tz, tc.every)
		if got := s.First(created); !got.Equal(tc.want) {
			t.Errorf("%s: First = %s, want %s", s, got, tc.want)
		}
	}
	// Strictly after: created on a tick gives the next one.
	onTick := time.Date(2026, 5, 4, 10, 20, 0, 0, time.UTC)
	if got, want := mustSchedule(t, "*/5 * * * *", "", "").First(onTick), onTick.Add(5*time.Minute); !got.Equal(want) {
		t.Errorf("First on a tick = %s, want %s", got, want)
	}
}

// TestCronAcrossDST pins what robfig's Next does in Europe/Warsaw in 2026:
// on 29 March the clocks go from 02:00 CET to 03:00 CEST, so 02:30 does not
// exist and that day has no tick (it is skipped, not moved to 03:00); on 25
// October they go from 03:00 CEST back to 02:00 CET, so 02:30 happens twice
// and fires twice, an hour apart.
func TestCronAcrossDST(t *testing.T) {
	s := mustSchedule(t, "30 2 * * *", "Europe/Warsaw", "")
	at := func(y int, m time.Month, d, h, min int) time.Time { return time.Date(y, m, d, h, min, 0, 0, time.UTC) }
	series := func(from time.Time, n int) []time.Time {
		var out []time.Time
		for range n {
			from = s.spec.Next(from)
			out = append(out, from.UTC())
		}
		return out
	}
	check := func(what string, got, want []time.Time) {
		t.Helper()
		for i := range want {
			if !got[i].Equal(want[i]) {
				t.Errorf("%s: tick %d = %s, want %s (all: %v)", what, i, got[i], want[i], got)
			}
		}
	}
	check("spring", series(at(2026, 3, 27, 12, 0), 3), []time.Time{
		at(2026, 3, 28, 1, 30), // 02:30 CET
		at(2026, 3, 30, 0, 30), // 02:30 CEST; none on the 29th
		at(2026, 3, 31, 0, 30),
	})
	check("autumn", series(at(2026, 10, 23, 12, 0), 4), []time.Time{
		at(2026, 10, 24, 0, 30), // 02:30 CEST
		at(2026, 10, 25, 0, 30), // 02:30 CEST
		at(2026, 10, 25, 1, 30), // 02:30 CET, the same wall time again
		at(2026, 10, 26, 1, 30),
	})
	// Due agrees: down across the whole spring weekend, one firing, at the
	// last tick that came (the 28th's), and the 30th's next.
	tick, following, due := s.Due(at(2026, 3, 28, 1, 30), at(2026, 3, 29, 23, 0))
	if !due || !tick.Equal(at(2026, 3, 28, 1, 30)) || !following.Equal(at(2026, 3, 30, 0, 30)) {
		t.Errorf("Due across the spring change = %s, %s, %v", tick, following, due)
	}
	// A minute's cron counts absolute minutes, whatever the wall clock does:
	// the repeated autumn hour has its 60 ticks too.
	m := mustSchedule(t, "* * * * *", "Europe/Warsaw", "")
	n, from := 0, at(2026, 10, 24, 22, 0) // midnight CEST, a tick
	for x := from; x.Before(at(2026, 10, 25, 23, 0)); x = m.spec.Next(x) {
		n++
	}
	if n != 25*60 {
		t.Errorf("the 25-hour day has %d minute ticks, want %d", n, 25*60)
	}
}

func TestDueEvery(t *testing.T) {
	s := mustSchedule(t, "", "", "1M")
	now := time.Date(2026, 5, 4, 12, 0, 30, 0, time.UTC)
	for _, tc := range []struct {
		name            string
		next            time.Time
		tick, following time.Time
		due             bool
	}{
		{"not yet", now.Add(time.Second), time.Time{}, now.Add(time.Second), false},
		{"next == now is due", now, now, now.Add(time.Minute), true},
		{"an hour ago coalesces", now.Add(-time.Hour), now, now.Add(time.Minute), true},
		{"off the minute: the anchor stays", now.Add(-time.Hour - 20*time.Second), now.Add(-20 * time.Second), now.Add(40 * time.Second), true},
		{"a tick just passed", now.Add(-time.Minute - time.Nanosecond), now.Add(-time.Nanosecond), now.Add(time.Minute - time.Nanosecond), true},
	} {
		tick, following, due := s.Due(tc.next, now)
		if due != tc.due || !tick.Equal(tc.tick) || !following.Equal(tc.following) {
			t.Errorf("%s: Due = %s, %s, %v; want %s, %s, %v", tc.name, tick, following, due, tc.tick, tc.following, tc.due)
		}
		if due && (tick.After(now) || !following.After(now) || following.Sub(tick) != time.Minute) {
			t.Errorf("%s: tick %s, following %s around now %s", tc.name, tick, following, now)
		}
	}
}

func TestDueCron(t *testing.T) {
	s := mustSchedule(t, "*/15 * * * *", "", "")
	at := func(h, m, sec int) time.Time { return time.Date(2026, 5, 4, h, m, sec, 0, time.UTC) }
	for _, tc := range []struct {
		name            string
		next, now       time.Time
		tick, following time.Time
		due             bool
	}{
		{"not yet", at(12, 15, 0), at(12, 14, 59), time.Time{}, at(12, 15, 0), false},
		{"no next tick", time.Time{}, at(12, 14, 59), time.Time{}, time.Time{}, false},
		{"on the tick", at(12, 15, 0), at(12, 15, 0), at(12, 15, 0), at(12, 30, 0), true},
		{"between ticks", at(12, 15, 0), at(12, 29, 59), at(12, 15, 0), at(12, 30, 0), true},
		{"an hour late: one firing", at(11, 0, 0), at(12, 7, 0), at(12, 0, 0), at(12, 15, 0), true},
		{"a day late", at(12, 0, 0).AddDate(0, 0, -1), at(12, 7, 0), at(12, 0, 0), at(12, 15, 0), true},
		// A next off the series (the cron was changed) is a tick itself.
		{"next off the series", at(12, 1, 0), at(12, 10, 0), at(12, 1, 0), at(12, 15, 0), true},
	} {
		tick, following, due := s.Due(tc.next, tc.now)
		if due != tc.due || !tick.Equal(tc.tick) || !following.Equal(tc.following) {
			t.Errorf("%s: Due = %s, %s, %v; want %s, %s, %v", tc.name, tick, following, due, tc.tick, tc.following, tc.due)
		}
	}
}

// TestDueLongOutage: a minute's cron down for ten years fires once, at the
// last minute before now, quickly (the walk would take 5 million steps).
func TestDueLongOutage(t *testing.T) {
	s := mustSchedule(t, "* * * * *", "Europe/Warsaw", "")
	next := time.Date(2016, 5, 4, 12, 0, 0, 0, time.UTC)
	now := time.Date(2026, 5, 4, 12, 34, 56, 789, time.UTC)
	start := time.Now()
	tick, following, due := s.Due(next, now)
	took := time.Since(start)
	if !due || !tick.Equal(time.Date(2026, 5, 4, 12, 34, 0, 0, time.UTC)) || !following.Equal(time.Date(2026, 5, 4, 12, 35, 0, 0, time.UTC)) {
		t.Errorf("Due = %s, %s, %v", tick, following, due)
	}
	// Generous for a loaded machine; the benchmark shows microseconds.
	if took > 100*time.Millisecond {
		t.Errorf("Due took %s", took)
	}
	// A weekly cron ten years down: the last Monday 09:00 in Warsaw.
	w := mustSchedule(t, "0 9 * * 1", "Europe/Warsaw", "")
	warsaw := mustZone(t, "Europe/Warsaw")
	tick, following, due = w.Due(time.Date(2016, 5, 2, 9, 0, 0, 0, warsaw), now) // now is a Monday, 14:34 in Warsaw
	if !due || !tick.Equal(time.Date(2026, 5, 4, 9, 0, 0, 0, warsaw)) || !following.Equal(time.Date(2026, 5, 11, 9, 0, 0, 0, warsaw)) {
		t.Errorf("weekly: Due = %s, %s, %v", tick, following, due)
	}
}

func BenchmarkDueLongOutage(b *testing.B) {
	s := mustSchedule(b, "* * * * *", "Europe/Warsaw", "")
	next := time.Date(2016, 5, 4, 12, 0, 0, 0, time.UTC)
	now := time.Date(2026, 5, 4, 12, 34, 56, 0, time.UTC)
	for b.Loop() {
		if _, _, due := s.Due(next, now); !due {
			b.Fatal("not due")
		}
	}
}

// TestDueSearchMatchesWalk checks the search Due does over a long outage
// against walking every tick, for schedules and zones with DST changes,
// leap days and sparse ticks: the search is right only if robfig's Next is
// monotonic, and this is where it would not be.
func TestDueSearchMatchesWalk(t *testing.T) {
	schedules := [][2]string{
		{"* * * * *", "Europe/Warsaw"},
		{"30 2 * * *", "Europe/Warsaw"},
		{"0 0 * * *", "America/Sao_Paulo"}, // midnight skipped at some DST changes
		{"*/7 1-3 * * *", "America/New_York"},
		{"0 0 29 2 *", "UTC"},
		{"15 */2 13 * 5", "Australia/Lord_Howe"}, // a half-hour DST shift
		{"@weekly", "Asia/Kathmandu"},
		{"0,30 * * 3,10 *", "Europe/London"},
	}
	rng := rand.New(rand.NewPCG(1, 2))
	base := time.Date(2016, 1, 1, 0, 0, 0, 0, time.UTC)
	// Outages that span DST changes of the zones above, and random ones.
	changes := []time.Time{
		time.Date(2026, 3, 29, 1, 0, 0, 0, time.UTC), time.Date(2026, 10, 25, 1, 0, 0, 0, time.UTC), // Europe
		time.Date(2018, 11, 4, 3, 0, 0, 0, time.UTC), time.Date(2019, 2, 17, 2, 0, 0, 0, time.UTC), // Sao Paulo
		time.Date(2026, 3, 8, 7, 0, 0, 0, time.UTC), time.Date(2026, 11, 1, 6, 0, 0, 0, time.UTC), // New York
		time.Date(2026, 4, 4, 15, 0, 0, 0, time.UTC), time.Date(2026, 10, 3, 15, 30, 0, 0, time.UTC), // Lord Howe
	}
	for _, sc := range schedules {
		s := mustSchedule(t, sc[0], sc[1], "")
		for i := range 40 {
			from := base.Add(time.Duration(rng.Int64N(int64(9 * 365 * 24 * time.Hour))))
			if i < 2*len(changes) {
				from = changes[i/2].Add(-time.Duration(rng.Int64N(int64(48 * time.Hour))))
			}
			next := s.First(from)
			now := next.Add(time.Duration(rng.Int64N(int64(4 * 24 * time.Hour))))
			if sc[0] == "0 0 29 2 *" {
				now = next.Add(time.Duration(rng.Int64N(int64(6 * 365 * 24 * time.Hour))))
			}
			wt, wf := dueCron(s.spec, next, now, 1<<30)
			st, sf := dueCron(s.spec, next, now, 0)
			if !wt.Equal(st) || !wf.Equal(sf) {
				t.Errorf("%s, next %s, now %s: walk %s, %s; search %s, %s", s, next, now, wt, wf, st, sf)
			}
			if wt.After(now) || !wf.After(now) {
				t.Errorf("%s, next %s, now %s: tick %s, following %s", s, next, now, wt, wf)
			}
		}
	}
}
