package tiered

import (
	"fmt"
	"testing"
	"time"
)

func TestDeletionsRemembersEveryTokenOfAKey(t *testing.T) {
	now := time.Now()
	d := newDeletions()
	d.add("k", "a", now.Add(time.Minute), now)
	d.add("k", "b", now.Add(time.Minute), now)
	d.add("k", "c", now.Add(-time.Second), now) // already expired
	for _, tc := range []struct {
		key, token string
		want       bool
	}{
		{"k", "a", true},
		{"k", "b", true},
		{"k", "c", false},
		{"k", "d", false},
		{"other", "a", false},
	} {
		if _, got := d.get(tc.key, tc.token, now); got != tc.want {
			t.Errorf("get(%q, %q) = %v, want %v", tc.key, tc.token, got, tc.want)
		}
	}
	d.remove("k", "a")
	if _, ok := d.get("k", "a", now); ok {
		t.Error("a removed token is still remembered")
	}
	if _, ok := d.get("k", "b", now); !ok {
		t.Error("removing a forgot b")
	}
	if d.len() != 1 {
		t.Errorf("len = %d, want 1", d.len())
	}
}

func TestDeletionsBounded(t *testing.T) {
	now := time.Now()
	d := newDeletions()
	// Per key: the one expiring first goes.
	for i := range maxDeletionsPerKey + 1 {
		d.add("k", fmt.Sprint(i), now.Add(time.Duration(i+1)*time.Minute), now)
	}
	if _, ok := d.get("k", "0", now); ok {
		t.Error("past maxDeletionsPerKey, the token expiring first is still there")
	}
	if _, ok := d.get("k", fmt.Sprint(maxDeletionsPerKey), now); !ok {
		t.Error("the newest token was not kept")
	}
	// In all: never more than MaxPendingDeletes.
	for i := range MaxPendingDeletes + 100 {
		d.add(fmt.Sprint("key", i), "t", now.Add(time.Minute), now)
	}
	if d.len() > MaxPendingDeletes {
		t.Errorf("len = %d, over MaxPendingDeletes", d.len())
	}
	n := 0
	for _, list := range d.all() {
		n += len(list)
	}
	if n != d.len() {
		t.Errorf("all() holds %d tokens, len() says %d", n, d.len())
	}
}
