package test

import "syscall"

// childProcAttr makes a server die with the test binary.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
