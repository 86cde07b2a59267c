package bench

import (
	"context"
	"runtime/pprof"
)

// Profile labels. The in-process rows run the load client and the
// servers they compare in one process, so a CPU profile of loadgen
// (--cpuprofile) mixes them; every server's goroutines carry a "side"
// label, which the goroutines they start inherit, so that one side can be
// read alone (go tool pprof -tagfocus side=broker; -tags lists them). The
// load client's goroutines carry none.
const (
	sideLabel  = "side"
	sideBroker = "broker"
	sideEcho   = "echo"  // the bare echo and the gateway echo
	sideFloor  = "floor" // the echo that also GETs from Redis
)

// asSide runs f in this goroutine under side's label: the goroutines f
// starts (a broker's background work, say) carry it.
func asSide(side string, f func()) {
	pprof.Do(context.Background(), pprof.Labels(sideLabel, side), func(context.Context) { f() })
}

// goAsSide runs f in a new goroutine under side's label (a server's
// Serve: its connections' goroutines and every call's carry it).
func goAsSide(side string, f func()) {
	go asSide(side, f)
}
