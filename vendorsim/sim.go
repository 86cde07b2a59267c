package vendorsim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// maxBodyBytes bounds every request body, like a real server's limit.
const maxBodyBytes = 1 << 20

// sweepEvery is how many issued tokens pass between sweeps of expired ones,
// so a long benchmark does not grow the token table without bound.
const sweepEvery = 1024

// vendor is one simulated token endpoint: its routes, its default token
// lifetime, the handler of a well-formed POST and the renderer of its errors.
type vendor struct {
	id         string
	paths      []string
	defaultTTL time.Duration
	// serve answers a POST whose body is already bounded; it writes the
	// success itself and returns the rejection for writeError to render.
	serve func(s *Sim, w http.ResponseWriter, r *http.Request) *tokenError
	// writeError renders a rejection in the vendor's style.
	writeError func(w http.ResponseWriter, r *http.Request, e *tokenError)
}

// Vendor ids of docs/design.md, Vendors.
const (
	idHotDocs         = "hotdocs_advance"
	idSmartDocumentor = "smartdocumentor"
	idAbbyy           = "abbyy_vantage"
	idBrightPattern   = "brightpattern"
	idSaasu           = "saasu"
	idOAuth2          = "oauth2"
)

// vendors lists every simulated vendor, by id of docs/design.md, Vendors.
var vendors = []*vendor{&hotDocsAdvance, &smartDocumentor, &abbyyVantage, &brightPattern, &saasu, &genericOAuth2}

// mustVendor panics on an unknown vendor id: passing one is a programming
// error in the test or wiring that calls the simulator.
func mustVendor(id string) *vendor {
	for _, v := range vendors {
		if v.id == id {
			return v
		}
	}
	panic(fmt.Sprintf("vendorsim: unknown vendor id %q", id))
}

// Sim simulates the token endpoints of all vendors on one [http.Handler].
// It is safe for concurrent use; its test hooks may be called while it serves.
type Sim struct {
	mux *http.ServeMux
	// latency delays every answer (WithLatency, SetLatency), in
	// nanoseconds.
	latency atomic.Int64
	// now is the clock tokens expire by (tests move it instead of waiting).
	now func() time.Time

	mu       sync.Mutex
	ttl      map[string]time.Duration
	accounts map[string][]map[string]string
	failures map[string]failure
	requests map[string]int
	arrivals map[string][]time.Time // by vendor, the last maxArrivals
	issued   map[string]int
	tokens   map[string]issuedToken  // access token -> who and until when
	refresh  map[string]refreshGrant // refresh token -> what it refreshes
	// redeemed remembers spent refresh tokens by grant family, so that a
	// second use is detected (RFC 9700 section 4.14.2): it revokes every
	// refresh token of the family.
	redeemed map[string]string
	revoked  map[string]bool // families revoked by a reuse
	reuses   int
	redeems  int
	sweep    int // tokens issued since the last sweep
	// journal, when on (WithJournal), records what was issued, presented
	// and revoked.
	journalOn      bool
	journal        []Event
	journalDropped int

	// federation is workload identity on the oauth2 endpoint
	// (federation.go).
	federation federation

	url    string
	server *http.Server
	served chan struct{} // closed when the Serve goroutine of Start returns
}

type failure struct {
	remaining  int
	status     int
	retryAfter time.Duration
}

type issuedToken struct {
	vendor  string
	expires time.Time
	family  string // the refresh grant family it was issued with, if any
}

// refreshGrant is what a refresh token stands for. Refresh tokens do not
// expire; they are single-use (redeeming one rotates it).
type refreshGrant struct {
	vendor   string
	clientID string
	account  map[string]string
	scope    string
	// family is shared by the refresh tokens that descend, by rotation,
	// from one primary grant.
	family string
}

// maxArrivals bounds the request times kept per vendor.
const maxArrivals = 100_000

// maxRedeemed bounds the memory of spent refresh tokens.
const maxRedeemed = 100_000

// Option configures a [Sim] at construction.
type Option func(*Sim)

// WithTokenTTL sets the lifetime of the tokens every vendor issues,
// replacing the documented defaults (smartdocumentor 3600s, abbyy_vantage 30
// days, brightpattern 3599s, saasu 10800s, oauth2 3600s, hotdocs_advance JWT
// exp 1h). Lifetimes are rounded up to whole seconds, at least one, because
// that is what the wire formats can express; d <= 0 keeps the defaults.
func WithTokenTTL(d time.Duration) Option {
	return func(s *Sim) {
		if d <= 0 {
			return
		}
		for _, v := range vendors {
			s.ttl[v.id] = d
		}
	}
}

// WithLatency delays every answer by d, or until the request's context ends
// (then nothing is answered: the client has gone).
func WithLatency(d time.Duration) Option {
	return func(s *Sim) { s.latency.Store(int64(d)) }
}

// SetLatency changes the delay of every answer from now on (slow answers
// in fault tests); d <= 0 answers at once.
func (s *Sim) SetLatency(d time.Duration) { s.latency.Store(int64(max(d, 0))) }

// New returns a simulator with no accounts: every credential is rejected
// until [Sim.AddAccount] adds one.
func New(opts ...Option) *Sim {
	s := &Sim{
		mux:      http.NewServeMux(),
		now:      time.Now,
		ttl:      make(map[string]time.Duration),
		accounts: make(map[string][]map[string]string),
		failures: make(map[string]failure),
		requests: make(map[string]int),
		issued:   make(map[string]int),
		tokens:   make(map[string]issuedToken),
		refresh:  make(map[string]refreshGrant),
		redeemed: make(map[string]string),
		arrivals: make(map[string][]time.Time),
		revoked:  make(map[string]bool),
	}
	for _, v := range vendors {
		s.ttl[v.id] = v.defaultTTL
		for _, p := range v.paths {
			s.mux.Handle(p, s.endpoint(v))
		}
	}
	for _, opt := range opts {
		opt(s)
	}
	return s
}

// Start returns a new simulator serving on addr (for example
// "127.0.0.1:0") in a goroutine that [Sim.Close] stops.
func Start(addr string, opts ...Option) (*Sim, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("vendorsim: net.Listen: %w", err)
	}
	s := New(opts...)
	s.url = "http://" + ln.Addr().String()
	s.server = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	s.served = make(chan struct{})
	go func() {
		defer close(s.served)
		_ = s.server.Serve(ln) // always ErrServerClosed after Close
	}()
	return s, nil
}

// URL returns the base URL of a simulator made by [Start], such as
// "http://127.0.0.1:8099", or "" for one made by [New].
func (s *Sim) URL() string { return s.url }

// Close stops the listener of a simulator made by [Start], ends open
// connections and waits for the serving goroutine. It does nothing for one
// made by [New].
func (s *Sim) Close() error {
	if s.server == nil {
		return nil
	}
	err := s.server.Close()
	<-s.served
	return err
}

// ServeHTTP routes a request to the vendor named by the first path segment.
func (s *Sim) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mux.ServeHTTP(w, r)
}

// AddAccount makes the simulator accept creds for vendor. Keys are the
// credential names of docs/design.md, Vendors:
//
//	hotdocs_advance:                client_name, principal_name, principal_password
//	smartdocumentor, brightpattern: client_id, client_secret
//	abbyy_vantage, oauth2:          client_id, client_secret, username, password
//	saasu:                          username, password
//
// Optional keys restrict or shape the account: "tenancy" (hotdocs_advance:
// the only tenancy it exists in), "region" and "tenant_id" (abbyy_vantage),
// "host" (brightpattern: its tenant host), "file_ids" (saasu: space-separated
// file ids returned in scope, default "15431 14078 2045" as in the document),
// "scope" (oauth2: space-separated scopes the client may request). An absent
// restriction matches anything. Without username and password an
// abbyy_vantage or oauth2 account serves only the client_credentials grant.
// AddAccount panics on an unknown vendor id.
func (s *Sim) AddAccount(vendor string, creds map[string]string) {
	mustVendor(vendor)
	account := make(map[string]string, len(creds))
	for k, v := range creds {
		account[k] = v
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.accounts[vendor] = append(s.accounts[vendor], account)
}

// SetTokenTTL changes the lifetime of the tokens vendor issues from now on
// (rounded up to whole seconds, at least one); d <= 0 restores the vendor's
// documented default. It panics on an unknown vendor id.
func (s *Sim) SetTokenTTL(vendor string, d time.Duration) {
	v := mustVendor(vendor)
	if d <= 0 {
		d = v.defaultTTL
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ttl[vendor] = d
}

// FailNext makes the next n requests to vendor's token endpoints fail with
// status and a vendor-style error body (error "temporarily_unavailable" for
// 429, 502, 503 and 504, "server_error" for other 5xx, "invalid_client" for
// 401 and 403, "invalid_request" for other 4xx), with a Retry-After header
// in whole seconds (rounded up) when retryAfter > 0. The failure is answered
// before the request is examined, like an overloaded gateway in front of the
// vendor. A new call replaces a pending one; n <= 0 cancels it. It panics on
// an unknown vendor id.
func (s *Sim) FailNext(vendor string, n int, status int, retryAfter time.Duration) {
	mustVendor(vendor)
	s.mu.Lock()
	defer s.mu.Unlock()
	if n <= 0 {
		delete(s.failures, vendor)
		return
	}
	s.failures[vendor] = failure{remaining: n, status: status, retryAfter: retryAfter}
}

// Requests returns how many requests reached vendor's token endpoint paths
// since New or Reset, whatever their method or outcome (failures injected
// by FailNext included).
func (s *Sim) Requests(vendor string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[vendor]
}

// Issued returns how many access tokens vendor issued since New or Reset.
func (s *Sim) Issued(vendor string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.issued[vendor]
}

// ValidToken reports whether the simulator issued token as an access token
// of vendor, it has not expired yet, and its grant was not revoked (a
// refresh token reuse revokes the access tokens issued with the grant's
// refresh tokens too).
func (s *Sim) ValidToken(vendor, token string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tokens[token]
	return ok && t.vendor == vendor && s.now().Before(t.expires) && !s.revoked[t.family]
}

// Reset zeroes the Requests and Issued counters. Accounts, TTLs, pending
// FailNext failures and issued tokens are kept.
func (s *Sim) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.requests)
	clear(s.issued)
	clear(s.arrivals)
}

// RequestTimes returns when vendor's requests arrived (the first 100,000
// since the last Reset), in order.
func (s *Sim) RequestTimes(vendor string) []time.Time {
	s.mu.Lock()
	a := slices.Clone(s.arrivals[vendor])
	s.mu.Unlock()
	slices.SortFunc(a, time.Time.Compare)
	return a
}

// MaxRequestsWithin is the most requests for vendor that arrived within
// any window of length d (of the first 100,000 since the last Reset).
func (s *Sim) MaxRequestsWithin(vendor string, d time.Duration) int {
	s.mu.Lock()
	a := slices.Clone(s.arrivals[vendor])
	s.mu.Unlock()
	slices.SortFunc(a, time.Time.Compare)
	most, lo := 0, 0
	for hi := range a {
		for a[hi].Sub(a[lo]) >= d {
			lo++
		}
		most = max(most, hi-lo+1)
	}
	return most
}

// endpoint wraps a vendor's handler with what every token endpoint shares:
// counting, the body limit, latency, injected failures, the method check.
func (s *Sim) endpoint(v *vendor) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.requests[v.id]++
		if a := s.arrivals[v.id]; len(a) < maxArrivals {
			s.arrivals[v.id] = append(a, s.now())
		}
		s.mu.Unlock()
		// The body is read before the latency: net/http notices a client
		// that hangs up (and cancels the request's context) only once the
		// body has been read.
		body, readErr := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
		r.Body = io.NopCloser(bytes.NewReader(body))
		if !s.wait(r.Context()) {
			return
		}
		f, failing := s.takeFailure(v.id)
		// RFC 6749 section 5.1: token responses must not be cached.
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Pragma", "no-cache")
		var tooLarge *http.MaxBytesError
		switch {
		case failing:
			if f.retryAfter > 0 {
				w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(f.retryAfter.Seconds()))))
			}
			v.writeError(w, r, &tokenError{status: f.status, code: codeForStatus(f.status), description: http.StatusText(f.status)})
		case r.Method != http.MethodPost:
			w.Header().Set("Allow", http.MethodPost)
			v.writeError(w, r, &tokenError{http.StatusMethodNotAllowed, "invalid_request", "the token endpoint accepts only POST"})
		case r.URL.RawQuery != "":
			// Credentials never belong in a URL (RFC 6749 section 3.2
			// sends token parameters in the body); a client that puts
			// any there is wrong.
			v.writeError(w, r, invalidRequest("the token endpoint takes no query parameters"))
		case errors.As(readErr, &tooLarge):
			v.writeError(w, r, &tokenError{http.StatusRequestEntityTooLarge, "invalid_request", "request body larger than 1 MiB"})
		case readErr != nil:
			v.writeError(w, r, invalidRequest("cannot read the request body"))
		default:
			if e := v.serve(s, w, r); e != nil {
				v.writeError(w, r, e)
			}
		}
	})
}

// takeFailure takes one injected failure of vendor, if any is pending.
func (s *Sim) takeFailure(vendor string) (failure, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.failures[vendor]
	if !ok {
		return failure{}, false
	}
	if f.remaining--; f.remaining == 0 {
		delete(s.failures, vendor)
	} else {
		s.failures[vendor] = f
	}
	return f, true
}

// wait sleeps for the configured latency; false means the client gave up.
func (s *Sim) wait(ctx context.Context) bool {
	latency := time.Duration(s.latency.Load())
	if latency <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(latency)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func codeForStatus(status int) string {
	switch {
	case status == http.StatusTooManyRequests, status == http.StatusBadGateway,
		status == http.StatusServiceUnavailable, status == http.StatusGatewayTimeout:
		return "temporarily_unavailable"
	case status >= 500:
		return "server_error"
	case status == http.StatusUnauthorized, status == http.StatusForbidden:
		return "invalid_client"
	default:
		return "invalid_request"
	}
}

// findAccount returns an account of vendor that holds every pair of want
// and, for each pair of restrict, either that value or no value at all.
func (s *Sim) findAccount(vendor string, want, restrict map[string]string) (map[string]string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
next:
	for _, account := range s.accounts[vendor] {
		for k, v := range want {
			if account[k] != v {
				continue next
			}
		}
		for k, v := range restrict {
			if got, ok := account[k]; ok && got != v {
				continue next
			}
		}
		return account, true
	}
	return nil, false
}

// ttlSeconds is vendor's token lifetime in whole seconds, rounded up.
func (s *Sim) ttlSeconds(vendor string) int64 {
	s.mu.Lock()
	d := s.ttl[vendor]
	s.mu.Unlock()
	return max(1, int64(math.Ceil(d.Seconds())))
}

// issueToken issues a random access token of vendor and returns it with its
// lifetime in seconds.
func (s *Sim) issueToken(vendor string) (token string, expiresIn int64) {
	return s.issueTokenOf(vendor, "")
}

// issueTokenOf is issueToken for an access token issued with a refresh
// token of grant family.
func (s *Sim) issueTokenOf(vendor, family string) (token string, expiresIn int64) {
	expiresIn = s.ttlSeconds(vendor)
	token = randomToken()
	s.recordOf(vendor, token, family, s.now().Add(time.Duration(expiresIn)*time.Second))
	return token, expiresIn
}

// issueGrant issues an access token and a new refresh token for g, of g's
// family (a new one for a primary grant).
func (s *Sim) issueGrant(vendor string, g refreshGrant) (token string, expiresIn int64, refreshToken string) {
	if g.family == "" {
		g.family = randomToken()
	}
	refreshToken = s.issueRefreshToken(g)
	token, expiresIn = s.issueTokenOf(vendor, g.family)
	return token, expiresIn, refreshToken
}

// record remembers an issued access token for ValidToken and counts it.
func (s *Sim) record(vendor, token string, expires time.Time) {
	s.recordOf(vendor, token, "", expires)
}

func (s *Sim) recordOf(vendor, token, family string, expires time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.issued[vendor]++
	s.tokens[token] = issuedToken{vendor: vendor, expires: expires, family: family}
	s.note(Event{Kind: EventIssued, Vendor: vendor, Token: Digest(token), Family: Digest(family), Expires: expires})
	if s.sweep++; s.sweep >= sweepEvery {
		s.sweep = 0
		now := s.now()
		for t, it := range s.tokens {
			if !now.Before(it.expires) {
				delete(s.tokens, t)
			}
		}
	}
}

// issueRefreshToken returns a new single-use refresh token standing for g
// (of g's family, or of a new one for a primary grant).
func (s *Sim) issueRefreshToken(g refreshGrant) string {
	token := randomToken()
	if g.family == "" {
		g.family = randomToken()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refresh[token] = g
	return token
}

// RefreshTokensRedeemed is how many refresh tokens were spent (each
// rotated into a new one).
func (s *Sim) RefreshTokensRedeemed() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.redeems
}

// RefreshTokenReuses is how many times a spent refresh token was presented
// again; each revoked its whole grant.
func (s *Sim) RefreshTokenReuses() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reuses
}

// redeemRefreshToken consumes a refresh token of vendor issued to clientID
// if accept (when not nil) approves its grant. A token of another vendor or
// client, or one accept refuses, is left untouched; unknown ones are
// invalid_grant.
func (s *Sim) redeemRefreshToken(vendor, clientID, token string, accept func(refreshGrant) *tokenError) (refreshGrant, *tokenError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if family, spent := s.redeemed[token]; spent {
		// Reuse: someone holds a copy of a rotated token. Revoke the
		// whole grant, as RFC 9700 section 4.14.2 recommends.
		s.reuses++
		s.revoked[family] = true
		s.note(Event{Kind: EventRefreshReused, Vendor: vendor, Token: Digest(token), Family: Digest(family)})
		s.note(Event{Kind: EventRevoked, Vendor: vendor, Family: Digest(family)})
		for t, g := range s.refresh {
			if g.family == family {
				delete(s.refresh, t)
			}
		}
		return refreshGrant{}, &tokenError{http.StatusBadRequest, "invalid_grant", "refresh token reused: the grant is revoked"}
	}
	g, ok := s.refresh[token]
	if !ok || g.vendor != vendor || g.clientID != clientID || s.revoked[g.family] {
		return refreshGrant{}, &tokenError{http.StatusBadRequest, "invalid_grant", "unknown, used or foreign refresh token"}
	}
	if accept != nil {
		if e := accept(g); e != nil {
			return refreshGrant{}, e
		}
	}
	delete(s.refresh, token)
	if len(s.redeemed) >= maxRedeemed {
		clear(s.redeemed)
	}
	s.redeemed[token] = g.family
	s.redeems++
	s.note(Event{Kind: EventRefreshRedeemed, Vendor: vendor, Token: Digest(token), Family: Digest(g.family)})
	return g, nil
}
