package tiered

import (
	"context"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/store"
)

// BenchmarkL1Hit is a Get answered by the in-process level: the hot path of
// every cached GetToken with Redis configured.
func BenchmarkL1Hit(b *testing.B) {
	remote := store.NewMemory(0)
	s := New(remote, Options{})
	b.Cleanup(s.Close)
	ctx := context.Background()
	key := store.TokenKey("0123456789abcdef")
	if err := s.Put(ctx, key, store.Entry{AccessToken: "tok", ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		b.Fatal(err)
	}
	if _, err := s.Get(ctx, key); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Get(ctx, key); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkSharedRead is a Get with the in-process level disabled, one
// caller at a time: the tiered store's own work on every read of the
// shared level (here an in-memory one), the Redis-only path's overhead.
func BenchmarkSharedRead(b *testing.B) {
	remote := store.NewMemory(0)
	s := New(remote, Options{NoL1: true})
	b.Cleanup(s.Close)
	ctx := context.Background()
	key := store.TokenKey("0123456789abcdef")
	if err := s.Put(ctx, key, store.Entry{AccessToken: "tok", ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Get(ctx, key); err != nil {
			b.Fatal(err)
		}
	}
}
