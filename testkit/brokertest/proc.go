package brokertest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/testkit/redistest"
)

// stopTimeout bounds how long a process may take to exit after SIGTERM
// when the test ends.
const stopTimeout = 10 * time.Second

// logTailBytes is how much of a process's output a failed test prints.
const logTailBytes = 8192

// ProcOptions says what process a Proc runs and how it ends with the test.
type ProcOptions struct {
	// Name names the process in messages ("replica 2").
	Name string
	// Bin and Args are the command.
	Bin  string
	Args []string
	// KillAtEnd ends the process with SIGKILL when the test ends. Without
	// it the process gets SIGCONT (it may be frozen) and SIGTERM, and one
	// still running stopTimeout later is killed and fails the test, unless
	// SlowStopOK.
	KillAtEnd  bool
	SlowStopOK bool
}

// Proc is a process a test starts, and may stop, kill, freeze and start
// again. Its stdout and stderr go to one file, kept across restarts; when
// the test fails its end is printed. The process dies with the test binary
// (on Linux, Pdeathsig).
type Proc struct {
	t    testing.TB
	opts ProcOptions
	log  string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// NewProc prepares a process; Start runs it. The process is ended, and its
// output printed if the test failed, in t.Cleanup.
func NewProc(t testing.TB, opts ProcOptions) *Proc {
	t.Helper()
	if opts.Name == "" {
		opts.Name = filepath.Base(opts.Bin)
	}
	p := &Proc{t: t, opts: opts, log: filepath.Join(t.TempDir(), "output.log")}
	t.Cleanup(func() {
		p.end()
		if t.Failed() {
			t.Logf("%s output:\n%s", p.opts.Name, p.Output())
		}
	})
	return p
}

// Start runs the process (again, after it exited), then calls ready until
// it returns nil, for at most timeout. A process that exits meanwhile, or
// is not ready in time, is an error carrying the end of its output (the
// process is left to the caller and the cleanup).
func (p *Proc) Start(timeout time.Duration, ready func() error) error {
	out, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("brokertest: %s: %w", p.opts.Name, err)
	}
	p.mu.Lock()
	cmd := exec.Command(p.opts.Bin, p.opts.Args...)
	p.mu.Unlock()
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		out.Close()
		return fmt.Errorf("brokertest: start %s: %w", p.opts.Name, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		out.Close()
		close(exited)
	}()
	p.mu.Lock()
	p.cmd, p.exited = cmd, exited
	p.mu.Unlock()
	if ready == nil {
		return nil
	}
	err = poll(timeout, exited, ready)
	if errors.Is(err, errStopped) {
		return fmt.Errorf("brokertest: %s exited at start:\n%s", p.opts.Name, p.Output())
	}
	if err != nil {
		return fmt.Errorf("brokertest: %s not ready: %v\n%s", p.opts.Name, err, p.Output())
	}
	return nil
}

// running returns the current process and its exit channel; nil when it
// was never started.
func (p *Proc) running() (*exec.Cmd, chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd, p.exited
}

// Pid is the process id of the last start.
func (p *Proc) Pid() int {
	cmd, _ := p.running()
	if cmd == nil {
		return 0
	}
	return cmd.Process.Pid
}

// Exited is closed when the last started process has exited.
func (p *Proc) Exited() <-chan struct{} {
	_, exited := p.running()
	return exited
}

// Signal sends sig to the process.
func (p *Proc) Signal(sig os.Signal) error {
	cmd, _ := p.running()
	if cmd == nil {
		return fmt.Errorf("brokertest: %s was never started", p.opts.Name)
	}
	return cmd.Process.Signal(sig)
}

// Kill ends the process with SIGKILL and waits until it has exited.
func (p *Proc) Kill() {
	cmd, exited := p.running()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-exited
}

// Terminate sends SIGTERM and waits, at most limit, for the process to
// exit; it returns how long that took.
func (p *Proc) Terminate(limit time.Duration) (time.Duration, error) {
	began := time.Now()
	if err := p.Signal(syscall.SIGTERM); err != nil {
		return 0, err
	}
	timer := time.NewTimer(limit)
	defer timer.Stop()
	select {
	case <-p.Exited():
		return time.Since(began), nil
	case <-timer.C:
		return 0, fmt.Errorf("brokertest: %s still running %v after SIGTERM", p.opts.Name, limit)
	}
}

// Freeze stops the process with SIGSTOP and returns once every thread of
// it is stopped (state T in /proc), so from then on it answers nothing.
func (p *Proc) Freeze() error {
	cmd, _ := p.running()
	if cmd == nil {
		return fmt.Errorf("brokertest: %s was never started", p.opts.Name)
	}
	return redistest.FreezeProcess(cmd.Process)
}

// Thaw resumes a frozen process with SIGCONT and returns once no thread of
// it is stopped.
func (p *Proc) Thaw() error {
	cmd, _ := p.running()
	if cmd == nil {
		return fmt.Errorf("brokertest: %s was never started", p.opts.Name)
	}
	return redistest.ThawProcess(cmd.Process)
}

// end stops the process as the options say, at the end of the test.
func (p *Proc) end() {
	cmd, exited := p.running()
	if cmd == nil {
		return
	}
	if p.opts.KillAtEnd {
		p.Kill()
		return
	}
	_ = cmd.Process.Signal(syscall.SIGCONT) // in case the test froze it
	_ = cmd.Process.Signal(syscall.SIGTERM)
	timer := time.NewTimer(stopTimeout)
	defer timer.Stop()
	select {
	case <-exited:
	case <-timer.C:
		if !p.opts.SlowStopOK {
			p.t.Errorf("%s did not stop within %v of SIGTERM", p.opts.Name, stopTimeout)
		}
		p.Kill()
	}
}

// LogFile is the file that holds the process's stdout and stderr, of
// every start.
func (p *Proc) LogFile() string { return p.log }

// Output returns the end of the process's output, without the access
// log's per-request lines.
func (p *Proc) Output() string {
	raw, _ := os.ReadFile(p.log)
	var b []byte
	for _, line := range bytes.SplitAfter(raw, []byte("\n")) {
		if !bytes.Contains(line, []byte(`"msg":"request"`)) {
			b = append(b, line...)
		}
	}
	if len(b) > logTailBytes {
		b = b[len(b)-logTailBytes:]
	}
	return string(bytes.TrimSpace(b))
}
