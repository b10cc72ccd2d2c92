package e2e

// Several kolejka-server replicas on one PostgreSQL database and one S3
// bucket, behind a round-robin proxy, behave as one server, and carry on
// when one of them is killed.

import (
	"context"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/gridtest"
	"github.com/kolejka-go/kolejka/internal/server/blobs/s3test"
	"github.com/kolejka-go/kolejka/internal/server/store"
	"github.com/kolejka-go/kolejka/internal/testenv/pgtest"
)

// replicaConf is the [server] section of replicas sharing a new database
// and a new bucket.
func replicaConf(t *testing.T) (conf, db string) {
	db = pgtest.Database(t)
	return sharedConf(db, s3test.Start(t).Bucket(t)), db
}

// Three replicas, two nodes, a burst of tasks (each with an input file and
// an output of its own) and workflows through the proxy; one replica is
// killed with SIGKILL in the middle of the burst. Every task accepted gets
// exactly one result, its own, with its files; the workflows finish; the
// other replicas served requests before and after the kill.
func TestReplicasSurviveAKilledReplica(t *testing.T) {
	bin := bins(t)
	conf, db := replicaConf(t)
	g := &grid{gridtest.NewGrid(t, bin, gridtest.GridOptions{ServerConf: conf, Replicas: 3, OutputLimit: OutputLimit})}
	g.StartForeman("a", nil)
	g.StartForeman("b", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	b := startBurst(ctx, t, g)
	g.Replicas[1].P.Kill9()
	killed := time.Now()
	b.putRest(t)
	b.wait(t)

	sqldb, err := store.OpenSQL(db)
	if err != nil {
		t.Fatal(err)
	}
	defer sqldb.Close()
	b.check(t, sqldb, 1, killed, "kill")
}
