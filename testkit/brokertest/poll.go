package brokertest

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// Poll intervals: the first retries come quickly (most conditions hold
// within milliseconds), then the interval grows to pollMax so a long wait
// does not spin on a machine shared with other tests.
const (
	pollFirst = time.Millisecond
	pollMax   = 50 * time.Millisecond
)

// errFalse is what Holds reports while its condition is false.
var errFalse = errors.New("the condition does not hold yet")

// Holds adapts a boolean condition for Eventually and Poll.
func Holds(cond func() bool) func() error {
	return func() error {
		if cond() {
			return nil
		}
		return errFalse
	}
}

// Eventually calls cond until it returns nil and returns how long that
// took. After timeout it fails the test with what and cond's last error.
// The timeout is a bound, never a measurement: give a slow condition a
// generous one. It must be called from the test's goroutine, and cond runs
// on it: cond may call t.Fatal for an error no retry can mend.
func Eventually(t testing.TB, what string, timeout time.Duration, cond func() error) time.Duration {
	t.Helper()
	start := time.Now()
	if err := poll(timeout, nil, cond); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return time.Since(start)
}

// Poll calls cond until it returns nil, for at most timeout; then it
// returns an error carrying cond's last one. It is Eventually for a
// goroutine that is not the test's, or a caller that handles the failure.
func Poll(timeout time.Duration, cond func() error) error {
	return poll(timeout, nil, cond)
}

// poll is Poll that also gives up, with errStopped, once stop is closed.
func poll(timeout time.Duration, stop <-chan struct{}, cond func() error) error {
	deadline := time.Now().Add(timeout)
	interval := pollFirst
	for {
		err := cond()
		if err == nil {
			return nil
		}
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("not within %v: %w", timeout, err)
		}
		timer := time.NewTimer(min(interval, left))
		select {
		case <-timer.C:
		case <-stop:
			timer.Stop()
			return fmt.Errorf("%w (last: %v)", errStopped, err)
		}
		interval = min(2*interval, pollMax)
	}
}

// errStopped ends a poll whose stop channel closed.
var errStopped = errors.New("gave up: stopped")
