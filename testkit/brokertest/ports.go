package brokertest

import (
	"net"
	"strconv"
	"testing"

	"github.com/tokenbroker/tokenbroker/testkit/redistest"
)

// FreePort returns a loopback TCP port that was free a moment ago. Another
// process may take it before the caller binds it: a caller that starts a
// server on it retries with a new port when the bind fails.
func FreePort(t testing.TB) int {
	t.Helper()
	port, err := redistest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// FreeAddr is FreePort as "127.0.0.1:<port>".
func FreeAddr(t testing.TB) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
}
