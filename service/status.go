package service

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tokenbroker/tokenbroker/events"
	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
	"github.com/tokenbroker/tokenbroker/store"
	"github.com/tokenbroker/tokenbroker/vendors"
	"github.com/tokenbroker/tokenbroker/vendors/budget"
)

// Credential health (docs/design.md, Operations, "Credential status and
// events"): after every token request to the vendor for a profile, its
// outcome is recorded in the fleet's status book (Redis) and in this
// process's; the book's answer says whether the outcome changed the
// profile's state, and the one replica it says so to publishes the event.
// Recording runs off the callers' path, in order, through a bounded
// queue.

// statusQueueSize bounds the outcomes waiting to be recorded; beyond it
// an outcome is dropped (and counted in a throttled warning) rather than
// slow a fetch.
const statusQueueSize = 1024

// statusWriteTimeout bounds one status write to the shared book.
const statusWriteTimeout = time.Second

// Health configures credential status, events and keep-warm.
type Health struct {
	// Book is the fleet's status book (Redis); nil means this process's
	// alone.
	Book store.StatusBook
	// Replica names this process in status records and events.
	Replica string
	// Events receives each state change this replica is told of; nil
	// means none are sent.
	Events EventPublisher
	// BreakerOpen reports whether the shared store's circuit breaker is
	// open (the status answer says so); nil means never.
	BreakerOpen func() bool
	// KeepWarmInterval is how often keep-warm looks at its profiles
	// (DefaultKeepWarmInterval).
	KeepWarmInterval time.Duration
}

// EventPublisher takes events without blocking: false means it dropped
// the event (its queue is full).
type EventPublisher interface {
	Publish(events.Event) bool
}

// health is the Service's credential health state.
type health struct {
	cfg   Health
	local *store.MemoryStatus
	queue chan store.StatusUpdate
	// dropped throttles the warning about dropped outcomes and events.
	dropped logThrottle
	// loops owns the recorder and keep-warm goroutines (apart from
	// Service.bg, which tests wait on for refreshes to end).
	loops sync.WaitGroup
	// unresolvable maps keep-warm profiles that need a caller's params to
	// the configuration they were warned about under.
	unresolvable sync.Map
}

// startHealth starts the status recorder (and keep-warm); both stop at
// Close (stopHealth).
func (s *Service) startHealth() {
	s.health = &health{
		cfg:   s.startup.Health,
		local: store.NewMemoryStatus(),
		queue: make(chan store.StatusUpdate, statusQueueSize),
	}
	s.health.dropped.interval = time.Second
	s.health.loops.Go(func() {
		for {
			select {
			case u := <-s.health.queue:
				s.recordStatus(u)
			case <-s.bgCtx.Done():
				return
			}
		}
	})
	s.startKeepWarm()
}

// stopHealth waits for the recorder and keep-warm loops, which end when
// Close cancels the background context.
func (s *Service) stopHealth() { s.health.loops.Wait() }

// recordOutcome queues what a token request for r ended with: a token
// (tok), or err. Errors that say nothing about the credentials or the
// vendor (the caller's deadline, the broker's own settings) are not
// recorded; nor are tokens of inline credentials (status is per profile).
func (s *Service) recordOutcome(r *resolved, tok *vendors.Token, err error) {
	if r.profile == "" || s.health == nil {
		return
	}
	u := store.StatusUpdate{Profile: r.profile, Vendor: r.vendor, At: s.now()}
	var ve *vendors.Error
	var exhausted *budget.ExhaustedError
	switch {
	case err == nil && tok != nil:
		u.Outcome, u.ExpiresAt = store.OutcomeFetched, tok.ExpiresAt
	case errors.As(err, &exhausted):
		u.Outcome = store.OutcomeBudgetExhausted
	case errors.As(err, &ve) && ve.Kind == vendors.KindRejected:
		u.Outcome, u.OAuthError, u.HTTPStatus = store.OutcomeRejected, ve.OAuthError, ve.Status
		u.RememberedUntil = u.At.Add(r.settings.NegativeTTL())
	case errors.As(err, &ve):
		u.Outcome, u.Failure = store.OutcomeFailed, ve.Kind.String()
	default:
		return
	}
	select {
	case s.health.queue <- u:
	default:
		s.healthWarn("credential status queue full; an outcome was not recorded", u.Vendor)
	}
}

func (s *Service) healthWarn(msg, vendor string) {
	if ok, held := s.health.dropped.allow(s.now()); ok {
		s.log.Warn(msg, "vendor", vendor, "similar_warnings_suppressed", held)
	}
}

// recordStatus writes u to this process's book and the fleet's, and
// publishes the event the fleet's book (else, while it fails, this
// process's) answers.
func (s *Service) recordStatus(u store.StatusUpdate) {
	u.Replica = s.health.cfg.Replica
	ch, _ := s.health.local.RecordStatus(s.bgCtx, u)
	id := fmt.Sprintf("%s:%s:%d", u.Profile, u.Replica, ch.Seq)
	if book := s.health.cfg.Book; book != nil {
		ctx, cancel := context.WithTimeout(s.bgCtx, statusWriteTimeout)
		fleet, err := book.RecordStatus(ctx, u)
		cancel()
		if err != nil {
			// Redis is failing: this replica's own record decides, so the
			// event may come once per replica until it is back.
			s.cacheWarn("credential status write failed; events from this replica's record", u.Vendor, err)
		} else {
			ch, id = fleet, fmt.Sprintf("%s:%d", u.Profile, fleet.Seq)
		}
	}
	if ch.Event == "" || s.health.cfg.Events == nil {
		return
	}
	ev := events.Event{
		ID:            id,
		Type:          eventType(ch.Event),
		Profile:       u.Profile,
		Vendor:        u.Vendor,
		State:         ch.To,
		PreviousState: ch.From,
		Replica:       u.Replica,
		Time:          u.At,
	}
	switch ch.Event {
	case store.EventRejected:
		ev.Reason, ev.RememberedUntil = u.OAuthError, u.RememberedUntil
	case store.EventFailing:
		ev.Reason = u.Failure
	}
	s.log.Info("credential state changed", "profile", u.Profile, "vendor", u.Vendor, "event", ch.Event, "from", ch.From, "to", ch.To)
	if !s.health.cfg.Events.Publish(ev) {
		s.healthWarn("event queue full; a credential event was dropped", u.Vendor)
	}
}

func eventType(event string) string {
	switch event {
	case store.EventRejected:
		return events.TypeRejected
	case store.EventRecovered:
		return events.TypeRecovered
	case store.EventFailing:
		return events.TypeFailing
	default:
		return events.TypeBudgetExhausted
	}
}

// ListCredentialStatus implements TokenService.ListCredentialStatus: every
// configured profile, with the fleet's record (this process's while Redis
// fails) and its vendor's budget settings.
func (s *Service) ListCredentialStatus(ctx context.Context, _ *tokenbrokerv1.ListCredentialStatusRequest) (*tokenbrokerv1.ListCredentialStatusResponse, error) {
	conf := s.current(ctx)
	names := make([]string, 0, len(conf.profiles))
	for name := range conf.profiles {
		names = append(names, name)
	}
	sort.Strings(names)
	out := &tokenbrokerv1.ListCredentialStatusResponse{
		GeneratedAt: timestamppb.New(s.now()),
		Replica:     s.health.cfg.Replica,
	}
	if f := s.health.cfg.BreakerOpen; f != nil {
		out.BreakerOpen = f()
	}
	recs, _ := s.health.local.ListStatus(ctx, names)
	if book := s.health.cfg.Book; book != nil {
		if fleet, err := book.ListStatus(ctx, names); err == nil {
			recs, out.FleetWide = fleet, true
		} else {
			s.cacheWarn("credential status read failed; answering this replica's records", "", err)
		}
	}
	byName := make(map[string]store.CredentialStatus, len(recs))
	for _, rec := range recs {
		byName[rec.Profile] = rec
	}
	for _, name := range names {
		p := conf.profiles[name]
		limits := conf.vendorSettings[p.Vendor].Overlay(p.Settings).Limits()
		cs := &tokenbrokerv1.CredentialStatus{
			Profile:  name,
			Vendor:   p.Vendor,
			KeepWarm: p.KeepWarm,
			Budget: &tokenbrokerv1.BudgetState{
				MaxRequestsPerSecond: limits.RatePerSecond,
				Burst:                int32(limits.Burst),
			},
		}
		if rec, ok := byName[name]; ok {
			fillStatus(cs, rec)
		}
		out.Profiles = append(out.Profiles, cs)
	}
	return out, nil
}

func fillStatus(cs *tokenbrokerv1.CredentialStatus, rec store.CredentialStatus) {
	switch rec.State {
	case store.StateWorking:
		cs.State = tokenbrokerv1.CredentialState_CREDENTIAL_STATE_WORKING
	case store.StateRejected:
		cs.State = tokenbrokerv1.CredentialState_CREDENTIAL_STATE_REJECTED
	case store.StateFailing:
		cs.State = tokenbrokerv1.CredentialState_CREDENTIAL_STATE_FAILING
	}
	cs.StateSince = timestamp(rec.StateSince)
	cs.ExpiresAt = timestamp(rec.ExpiresAt)
	cs.FetchedAt = timestamp(rec.FetchedAt)
	cs.FetchedBy = rec.FetchedBy
	if !rec.RejectedAt.IsZero() {
		cs.LastRejection = &tokenbrokerv1.VendorRejection{
			OauthError:      rec.RejectedOAuthError,
			HttpStatus:      int32(rec.RejectedStatus),
			At:              timestamp(rec.RejectedAt),
			RememberedUntil: timestamp(rec.RejectedUntil),
		}
	}
	cs.ConsecutiveFailures = int32(min(rec.ConsecutiveFailures, 1<<31-1))
	cs.LastFailureAt = timestamp(rec.LastFailureAt)
	cs.LastFailure = rec.LastFailure
	cs.Budget.Exhausted = rec.BudgetExhausted
	cs.Budget.ExhaustedAt = timestamp(rec.BudgetExhaustedAt)
}

// timestamp is t as a Timestamp, nil for the zero time.
func timestamp(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}
