package main

import (
	"slices"
	"testing"
)

// [foreman] queues is a comma list; --queues replaces it.
func TestSettingsQueues(t *testing.T) {
	file := writeConf(t, conf+"queues = judge, batch\n")
	s, code := resolve(t, "--config-file", file)
	if code != 0 || !slices.Equal(s.Queues, []string{"judge", "batch"}) {
		t.Errorf("from the file: %q, exit %d", s.Queues, code)
	}
	s, code = resolve(t, "--config-file", file, "--queues", "gpu")
	if code != 0 || !slices.Equal(s.Queues, []string{"gpu"}) {
		t.Errorf("--queues: %q, exit %d", s.Queues, code)
	}
	s, code = resolve(t, "--config-file", writeConf(t, conf))
	if code != 0 || s.Queues != nil {
		t.Errorf("none: %q, exit %d", s.Queues, code)
	}
}
