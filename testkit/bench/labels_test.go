package bench

import (
	"bytes"
	"fmt"
	"runtime/pprof"
	"strings"
	"testing"
)

// Three goroutines parked in functions of their own, so that each shows
// as a record of its own in the goroutine profile.
func parkFloor(started chan<- struct{}, release <-chan struct{})   { started <- struct{}{}; <-release }
func parkBroker(started chan<- struct{}, release <-chan struct{})  { started <- struct{}{}; <-release }
func parkOutside(started chan<- struct{}, release <-chan struct{}) { started <- struct{}{}; <-release }

// TestSideLabelsReachStartedGoroutines: a goroutine started under a side
// (as a server's connections and calls are) carries its label, and one
// started afterwards by the same caller (the load client) carries none.
func TestSideLabelsReachStartedGoroutines(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	started := make(chan struct{}, 3)
	goAsSide(sideFloor, func() { go parkFloor(started, release) })
	asSide(sideBroker, func() { go parkBroker(started, release) })
	go parkOutside(started, release)
	for range 3 {
		<-started
	}
	var buf bytes.Buffer
	if err := pprof.Lookup("goroutine").WriteTo(&buf, 1); err != nil {
		t.Fatal(err)
	}
	// debug=1: one record per stack, a blank line between records, the
	// labels (if any) on the record's second line.
	records := strings.Split(buf.String(), "\n\n")
	for fn, want := range map[string]string{"parkFloor": sideFloor, "parkBroker": sideBroker, "parkOutside": ""} {
		found := false
		for _, r := range records {
			if !strings.Contains(r, "bench."+fn+"+") {
				continue
			}
			found = true
			label := fmt.Sprintf("labels: {%q:%q}", sideLabel, want)
			switch {
			case want == "" && strings.Contains(r, "labels:"):
				t.Errorf("%s carries a label:\n%s", fn, r)
			case want != "" && !strings.Contains(r, label):
				t.Errorf("%s is not labelled %s:\n%s", fn, label, r)
			}
		}
		if !found {
			t.Errorf("no goroutine in %s in the profile:\n%s", fn, buf.String())
		}
	}
}
