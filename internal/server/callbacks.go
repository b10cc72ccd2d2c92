package server

// This file owns callback delivery. When a result is stored for a task with
// a callback_url, the same transaction adds a row to the outbox (package
// store); this loop POSTs {"task": …, "result": …} to the URL, apart from
// the request that stored the result, retrying with doubling delays
// (CallbackBackoff up to CallbackMaxBackoff) until a 2xx answer or
// CallbackAttempts failures. Rows survive restarts. Only allow-listed hosts
// are called (checked at submission and again at delivery); redirects are
// not followed, so an allowed host cannot bounce the call elsewhere.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/kolejka-go/kolejka/internal/server/store"
)

// callbackAllowed reports whether the allow-list admits the URL's host.
func (s *Server) callbackAllowed(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return false
	}
	host, hostport := strings.ToLower(u.Hostname()), strings.ToLower(u.Host)
	for _, a := range s.cfg.CallbackHosts {
		a = strings.ToLower(strings.TrimSpace(a))
		switch {
		case a == "*":
			return true
		case strings.HasPrefix(a, "*."):
			if strings.HasSuffix(host, a[1:]) {
				return true
			}
		case a == host || a == hostport:
			return true
		}
	}
	return false
}

func (s *Server) wakeCallbacks() {
	select {
	case s.callbacks <- struct{}{}:
	default:
	}
}

// callbackLoop delivers due callbacks, up to four at a time, and sleeps
// until the next one is due or a new one arrives.
func (s *Server) callbackLoop() {
	ctx, cancel := s.stopContext()
	defer cancel()
	client := &http.Client{
		Timeout: s.cfg.CallbackTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	for {
		due, err := s.db.DueCallbacks(ctx, s.now(), 64)
		if err != nil && ctx.Err() == nil {
			s.log.Error("callbacks", "error", err)
		}
		var wg sync.WaitGroup
		sem := make(chan struct{}, 4)
		for _, c := range due {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				s.deliver(ctx, client, c)
			}()
		}
		wg.Wait()
		if ctx.Err() != nil {
			return
		}
		if len(due) == 64 {
			continue
		}
		wait := time.Hour
		if next, ok, err := s.db.NextCallback(ctx); err == nil && ok {
			wait = max(next.Sub(s.now()), 0)
		}
		t := time.NewTimer(wait)
		select {
		case <-s.stop:
			t.Stop()
			return
		case <-s.callbacks:
		case <-t.C:
		}
		t.Stop()
	}
}

// deliver makes one attempt and records its outcome.
func (s *Server) deliver(ctx context.Context, client *http.Client, c store.Callback) {
	// Replicas run this loop at once: the claim lets one of them post.
	// It lapses after twice the request's timeout, when a claimant that
	// died has surely stopped trying.
	now := s.now()
	until := now.Add(2 * s.cfg.CallbackTimeout)
	// What an attempt did is recorded even when a shutdown begins
	// meanwhile: a cut-off write would leave the row claimed, and the
	// next start (or a replica) would wait out the claim before retrying.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	claimed, err := s.db.ClaimCallback(ctx, c, now, until)
	if err != nil || !claimed {
		if err != nil && ctx.Err() != nil {
			// The claim may have committed before the cut.
			s.releaseCallback(rctx, c, until)
		} else if err != nil {
			s.log.Error("callbacks", "error", err)
		}
		return
	}
	err = s.post(ctx, client, c)
	if err == nil {
		s.metrics.callbacks.WithLabelValues("delivered").Inc()
		if err := s.db.CallbackDelivered(rctx, c.ID); err != nil {
			s.log.Error("callbacks", "error", err)
		}
		s.log.Info("callback delivered", "task", c.TaskKey, "url", c.URL, "attempt", c.Attempts+1)
		return
	}
	if ctx.Err() != nil {
		// Shutting down cut the attempt off: it does not count, and the
		// row is due at once again.
		s.releaseCallback(rctx, c, until)
		return
	}
	final := c.Attempts+1 >= s.cfg.CallbackAttempts
	delay := s.cfg.CallbackBackoff << min(c.Attempts, 30)
	if delay <= 0 || delay > s.cfg.CallbackMaxBackoff {
		delay = s.cfg.CallbackMaxBackoff
	}
	if final {
		s.metrics.callbacks.WithLabelValues("failed").Inc()
		s.log.Error("callback failed for good", "task", c.TaskKey, "url", c.URL, "attempts", c.Attempts+1, "error", err)
	} else {
		s.metrics.callbacks.WithLabelValues("retried").Inc()
		s.log.Warn("callback failed, will retry", "task", c.TaskKey, "url", c.URL, "attempt", c.Attempts+1, "retry_in", delay, "error", err)
	}
	if err := s.db.CallbackFailed(rctx, c.ID, err.Error(), s.now().Add(delay), final); err != nil {
		s.log.Error("callbacks", "error", err)
	}
}

// releaseCallback gives back the claim on c taken until until.
func (s *Server) releaseCallback(ctx context.Context, c store.Callback, until time.Time) {
	if err := s.db.ReleaseCallback(ctx, c, until, s.now()); err != nil {
		s.log.Warn("callbacks: the claim stays until it lapses", "task", c.TaskKey, "error", err)
	}
}

func (s *Server) post(ctx context.Context, client *http.Client, c store.Callback) error {
	if !s.callbackAllowed(c.URL) {
		return fmt.Errorf("host of %s is not in callback_hosts", c.URL)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL, bytes.NewReader(c.Body))
	if err != nil {
		return fmt.Errorf("unable to make request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "kolejka-server")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // the status is the answer
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("answered %s", resp.Status)
	}
	return nil
}
