package runc_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/kolejka-go/kolejka/internal/cgroup"
	"github.com/kolejka-go/kolejka/internal/testenv"
	"github.com/kolejka-go/kolejka/worker/runc"
)

// TestMain is the containers' init in the processes the tests' containers
// start with (runc.MaybeInit), confines the tests to a delegated cgroup as
// the commands that embed this runtime are (cgroup.Confine), and removes
// the commands testenv.Binaries built for the tests.
func TestMain(m *testing.M) {
	runc.MaybeInit()
	if err := cgroup.Confine(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testenv.RunHelpers(testenv.Helpers{"warm": warmHelper})
	code := m.Run()
	testenv.Cleanup()
	os.Exit(code)
}
