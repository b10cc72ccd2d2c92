package observer

import (
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/kolejka-go/kolejka/internal/testenv"
)

// TestClientLinksNoDaemon: the programs that only talk to the observer (the
// worker and the foreman, through this client) and the client itself link
// no package of the daemon (internal/observer/...): only the client and the
// measurement they share with it (internal/measure). A daemon package that
// creeps back into them fails here.
func TestClientLinksNoDaemon(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		testenv.Missing(t, "the go tool, to list dependencies: %v", err)
	}
	const module = "github.com/kolejka-go/kolejka"
	for _, c := range []struct {
		pkg  string
		want []string // must be listed: proof the listing is read right
	}{
		{"./cmd/kolejka-worker", []string{module + "/observer", module + "/internal/measure"}},
		{"./cmd/kolejka-foreman", []string{module + "/observer", module + "/internal/measure"}},
		{"./observer", []string{module + "/observer", module + "/spec"}},
	} {
		cmd := exec.Command(goTool, "list", "-deps", c.pkg)
		cmd.Dir = testenv.RepoRoot(t)
		out, err := cmd.Output()
		if err != nil {
			var stderr string
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = string(ee.Stderr)
			}
			t.Fatalf("go list -deps %s: %v\n%s", c.pkg, err, stderr)
		}
		deps := strings.Fields(string(out))
		for _, w := range c.want {
			if !slices.Contains(deps, w) {
				t.Errorf("go list -deps %s does not list %s", c.pkg, w)
			}
		}
		for _, d := range deps {
			if d == module+"/internal/observer" || strings.HasPrefix(d, module+"/internal/observer/") {
				t.Errorf("%s links the observer daemon's package %s", c.pkg, d)
			}
		}
	}
}
