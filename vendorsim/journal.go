package vendorsim

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"time"
)

// The journal is the simulator's own record of what it issued, what was
// presented to it and what it revoked, for checkers that compare it with
// what clients were served (the chaos run, docs/design.md, The chaos run).
// Tokens appear as digests (Digest), never in clear.

// EventKind says what an Event records.
type EventKind string

const (
	// EventIssued: an access token was issued (Token, Expires; Family when
	// issued with a refresh token).
	EventIssued EventKind = "issued"
	// EventRefreshRedeemed: a refresh token was presented for the first
	// time and spent (Token, Family).
	EventRefreshRedeemed EventKind = "refresh_redeemed"
	// EventRefreshReused: a spent refresh token was presented again
	// (Token, Family); an EventRevoked follows.
	EventRefreshReused EventKind = "refresh_reused"
	// EventRevoked: every refresh and access token of grant Family was
	// revoked.
	EventRevoked EventKind = "revoked"
)

// Event is one journal entry.
type Event struct {
	Time    time.Time `json:"time"`
	Kind    EventKind `json:"kind"`
	Vendor  string    `json:"vendor"`
	Token   string    `json:"token,omitempty"`
	Family  string    `json:"family,omitempty"`
	Expires time.Time `json:"expires,omitzero"`
}

// maxJournal bounds the journal; later events are counted in
// JournalDropped instead.
const maxJournal = 1_000_000

// WithJournal makes the simulator keep a journal (Journal).
func WithJournal() Option {
	return func(s *Sim) { s.journalOn = true }
}

// Digest is how the journal names a token: the hex SHA-256 of it, cut to
// 32 characters; "" for "".
func Digest(token string) string {
	if token == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:16])
}

// Journal returns a copy of the journal, in order.
func (s *Sim) Journal() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.journal)
}

// JournalDropped is how many events did not fit in the journal.
func (s *Sim) JournalDropped() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.journalDropped
}

// note appends e, stamped now, to the journal if it is on; s.mu is held.
func (s *Sim) note(e Event) {
	if !s.journalOn {
		return
	}
	if len(s.journal) >= maxJournal {
		s.journalDropped++
		return
	}
	e.Time = s.now()
	s.journal = append(s.journal, e)
}
