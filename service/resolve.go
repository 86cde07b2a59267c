package service

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"maps"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/tokenbroker/tokenbroker/config"
	"github.com/tokenbroker/tokenbroker/secret"
	"github.com/tokenbroker/tokenbroker/store"
	"github.com/tokenbroker/tokenbroker/vendors"
)

// Request limits: inputs are small; anything larger is a mistake or an
// attack.
const (
	maxMapEntries = 32
	maxKeyLen     = 64
	maxValueLen   = 8192
	maxMinTTL     = config.MaxMinTTL // also service.default_min_ttl's bound
)

var (
	namePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_.:-]{0,63}$`)
	keyPattern  = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)
)

// selector is the part of a request that picks a token.
type selector struct {
	vendor      string
	profile     string
	credentials map[string]string
	params      map[string]string
}

// resolved is a validated selector, ready to fetch.
type resolved struct {
	vendor         string
	profile        string
	call           vendors.Call
	settings       vendors.Settings
	key            string
	requestedScope string
	// conf is the configuration it was resolved under.
	conf *snapshot
}

// resolve validates sel, applies the profile, and computes the cache key.
// Resolution is a pure function of the selector and the configuration, so
// successful results are memoised: the hot path (a cached token) then costs
// one map lookup instead of validation, URL templating and an HMAC. A
// profile named alone (the usual call) is memoised in the profile's own
// slot, read without a lock or an allocation; any other selector in the
// bounded LRU, under its encoded key.
func (s *Service) resolve(conf *snapshot, sel selector) (*resolved, error) {
	if slot := conf.profileSlot(sel); slot != nil {
		if r := slot.Load(); r != nil {
			return r, nil
		}
		r, err := s.resolveUncached(conf, sel)
		if err != nil {
			return nil, err
		}
		// Callers racing here store equal resolutions; any one will do.
		slot.Store(r)
		return r, nil
	}
	ck := selectorKey(sel)
	if r := conf.resolutions.get(ck); r != nil {
		return r, nil
	}
	r, err := s.resolveUncached(conf, sel)
	if err != nil {
		return nil, err
	}
	conf.resolutions.put(ck, r)
	return r, nil
}

// selectorKey encodes a selector unambiguously (length-prefixed, maps
// sorted by key).
func selectorKey(sel selector) string {
	if len(sel.credentials) == 0 && len(sel.params) == 0 {
		return "\x00" + sel.profile + "\x00" + sel.vendor
	}
	var b strings.Builder
	field := func(v string) {
		b.WriteString(strconv.Itoa(len(v)))
		b.WriteByte(':')
		b.WriteString(v)
	}
	field(sel.profile)
	field(sel.vendor)
	for _, m := range []map[string]string{sel.credentials, sel.params} {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b.WriteByte('|')
		for _, k := range keys {
			field(k)
			field(m[k])
		}
	}
	return b.String()
}

// maxResolutions bounds the memoised resolutions. A resolution holds a
// prepared vendor call (about a kilobyte); the hot path is a few profiles
// and credential sets, so a bound well below the token store's keeps the
// hot ones memoised without doubling the memory of 100k cached tokens. A
// selector beyond it is resolved again (microseconds).
const maxResolutions = 10_000

// resolutionCache is a bounded LRU of successful resolutions (see
// maxResolutions). It holds inline credentials in process memory as long
// as their tokens are cached anyway; it is never written anywhere.
type resolutionCache struct {
	lru *lru.Cache[string, *resolved]
}

func newResolutionCache(max int) *resolutionCache {
	c, err := lru.New[string, *resolved](max)
	if err != nil {
		panic(err) // only for a size <= 0
	}
	return &resolutionCache{lru: c}
}

func (c *resolutionCache) get(k string) *resolved {
	r, _ := c.lru.Get(k)
	return r
}

func (c *resolutionCache) put(k string, r *resolved) { c.lru.Add(k, r) }

// profileResolution is where a snapshot memoises the resolution of one of
// its profiles named alone: no credentials, no params, and the vendor
// empty or the profile's own. Both selectors resolve to the same call and
// key. A snapshot makes one per profile, so these are bounded by the
// configuration, whatever callers send, and no flood of inline selectors
// evicts them from the LRU.
type profileResolution struct {
	vendor string // the profile's vendor
	atomic.Pointer[resolved]
}

// profileSlot is sel's profileResolution, or nil when sel is not a
// configured profile named alone (resolve then takes the LRU's path,
// which also answers the errors).
func (c *snapshot) profileSlot(sel selector) *profileResolution {
	if sel.profile == "" || len(sel.credentials) != 0 || len(sel.params) != 0 {
		return nil
	}
	slot := c.byProfile[sel.profile]
	if slot == nil || (sel.vendor != "" && sel.vendor != slot.vendor) {
		return nil
	}
	return slot
}

func (s *Service) resolveUncached(conf *snapshot, sel selector) (*resolved, error) {
	if err := checkMap("credentials", sel.credentials, true); err != nil {
		return nil, err
	}
	if err := checkMap("params", sel.params, false); err != nil {
		return nil, err
	}
	vendorID := sel.vendor
	creds := secret.FromStrings(sel.credentials)
	params := sel.params
	var profileSettings vendors.Settings
	switch {
	case sel.profile != "":
		if !namePattern.MatchString(sel.profile) {
			return nil, &vendors.ArgumentError{Field: "profile", Reason: "is not a profile name ([a-z0-9_.:-], at most 64 characters)"}
		}
		p, ok := conf.profiles[sel.profile]
		if !ok {
			return nil, &notFoundError{what: "profile", name: sel.profile}
		}
		if vendorID != "" && vendorID != p.Vendor {
			return nil, &vendors.ArgumentError{Field: "vendor", Reason: fmt.Sprintf("profile %s is for vendor %s, not %s; leave vendor empty", sel.profile, p.Vendor, vendorID)}
		}
		if len(sel.credentials) > 0 {
			return nil, &vendors.ArgumentError{Field: "credentials", Reason: "must be empty when a profile is used: the profile holds the credentials"}
		}
		merged, err := profileParams(sel.profile, p, params)
		if err != nil {
			return nil, err
		}
		vendorID, creds, params, profileSettings = p.Vendor, p.Credentials, merged, p.Settings
	case vendorID == "":
		return nil, &vendors.ArgumentError{Field: "vendor", Reason: "is required when no profile is given"}
	case !namePattern.MatchString(vendorID):
		return nil, &vendors.ArgumentError{Field: "vendor", Reason: "is not a vendor id; ListVendors lists them"}
	case len(sel.credentials) == 0:
		return nil, &vendors.ArgumentError{Field: "credentials", Reason: "are required when no profile is given"}
	}
	strategy, ok := s.startup.Registry.Lookup(vendorID)
	if !ok {
		return nil, &notFoundError{what: "vendor", name: vendorID}
	}
	settings := conf.vendorSettings[vendorID].Overlay(profileSettings)
	source := "profile:" + sel.profile
	if sel.profile == "" {
		// An inline call brings its own secret and never borrows the
		// operator's (docs/design.md, Security model): the broker's
		// certificate or extra_params must not authenticate a client_id
		// the caller picked.
		if !vendors.HasSecretCredential(creds) {
			return nil, &isolationError{ArgumentError: vendors.ArgumentError{
				Field:  missingSecretField(strategy.Info(), creds),
				Reason: fmt.Sprintf("an inline call must bring its own secret (one of %s); the server's vendor-level secrets serve profiles only", strings.Join(vendors.SecretCredentials(strategy.Info()), ", ")),
			}}
		}
		settings = vendors.InlineSettings(settings)
		source = "inline"
	}
	call, err := strategy.ResolveCall(vendors.Input{
		Settings:    settings,
		Credentials: creds,
		Params:      params,
		HTTPClient:  s.startup.HTTPClient,
	})
	if err != nil {
		return nil, err
	}
	r := &resolved{
		vendor:   vendorID,
		profile:  sel.profile,
		call:     call,
		settings: settings,
		key:      fingerprint(conf.fingerprintKey, source, vendorID, call.Target(), creds, params, settings),
		conf:     conf,
	}
	if sc, ok := call.(interface{ RequestedScope() string }); ok {
		r.requestedScope = sc.RequestedScope()
	}
	return r, nil
}

// profileParams merges a request's params into profile p's: a request
// may repeat a param the profile fixes, and set only the params the
// profile's allow_params lists, to one of their values when it lists them
// (docs/design.md, Security model).
func profileParams(name string, p Profile, params map[string]string) (map[string]string, error) {
	merged := make(map[string]string, len(p.Params)+len(params))
	for k, v := range p.Params {
		merged[k] = v
	}
	for _, k := range slices.Sorted(maps.Keys(params)) {
		v := params[k]
		if fixed, ok := p.Params[k]; ok {
			if fixed != v {
				return nil, &vendors.ArgumentError{Field: "params." + k, Reason: "is fixed by profile " + name}
			}
			continue
		}
		allowed, ok := p.AllowParams[k]
		if !ok {
			return nil, &isolationError{ArgumentError: vendors.ArgumentError{Field: "params." + k, Reason: "is not in profile " + name + "'s allow_params: callers of this profile may not set it"}}
		}
		if allowed != nil && !slices.Contains(allowed, v) {
			return nil, &isolationError{ArgumentError: vendors.ArgumentError{Field: "params." + k, Reason: fmt.Sprintf("%q is not one of the values profile %s allows", truncateKey(v), name)}}
		}
		merged[k] = v
	}
	return merged, nil
}

// missingSecretField names the field an inline call without a secret
// should fill: the vendor's required secret credential it lacks, if there
// is one, else "credentials" (the secret depends on the grant).
func missingSecretField(info vendors.Info, creds secret.Map) string {
	for _, name := range info.RequiredCredentials {
		if vendors.IsSecretCredential(name) && creds[name].IsZero() {
			return "credentials." + name
		}
	}
	return "credentials"
}

// isolationError is an ArgumentError that refuses a caller something
// another caller or the operator owns; it is audited.
type isolationError struct{ vendors.ArgumentError }

func (e *isolationError) Unwrap() error { return &e.ArgumentError }

// checkMap bounds a request map and its keys' syntax.
func checkMap(field string, m map[string]string, secretValues bool) error {
	if len(m) > maxMapEntries {
		return &vendors.ArgumentError{Field: field, Reason: fmt.Sprintf("has %d entries; at most %d", len(m), maxMapEntries)}
	}
	for k, v := range m {
		if !keyPattern.MatchString(k) {
			return &vendors.ArgumentError{Field: field, Reason: fmt.Sprintf("key %q is not a name of [a-z0-9_]", truncateKey(k))}
		}
		if len(v) > maxValueLen {
			return &vendors.ArgumentError{Field: field + "." + k, Reason: fmt.Sprintf("is longer than %d bytes", maxValueLen)}
		}
		if !secretValues && v == "" {
			return &vendors.ArgumentError{Field: field + "." + k, Reason: "is empty"}
		}
	}
	return nil
}

func truncateKey(k string) string {
	if len(k) > maxKeyLen {
		return k[:maxKeyLen] + "…"
	}
	return k
}

func durationField(field string, d *durationpb.Duration, def time.Duration) (time.Duration, error) {
	if d == nil {
		return def, nil
	}
	if err := d.CheckValid(); err != nil {
		return 0, &vendors.ArgumentError{Field: field, Reason: "is not a valid duration"}
	}
	v := d.AsDuration()
	if v < 0 || v > maxMinTTL {
		return 0, &vendors.ArgumentError{Field: field, Reason: fmt.Sprintf("must be between 0s and %s", maxMinTTL)}
	}
	return v, nil
}

// fingerprint is the cache key of docs/design.md, Storage: an HMAC over everything
// that shapes the token, so that only a caller who knows the credentials can
// reach an entry and the key reveals nothing.
//
// source is where the credentials come from ("profile:<name>" or
// "inline"), so an inline call never shares a profile's entry even with
// the same credentials.
func fingerprint(macKey []byte, source, vendorID, target string, creds secret.Map, params map[string]string, settings vendors.Settings) string {
	mac := hmac.New(sha256.New, macKey)
	writeField(mac, "v2")
	writeField(mac, source)
	writeField(mac, vendorID)
	writeField(mac, target)
	writeSorted(mac, "c", len(creds), func(yield func(k, v string)) {
		for k, v := range creds {
			yield(k, v.Reveal())
		}
	})
	writeSorted(mac, "p", len(params), func(yield func(k, v string)) {
		for k, v := range params {
			yield(k, v)
		}
	})
	writeSorted(mac, "s", len(settings), func(yield func(k, v string)) {
		for k, v := range settings {
			yield(k, v)
		}
	})
	return store.TokenKey(hex.EncodeToString(mac.Sum(nil)))
}

// writeField writes a length-prefixed field, so no two inputs collide.
func writeField(h hash.Hash, s string) {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(s)))
	h.Write(n[:])
	h.Write([]byte(s))
}

func writeSorted(h hash.Hash, tag string, n int, each func(yield func(k, v string))) {
	pairs := make([][2]string, 0, n)
	each(func(k, v string) { pairs = append(pairs, [2]string{k, v}) })
	sort.Slice(pairs, func(i, j int) bool { return pairs[i][0] < pairs[j][0] })
	writeField(h, tag)
	writeField(h, fmt.Sprint(len(pairs)))
	for _, p := range pairs {
		writeField(h, p[0])
		writeField(h, p[1])
	}
}
