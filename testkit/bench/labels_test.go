package bench

import (
	"bytes"
	"fmt"
	"runtime/pprof"
	"strings"
	"testing"
)

// TestSideLabelsReachStartedGoroutines: a goroutine started under a side
// (as a server's connections and calls are) carries its label, and one
// started outside carries none.
func TestSideLabelsReachStartedGoroutines(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	started := make(chan struct{}, 2)
	park := func() { started <- struct{}{}; <-release }
	goAsSide(sideFloor, func() { go park() })
	asSide(sideBroker, func() { go park() })
	<-started
	<-started
	var buf bytes.Buffer
	if err := pprof.Lookup("goroutine").WriteTo(&buf, 1); err != nil {
		t.Fatal(err)
	}
	for _, side := range []string{sideFloor, sideBroker} {
		if want := fmt.Sprintf("labels: {%q:%q}", sideLabel, side); !strings.Contains(buf.String(), want) {
			t.Errorf("no goroutine labelled %s in:\n%s", want, buf.String())
		}
	}
	if strings.Contains(buf.String(), fmt.Sprintf("%q:%q", sideLabel, sideEcho)) {
		t.Errorf("a goroutine is labelled %s, but none was started as one", sideEcho)
	}
}
