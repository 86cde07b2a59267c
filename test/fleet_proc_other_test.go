//go:build !linux

package test

import "syscall"

func childProcAttr() *syscall.SysProcAttr { return nil }
