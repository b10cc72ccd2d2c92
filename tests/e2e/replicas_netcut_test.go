package e2e

// Replicas on separate hosts (network namespaces on a private bridge),
// one of which has its network cut silently while its database session
// holds the replicas' global write lock.

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/gridtest"
	"github.com/kolejka-go/kolejka/internal/server/blobs/s3test"
	"github.com/kolejka-go/kolejka/internal/server/store"
	"github.com/kolejka-go/kolejka/internal/testenv/pgtest"
)

// storeWriteLock is the key of the store's advisory write lock (its
// writeLock, "kolejka" in ASCII).
const storeWriteLock = 0x6b6f6c656a6b61

// writeLockSessions counts the sessions from addr that hold (granted) or
// wait for the store's write lock: the one-key (int8) advisory lock of
// that key.
func writeLockSessions(t *testing.T, db *sql.DB, addr string, granted bool) int {
	t.Helper()
	var n int
	err := db.QueryRow(`SELECT COUNT(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
		WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.classid = ? AND l.objid = ?
		AND l.granted = `+fmt.Sprint(granted)+` AND host(a.client_addr) = ?`,
		int64(storeWriteLock>>32), int64(storeWriteLock&0xffffffff), addr).Scan(&n)
	if err != nil {
		t.Fatalf("unable to read pg_locks: %v", err)
	}
	return n
}

// Three replicas, each in a network namespace of its own, reach
// PostgreSQL and S3 over a bridge; the proxy, the foremen and the clients
// are in the root namespace. In the middle of a burst of tasks and
// workflows, replica 1's network is cut silently (its link down: no RST,
// no FIN) while its database session is about to take the global write
// lock: the session takes it and then waits for a client that is gone.
// PostgreSQL must end that session (keepalives, TCP_USER_TIMEOUT) so that
// the other replicas write again within a bound; every task accepted gets
// exactly one result, its own, with its files; the workflows finish.
func TestReplicasSurviveACutReplica(t *testing.T) {
	bin := bins(t)
	nw := gridtest.NewNet(t, 3)
	db := pgtest.StartOn(t, nw.Gate).Database(t)
	conf := sharedConf(db, s3test.StartOn(t, nw.Gate).Bucket(t))
	g := &grid{gridtest.NewGrid(t, bin, gridtest.GridOptions{ServerConf: conf, Replicas: 3, OutputLimit: OutputLimit,
		ReplicaHosts: nw.Hosts})}
	g.StartForeman("a", nil)
	g.StartForeman("b", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	sqldb, err := store.OpenSQL(db)
	if err != nil {
		t.Fatal(err)
	}
	defer sqldb.Close()
	cut := nw.Hosts[1]

	b := startBurst(ctx, t, g)

	// The test holds the write lock, so that the second half's writes
	// queue on it; once replica 1's session waits among them, its network
	// is cut and the lock let go. Its session is granted the lock in turn
	// and answers into the void: PostgreSQL then waits for the next
	// statement of a client that will never send one.
	hold, err := sqldb.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hold.ExecContext(ctx, `SELECT pg_advisory_xact_lock(?)`, int64(storeWriteLock)); err != nil {
		t.Fatal(err)
	}
	b.putRest(t)
	gridtest.WaitFor(t, "replica 1's session to wait for the write lock", time.Minute, func() bool {
		return writeLockSessions(t, sqldb, cut.Addr, false) > 0
	})
	nw.Cut(cut)
	cutAt := time.Now()
	if err := hold.Commit(); err != nil {
		t.Fatal(err)
	}
	gridtest.WaitFor(t, "the cut replica's session to be granted the write lock", 30*time.Second, func() bool {
		return writeLockSessions(t, sqldb, cut.Addr, true) > 0
	})
	held := time.Since(cutAt)
	// The bound: the store's settings end a silent session in about 15 s
	// (docs/scaling.md); without them PostgreSQL keeps it, lock and all,
	// for as long as TCP retransmits (about 15 minutes).
	gridtest.WaitFor(t, "PostgreSQL to end the cut replica's session and its write lock", 45*time.Second, func() bool {
		return writeLockSessions(t, sqldb, cut.Addr, true) == 0
	})
	t.Logf("the cut replica's session held the write lock from %v to %v after the cut",
		held.Round(time.Millisecond), time.Since(cutAt).Round(time.Millisecond))
	b.wait(t)
	b.check(t, sqldb, 1, cutAt, "cut")
	t.Logf("every result in %v after the cut", time.Since(cutAt).Round(time.Millisecond))
	// The cut replica's own end gives up too: its relay's listening
	// connection fails rather than waiting for ever for a notification.
	if !g.Replicas[1].P.Logged("relay: listening connection lost", 30*time.Second) {
		t.Error("the cut replica's relay still waits on its listening connection")
	}
	// Back on the network, it serves again: its database connections that
	// died in the cut are replaced.
	nw.Mend(cut)
	direct := "http://" + g.Replicas[1].Addr + "/task/task/" + b.keys[0] + "/"
	gridtest.WaitFor(t, "the mended replica to read the database again", time.Minute, func() bool {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, direct, nil)
		req.Header.Set("Authorization", "Bearer "+g.Tokens["alice"])
		hc := http.Client{Timeout: 5 * time.Second}
		resp, err := hc.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}
