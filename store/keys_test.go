package store_test

import (
	"testing"

	"github.com/tokenbroker/tokenbroker/store"
)

// TestKeyNamesOnTheWire pins every key and channel name as replicas of
// other versions read them (docs/design.md, Storage): a change here breaks
// a rolling deploy.
func TestKeyNamesOnTheWire(t *testing.T) {
	t.Parallel()
	token := store.TokenKey("0123abcd")
	tests := []struct {
		name string
		got  string
		want string
	}{
		{"token", token, "tokenbroker:v1:{0123abcd}:token"},
		{"negative cache entry", store.NegativeKey(token), "tokenbroker:v1:{0123abcd}:neg"},
		{"fetch lease", store.LeaseKey(token), "tokenbroker:v1:{0123abcd}:lock"},
		{"fence generation", store.FenceKey(token), "tokenbroker:v1:{0123abcd}:gen"},
		{"spent refresh token", store.SpentKey(token), "tokenbroker:v1:{0123abcd}:rt"},
		{"revoked tokens", store.RevokedKey(token), "tokenbroker:v1:{0123abcd}:revoked"},
		{"token operation id", store.OpKey(token, "ff00"), "tokenbroker:v1:{0123abcd}:op:ff00"},
		{"budget", store.BudgetKey("saasu"), "tokenbroker:v1:{budget:saasu}"},
		{"budget operation id", store.BudgetOpKey("saasu", "ff00"), "tokenbroker:v1:{budget:saasu}:op:ff00"},
		{"client share", store.ShareKey("saasu", "billing"), "tokenbroker:v1:{budget:saasu}:share:billing"},
		{"waiting clients", store.WaitingKey("saasu"), "tokenbroker:v1:{budget:saasu}:waiting"},
		{"credential status", store.StatusKey("acme"), "tokenbroker:v1:{status}:acme"},
		{"invalidation channel", store.InvalidationChannel, "tokenbroker:v1:invalidations"},
		{"lease channel", store.LeaseChannel, "tokenbroker:v1:leases"},
		{"token key pattern", store.TokenKeyPattern, "tokenbroker:v1:*:token"},
		// A sibling of the negative entry is the token's: they share the tag.
		{"fence generation of the negative entry", store.FenceKey(store.NegativeKey(token)), "tokenbroker:v1:{0123abcd}:gen"},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, tc.got, tc.want)
		}
	}
}
