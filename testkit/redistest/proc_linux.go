package redistest

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// sysProcAttr makes a server die with the test process, so a test binary
// that is killed (timeout, ^C) leaves no redis-server behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// waitStopped polls the states of pid's threads until all of them are
// stopped by a signal (state T), or, with stopped false, none of them is,
// for at most timeout.
func waitStopped(pid int, stopped bool, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		states, err := threadStates(pid)
		if err != nil {
			return err
		}
		if (stopped && allStopped(states)) || (!stopped && noneStopped(states)) {
			return nil
		}
		if time.Now().After(deadline) {
			want := "stopped (T)"
			if !stopped {
				want = "running again"
			}
			return fmt.Errorf("threads not %s within %v: states %s", want, timeout, strings.Join(states, " "))
		}
		time.Sleep(time.Millisecond)
	}
}

func allStopped(states []string) bool {
	for _, s := range states {
		if s != "T" {
			return false
		}
	}
	return true
}

func noneStopped(states []string) bool {
	for _, s := range states {
		if s == "T" {
			return false
		}
	}
	return true
}

// threadStates returns the state letter (proc_pid_stat(5) field 3) of each
// thread of pid. A process that has exited is an error: it will never be
// stopped or running again.
func threadStates(pid int) ([]string, error) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("the process is gone: %w", err)
	}
	var states []string
	for _, task := range tasks {
		raw, err := os.ReadFile(filepath.Join(dir, task.Name(), "stat"))
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
			continue // the thread ended meanwhile
		}
		if err != nil {
			return nil, err
		}
		// The command name in parentheses may hold spaces and ')': the
		// state follows the last ')'.
		i := strings.LastIndexByte(string(raw), ')')
		fields := strings.Fields(string(raw[i+1:]))
		if i < 0 || len(fields) == 0 {
			return nil, fmt.Errorf("unexpected %s/%s/stat: %q", dir, task.Name(), raw)
		}
		if fields[0] == "Z" || fields[0] == "X" {
			return nil, fmt.Errorf("the process has exited (state %s)", fields[0])
		}
		states = append(states, fields[0])
	}
	if len(states) == 0 {
		return nil, errors.New("the process has no threads left")
	}
	return states, nil
}
