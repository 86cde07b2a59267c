package redistest

import "syscall"

// sysProcAttr makes a server die with the test process, so a test binary
// that is killed (timeout, ^C) leaves no redis-server behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
