package app

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tokenbroker/tokenbroker/config"
	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
	"github.com/tokenbroker/tokenbroker/vendors"
)

// panicky is a test-only vendor whose ResolveCall panics for the profile whose
// credential mode is "panic", as a bug in a strategy would, and answers a
// fixed token for any other.
type panicky struct{}

func (panicky) Info() vendors.Info {
	return vendors.Info{ID: "panicky", DisplayName: "Panics", GrantTypes: []string{"client_credentials"},
		RequiredCredentials: []string{"mode"}}
}

func (panicky) ResolveCall(in vendors.Input) (vendors.Call, error) {
	if in.Credentials.Get("mode") == "panic" {
		var settings []string
		_ = settings[len(in.Params)] // an index out of range: the kind of bug a strategy could have
	}
	return panickyCall{}, nil
}

type panickyCall struct{}

func (panickyCall) Target() string { return "https://panicky.invalid/token" }

func (panickyCall) Fetch(context.Context, string) (*vendors.Token, error) {
	now := time.Now()
	return &vendors.Token{AccessToken: "calm-token", TokenType: "Bearer", IssuedAt: now, ExpiresAt: now.Add(time.Hour)}, nil
}

// lockedBuffer is a log sink the server's goroutines write to.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestPanicInAStrategyAnswersInternalAndTheProcessKeepsServing(t *testing.T) {
	t.Parallel()
	cfg, err := config.Parse([]byte(`
grpc_addr: 127.0.0.1:0
http_addr: 127.0.0.1:0
shutdown_delay: 0s
profiles:
  boom: {vendor: panicky, credentials: {mode: panic}}
  calm: {vendor: panicky, credentials: {mode: calm}}
`), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	var logs lockedBuffer
	a, err := New(context.Background(), Options{
		Config:   cfg,
		Registry: vendors.NewRegistry(panicky{}),
		Logger:   slog.New(slog.NewJSONHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	b := runOps(t, a)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	restGet := func(profile string) (int, map[string]any) {
		t.Helper()
		resp, err := http.Post(b.http+"/v1/token", "application/json", strings.NewReader(`{"profile":"`+profile+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		var out map[string]any
		if err := json.Unmarshal(body, &out); err != nil {
			t.Fatalf("REST %s: %d %q: %v", profile, resp.StatusCode, body, err)
		}
		return resp.StatusCode, out
	}

	steps := []struct {
		name    string
		call    func() (codes.Code, string)
		code    codes.Code
		message string
	}{
		{"grpc call that panics", func() (codes.Code, string) {
			_, err := b.client.GetToken(ctx, &tokenbrokerv1.GetTokenRequest{Profile: "boom"})
			return status.Code(err), status.Convert(err).Message()
		}, codes.Internal, "internal error"},
		{"next grpc call on the same process", func() (codes.Code, string) {
			resp, err := b.client.GetToken(ctx, &tokenbrokerv1.GetTokenRequest{Profile: "calm"})
			return status.Code(err), resp.GetAccessToken()
		}, codes.OK, "calm-token"},
		{"REST call that panics", func() (codes.Code, string) {
			code, out := restGet("boom")
			if code != http.StatusInternalServerError {
				t.Errorf("REST status = %d, want 500", code)
			}
			c, _ := out["code"].(float64)
			m, _ := out["message"].(string)
			return codes.Code(c), m
		}, codes.Internal, "internal error"},
		{"next REST call", func() (codes.Code, string) {
			code, out := restGet("calm")
			if code != http.StatusOK {
				t.Errorf("REST status = %d, want 200", code)
			}
			tok, _ := out["access_token"].(string)
			return codes.OK, tok
		}, codes.OK, "calm-token"},
	}
	for _, step := range steps {
		code, msg := step.call()
		if code != step.code || msg != step.message {
			t.Errorf("%s: %v %q, want %v %q", step.name, code, msg, step.code, step.message)
		}
	}

	if got := scrapeValue(t, b, "tokenbroker_panics_total"); got != 2 {
		t.Errorf("tokenbroker_panics_total = %v, want 2", got)
	}
	// The access log saw each panicked call as INTERNAL.
	if got := scrapeValue(t, b, `tokenbroker_grpc_requests_total{code="Internal",method="tokenbroker.v1.TokenService/GetToken"}`); got != 2 {
		t.Errorf("GetToken calls counted Internal = %v, want 2", got)
	}
	b.stop()
	var panics int
	for line := range strings.SplitSeq(logs.String(), "\n") {
		if !strings.Contains(line, `"panic while handling a call`) {
			continue
		}
		panics++
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatal(err)
		}
		if rec["level"] != "ERROR" || !strings.Contains(rec["stack"].(string), "panicky.ResolveCall") ||
			!strings.Contains(rec["panic"].(string), "index out of range") {
			t.Errorf("panic log line lacks the level, the value or the stack: %s", line)
		}
	}
	if panics != 2 {
		t.Errorf("%d panic log lines, want 2:\n%s", panics, logs.String())
	}
}
