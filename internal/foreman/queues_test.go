package foreman

import (
	"errors"
	"strings"
	"testing"

	"github.com/kolejka-go/kolejka/api"
)

// A node serving named queues refuses to start against a server without
// them (it would be handed the default queue's tasks), and a queue must be
// a name; the default queue alone is served by every server.
func TestCheckQueues(t *testing.T) {
	with := api.Settings{Extensions: []string{api.ExtQueues}}
	without := api.Settings{}
	for _, c := range []struct {
		queues []string
		st     api.Settings
		says   string // "" = accepted
	}{
		{nil, without, ""},
		{[]string{"default"}, without, ""},
		{[]string{"a", "b"}, with, ""},
		{[]string{"a", "default"}, without, `does not announce the extension "queues"), so this node cannot serve a, default`},
		{[]string{"../x"}, with, `queues: "../x" is not a name`},
		{[]string{""}, with, "queues: empty name"},
	} {
		err := checkQueues(c.queues, c.st)
		if c.says == "" {
			if err != nil {
				t.Errorf("%q: %v", c.queues, err)
			}
			continue
		}
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%q: %v; want a configuration error saying %q", c.queues, err, c.says)
		}
	}
}
