package store

import "strings"

// Every Redis key and pub/sub channel name of the broker is built in this
// file, and nowhere else (docs/design.md, Storage: the key and channel
// tables, which the tests of package docs compare with these builders).
// The names are a contract between replicas of different versions: a
// rolling deploy runs both at once, so a suffix never changes (the fetch
// lease's key ends in ":lock" for that reason, though the code calls it a
// lease), and a layout old replicas would misread takes a new KeyPrefix.
//
// A token's keys share its hash tag, "tokenbroker:v1:{<fingerprint>}", so
// in a Redis Cluster all of them are on the token's slot and one script
// may name several. Which key a caller wants is said by the builder it
// calls, never read back from a key's name.

// KeyPrefix starts every key and channel name.
const KeyPrefix = "tokenbroker:v1:"

// The suffixes beside a token's hash tag, as they are on the wire.
const (
	tokenSuffix    = ":token"
	negativeSuffix = ":neg"
	leaseSuffix    = ":lock"
	fenceSuffix    = ":gen"
	spentSuffix    = ":rt"
	revokedSuffix  = ":revoked"
	opInfix        = ":op:"
)

// TokenKeyPattern matches every token key (a KEYS or SCAN pattern).
const TokenKeyPattern = KeyPrefix + "*" + tokenSuffix

// TokenKey is the cache key of the token whose fingerprint (the hex HMAC
// of everything that shapes it) is fingerprint.
func TokenKey(fingerprint string) string {
	return KeyPrefix + "{" + fingerprint + "}" + tokenSuffix
}

// tokenTag returns what all the keys of one token share, the prefix and
// the hash tag, from any of them: the name up to the first '}', where
// Redis's own hash tag ends too. A name without a tag is returned whole.
func tokenTag(key string) string {
	if i := strings.IndexByte(key, '}'); i >= 0 {
		return key[:i+1]
	}
	return key
}

// NegativeKey is the key of the negative cache entry (a remembered vendor
// rejection) beside the token key tokenKey.
func NegativeKey(tokenKey string) string { return tokenTag(tokenKey) + negativeSuffix }

// LeaseKey is the key of the fetch lease of the token key tokenKey: its
// value is the holder's owner token.
func LeaseKey(tokenKey string) string { return tokenTag(tokenKey) + leaseSuffix }

// FenceKey is the key of the fence generation of the token key tokenKey
// (and of its negative cache entry): the counter a lease increments and a
// fenced write compares with the generation it was written under.
func FenceKey(tokenKey string) string { return tokenTag(tokenKey) + fenceSuffix }

// SpentKey is the key that marks the refresh token last presented under a
// lease of the token key tokenKey.
func SpentKey(tokenKey string) string { return tokenTag(tokenKey) + spentSuffix }

// RevokedKey is the key of the access tokens reported rejected for the
// token key tokenKey.
func RevokedKey(tokenKey string) string { return tokenTag(tokenKey) + revokedSuffix }

// OpKey is the key under which a script run on the token key tokenKey
// with operation id remembers its answer, in the token's slot.
func OpKey(tokenKey, id string) string { return tokenTag(tokenKey) + opInfix + id }

// BudgetKey is the key of the request budget named name (a vendor id, or
// a client's miss limit): the hash tag holds the name, so one budget
// lives on one Cluster slot and every replica reads the same one.
func BudgetKey(name string) string { return KeyPrefix + "{budget:" + name + "}" }

// BudgetOpKey is OpKey for a script run on the budget named name.
func BudgetOpKey(name, id string) string { return BudgetKey(name) + opInfix + id }

// ShareKey is the key of client's share of vendor's budget, in the
// budget's slot.
func ShareKey(vendor, client string) string { return BudgetKey(vendor) + ":share:" + client }

// WaitingKey is the key of the set of clients holding reserved slots of
// vendor's budget, in the budget's slot.
func WaitingKey(vendor string) string { return BudgetKey(vendor) + ":waiting" }

// StatusKey is the key of profile's credential status record; every
// record is in the one slot of the tag {status}, so one pipeline reads
// them all.
func StatusKey(profile string) string { return KeyPrefix + "{status}:" + profile }

// InvalidationChannel carries invalidations between replicas: a token
// stored or deleted ("<sender id> <token key>").
const InvalidationChannel = KeyPrefix + "invalidations"

// LeaseChannel carries lease releases ("<token key>"), to wake waiters.
const LeaseChannel = KeyPrefix + "leases"
