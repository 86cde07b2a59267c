package sealed

import (
	"bytes"
	"crypto/sha256"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/tokenbroker/tokenbroker/store"
)

// fuzzKeys are fixed keys, so the seeds sealed with them stay valid.
var fuzzKeys = [][]byte{bytes.Repeat([]byte{1}, KeySize), bytes.Repeat([]byte{2}, KeySize)}

var fuzzStoreKey = store.TokenKey("00ff")

func fuzzEntry(access, refresh string) store.Entry {
	return store.Entry{
		AccessToken: access, TokenType: "Bearer", Scope: "WebAPI", RefreshToken: refresh,
		IssuedAt: time.Unix(1_800_000_000, 0), ExpiresAt: time.Unix(1_800_003_600, 5), FetchedAt: time.Unix(1_800_000_001, 0),
	}
}

// FuzzOpen feeds arbitrary values read from Redis (which anyone with Redis
// access can write) to a sealing store and a plaintext one. Properties: a
// sealing store opens only a value it sealed itself, under the key it was
// sealed for (everything else is a miss: GCM authenticates header, nonce
// and ciphertext, and the associated data binds the key); it never opens a
// plaintext value; and whatever a store opens has a non-empty access token
// whose digest heads the value.
func FuzzOpen(f *testing.F) {
	ring, err := NewKeyring(fuzzKeys...)
	if err != nil {
		f.Fatal(err)
	}
	sealing, plain := New(nil, ring), NewPlaintext(nil)
	// Nonces are random and fuzz workers run this setup again, so the
	// seeds are recognised by what they hold, not by their bytes.
	genuine := map[string]bool{}
	for _, e := range []store.Entry{fuzzEntry("eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.e30.sig", "refresh-1"), fuzzEntry("a", "")} {
		v, err := sealing.seal(fuzzStoreKey, e)
		if err != nil {
			f.Fatal(err)
		}
		genuine[e.AccessToken+"\x00"+e.RefreshToken] = true
		f.Add(fuzzStoreKey, v)
		f.Add(store.TokenKey("other"), v)
		p, _ := plain.seal(fuzzStoreKey, e)
		f.Add(fuzzStoreKey, p)
	}
	f.Add(fuzzStoreKey, []byte{})
	f.Add(fuzzStoreKey, bytes.Repeat([]byte{0}, 80))
	f.Fuzz(func(t *testing.T, key string, value []byte) {
		if e, err := sealing.open(key, value); err == nil {
			if key != fuzzStoreKey || !genuine[e.AccessToken+"\x00"+e.RefreshToken] {
				t.Fatalf("the sealing store opened a value it did not seal (key %q): %+v", key, e)
			}
			checkOpened(t, value, e)
		}
		if len(value) > digestLen && value[digestLen] == versionPlain {
			if _, err := sealing.open(key, value); err == nil {
				t.Fatal("the sealing store opened a plaintext value")
			}
		}
		if e, err := plain.open(key, value); err == nil {
			checkOpened(t, value, e)
		}
	})
}

func checkOpened(t *testing.T, value []byte, e store.Entry) {
	t.Helper()
	sum := sha256.Sum256([]byte(e.AccessToken))
	if e.AccessToken == "" || !bytes.Equal(value[:digestLen], sum[:]) {
		t.Fatalf("opened entry %+v does not match the value's digest", e)
	}
}

// FuzzSealRoundTrip seals arbitrary entries. Properties: a sealed value
// opens to the same entry under its key and under no other, and never
// contains the access or refresh token in clear.
func FuzzSealRoundTrip(f *testing.F) {
	ring, err := NewKeyring(fuzzKeys...)
	if err != nil {
		f.Fatal(err)
	}
	s := New(nil, ring)
	f.Add(fuzzStoreKey, "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.DItMjAxNSAwNTowNjoyOS43NDE0NzYiLCJyb2xlIjoiYWNjZXNzIn0", "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJpc3MioIn0.4fEXVBxeFQB3YkfSQ-W1Wp5XiZJv2jsivcYR2fP73PQ", int64(3600))
	f.Add("", "\x00", "", int64(-1))
	f.Fuzz(func(t *testing.T, key, access, refresh string, life int64) {
		if access == "" {
			return
		}
		e := fuzzEntry(access, refresh)
		// Lifetimes are bounded upstream (vendors.MaxLifetime, a year);
		// keep times inside what UnixNano can hold.
		e.ExpiresAt = e.IssuedAt.Add(time.Duration(life % int64(2*365*24*time.Hour)))
		v, err := s.seal(key, e)
		if err != nil {
			return // an entry JSON cannot hold (invalid UTF-8 is replaced, not refused)
		}
		if len(access) >= 8 && bytes.Contains(v, []byte(access)) || len(refresh) >= 8 && bytes.Contains(v, []byte(refresh)) {
			t.Fatal("a sealed value holds a token in clear")
		}
		// json.Marshal replaces invalid UTF-8 with U+FFFD: an access token
		// that is not valid UTF-8 then no longer matches its digest (a
		// miss, never a wrong token), and such a refresh token comes back
		// changed (the vendor refuses it; the primary grant follows).
		// Tokens read from JSON or XML answers are always valid UTF-8.
		valid := utf8.ValidString(access) && utf8.ValidString(refresh)
		got, err := s.open(key, v)
		if err != nil {
			if valid {
				t.Fatalf("a sealed value does not open: %v", err)
			}
			return
		}
		if got.AccessToken != e.AccessToken {
			t.Fatalf("opened access token %q, sealed %q", got.AccessToken, e.AccessToken)
		}
		if valid && (got.RefreshToken != e.RefreshToken || !got.ExpiresAt.Equal(e.ExpiresAt) || !got.IssuedAt.Equal(e.IssuedAt) || !got.FetchedAt.Equal(e.FetchedAt)) {
			t.Fatalf("round trip: %+v, want %+v", got, e)
		}
		if _, err := s.open(key+"x", v); err == nil {
			t.Fatal("a value opened under another key")
		}
	})
}
