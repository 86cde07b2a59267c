package test

import (
	"os"
	"testing"

	"github.com/tokenbroker/tokenbroker/testkit/brokertest"
)

// TestMain removes the server binary the multi-process tests share.
func TestMain(m *testing.M) {
	os.Exit(brokertest.RunTests(m))
}
