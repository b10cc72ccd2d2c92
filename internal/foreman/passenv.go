package foreman

// This file owns the host environment variables a node passes to tasks
// made from a type (saltant's environment whitelist). The type names the
// variables its tasks may take (the dequeue answer's "pass_env", from the
// task's origin); the node's configuration ([foreman] pass_env, the
// --pass-env option) names those it lets go. A task gets each variable in
// both lists that is set in the foreman's own environment, and never
// another: what the type asks for beyond the node's list is not passed.

import (
	"maps"
	"slices"
)

// passedEnv is what a task whose type asks for asked gets from the node:
// each variable in both lists and set here, with its value; nil if none.
func (f *Foreman) passedEnv(asked []string) map[string]string {
	var out map[string]string
	for _, name := range asked {
		if !slices.Contains(f.cfg.PassEnv, name) {
			continue
		}
		v, ok := f.cfg.LookupEnv(name)
		if !ok {
			continue
		}
		if out == nil {
			out = map[string]string{}
		}
		out[name] = v
	}
	if len(asked) > 0 {
		f.log.Debug("environment passed to a task", "asked", asked, "passed", slices.Sorted(maps.Keys(out)))
	}
	return out
}

// withPassedEnv is a task's environment with the node's variables added:
// a variable the task's own environment sets keeps the task's value (the
// type's author wrote it on purpose). env is not modified.
func withPassedEnv(env, passed map[string]string) map[string]string {
	if len(passed) == 0 {
		return env
	}
	out := maps.Clone(env)
	if out == nil {
		out = map[string]string{}
	}
	for k, v := range passed {
		if _, set := out[k]; !set {
			out[k] = v
		}
	}
	return out
}
