package runtimes_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	// Linked, as by every runtime this package opens; this test binary
	// does not call runc.MaybeInit.
	_ "github.com/kolejka-go/kolejka/worker/runc"
)

// childEnv marks the test binary re-executed by the test below.
const childEnv = "KOLEJKA_RUNTIMES_TEST_CHILD"

// A binary that links the runc runtime without calling runc.MaybeInit
// keeps its own "init": run as `<self> init`, this test binary runs its
// tests instead of becoming a container's init (which, outside a container
// start, would fail on the missing sync pipe with exit code 255).
func TestLinkingRuncDoesNotTakeOverInit(t *testing.T) {
	if os.Getenv(childEnv) != "" {
		os.Stdout.WriteString("own code ran\n")
		return
	}
	cmd := exec.Command(os.Args[0], "init")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "own code ran") {
		t.Fatalf("`%s init`: %v\n%s", os.Args[0], err, out)
	}
}
