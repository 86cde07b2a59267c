// Package events tells operators when a profile's credentials change state
// (docs/design.md, Operations, "Credential status and events"): a vendor
// starts rejecting them, accepts them again, keeps failing, or the vendor's
// request budget runs out. Each change is one event for the whole fleet
// (the replica whose status update made the change sends it) and goes to
// every configured sink as a CloudEvent in HTTP binary mode
// (https://github.com/cloudevents/spec/blob/v1.0.2/cloudevents/bindings/http-protocol-binding.md).
// Sending is off the callers' path: a bounded queue, one sender, retries
// with backoff; a sink that is down costs queue space, never a caller's
// time.
package events

import "time"

// Event types, as CloudEvents "type" attributes.
const (
	TypeRejected        = "io.tokenbroker.credential.rejected"
	TypeRecovered       = "io.tokenbroker.credential.recovered"
	TypeFailing         = "io.tokenbroker.credential.failing"
	TypeBudgetExhausted = "io.tokenbroker.credential.budget_exhausted"
)

// Event is one change of a profile's state. Nothing in it is secret: the
// profile and vendor names, states, the vendor's OAuth error code or the
// failure kind, and times.
type Event struct {
	// ID is the same on every replica for one change (the profile and
	// the change's sequence number in its status record), so a sink can
	// drop a duplicate sent while Redis was unreachable.
	ID      string
	Type    string
	Profile string
	Vendor  string
	// State and PreviousState: working, rejected, failing, or empty
	// (nothing recorded before).
	State         string
	PreviousState string
	// Reason is the vendor's OAuth error code (rejected), the failure
	// kind (failing), or empty.
	Reason string
	// Replica is the process that saw the change.
	Replica string
	Time    time.Time
	// RememberedUntil is until when a rejection is answered from memory.
	RememberedUntil time.Time `json:",omitzero"`
}
