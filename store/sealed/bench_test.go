package sealed

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/store"
)

// mapBackend is an in-memory Backend, so the benchmarks time sealing only.
type mapBackend struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (b *mapBackend) Load(_ context.Context, key string) ([]byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	v, ok := b.m[key]
	if !ok {
		return nil, store.ErrNotFound
	}
	return v, nil
}

func (b *mapBackend) Save(_ context.Context, key string, value []byte, _ time.Time, _ uint64) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.m[key] = value
	return nil
}

func (b *mapBackend) SaveRejection(ctx context.Context, key string, value []byte, expiresAt time.Time, fence uint64) error {
	return b.Save(ctx, key, value, expiresAt, fence)
}

func (b *mapBackend) DeleteIfPrefix(context.Context, string, []byte) (bool, error) {
	return false, nil
}

func benchStore(b *testing.B) *Store {
	b.Helper()
	ring, err := NewKeyring(make([]byte, KeySize))
	if err != nil {
		b.Fatal(err)
	}
	return New(&mapBackend{m: map[string][]byte{}}, ring)
}

var benchEntry = store.Entry{
	AccessToken:  "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.DItMjAxNSAwNTowNjoyOS43NDE0NzYiLCJyb2xlIjoiYWNjZXNzIn0",
	TokenType:    "Bearer",
	Scope:        "full fileid:15431 fileid:14078 fileid:2045",
	RefreshToken: "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJpc3MioIn0.4fEXVBxeFQB3YkfSQ-W1Wp5XiZJv2jsivcYR2fP73PQ",
}

var benchKey = store.TokenKey("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")

// BenchmarkSeal is sealing one entry (what a Put costs before Redis).
func BenchmarkSeal(b *testing.B) {
	s := benchStore(b)
	e := benchEntry
	e.ExpiresAt = time.Now().Add(time.Hour)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Put(ctx, benchKey, e); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpen is opening one sealed entry (what a Redis-level hit costs
// besides the round trip).
func BenchmarkOpen(b *testing.B) {
	s := benchStore(b)
	e := benchEntry
	e.ExpiresAt = time.Now().Add(time.Hour)
	ctx := context.Background()
	if err := s.Put(ctx, benchKey, e); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Get(ctx, benchKey); err != nil {
			b.Fatal(err)
		}
	}
}
