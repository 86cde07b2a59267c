package redisstore

import "time"

// Scripts are never run twice blindly (docs/design.md, The lease and generation protocol: one
// answer per operation). A command whose answer is lost (a read timeout)
// is sent again, by go-redis (MaxRetries) or by doRetry, and the first
// attempt may well have run. A script whose effect or answer would differ
// on a second run (a budget charge, a refresh-token claim, a
// compare-and-delete) therefore takes an operation id, fresh per call and
// the same on every attempt: its first run remembers its answer under the
// id for opMemory, and a later run with the same id answers that instead of
// running again. The other scripts are idempotent as they are: a lease
// taken or released by its owner, a renewal, a fenced write of one value
// and generation.

// opMemory is how long a script's answer is kept under its operation id:
// far longer than any retry of one call (its timeout, twice).
const opMemory = 10 * time.Second

// newOpID returns a fresh operation id.
func newOpID() string { return randomHex(8) }
