package server_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"

	"github.com/kolejka-go/kolejka/internal/server"
	"github.com/kolejka-go/kolejka/internal/testenv"
)

// TestMain runs the test binary re-executed as a bare server (for the
// crash test, which kill -9s it) when it is started as that helper.
func TestMain(m *testing.M) {
	testenv.RunHelpers(testenv.Helpers{"server": runChild})
	os.Exit(m.Run())
}

// runChild serves dir on a loopback port it prints as "listening ADDR".
func runChild(dir string) int {
	srv, err := server.Open(server.Config{
		DataDir:    dir,
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		GCInterval: time.Hour,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("listening %s\n", ln.Addr())
	if err := srv.Serve(context.Background(), ln); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}
