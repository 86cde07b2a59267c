//go:build !linux

package brokertest

import "syscall"

func sysProcAttr() *syscall.SysProcAttr { return nil }
