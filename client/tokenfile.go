package client

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/tokenbroker/tokenbroker/internal/filewatch"
)

// Bounds of a token file.
const (
	// maxTokenFileBytes bounds a token file; the broker refuses JWTs over
	// 16 KiB anyway.
	maxTokenFileBytes = 64 << 10
	// tokenFileCheck is how often the file is looked at for a new
	// version (a kubelet renews a projected token at 80% of its life, so
	// a second is plenty).
	tokenFileCheck = time.Second
)

// TokenFile is gRPC per-RPC credentials that send the workload identity
// token in a file, "authorization: Bearer <token>": a Kubernetes projected
// service-account token (audience tokenbroker), or a JWT-SVID a SPIFFE
// helper writes (docs/design.md, Security model). It reads the file again
// when it changes, including the kubelet's atomic "..data" symlink swap,
// and never sends a token whose exp has passed: it reads the file again,
// and fails the call with UNAUTHENTICATED if the token there has expired
// too. It is safe for concurrent use.
type TokenFile struct {
	path string
	now  func() time.Time

	mu      sync.Mutex
	token   string
	exp     time.Time // zero when the token carries no readable exp
	stamp   filewatch.Stamp
	checked time.Time
}

// WithTokenFile returns a dial option that authenticates every call with
// the token in path (see TokenFile). Use it with client.New:
//
//	conn, _ := grpc.NewClient("tokenbroker:9090",
//		grpc.WithTransportCredentials(credentials.NewTLS(tlsConfig)),
//		client.WithTokenFile("/var/run/secrets/tokenbroker/token"))
//	tb := client.New(conn)
//
// Every broker call made through tb, by its TokenSource and its Transport
// (InvalidateToken after a 401 included), carries the current token.
func WithTokenFile(path string) grpc.DialOption {
	return grpc.WithPerRPCCredentials(NewTokenFile(path))
}

// NewTokenFile returns credentials reading path. The file is read at the
// first call, so it may appear after the process starts.
func NewTokenFile(path string) *TokenFile {
	return &TokenFile{path: path, now: time.Now}
}

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (f *TokenFile) GetRequestMetadata(ctx context.Context, _ ...string) (map[string]string, error) {
	tok, err := f.current()
	if err != nil {
		return nil, err
	}
	return map[string]string{"authorization": "Bearer " + tok}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials: a
// bearer token is sent only over TLS (RFC 6750 section 5.3).
func (f *TokenFile) RequireTransportSecurity() bool { return true }

var _ credentials.PerRPCCredentials = (*TokenFile)(nil)

// current returns the token to send: the one read before, unless the file
// has changed (checked at most once per tokenFileCheck) or it expired.
func (f *TokenFile) current() (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	expired := !f.exp.IsZero() && !now.Before(f.exp)
	if f.token == "" || expired || now.Sub(f.checked) >= tokenFileCheck {
		f.checked = now
		if f.token == "" || expired || !filewatch.StampOf(f.path).Same(f.stamp) {
			if err := f.read(); err != nil && f.token == "" {
				return "", status.Errorf(codes.Unauthenticated, "tokenbroker client: token file %s: %v", f.path, err)
			}
		}
	}
	if !f.exp.IsZero() && !now.Before(f.exp) {
		return "", status.Errorf(codes.Unauthenticated, "tokenbroker client: the token in %s expired at %s and has not been renewed", f.path, f.exp.UTC().Format(time.RFC3339))
	}
	return f.token, nil
}

// read loads the file (the caller holds mu). A failed read keeps the
// token read before: a swap in progress is not a reason to fail calls.
func (f *TokenFile) read() error {
	stamp := filewatch.StampOf(f.path)
	file, err := os.Open(f.path)
	if err != nil {
		return err
	}
	defer file.Close()
	raw, err := io.ReadAll(io.LimitReader(file, maxTokenFileBytes+1))
	if err != nil {
		return err
	}
	if len(raw) > maxTokenFileBytes {
		return fmt.Errorf("larger than %d KiB", maxTokenFileBytes>>10)
	}
	tok := strings.TrimSpace(string(raw))
	if tok == "" {
		return errors.New("empty")
	}
	f.token, f.exp, f.stamp = tok, expiryOf(tok), stamp
	return nil
}

// expiryOf reads a JWT's exp claim without verifying anything (the broker
// verifies); zero when tok is not a JWT or has no exp.
func expiryOf(tok string) time.Time {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return time.Time{}
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return time.Time{}
	}
	var claims struct {
		Exp json.Number `json:"exp"`
	}
	if json.Unmarshal(payload, &claims) != nil {
		return time.Time{}
	}
	exp, err := claims.Exp.Int64()
	if err != nil || exp <= 0 {
		return time.Time{}
	}
	return time.Unix(exp, 0)
}
