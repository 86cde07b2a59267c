package store

import (
	"context"
	"sort"
	"sync"
	"time"
)

// Credential status (docs/design.md, Storage, "Credential status"): what
// the vendor's last answers say about each configured profile, recorded
// after every token request to the vendor. A record holds times, counters,
// the replica that fetched and the vendor's OAuth error code: never a
// token, refresh token or secret.

// Credential states.
const (
	StateUnknown  = ""
	StateWorking  = "working"
	StateRejected = "rejected"
	StateFailing  = "failing"
)

// Status events: what a recorded outcome changed, once for the fleet.
const (
	EventRejected        = "rejected"
	EventRecovered       = "recovered"
	EventFailing         = "failing"
	EventBudgetExhausted = "budget_exhausted"
)

// Outcomes of a token request, as recorded.
const (
	OutcomeFetched         = "fetched"
	OutcomeRejected        = "rejected"
	OutcomeFailed          = "failed"
	OutcomeBudgetExhausted = "budget_exhausted"
)

// DefaultFailingAfter is how many consecutive failures (rejections
// excluded) make a profile "failing".
const DefaultFailingAfter = 3

// CredentialStatus is one profile's record.
type CredentialStatus struct {
	Profile    string
	Vendor     string
	State      string
	StateSince time.Time
	// ExpiresAt and FetchedAt are the last fetched token's; FetchedBy is
	// the replica that fetched it.
	ExpiresAt time.Time
	FetchedAt time.Time
	FetchedBy string
	// The last rejection: the vendor's OAuth error code and HTTP status,
	// when it answered, and until when it is remembered (negative_ttl).
	RejectedOAuthError string
	RejectedStatus     int
	RejectedAt         time.Time
	RejectedUntil      time.Time
	// ConsecutiveFailures counts failed fetches (rejections included)
	// since the last success; LastFailure is the last one's outcome.
	ConsecutiveFailures int
	LastFailureAt       time.Time
	LastFailure         string
	// BudgetExhausted: the last fetch attempt found the vendor's budget
	// spent and none has succeeded since.
	BudgetExhausted   bool
	BudgetExhaustedAt time.Time
	// Events counts the events this record produced (their sequence).
	Events uint64
}

// StatusUpdate is one outcome to record.
type StatusUpdate struct {
	Profile string
	Vendor  string
	// Outcome is one of the Outcome constants.
	Outcome string
	At      time.Time
	// Replica names the process that asked the vendor.
	Replica string
	// ExpiresAt is the fetched token's expiry (OutcomeFetched).
	ExpiresAt time.Time
	// OAuthError, HTTPStatus and RememberedUntil describe a rejection.
	OAuthError      string
	HTTPStatus      int
	RememberedUntil time.Time
	// Failure is the kind of a failure (OutcomeFailed): unavailable,
	// throttled, bad_request, bad_response.
	Failure string
	// FailingAfter is how many consecutive failures make the profile
	// failing (0: DefaultFailingAfter).
	FailingAfter int
}

// StatusChange is what recording an update did. Event is empty unless the
// update changed the profile's state (or exhausted its budget): then
// exactly one recorder of the fleet gets it, with Seq its sequence number
// in the profile's record.
type StatusChange struct {
	From, To string
	Event    string
	Seq      uint64
}

// StatusBook keeps credential status records. Implementations are safe
// for concurrent use and apply each update atomically.
type StatusBook interface {
	RecordStatus(ctx context.Context, u StatusUpdate) (StatusChange, error)
	// ListStatus returns the records of profiles (those with none are
	// left out).
	ListStatus(ctx context.Context, profiles []string) ([]CredentialStatus, error)
}

// ApplyStatus applies u to rec, the state machine every StatusBook
// implements (redisstore in Lua): a fetched token makes the profile
// working; a rejection makes it rejected; FailingAfter failures in a row
// make it failing unless it is rejected; a budget exhaustion is an event
// once until the next fetched token.
func ApplyStatus(rec *CredentialStatus, u StatusUpdate) StatusChange {
	ch := StatusChange{From: rec.State, To: rec.State}
	rec.Profile, rec.Vendor = u.Profile, u.Vendor
	switch u.Outcome {
	case OutcomeFetched:
		rec.ExpiresAt, rec.FetchedAt, rec.FetchedBy = u.ExpiresAt, u.At, u.Replica
		rec.ConsecutiveFailures = 0
		rec.BudgetExhausted = false
		ch.To = StateWorking
		if ch.From == StateRejected || ch.From == StateFailing {
			ch.Event = EventRecovered
		}
	case OutcomeRejected:
		rec.ConsecutiveFailures++
		rec.RejectedOAuthError, rec.RejectedStatus = u.OAuthError, u.HTTPStatus
		rec.RejectedAt, rec.RejectedUntil = u.At, u.RememberedUntil
		rec.LastFailureAt, rec.LastFailure = u.At, OutcomeRejected
		ch.To = StateRejected
		if ch.From != StateRejected {
			ch.Event = EventRejected
		}
	case OutcomeFailed:
		rec.ConsecutiveFailures++
		rec.LastFailureAt, rec.LastFailure = u.At, u.Failure
		after := u.FailingAfter
		if after <= 0 {
			after = DefaultFailingAfter
		}
		if ch.From != StateRejected && ch.From != StateFailing && rec.ConsecutiveFailures >= after {
			ch.To, ch.Event = StateFailing, EventFailing
		}
	case OutcomeBudgetExhausted:
		rec.BudgetExhaustedAt = u.At
		rec.LastFailureAt, rec.LastFailure = u.At, OutcomeBudgetExhausted
		if !rec.BudgetExhausted {
			rec.BudgetExhausted = true
			ch.Event = EventBudgetExhausted
		}
	}
	if ch.To != ch.From {
		rec.State, rec.StateSince = ch.To, u.At
	}
	if ch.Event != "" {
		rec.Events++
		ch.Seq = rec.Events
	}
	return ch
}

// MemoryStatus is the StatusBook of one process: the memory store's, and
// every replica's own record while Redis is unreachable.
type MemoryStatus struct {
	mu      sync.Mutex
	records map[string]*CredentialStatus
}

var _ StatusBook = (*MemoryStatus)(nil)

// NewMemoryStatus returns an empty book.
func NewMemoryStatus() *MemoryStatus {
	return &MemoryStatus{records: map[string]*CredentialStatus{}}
}

// RecordStatus implements StatusBook.
func (m *MemoryStatus) RecordStatus(_ context.Context, u StatusUpdate) (StatusChange, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	rec := m.records[u.Profile]
	if rec == nil {
		rec = &CredentialStatus{}
		m.records[u.Profile] = rec
	}
	return ApplyStatus(rec, u), nil
}

// ListStatus implements StatusBook.
func (m *MemoryStatus) ListStatus(_ context.Context, profiles []string) ([]CredentialStatus, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]CredentialStatus, 0, len(profiles))
	for _, p := range profiles {
		if rec := m.records[p]; rec != nil {
			out = append(out, *rec)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Profile < out[j].Profile })
	return out, nil
}
