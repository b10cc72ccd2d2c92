package trigger

// This file owns the checks of a trigger's put other than its schedule: its
// name, a schedule's overlap policy, and what a result or run trigger fires
// on, with the match of an ended task or run against it.

import (
	"fmt"
	"slices"
	"strings"

	"github.com/kolejka-go/kolejka/api"
	"github.com/kolejka-go/kolejka/internal/workflow"
	"github.com/kolejka-go/kolejka/spec"
)

// Kinds lists the trigger kinds, as errors name them.
var Kinds = []string{api.TriggerSchedule, api.TriggerResult, api.TriggerRun, api.TriggerRequest}

// resultStatuses are a task result's statuses, the values of a result
// trigger's on.status.
var resultStatuses = []string{
	string(spec.StatusOK), string(spec.StatusRE), string(spec.StatusTLE), string(spec.StatusMLE),
	string(spec.StatusPLE), string(spec.StatusOLE), string(spec.StatusSE),
}

// runStates are the states a workflow run ends in, the values of a run
// trigger's on.status.
var runStates = []string{string(workflow.RunOK), string(workflow.RunFailed), string(workflow.RunCanceled)}

// ParseOverlap reads a schedule's overlap policy: "" is api.OverlapAllow;
// otherwise one of allow, forbid, replace.
func ParseOverlap(s string) (string, error) {
	switch s {
	case "":
		return api.OverlapAllow, nil
	case api.OverlapAllow, api.OverlapForbid, api.OverlapReplace:
		return s, nil
	}
	return "", fmt.Errorf("overlap: %q is not an overlap policy (%s, %s, %s)", s, api.OverlapAllow, api.OverlapForbid, api.OverlapReplace)
}

// CheckName checks a schedule's or trigger's name by the rule of queue and
// task type names, spec.CheckName: 1 to 64 of ASCII letters, digits, '_',
// '-' and '.', starting with a letter or a digit (so never '.' or '-': the
// name is a URL path segment, POST /trigger/NAME/).
func CheckName(name string) error {
	if err := spec.CheckName(name); err != nil {
		return fmt.Errorf("name: %w", err)
	}
	return nil
}

// CheckOn checks what a trigger of kind fires on and returns it normalized:
// statuses canonical (upper case for a task's, lower case for a run's),
// sorted and without repeats; an empty list is nil. A nil on stays nil.
//
// A result trigger's statuses are a task result's (OK, RE, TLE, MLE, PLE,
// OLE, SE) and its queue and type are names. A run trigger's statuses are
// the states a workflow run ends in (ok, failed, cancelled); a run has no
// queue or type, so on.queue and on.type are errors. A schedule or request
// trigger fires on no task: any on is an error. Statuses are read in any
// case. Errors name the field: `on.status[1]: "XX" is not a result status
// (OK, RE, …)`.
func CheckOn(kind string, on *api.TriggerOn) (*api.TriggerOn, error) {
	var allowed []string
	var what string
	switch kind {
	case api.TriggerSchedule, api.TriggerRequest:
		if on != nil {
			return nil, fmt.Errorf("on: a %s trigger fires on no task", kind)
		}
		return nil, nil
	case api.TriggerResult:
		allowed, what = resultStatuses, "a result status"
	case api.TriggerRun:
		allowed, what = runStates, "a run state"
	default:
		return nil, fmt.Errorf("kind: %q is not a trigger kind (%s)", kind, strings.Join(Kinds, ", "))
	}
	if on == nil {
		return nil, nil
	}
	out := &api.TriggerOn{Queue: on.Queue, Type: on.Type}
	if kind == api.TriggerRun {
		if on.Queue != "" {
			return nil, fmt.Errorf("on.queue: a run trigger fires on workflow runs, which have no queue")
		}
		if on.Type != "" {
			return nil, fmt.Errorf("on.type: a run trigger fires on workflow runs, which have no type")
		}
	} else {
		if on.Queue != "" {
			if err := spec.CheckName(on.Queue); err != nil {
				return nil, fmt.Errorf("on.queue: %w", err)
			}
		}
		if on.Type != "" {
			if err := spec.CheckName(on.Type); err != nil {
				return nil, fmt.Errorf("on.type: %w", err)
			}
		}
	}
	for i, s := range on.Status {
		j := slices.IndexFunc(allowed, func(a string) bool { return strings.EqualFold(a, s) })
		if j < 0 {
			return nil, fmt.Errorf("on.status[%d]: %q is not %s (%s)", i, s, what, strings.Join(allowed, ", "))
		}
		out.Status = append(out.Status, allowed[j])
	}
	slices.Sort(out.Status)
	out.Status = slices.Compact(out.Status)
	return out, nil
}

// Matches reports whether a task (or run) that ended in queue, made from
// type typ ("" if from none), with status fires a trigger with on: its queue
// if given (a task with queue "" is in spec.DefaultQueue, and so is an
// on.queue of "default"), its type if given, and one of its statuses if it
// lists any. A nil on matches everything. status is compared as given:
// pass a task's spec.Status or a run's state, both canonical.
func Matches(on *api.TriggerOn, queue, typ, status string) bool {
	if on == nil {
		return true
	}
	if on.Queue != "" && queueOf(on.Queue) != queueOf(queue) {
		return false
	}
	if on.Type != "" && on.Type != typ {
		return false
	}
	return len(on.Status) == 0 || slices.Contains(on.Status, status)
}

func queueOf(q string) string {
	if q == "" {
		return spec.DefaultQueue
	}
	return q
}
