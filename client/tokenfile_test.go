package client

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// projectedVolume writes tokens the way the kubelet updates a projected
// volume: each version in a new timestamped directory, "..data" pointing
// at it (replaced by an atomic rename), and "token" -> "..data/token".
type projectedVolume struct {
	dir     string
	version int
}

func newProjectedVolume(t *testing.T) *projectedVolume {
	t.Helper()
	v := &projectedVolume{dir: t.TempDir()}
	if err := os.Symlink(filepath.Join("..data", "token"), filepath.Join(v.dir, "token")); err != nil {
		t.Fatal(err)
	}
	return v
}

func (v *projectedVolume) path() string { return filepath.Join(v.dir, "token") }

func (v *projectedVolume) write(t *testing.T, token string) {
	t.Helper()
	v.version++
	ts := fmt.Sprintf("..2026_12_07_00_00_%02d.%d", v.version, v.version)
	if err := os.Mkdir(filepath.Join(v.dir, ts), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(v.dir, ts, "token"), []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(v.dir, "..data_tmp")
	if err := os.Symlink(ts, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(v.dir, "..data")); err != nil {
		t.Fatal(err)
	}
}

// jwtExpiring is a JWT-shaped token (unsigned: the client never verifies)
// with the given exp and a name to tell versions apart.
func jwtExpiring(name string, exp time.Time) string {
	hdr := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"ES256","kid":"k"}`))
	payload, _ := json.Marshal(map[string]any{"sub": name, "exp": exp.Unix()})
	return hdr + "." + base64.RawURLEncoding.EncodeToString(payload) + ".c2lnbmF0dXJl"
}

type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func sent(t *testing.T, f *TokenFile) (string, error) {
	t.Helper()
	md, err := f.GetRequestMetadata(context.Background())
	if err != nil {
		return "", err
	}
	return md["authorization"], nil
}

func TestTokenFileFollowsTheKubeletSwap(t *testing.T) {
	t.Parallel()
	clk := &testClock{now: time.Now()}
	vol := newProjectedVolume(t)
	first := jwtExpiring("first", clk.Now().Add(time.Hour))
	vol.write(t, first)
	f := NewTokenFile(vol.path())
	f.now = clk.Now
	if got, err := sent(t, f); err != nil || got != "Bearer "+first {
		t.Fatalf("first call sent %q, %v", got, err)
	}
	second := jwtExpiring("second", clk.Now().Add(2*time.Hour))
	vol.write(t, second)
	clk.Advance(tokenFileCheck)
	if got, err := sent(t, f); err != nil || got != "Bearer "+second {
		t.Fatalf("after the swap sent %q, %v", got, err)
	}
	if !f.RequireTransportSecurity() {
		t.Fatal("a bearer token must require TLS")
	}
}

func TestTokenFileNeverSendsAnExpiredToken(t *testing.T) {
	t.Parallel()
	clk := &testClock{now: time.Now()}
	vol := newProjectedVolume(t)
	old := jwtExpiring("old", clk.Now().Add(10*time.Second))
	vol.write(t, old)
	f := NewTokenFile(vol.path())
	f.now = clk.Now
	if got, err := sent(t, f); err != nil || got != "Bearer "+old {
		t.Fatalf("sent %q, %v", got, err)
	}
	// The token expires and the kubelet has not renewed it: the call
	// fails rather than send it.
	clk.Advance(10 * time.Second)
	got, err := sent(t, f)
	if status.Code(err) != codes.Unauthenticated || got != "" {
		t.Fatalf("at exp: sent %q, %v; want UNAUTHENTICATED and nothing sent", got, err)
	}
	// The renewed token is picked up at once, even within the check
	// interval: an expired token makes the file be read again.
	fresh := jwtExpiring("fresh", clk.Now().Add(time.Hour))
	vol.write(t, fresh)
	if got, err := sent(t, f); err != nil || got != "Bearer "+fresh {
		t.Fatalf("after renewal sent %q, %v", got, err)
	}
}

func TestTokenFileErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tests := []struct {
		name    string
		content *string
	}{
		{"missing file", nil},
		{"empty file", ptr("  \n")},
		{"too large", ptr(string(make([]byte, maxTokenFileBytes+1)))},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, fmt.Sprintf("token-%d", i))
			if tc.content != nil {
				if err := os.WriteFile(path, []byte(*tc.content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := sent(t, NewTokenFile(path)); status.Code(err) != codes.Unauthenticated {
				t.Fatalf("%v, want UNAUTHENTICATED", err)
			}
		})
	}
	// A token without a readable exp (an opaque token) is sent as it is.
	path := filepath.Join(dir, "opaque")
	if err := os.WriteFile(path, []byte("opaque-token"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := sent(t, NewTokenFile(path)); err != nil || got != "Bearer opaque-token" {
		t.Fatalf("opaque token: %q, %v", got, err)
	}
}

func ptr(s string) *string { return &s }
