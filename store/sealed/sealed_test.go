package sealed_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/store"
	"github.com/tokenbroker/tokenbroker/store/sealed"
)

// mapBackend is an in-memory sealed.Backend, so sealing is tested alone.
type mapBackend struct {
	mu     sync.Mutex
	values map[string][]byte
}

func newMapBackend() *mapBackend { return &mapBackend{values: map[string][]byte{}} }

func (m *mapBackend) Load(_ context.Context, key string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.values[key]
	if !ok {
		return nil, store.ErrNotFound
	}
	return bytes.Clone(v), nil
}

func (m *mapBackend) Save(_ context.Context, key string, value []byte, _ time.Time, _ uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.values[key] = bytes.Clone(value)
	return nil
}

func (m *mapBackend) SaveRejection(ctx context.Context, key string, value []byte, expiresAt time.Time, fence uint64) error {
	return m.Save(ctx, key, value, expiresAt, fence)
}

func (m *mapBackend) DeleteIfPrefix(_ context.Context, key string, prefix []byte) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if v, ok := m.values[key]; ok && bytes.HasPrefix(v, prefix) {
		delete(m.values, key)
		return true, nil
	}
	return false, nil
}

func newKey(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, sealed.KeySize)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

func ring(t *testing.T, keys ...[]byte) *sealed.Keyring {
	t.Helper()
	r, err := sealed.NewKeyring(keys...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

var key = store.TokenKey("0123abcd")

func entry() store.Entry {
	now := time.Now()
	return store.Entry{
		AccessToken:  "at-7f3c9a1e5b2d4c8f9a0b1c2d3e4f5a6b",
		TokenType:    "Bearer",
		Scope:        "full fileid:15431",
		RefreshToken: "rt-0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d",
		IssuedAt:     now,
		ExpiresAt:    now.Add(time.Hour),
		FetchedAt:    now,
	}
}

func TestRoundTripKeepsEveryField(t *testing.T) {
	t.Parallel()
	s := sealed.New(newMapBackend(), ring(t, newKey(t)))
	ctx := context.Background()
	want := entry()
	if err := s.Put(ctx, key, want); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if got.AccessToken != want.AccessToken || got.RefreshToken != want.RefreshToken || got.TokenType != want.TokenType ||
		got.Scope != want.Scope || !got.IssuedAt.Equal(want.IssuedAt) || !got.ExpiresAt.Equal(want.ExpiresAt) || !got.FetchedAt.Equal(want.FetchedAt) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

// TestOpenedEntriesOwnTheirStrings: the plaintext buffer an open uses is
// wiped and reused by the next ones, so an entry opened earlier must not
// share its bytes.
func TestOpenedEntriesOwnTheirStrings(t *testing.T) {
	s := sealed.New(newMapBackend(), ring(t, newKey(t)))
	ctx := context.Background()
	first := entry()
	other := entry()
	other.AccessToken, other.TokenType, other.Scope, other.RefreshToken = "at-another-token-of-the-same-length", "MAC", "read", "rt-other"
	for k, e := range map[string]store.Entry{"k1": first, "k2": other} {
		if err := s.Put(ctx, k, e); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Get(ctx, "k1")
	if err != nil {
		t.Fatal(err)
	}
	if len(other.AccessToken) != len(first.AccessToken) {
		t.Fatal("the tokens must be as long as each other, to land on the same bytes")
	}
	if _, err := s.Get(ctx, "k2"); err != nil {
		t.Fatal(err)
	}
	if got.AccessToken != first.AccessToken || got.TokenType != first.TokenType || got.Scope != first.Scope || got.RefreshToken != first.RefreshToken {
		t.Fatalf("the first entry changed after other opens: got %+v, want %+v", got, first)
	}
}

func TestValueHoldsNoTokenOrKey(t *testing.T) {
	t.Parallel()
	b := newMapBackend()
	k := newKey(t)
	s := sealed.New(b, ring(t, k))
	e := entry()
	if err := s.Put(context.Background(), key, e); err != nil {
		t.Fatal(err)
	}
	raw := b.values[key]
	for name, secret := range map[string][]byte{"access token": []byte(e.AccessToken), "refresh token": []byte(e.RefreshToken), "scope": []byte(e.Scope), "key": k} {
		if bytes.Contains(raw, secret) {
			t.Errorf("the stored value contains the %s", name)
		}
	}
}

func TestNonceIsFreshEachTime(t *testing.T) {
	t.Parallel()
	b := newMapBackend()
	s := sealed.New(b, ring(t, newKey(t)))
	ctx := context.Background()
	_ = s.Put(ctx, key, entry())
	first := bytes.Clone(b.values[key])
	_ = s.Put(ctx, key, entry())
	if bytes.Equal(first, b.values[key]) {
		t.Fatal("sealing the same entry twice gave the same value")
	}
}

func TestUnopenableValuesAreCountedMisses(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	other := store.TokenKey("ffff")
	tests := []struct {
		name   string
		tamper func(b *mapBackend)
		read   string
	}{
		{"flipped byte in the ciphertext", func(b *mapBackend) { v := b.values[key]; v[len(v)-5] ^= 0x01 }, key},
		{"flipped byte in the digest", func(b *mapBackend) { b.values[key][3] ^= 0x80 }, key},
		{"flipped key id", func(b *mapBackend) { b.values[key][33] ^= 0x01 }, key},
		{"copied to another key", func(b *mapBackend) { b.values[other] = bytes.Clone(b.values[key]) }, other},
		{"truncated", func(b *mapBackend) { b.values[key] = b.values[key][:40] }, key},
		{"garbage", func(b *mapBackend) { b.values[key] = []byte("not a sealed value") }, key},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := newMapBackend()
			s := sealed.New(b, ring(t, newKey(t)))
			if err := s.Put(ctx, key, entry()); err != nil {
				t.Fatal(err)
			}
			tc.tamper(b)
			if e, err := s.Get(ctx, tc.read); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("Get = %+v, %v; want a miss", e, err)
			}
			if n := s.Stats().OpenFailures; n != 1 {
				t.Fatalf("OpenFailures = %d, want 1", n)
			}
		})
	}
}

func TestRotation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := newMapBackend()
	oldKey, newKey := newKey(t), newKey(t)
	if err := sealed.New(b, ring(t, oldKey)).Put(ctx, key, entry()); err != nil {
		t.Fatal(err)
	}
	rotated := sealed.New(b, ring(t, newKey, oldKey))
	if _, err := rotated.Get(ctx, key); err != nil {
		t.Fatalf("a value sealed with the old key no longer opens after rotation: %v", err)
	}
	key2 := store.TokenKey("2222")
	if err := rotated.Put(ctx, key2, entry()); err != nil {
		t.Fatal(err)
	}
	if _, err := sealed.New(b, ring(t, newKey)).Get(ctx, key2); err != nil {
		t.Fatalf("a new value is not sealed with the new key: %v", err)
	}
	oldOnly := sealed.New(b, ring(t, oldKey))
	if _, err := oldOnly.Get(ctx, key2); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the old key alone opened a value sealed after rotation: %v", err)
	}
	id := sealed.KeyID(newKey)
	if !bytes.Equal(b.values[key2][33:37], id[:]) {
		t.Fatal("the new value does not carry the new key's id")
	}
}

// TestSetKeyringRotatesInPlace: a reload hands the running store its new
// keys; old values still open while their key stays in the ring.
func TestSetKeyringRotatesInPlace(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := newMapBackend()
	oldKey, newKey := newKey(t), newKey(t)
	s := sealed.New(b, ring(t, oldKey))
	if err := s.Put(ctx, key, entry()); err != nil {
		t.Fatal(err)
	}
	s.SetKeyring(ring(t, newKey, oldKey))
	if _, err := s.Get(ctx, key); err != nil {
		t.Fatalf("old value after adding a key: %v", err)
	}
	key2 := store.TokenKey("2222")
	if err := s.Put(ctx, key2, entry()); err != nil {
		t.Fatal(err)
	}
	s.SetKeyring(ring(t, newKey))
	if _, err := s.Get(ctx, key2); err != nil {
		t.Fatalf("value sealed with the new key: %v", err)
	}
	if _, err := s.Get(ctx, key); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the dropped key still opens: %v", err)
	}
}

func TestPlaintextAndSealedDoNotMix(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := newMapBackend()
	plain := sealed.NewPlaintext(b)
	if err := plain.Put(ctx, key, entry()); err != nil {
		t.Fatal(err)
	}
	if _, err := plain.Get(ctx, key); err != nil {
		t.Fatalf("plaintext round trip: %v", err)
	}
	s := sealed.New(b, ring(t, newKey(t)))
	if _, err := s.Get(ctx, key); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a sealing store served a plaintext value (anyone who can write Redis could plant tokens): %v", err)
	}
	key2 := store.TokenKey("2222")
	_ = s.Put(ctx, key2, entry())
	if _, err := plain.Get(ctx, key2); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a plaintext store served a sealed value: %v", err)
	}
}

func TestCompareAndDeleteByDigest(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := sealed.New(newMapBackend(), ring(t, newKey(t)))
	e := entry()
	_ = s.Put(ctx, key, e)
	if ok, err := s.CompareAndDelete(ctx, key, "some-other-token"); ok || err != nil {
		t.Fatalf("deleted with the wrong token: %v, %v", ok, err)
	}
	if ok, err := s.CompareAndDelete(ctx, key, e.AccessToken); !ok || err != nil {
		t.Fatalf("did not delete with the right token: %v, %v", ok, err)
	}
	if _, err := s.Get(ctx, key); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get after delete: %v", err)
	}
}

func TestExpiredIsNeitherStoredNorServed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := newMapBackend()
	s := sealed.New(b, ring(t, newKey(t)))
	e := entry()
	e.ExpiresAt = time.Now().Add(-time.Second)
	_ = s.Put(ctx, key, e)
	if len(b.values) != 0 {
		t.Fatal("an expired entry was stored")
	}
	e.ExpiresAt = time.Now().Add(30 * time.Millisecond)
	_ = s.Put(ctx, key, e)
	time.Sleep(40 * time.Millisecond)
	if _, err := s.Get(ctx, key); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("an expired entry was served: %v", err)
	}
}

func TestKeyringRejectsBadKeys(t *testing.T) {
	t.Parallel()
	_, err := sealed.NewKeyring(newKey(t), make([]byte, 16))
	var ke *sealed.KeyError
	if !errors.As(err, &ke) || ke.Index != 1 || ke.Len != 16 {
		t.Fatalf("err = %v, want a KeyError for key 1", err)
	}
	k := newKey(t)
	if _, err := sealed.NewKeyring(k, k); err == nil || !strings.Contains(err.Error(), "same key") {
		t.Fatalf("a duplicated key was accepted: %v", err)
	}
	if _, err := sealed.NewKeyring(); err == nil {
		t.Fatal("an empty keyring was accepted")
	}
}
