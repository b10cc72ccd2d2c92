package spec

import (
	"strings"
	"testing"
)

func TestCheckName(t *testing.T) {
	for _, good := range []string{"default", "a", "gpu-2", "Q_1.fast", strings.Repeat("x", MaxNameLength)} {
		if err := CheckName(good); err != nil {
			t.Errorf("CheckName(%q) = %v, want nil", good, err)
		}
	}
	for bad, want := range map[string]string{
		"":                                   "empty",
		"-x":                                 "start with a letter",
		".hidden":                            "start with a letter",
		"a b":                                `found ' '`,
		"a/b":                                `found '/'`,
		"zażółć":                             `found 'ż'`,
		"x\x00":                              `found '\x00'`,
		strings.Repeat("x", MaxNameLength+1): "longer than 64",
	} {
		err := CheckName(bad)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckName(%q) = %v, want an error containing %q", bad, err, want)
		}
	}
}

func TestTaskQueueKey(t *testing.T) {
	task, err := ParseTask([]byte(`{"image":"i","args":["a"],"queue":"fast"}`), TaskFile)
	if err != nil || task.Queue != "fast" {
		t.Fatalf("ParseTask queue: %v, %q", err, task.Queue)
	}
	out, _ := task.Encode()
	if !strings.Contains(string(out), `"queue": "fast"`) && !strings.Contains(string(out), `"queue":"fast"`) {
		t.Errorf("Encode lost the queue: %s", out)
	}
	plain, _ := ParseTask([]byte(`{"image":"i","args":["a"]}`), TaskFile)
	if out, _ := plain.Encode(); strings.Contains(string(out), "queue") {
		t.Errorf("a task naming no queue must not gain the key (Kolejka's form): %s", out)
	}
	task.Queue = "no such/queue"
	err = task.Validate(Server)
	if err == nil || !strings.Contains(err.Error(), "queue") {
		t.Errorf("Validate of a bad queue name = %v, want an error naming queue", err)
	}
}
