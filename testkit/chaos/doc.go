// Package chaos is the library of the seeded chaos run (docs/design.md,
// The chaos run: invariants and bounds): a nemesis schedule derived from a
// seed (Plan), the history of every call and fault (History), the checker
// that proves the invariants over a history and the simulator's journal
// (Check), the report in text and JSON (Report), and a TCP proxy that
// injects network faults between the brokers and Redis (Proxy).
//
// The harness that starts the processes, runs the callers and carries out
// the schedule is the test TestChaos in test/; this package knows no
// process and starts nothing but the proxy's goroutines.
package chaos
