package trigger

// This file owns schedules: parsing cron, tz and every, and computing the
// ticks of the series they describe.

import (
	"fmt"
	"strings"
	"time"
	_ "time/tzdata" // tz names resolve on machines without /usr/share/zoneinfo

	"github.com/robfig/cron/v3"

	"github.com/kolejka-go/kolejka/spec"
)

// MinEvery is the shortest interval of an every-schedule.
const MinEvery = time.Second

// descriptors are the cron descriptors a schedule takes; robfig's
// "@every" is refused, as every is a field of its own.
var descriptors = []string{"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}

// cronParser reads five fields (minute hour day month weekday) or a
// descriptor; the zone is ours to set, never a CRON_TZ= prefix.
var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// neverFiresFrom is where ParseSchedule looks for a first tick: a fixed
// time, so that a schedule's acceptance does not depend on the day it is
// put. A leap day comes within robfig's five-year horizon from it.
var neverFiresFrom = time.Date(2000, time.January, 1, 0, 0, 0, 0, time.UTC)

// Schedule is when a schedule fires: cron in a zone, or every fixed interval.
// The zero value is not a schedule; ParseSchedule makes them.
type Schedule struct {
	cron  string             // canonical: fields separated by one space
	tz    string             // the zone's name; "UTC" when none was given
	spec  *cron.SpecSchedule // nil for an every-schedule
	every time.Duration
}

// ParseSchedule checks a schedule's fields; each error names its field:
// "cron: …", "tz: unknown time zone \"X\"", "every: …".
//
// A schedule has exactly one of cron and every (neither or both is an error
// naming "cron, every"). tz goes only with cron: an every-schedule counts
// absolute time, which no zone changes. every is a Kolejka time
// (spec.ParseTime: "30s", "1.5", "2M") of at least MinEvery.
//
// cron is five fields (minute hour day month weekday) or one of the
// descriptors @hourly, @daily, @midnight, @weekly, @monthly, @yearly
// (@annually). Refused: @every (that is every), six fields (seconds: the
// finest tick is a minute), a CRON_TZ= or TZ= prefix (that is tz) and an
// expression that never fires, such as "0 0 30 2 *" (robfig's Next gives
// the zero time when no tick comes within five years, which is how it is
// found). An expression with both day fields restricted fires on either,
// as in Vixie cron: "0 0 13 * 5" is every 13th and every Friday.
func ParseSchedule(cronExpr, tz, every string) (*Schedule, error) {
	hasCron, hasEvery := strings.TrimSpace(cronExpr) != "", strings.TrimSpace(every) != ""
	switch {
	case !hasCron && !hasEvery:
		return nil, fmt.Errorf("cron, every: a schedule needs one of them")
	case hasCron && hasEvery:
		return nil, fmt.Errorf("cron, every: a schedule has one of them, not both")
	case hasEvery:
		if tz != "" {
			return nil, fmt.Errorf("tz: only a cron schedule has a time zone (every counts absolute time)")
		}
		d, err := spec.ParseTime(every)
		if err != nil {
			return nil, fmt.Errorf("every: %w", err)
		}
		if d < MinEvery {
			return nil, fmt.Errorf("every: %q is shorter than %s, the shortest interval", every, formatEvery(MinEvery))
		}
		return &Schedule{every: d}, nil
	}
	loc := time.UTC
	if tz != "" {
		// "Local" and "localtime" are the server's own zone, which a user
		// cannot know.
		l, err := time.LoadLocation(tz)
		if err != nil || tz == "Local" || tz == "localtime" {
			return nil, fmt.Errorf("tz: unknown time zone %q (an IANA zone such as Europe/Warsaw)", tz)
		}
		loc = l
	}
	fields := strings.Fields(cronExpr)
	canonical := strings.Join(fields, " ")
	switch {
	case strings.Contains(fields[0], "TZ="):
		return nil, fmt.Errorf("cron: %q: a zone prefix is not taken here; give the zone as tz", cronExpr)
	case fields[0] == "@every":
		return nil, fmt.Errorf("cron: %q: @every is not taken here; give the interval as every", cronExpr)
	case strings.HasPrefix(fields[0], "@"):
		if len(fields) != 1 || !isDescriptor(fields[0]) {
			return nil, fmt.Errorf("cron: %q is not a descriptor (%s)", cronExpr, strings.Join(descriptors, ", "))
		}
	case len(fields) == 6:
		return nil, fmt.Errorf("cron: %q has six fields: seconds are not taken; give five (minute hour day month weekday)", cronExpr)
	case len(fields) != 5:
		return nil, fmt.Errorf("cron: %q has %d fields; give five (minute hour day month weekday) or a descriptor", cronExpr, len(fields))
	}
	parsed, err := cronParser.Parse(canonical)
	if err != nil {
		return nil, fmt.Errorf("cron: %q: %w", cronExpr, err)
	}
	specSchedule, ok := parsed.(*cron.SpecSchedule)
	if !ok {
		// Only @every makes another kind, and it is refused above.
		return nil, fmt.Errorf("cron: %q is not a cron expression", cronExpr)
	}
	specSchedule.Location = loc
	if specSchedule.Next(neverFiresFrom).IsZero() {
		return nil, fmt.Errorf("cron: %q never fires", cronExpr)
	}
	return &Schedule{cron: canonical, tz: loc.String(), spec: specSchedule}, nil
}

func isDescriptor(s string) bool {
	for _, d := range descriptors {
		if s == d {
			return true
		}
	}
	return false
}

// Fields gives back the schedule's canonical fields, which ParseSchedule
// reads into the same schedule: cron with its fields separated by one
// space and tz ("UTC" if none was given), or every as a Kolejka time.
func (s *Schedule) Fields() (cronExpr, tz, every string) {
	if s.spec == nil {
		return "", "", formatEvery(s.every)
	}
	return s.cron, s.tz, ""
}

// Every is an every-schedule's interval, 0 for a cron schedule.
func (s *Schedule) Every() time.Duration { return s.every }

// String gives back the canonical fields, for display:
// `cron "*/5 * * * *" in Europe/Warsaw`, `every 30s`.
func (s *Schedule) String() string {
	if s.spec == nil {
		return "every " + formatEvery(s.every)
	}
	return fmt.Sprintf("cron %q in %s", s.cron, s.tz)
}

// formatEvery writes d as spec.FormatTime does, without its ".0" for
// whole seconds: "30s", "1.5s". spec.ParseTime reads either.
func formatEvery(d time.Duration) string {
	return strings.Replace(spec.FormatTime(d), ".0s", "s", 1)
}

// First returns the first tick strictly after created: created+every for an
// every-schedule, whose later ticks are then First + k*every (the series is
// anchored at its first tick, so it does not drift); for cron, the first
// minute after created that the expression names, in its zone.
//
// A cron schedule can return the zero time: no tick comes within five
// years of created (robfig's horizon; a schedule of 29 February around
// 2100, the only such case among accepted expressions). The caller then
// has no next tick to store.
func (s *Schedule) First(created time.Time) time.Time {
	if s.spec == nil {
		return created.Add(s.every)
	}
	return s.spec.Next(created)
}

// forwardSteps is how many ticks Due walks one by one before it searches:
// an outage of a few ticks is walked, a long one costs a search of
// log₂(outage in seconds) steps instead of one step per missed tick.
const forwardSteps = 16

// Due says whether a schedule whose stored next tick is next fires at now.
// If next is after now it does not: due is false, tick is zero and
// following is next. A zero next (First found no tick) is never due. Otherwise tick is the latest tick of the series that
// is not after now, and following the first tick strictly after now, to be
// stored as the next: ticks missed while the server was down coalesce into
// one firing, not one per missed tick. next itself counts as a tick of the
// series (it was computed as one), even if the series changed since.
//
// For every, the ticks are next + k*every, so an every-schedule keeps the
// anchor of its first tick. For cron, the ticks after next are those
// robfig's Next gives in turn; a long outage (a minute's cron down for ten
// years) is not walked tick by tick but searched. following can be zero as
// in First: no tick within five years.
func (s *Schedule) Due(next, now time.Time) (tick, following time.Time, due bool) {
	if next.IsZero() || next.After(now) {
		return time.Time{}, next, false
	}
	if s.spec == nil {
		k := now.Sub(next) / s.every
		tick = next.Add(k * s.every)
		return tick, tick.Add(s.every), true
	}
	tick, following = dueCron(s.spec, next, now, forwardSteps)
	return tick, following, true
}

// dueCron finds the latest tick not after now and the first after it,
// starting from the tick next (not after now): it walks up to steps ticks,
// then bisects. Bisection keeps lo with Next(lo) <= now and hi with
// Next(hi) > now (or zero); ticks are whole seconds, so once hi-lo is at
// most a second, (lo, hi] holds one tick, which is both Next(lo) and the
// latest tick not after now. It relies on Next being monotonic, which a
// test checks against the walk, across DST changes too.
func dueCron(sched cron.Schedule, next, now time.Time, steps int) (tick, following time.Time) {
	tick = next
	for i := 0; ; i++ {
		n := sched.Next(tick)
		if n.IsZero() || n.After(now) {
			return tick, n
		}
		if i >= steps {
			break
		}
		tick = n
	}
	lo, hi := tick, now
	for hi.Sub(lo) > time.Second {
		mid := lo.Add(hi.Sub(lo) / 2)
		if n := sched.Next(mid); !n.IsZero() && !n.After(now) {
			lo = mid
		} else {
			hi = mid
		}
	}
	tick = sched.Next(lo)
	return tick, sched.Next(tick)
}
