package app

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/tokenbroker/tokenbroker/config"
	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
)

// syncBuffer collects log lines written by the server's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// requestLines counts the access log's lines by cache outcome.
func (b *syncBuffer) requestLines(t *testing.T) map[string]int {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	counts := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(b.buf.String()), "\n") {
		var rec struct{ Msg, Cache string }
		if line == "" || json.Unmarshal([]byte(line), &rec) != nil || rec.Msg != "request" {
			continue
		}
		counts[rec.Cache]++
	}
	return counts
}

// TestAccessLogPolicyReloads checks access_log end to end: the startup
// policy (none) leaves successful cache hits out and logs the miss, and a
// reload to sampled applies to the next calls without a restart.
func TestAccessLogPolicyReloads(t *testing.T) {
	t.Parallel()
	sim := opsSim(t)
	next := make(chan *config.Config, 1)
	var logs syncBuffer
	cfg := opsConfig(t, sim, "access_log: {cache_hits: none}\n")
	cfg.ShutdownDelay = 0
	a, err := New(context.Background(), Options{
		Config: cfg,
		Logger: slog.New(slog.NewJSONHandler(&logs, nil)),
		Load:   func() (*config.Config, error) { return <-next, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	b := runOps(t, a)
	get := func(n int) {
		t.Helper()
		for range n {
			if _, err := b.client.GetToken(context.Background(), &tokenbrokerv1.GetTokenRequest{Profile: "acme-sd"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	get(5) // one miss, four hits
	if got := logs.requestLines(t); got["miss"] != 1 || got["hit"] != 0 {
		t.Fatalf("cache_hits none: request lines %v, want the miss alone", got)
	}

	reloaded := opsConfig(t, sim, "access_log: {cache_hits: sampled, sample_one_in: 3}\n")
	reloaded.ShutdownDelay = 0
	next <- reloaded
	if err := a.Reload("test"); err != nil {
		t.Fatal(err)
	}
	get(6) // six hits: the 1st and the 4th are logged
	if got := logs.requestLines(t); got["miss"] != 1 || got["hit"] != 2 {
		t.Fatalf("after a reload to one in 3: request lines %v, want the miss and 2 of 6 hits", got)
	}
}
