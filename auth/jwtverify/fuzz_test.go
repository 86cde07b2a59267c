package jwtverify_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/auth/jwtverify"
	"github.com/tokenbroker/tokenbroker/testkit/fakeissuer"
)

// FuzzVerify: whatever a caller sends, Verify answers without panicking,
// accepts only what the issuer signed, and never quotes the input.
func FuzzVerify(f *testing.F) {
	is := fakeissuer.Start()
	defer is.Close()
	path := filepath.Join(f.TempDir(), "jwks.json")
	if err := os.WriteFile(path, is.JWKS(), 0o600); err != nil {
		f.Fatal(err)
	}
	keys, err := jwtverify.NewFileKeys(path, nil)
	if err != nil {
		f.Fatal(err)
	}
	v, err := jwtverify.New([]jwtverify.Issuer{{Issuer: is.URL(), Audiences: []string{"tokenbroker"}, Keys: keys}}, nil)
	if err != nil {
		f.Fatal(err)
	}
	good := is.Sign(is.Kubernetes("ns", "sa", "tokenbroker", time.Now(), time.Hour))
	f.Add(good)
	f.Add(good[:len(good)-2])
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Add("eyJ.eyJ.eyJ")
	f.Fuzz(func(t *testing.T, token string) {
		c, err := v.Verify(t.Context(), token)
		if err == nil {
			if token != good || c.Subject != "system:serviceaccount:ns:sa" {
				t.Fatalf("accepted %q as %+v", token, c)
			}
			return
		}
		if len(token) >= 12 && strings.Contains(err.Error(), token) {
			t.Fatalf("the error quotes the input: %v", err)
		}
	})
}
