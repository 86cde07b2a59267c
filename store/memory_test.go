package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestMemory(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	now := time.Unix(1_700_000_000, 0)
	fresh := Entry{AccessToken: "a", ExpiresAt: now.Add(time.Minute)}
	tests := []struct {
		name    string
		run     func(m *Memory) (Entry, error)
		wantTok string
		wantErr error
	}{
		{"miss", func(m *Memory) (Entry, error) { return m.Get(ctx, "k") }, "", ErrNotFound},
		{"hit", func(m *Memory) (Entry, error) {
			_ = m.Put(ctx, "k", fresh)
			return m.Get(ctx, "k")
		}, "a", nil},
		{"expired entry is not served", func(m *Memory) (Entry, error) {
			_ = m.Put(ctx, "k", fresh)
			m.now = func() time.Time { return now.Add(time.Minute) }
			return m.Get(ctx, "k")
		}, "", ErrNotFound},
		{"already expired entry is not stored", func(m *Memory) (Entry, error) {
			_ = m.Put(ctx, "k", Entry{AccessToken: "old", ExpiresAt: now})
			return m.Get(ctx, "k")
		}, "", ErrNotFound},
		{"compare-and-delete of another token keeps the entry", func(m *Memory) (Entry, error) {
			_ = m.Put(ctx, "k", fresh)
			if ok, _ := m.CompareAndDelete(ctx, "k", "stale"); ok {
				return Entry{}, errors.New("deleted")
			}
			return m.Get(ctx, "k")
		}, "a", nil},
		{"compare-and-delete of the token deletes it", func(m *Memory) (Entry, error) {
			_ = m.Put(ctx, "k", fresh)
			if ok, _ := m.CompareAndDelete(ctx, "k", "a"); !ok {
				return Entry{}, errors.New("not deleted")
			}
			return m.Get(ctx, "k")
		}, "", ErrNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := NewMemory(10)
			m.now = func() time.Time { return now }
			e, err := tc.run(m)
			if !errors.Is(err, tc.wantErr) || e.AccessToken != tc.wantTok {
				t.Fatalf("got (%q, %v), want (%q, %v)", e.AccessToken, err, tc.wantTok, tc.wantErr)
			}
		})
	}
}

func TestMemoryIsBounded(t *testing.T) {
	t.Parallel()
	m := NewMemory(100)
	base := time.Now()
	for i := range 1000 {
		_ = m.Put(context.Background(), fmt.Sprint(i), Entry{AccessToken: "t", ExpiresAt: base.Add(time.Hour + time.Duration(i)*time.Second)})
	}
	if m.Len() > 100 {
		t.Fatalf("Len() = %d, want <= 100", m.Len())
	}
	// The least recently used entries were dropped first.
	if _, err := m.Get(context.Background(), "999"); err != nil {
		t.Fatalf("latest entry evicted: %v", err)
	}
	if _, err := m.Get(context.Background(), "0"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the oldest entry was kept: %v", err)
	}
}
