package test

import (
	"os"
	"testing"
)

// TestMain removes the server binary the multi-process tests share.
func TestMain(m *testing.M) {
	code := m.Run()
	if sharedBinDir != "" {
		_ = os.RemoveAll(sharedBinDir)
	}
	os.Exit(code)
}
