package brokertest

import "syscall"

// sysProcAttr makes a child die with the test binary, so a test killed by
// its timeout leaves no server behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
