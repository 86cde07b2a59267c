package sealed

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/tokenbroker/tokenbroker/store"
)

// TestDecodeWire: what json.Marshal writes for a token takes the fast
// path, everything else goes to json.Unmarshal, and both give what
// json.Unmarshal gives.
func TestDecodeWire(t *testing.T) {
	t.Parallel()
	marshal := func(w wireEntry) string {
		b, err := json.Marshal(w)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	full := wireEntry{AccessToken: "eyJhbGciOi.e30.sig", TokenType: "Bearer", Scope: "WebAPI offline_access", RefreshToken: "r-1", IssuedAt: 1_800_000_000_000_000_000, ExpiresAt: 1_800_003_600_000_000_005, FetchedAt: -1, Fence: 1 << 63}
	for _, tc := range []struct {
		name string
		json string
		fast bool
	}{
		{"every field", marshal(full), true},
		{"only the required fields", marshal(wireEntry{AccessToken: "a"}), true},
		{"UTF-8 in a string", marshal(wireEntry{AccessToken: "a", Scope: "écriture 書く"}), true},
		{"the smallest and largest times", marshal(wireEntry{AccessToken: "a", IssuedAt: -1 << 63, ExpiresAt: 1<<63 - 1}), true},
		{"-0", `{"a":"x","i":-0}`, true},
		{"an escaped character", marshal(wireEntry{AccessToken: "a<b>&\"\\"}), false},
		{"a negative cache entry", marshal(wireEntry{Rejected: &store.Rejection{Status: 401, OAuthError: "invalid_grant"}, ExpiresAt: 5}), false},
		{"invalid UTF-8", "{\"a\":\"\xff\"}", false},
		{"a control character", "{\"a\":\"\x01\"}", false},
		{"an unknown key", `{"a":"x","z":1}`, false},
		{"a key in capitals", `{"A":"x"}`, false},
		{"a duplicate key", `{"a":"x","a":"y"}`, false},
		{"whitespace", `{"a": "x"}`, false},
		{"a trailing comma", `{"a":"x",}`, false},
		{"a leading zero", `{"a":"x","i":01}`, false},
		{"a fraction", `{"a":"x","i":1.5}`, false},
		{"an exponent", `{"a":"x","i":1e3}`, false},
		{"int64 overflow", `{"a":"x","i":9223372036854775808}`, false},
		{"int64 underflow", `{"a":"x","i":-9223372036854775809}`, false},
		{"uint64 in 20 digits", `{"a":"x","g":18446744073709551615}`, false},
		{"a negative fence", `{"a":"x","g":-1}`, false},
		{"null", `{"a":null}`, false},
		{"a string for a number", `{"a":"x","i":"1"}`, false},
		{"empty", `{}`, false},
		{"not an object", `"a"`, false},
		{"truncated", `{"a":"x`, false},
		{"nothing", ``, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var fast wireEntry
			if _, got := decodeWireFast([]byte(tc.json), &fast); got != tc.fast {
				t.Fatalf("decodeWireFast(%s) = %t, want %t", tc.json, got, tc.fast)
			}
			checkDecodeWire(t, []byte(tc.json))
		})
	}
}

// FuzzDecodeWire: on any input, decodeWire answers what json.Unmarshal
// answers, and the fast path accepts only what json.Unmarshal reads the
// same way.
func FuzzDecodeWire(f *testing.F) {
	for _, w := range []wireEntry{
		{AccessToken: "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.e30.sig", TokenType: "Bearer", Scope: "WebAPI", RefreshToken: "r", IssuedAt: 1, ExpiresAt: 2, FetchedAt: 3, Fence: 4},
		{AccessToken: "é", IssuedAt: -5},
		{Rejected: &store.Rejection{Status: 400, Description: "m"}},
	} {
		b, _ := json.Marshal(w)
		f.Add(b)
	}
	f.Add([]byte(`{"a":"x","i":-0,"g":18446744073709551615}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		checkDecodeWire(t, data)
	})
}

func checkDecodeWire(t *testing.T, data []byte) {
	t.Helper()
	var want wireEntry
	wantErr := json.Unmarshal(data, &want)
	var fast wireEntry
	if token, ok := decodeWireFast(data, &fast); ok {
		if wantErr != nil || !reflect.DeepEqual(fast, want) {
			t.Fatalf("the fast path read %s as %+v; json.Unmarshal: %+v, %v", data, fast, want, wantErr)
		}
		if string(token) != want.AccessToken {
			t.Fatalf("the fast path's token in %s is %q, want %q", data, token, want.AccessToken)
		}
	}
	got, gotSum, gotErr := decodeWire(data)
	if (gotErr == nil) != (wantErr == nil) || wantErr == nil && !reflect.DeepEqual(got, want) {
		t.Fatalf("decodeWire(%s) = %+v, %v; json.Unmarshal: %+v, %v", data, got, gotErr, want, wantErr)
	}
	if wantSum := sha256.Sum256([]byte(want.AccessToken)); gotErr == nil && gotSum != wantSum {
		t.Fatalf("decodeWire(%s): the token's SHA-256 is %x, want %x", data, gotSum, wantSum)
	}
}

// TestPutPlainWipes: a plaintext buffer is wiped when an open is done
// with it, whether it is kept for the next open or, outsized, dropped.
func TestPutPlainWipes(t *testing.T) {
	for _, size := range []int{64, maxPooledPlain + 1} {
		buf := []byte(strings.Repeat("t", size))
		putPlain(&buf)
		if i := bytes.IndexFunc(buf, func(r rune) bool { return r != 0 }); i >= 0 {
			t.Errorf("%d bytes: byte %d not wiped", size, i)
		}
	}
}
