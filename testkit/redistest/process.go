package redistest

import (
	"fmt"
	"os"
	"syscall"
	"time"
)

// faultTimeout bounds how long FreezeProcess and ThawProcess wait for the
// process to change state after the signal.
const faultTimeout = 10 * time.Second

// FreezeProcess stops p with SIGSTOP and returns once every thread of it
// is stopped. A signal is delivered asynchronously: until the kernel has
// stopped the last thread, the process may still answer a request, so a
// test that asserted "nothing is answered" right after kill(2) would pass
// or fail by scheduling luck. On Linux the wait reads the threads' states
// in /proc/<pid>/task/*/stat; elsewhere it returns after the signal.
func FreezeProcess(p *os.Process) error {
	if err := p.Signal(syscall.SIGSTOP); err != nil {
		return fmt.Errorf("redistest: SIGSTOP to pid %d: %w", p.Pid, err)
	}
	if err := waitStopped(p.Pid, true, faultTimeout); err != nil {
		return fmt.Errorf("redistest: SIGSTOP to pid %d: %w", p.Pid, err)
	}
	return nil
}

// ThawProcess resumes p with SIGCONT and returns once no thread of it is
// stopped any more.
func ThawProcess(p *os.Process) error {
	if err := p.Signal(syscall.SIGCONT); err != nil {
		return fmt.Errorf("redistest: SIGCONT to pid %d: %w", p.Pid, err)
	}
	if err := waitStopped(p.Pid, false, faultTimeout); err != nil {
		return fmt.Errorf("redistest: SIGCONT to pid %d: %w", p.Pid, err)
	}
	return nil
}
