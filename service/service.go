// Package service implements tokenbroker.v1.TokenService (docs/design.md,
// API and errors, and Token semantics): it validates requests, resolves
// profiles and inline credentials into a vendor call, fingerprints them
// into a cache key, and serves tokens from the store, fetching each key at
// most once at a time (per-process singleflight, then the store's
// cross-replica fetch lease; fetch.go). Errors become gRPC codes in
// errors.go only.
package service

import (
	"context"
	"errors"
	"hash/maphash"
	"log/slog"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tokenbroker/tokenbroker/config"
	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
	"github.com/tokenbroker/tokenbroker/internal/reqinfo"
	"github.com/tokenbroker/tokenbroker/secret"
	"github.com/tokenbroker/tokenbroker/store"
	"github.com/tokenbroker/tokenbroker/vendors"
	"github.com/tokenbroker/tokenbroker/vendors/budget"
)

// DefaultFlightSlack is how long, beyond the vendor's timeout, one fetch
// may wait on other replicas' leases (docs/design.md, Token semantics).
// The defaults of the configurable tuning are package config's.
const DefaultFlightSlack = 5 * time.Second

// Profile is a credential set configured server-side.
type Profile struct {
	Vendor      string
	Credentials secret.Map
	Params      map[string]string
	// AllowParams are the params a request for this profile may set, each
	// with its allowed values (nil: any value); absent params are refused.
	AllowParams map[string][]string
	// Settings override the vendor's settings for this profile.
	Settings vendors.Settings
	// KeepWarm: the fleet keeps its token fresh without callers
	// (keepwarm.go).
	KeepWarm bool
}

// Config is what a Service is built from.
type Config struct {
	Registry *vendors.Registry
	// VendorSettings are the operator's settings per vendor id.
	VendorSettings map[string]vendors.Settings
	Profiles       map[string]Profile
	// Store caches tokens; nil means an in-process memory store.
	Store store.Store
	// Leases serialise fetches across replicas; nil when Store is
	// process-local.
	Leases store.Leaser
	// FingerprintKey keys the HMAC that turns inputs into cache keys; all
	// replicas sharing a store must share it.
	FingerprintKey []byte
	// ForceRefreshInterval: a force_refresh within this long of the last
	// fetch gets that fresh token (config service.force_refresh_interval,
	// taken as given: 0 means none, every force_refresh asks the vendor).
	ForceRefreshInterval time.Duration
	// DefaultMinTTL is the min_ttl of requests that leave it unset (config
	// service.default_min_ttl, taken as given: 0 means 0s).
	DefaultMinTTL time.Duration
	// RefreshAhead is the fraction of a token's life after which a request
	// triggers one background refresh, in (0, 1] (config
	// service.refresh_ahead; 1: at expiry, that is never ahead); 0 means
	// config.DefaultRefreshAhead.
	RefreshAhead float64
	// FlightSlack (DefaultFlightSlack) bounds, beyond the vendor's
	// timeout, how long a fetch waits on other replicas' leases.
	FlightSlack time.Duration
	// Misses counts each authenticated client's vendor requests against
	// MissesPerMinute and MissBurst; nil means a per-process count.
	Misses *budget.ClientLimiter
	// MissesPerMinute and MissBurst bound the vendor requests one
	// authenticated client's cache misses may cause, fleet-wide (config
	// limits.misses_per_minute, limits.miss_burst); 0 means
	// config.DefaultMissesPerMinute and config.DefaultMissBurst.
	MissesPerMinute, MissBurst int
	// MaxClientShare is the largest fraction of a vendor's budget one
	// authenticated client may take while others wait for it (config
	// limits.max_client_share; 1: no bound); 0 means
	// config.DefaultMaxClientShare.
	MaxClientShare float64
	// Budget applies the vendors' request budgets and concurrency caps
	// (settings max_requests_per_second, burst, max_concurrent_requests);
	// nil means none.
	Budget *budget.Limiter
	// HTTPClient sends vendor requests; nil means the vendors default.
	HTTPClient *http.Client
	Logger     *slog.Logger
	// Now is the clock; nil means time.Now (tests inject their own).
	Now func() time.Time
	// Observer receives events for metrics; nil means none.
	Observer Observer
	// Health: credential status, events and keep-warm (status.go).
	Health Health
}

// Service implements tokenbrokerv1.TokenServiceServer.
type Service struct {
	tokenbrokerv1.UnimplementedTokenServiceServer

	// startup is the Config New was given: its store, registry, budget,
	// HTTP client and hooks; a reload never replaces them.
	startup Config
	// snapshot is what a configuration reload replaces (Use).
	snapshot atomic.Pointer[snapshot]
	store    store.Store
	leases   store.Leaser
	log      *slog.Logger
	obs      Observer
	now      func() time.Time
	flight   singleflight.Group
	// jitterSeed spreads refresh-ahead over tokens.
	jitterSeed maphash.Seed
	// cacheWarnings throttles cache failure warnings.
	cacheWarnings logThrottle
	// ahead holds keys with a refresh-ahead running (or recently failed)
	// and the time a new one may start.
	ahead *aheadTable
	// invalidations counts the InvalidateToken calls this process
	// completed, per stripe of keys: a flight that began before one is no
	// answer for a caller that joined it after (flightAnswers).
	invalidations [invalidationStripes]atomic.Uint64
	vendors       *tokenbrokerv1.ListVendorsResponse
	health        *health

	// background owns the refresh-ahead goroutines.
	bgCtx    context.Context
	bgCancel context.CancelFunc
	bg       sync.WaitGroup
}

var _ tokenbrokerv1.TokenServiceServer = (*Service)(nil)

// New returns a Service. Call Close to stop its background work.
func New(cfg Config) *Service {
	if cfg.Registry == nil {
		cfg.Registry = vendors.Default()
	}
	if cfg.Store == nil {
		cfg.Store = store.NewMemory(0)
	}
	if cfg.FlightSlack <= 0 {
		cfg.FlightSlack = DefaultFlightSlack
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Observer == nil {
		cfg.Observer = nopObserver{}
	}
	if cfg.Misses == nil {
		cfg.Misses = budget.NewClientLimiter(nil, cfg.Logger)
	}
	s := &Service{
		startup:    cfg,
		store:      cfg.Store,
		leases:     cfg.Leases,
		log:        cfg.Logger,
		obs:        cfg.Observer,
		now:        cfg.Now,
		jitterSeed: maphash.MakeSeed(),
		vendors:    describeVendors(cfg.Registry),
		ahead:      newAheadTable(maxAheadKeys),
	}
	s.snapshot.Store(newSnapshot(cfg))
	s.cacheWarnings.interval = time.Second
	s.bgCtx, s.bgCancel = context.WithCancel(context.Background())
	s.startHealth()
	return s
}

// snapshot is the part of Config that a configuration reload replaces as
// a whole: a call reads it once, so it sees the old or the new profiles,
// settings, fingerprint key and tuning, never a mix, and finishes on the
// one it started with. It is never modified.
type snapshot struct {
	profiles             map[string]Profile
	vendorSettings       map[string]vendors.Settings
	fingerprintKey       []byte
	forceRefreshInterval time.Duration
	defaultMinTTL        time.Duration
	refreshAhead         float64
	missesPerMinute      int
	missBurst            int
	maxClientShare       float64
	// resolutions memoises validated selectors under this configuration,
	// byProfile those of each profile named alone (profileSlot). The map
	// is made with the snapshot and never changes; its slots do.
	resolutions *resolutionCache
	byProfile   map[string]*profileResolution
}

// newSnapshot takes cfg's reloadable fields. Package config applies the
// defaults; the fields whose zero is not a value of their range get the
// same ones here, for a Config built without it (tests, library users).
func newSnapshot(cfg Config) *snapshot {
	c := &snapshot{
		profiles:             cfg.Profiles,
		vendorSettings:       cfg.VendorSettings,
		fingerprintKey:       cfg.FingerprintKey,
		forceRefreshInterval: cfg.ForceRefreshInterval,
		defaultMinTTL:        cfg.DefaultMinTTL,
		refreshAhead:         cfg.RefreshAhead,
		missesPerMinute:      cfg.MissesPerMinute,
		missBurst:            cfg.MissBurst,
		maxClientShare:       cfg.MaxClientShare,
		resolutions:          newResolutionCache(maxResolutions),
		byProfile:            make(map[string]*profileResolution, len(cfg.Profiles)),
	}
	for name, p := range cfg.Profiles {
		c.byProfile[name] = &profileResolution{vendor: p.Vendor}
	}
	if c.refreshAhead <= 0 {
		c.refreshAhead = config.DefaultRefreshAhead
	}
	if c.missesPerMinute <= 0 {
		c.missesPerMinute = config.DefaultMissesPerMinute
	}
	if c.missBurst <= 0 {
		c.missBurst = config.DefaultMissBurst
	}
	if c.maxClientShare <= 0 {
		c.maxClientShare = config.DefaultMaxClientShare
	}
	return c
}

// Snapshot is a prepared configuration for Use and WithSnapshot.
type Snapshot struct{ c *snapshot }

// NewSnapshot builds a Snapshot of cfg's profiles, vendor settings,
// fingerprint key and tuning (ForceRefreshInterval, DefaultMinTTL,
// RefreshAhead, MissesPerMinute, MissBurst, MaxClientShare); its other fields are ignored: the store, leaser,
// registry and HTTP client stay those New was given.
func NewSnapshot(cfg Config) Snapshot { return Snapshot{newSnapshot(cfg)} }

// Use makes snap the configuration of the calls that start from now on.
// Calls already running finish on the one they started with.
func (s *Service) Use(snap Snapshot) { s.snapshot.Store(snap.c) }

type snapshotKey struct{}

// WithSnapshot pins the configuration a call runs on, so that a caller
// that checked the call against one configuration (authorization) has it
// served by the same one, whatever a reload does meanwhile.
func WithSnapshot(ctx context.Context, snap Snapshot) context.Context {
	return context.WithValue(ctx, snapshotKey{}, snap.c)
}

// current returns the configuration of a call: the pinned one, else the
// latest.
func (s *Service) current(ctx context.Context) *snapshot {
	if c, ok := ctx.Value(snapshotKey{}).(*snapshot); ok && c != nil {
		return c
	}
	return s.snapshot.Load()
}

// Close stops background refreshes and waits for them.
func (s *Service) Close() {
	s.bgCancel()
	s.bg.Wait()
	s.stopHealth()
}

// GetToken implements TokenService.GetToken.
func (s *Service) GetToken(ctx context.Context, req *tokenbrokerv1.GetTokenRequest) (*tokenbrokerv1.GetTokenResponse, error) {
	conf := s.current(ctx)
	minTTL, err := durationField("min_ttl", req.GetMinTtl(), conf.defaultMinTTL)
	if err != nil {
		return nil, toStatus(err)
	}
	r, err := s.resolveFor(ctx, conf, req)
	if err != nil {
		return nil, toStatus(err)
	}
	reqinfo.SetCache(ctx, "miss") // token says "negative" when it is one
	e, hit, at, err := s.token(ctx, r, minTTL, req.GetForceRefresh())
	if hit {
		reqinfo.SetCache(ctx, "hit")
	}
	if err != nil {
		return nil, toStatus(err)
	}
	return s.response(e, hit, r, at), nil
}

// tokenSelector is what GetToken and InvalidateToken requests share: the
// vendor or profile, credentials and params that name a token.
type tokenSelector interface {
	GetVendor() string
	GetProfile() string
	GetCredentials() map[string]string
	GetParams() map[string]string
}

// resolveFor resolves a request's selector and records its target for the
// access log.
func (s *Service) resolveFor(ctx context.Context, conf *snapshot, req tokenSelector) (*resolved, error) {
	r, err := s.resolve(conf, selector{
		vendor:      req.GetVendor(),
		profile:     req.GetProfile(),
		credentials: req.GetCredentials(),
		params:      req.GetParams(),
	})
	if err != nil {
		var iso *isolationError
		if errors.As(err, &iso) {
			s.auditRefusal(ctx, req, iso)
		}
		return nil, err
	}
	reqinfo.SetTarget(ctx, r.vendor, r.profile)
	return r, nil
}

// auditRefusal writes the audit line of a call refused because it
// reached for what the caller does not own (an isolation rule of
// docs/design.md, Security model), in the shape of the auth package's
// authorization lines; never a credential or param value.
func (s *Service) auditRefusal(ctx context.Context, req tokenSelector, iso *isolationError) {
	target := req.GetProfile()
	if target == "" {
		target = "vendor:" + req.GetVendor()
	}
	attrs := []slog.Attr{slog.String("audit", "authorization")}
	if ri := reqinfo.From(ctx); ri != nil {
		snap := ri.Snapshot()
		attrs = append(attrs, slog.String("request_id", snap.RequestID), slog.String("principal", snap.Principal))
	}
	attrs = append(attrs,
		slog.String("target", target),
		slog.String("decision", "deny"),
		slog.String("reason", "isolation: "+iso.Field+" "+iso.Reason),
	)
	s.log.LogAttrs(ctx, slog.LevelWarn, "authorization", attrs...)
}

// InvalidateToken implements TokenService.InvalidateToken.
func (s *Service) InvalidateToken(ctx context.Context, req *tokenbrokerv1.InvalidateTokenRequest) (*tokenbrokerv1.InvalidateTokenResponse, error) {
	if req.GetAccessToken() == "" {
		return nil, toStatus(&vendors.ArgumentError{Field: "access_token", Reason: "is required: name the token that was rejected"})
	}
	if len(req.GetAccessToken()) > maxValueLen {
		return nil, toStatus(&vendors.ArgumentError{Field: "access_token", Reason: "is too long"})
	}
	r, err := s.resolveFor(ctx, s.current(ctx), req)
	if err != nil {
		return nil, toStatus(err)
	}
	ok, err := s.store.CompareAndDelete(ctx, r.key, req.GetAccessToken())
	s.invalidationsOf(r.key).Add(1)
	if err != nil {
		return nil, toStatus(&storeError{err: err})
	}
	s.obs.Invalidated(r.vendor, ok)
	return &tokenbrokerv1.InvalidateTokenResponse{Invalidated: ok}, nil
}

// ListVendors implements TokenService.ListVendors.
func (s *Service) ListVendors(context.Context, *tokenbrokerv1.ListVendorsRequest) (*tokenbrokerv1.ListVendorsResponse, error) {
	return s.vendors, nil
}

func describeVendors(reg *vendors.Registry) *tokenbrokerv1.ListVendorsResponse {
	out := &tokenbrokerv1.ListVendorsResponse{}
	for _, st := range reg.All() {
		i := st.Info()
		params := append([]string(nil), i.Params...)
		sort.Strings(params)
		out.Vendors = append(out.Vendors, &tokenbrokerv1.Vendor{
			Id:                  i.ID,
			DisplayName:         i.DisplayName,
			GrantTypes:          i.GrantTypes,
			RequiredCredentials: i.RequiredCredentials,
			OptionalCredentials: i.OptionalCredentials,
			Params:              params,
			DocumentationUrl:    i.DocumentationURL,
		})
	}
	return out
}

// response builds the answer; expires_in counts whole seconds from now.
func (s *Service) response(e store.Entry, hit bool, r *resolved, now time.Time) *tokenbrokerv1.GetTokenResponse {
	left := e.ExpiresAt.Sub(now)
	secs := int64(left / time.Second)
	if secs < 0 {
		secs = 0
	}
	if secs > 1<<31-1 {
		secs = 1<<31 - 1
	}
	scope := e.Scope
	if scope == "" {
		scope = r.requestedScope
	}
	// The answer and its timestamp in one allocation: this is every
	// call's.
	a := &struct {
		resp      tokenbrokerv1.GetTokenResponse
		expiresAt timestamppb.Timestamp
	}{}
	a.expiresAt.Seconds, a.expiresAt.Nanos = e.ExpiresAt.Unix(), int32(e.ExpiresAt.Nanosecond())
	a.resp.AccessToken = e.AccessToken
	a.resp.TokenType = e.TokenType
	a.resp.ExpiresIn = int32(secs)
	a.resp.ExpiresAt = &a.expiresAt
	a.resp.Scope = scope
	a.resp.CacheHit = hit
	return &a.resp
}
