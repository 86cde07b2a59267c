// Package vendors turns credentials into access tokens, one strategy per
// vendor. Generic OAuth 2.0 behaviour lives once (the bounded, retrying
// request; answers and the expiry chain, RFC 6749 sections 5.1 and 5.2;
// request bodies; client authentication, RFC 6749 section 2.3, RFC 7523
// client assertions, RFC 8705 tls_client_auth; URL templates; the HTTP
// client and mutual TLS); a vendor file holds only its data and quirks and
// cites the vendor document it implements. docs/design.md, Vendors, lists
// the vendors, the shared files and every setting.
//
// A Strategy validates a request's inputs and resolves them into a Call (the
// resolved token URL is part of the cache fingerprint); the Call fetches a
// token. Strategies are stateless and safe for concurrent use.
package vendors

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"time"

	"github.com/tokenbroker/tokenbroker/secret"
)

// Token is what a vendor issued.
type Token struct {
	AccessToken  string
	TokenType    string
	Scope        string
	RefreshToken string
	// IssuedAt is when the token request was sent: lifetimes count from it.
	IssuedAt  time.Time
	ExpiresAt time.Time
	// ExpirySource names the step of the expiry chain that set ExpiresAt:
	// "expires_in", "jwt_exp" or "default_ttl".
	ExpirySource string
	// Warnings are non-fatal oddities of the answer (an unusable expires_in),
	// safe to log: they never contain the token.
	Warnings []string
}

// Info describes a vendor to callers (ListVendors) and to the config loader.
type Info struct {
	ID                  string
	DisplayName         string
	GrantTypes          []string
	RequiredCredentials []string
	OptionalCredentials []string
	// Params are the non-secret inputs a request may set.
	Params []string
	// TargetParams are the params the vendor's default token URLs place
	// in a host or a path: they choose where credentials are sent.
	TargetParams []string
	// Settings are the vendor-specific settings keys (CommonSettings are
	// accepted for every vendor too).
	Settings         []string
	DocumentationURL string
}

// CommonSettings are accepted by every vendor.
var CommonSettings = []string{
	"default_ttl", "negative_ttl", "timeout", "tls_client_cert", "tls_client_key", "token_url",
	// Vendor protection (package vendors/budget).
	"max_requests_per_second", "burst", "max_concurrent_requests",
}

// AllowsSetting reports whether key is a valid setting for the vendor.
// Map-valued settings are flattened as "<name>.<key>".
func (i Info) AllowsSetting(key string) bool {
	name := key
	for j := 0; j < len(key); j++ {
		if key[j] == '.' {
			name = key[:j]
			break
		}
	}
	return slices.Contains(CommonSettings, name) || slices.Contains(i.Settings, name)
}

// Input is everything that shapes one token.
type Input struct {
	// Settings are trusted operator configuration: vendor settings overlaid
	// by the profile's.
	Settings Settings
	// Credentials are secrets, from a profile or inline.
	Credentials secret.Map
	// Params are untrusted, non-secret request inputs.
	Params map[string]string
	// HTTPClient sends the token request. Nil means a default client.
	HTTPClient *http.Client
}

// Strategy knows one vendor's token endpoint.
type Strategy interface {
	// Info describes the vendor.
	Info() Info
	// ResolveCall validates in and resolves the token request. Errors are
	// *ArgumentError (the caller's input) or *ConfigError (the operator's).
	ResolveCall(in Input) (Call, error)
}

// Call is a resolved token request.
type Call interface {
	// Target is the resolved token URL.
	Target() string
	// Fetch obtains a token. When refreshToken is not empty and the vendor
	// supports it, Fetch tries the refresh grant first and falls back to
	// the primary grant when the vendor rejects the refresh token.
	Fetch(ctx context.Context, refreshToken string) (*Token, error)
}

// Registry holds the strategies by vendor id.
type Registry struct {
	byID map[string]Strategy
}

// NewRegistry returns a registry of the given strategies.
func NewRegistry(strategies ...Strategy) *Registry {
	r := &Registry{byID: make(map[string]Strategy, len(strategies))}
	for _, s := range strategies {
		id := s.Info().ID
		if _, dup := r.byID[id]; dup {
			panic(fmt.Sprintf("vendors: duplicate strategy %q", id))
		}
		r.byID[id] = s
	}
	return r
}

// Default returns a registry with every vendor this package ships.
func Default() *Registry { return NewRegistry(builtins()...) }

// builtins lists every vendor this package ships (docs/design.md, Vendors).
func builtins() []Strategy {
	return []Strategy{HotDocsAdvance(), SmartDocumentor(), AbbyyVantage(), BrightPattern(), Saasu(), OAuth2()}
}

// Lookup returns the strategy for id.
func (r *Registry) Lookup(id string) (Strategy, bool) {
	s, ok := r.byID[id]
	return s, ok
}

// All returns every strategy, sorted by id.
func (r *Registry) All() []Strategy {
	out := make([]Strategy, 0, len(r.byID))
	for _, s := range r.byID {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Info().ID < out[j].Info().ID })
	return out
}
