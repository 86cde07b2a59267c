//go:build !race

package brokertest

// raceEnabled says the test binary was built with -race: the servers it
// starts are built the same way.
const raceEnabled = false
