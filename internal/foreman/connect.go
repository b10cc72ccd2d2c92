package foreman

// This file owns Connect: a node signing in to a server that may not be
// up yet.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/kolejka-go/kolejka/client"
)

// Connect signs in to the server, retrying while it cannot be reached
// (until ctx ends); a refused sign-in is an error at once.
func Connect(ctx context.Context, cfg client.Config, log *slog.Logger) (*client.Client, error) {
	if strings.TrimSpace(cfg.Server) == "" {
		return nil, fmt.Errorf("no server configured (server in the client section of kolejka.conf): %w", ErrConfig)
	}
	bo := Retry{Max: 30 * time.Second}.backoff()
	for {
		cl, err := client.New(ctx, cfg)
		if err == nil {
			return cl, nil
		}
		if !errors.Is(err, client.ErrConnect) || ctx.Err() != nil {
			return nil, err
		}
		d := bo.delay()
		log.Warn("unable to reach the server; retrying", "error", err, "in", d.Round(time.Millisecond))
		if err := sleep(ctx, d); err != nil {
			return nil, err
		}
	}
}
