package host_test

import (
	"testing"

	"github.com/kolejka-go/kolejka/internal/cgroup"
	"github.com/kolejka-go/kolejka/internal/testenv"
	"github.com/kolejka-go/kolejka/worker/host"
	"github.com/kolejka-go/kolejka/worker/workertest"
)

func TestConformance(t *testing.T) {
	testenv.RequireRoot(t)
	cg, err := cgroup.Host()
	if err != nil {
		t.Fatal(err)
	}
	workertest.Conformance(t, "host", host.New(cg))
}

func TestConformanceBesideObserver(t *testing.T) {
	testenv.RequireRoot(t)
	cg, err := cgroup.Host()
	if err != nil {
		t.Fatal(err)
	}
	workertest.ConformanceBesideObserver(t, "host", host.New(cg))
}
