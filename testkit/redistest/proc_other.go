//go:build !linux

package redistest

import (
	"syscall"
	"time"
)

func sysProcAttr() *syscall.SysProcAttr { return nil }

// waitStopped cannot observe a process's state outside Linux: it returns
// at once, and a frozen process may still answer for a moment.
func waitStopped(int, bool, time.Duration) error { return nil }
