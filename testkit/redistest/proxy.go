package redistest

import (
	"bytes"
	"net"
	"sync"
	"testing"
)

// Proxy is a TCP proxy on a free loopback port in front of a server, for
// faults a whole server cannot stage: one client cut off while others
// still reach the server, or a reply lost after the command ran.
type Proxy struct {
	// Addr is where clients connect.
	Addr   string
	target string
	lis    net.Listener

	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]struct{}
	// swallow, when set, makes the next connection that sends it (in one
	// read) receive nothing more from the server: the command runs, its
	// reply never arrives.
	swallow  []byte
	swallows int
	wg       sync.WaitGroup
}

// StartProxy proxies a free loopback port to target until the test ends.
func StartProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{Addr: lis.Addr().String(), target: target, lis: lis, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// Cut closes every proxied connection and refuses new ones (they are
// accepted and closed at once), until Restore.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for c := range p.conns {
		_ = c.Close()
	}
}

// Restore lets connections through again.
func (p *Proxy) Restore() {
	p.mu.Lock()
	p.cut = false
	p.mu.Unlock()
}

// SwallowReplyAfter makes the first connection that sends a command
// containing marker (e.g. "EVALSHA", in any case) receive nothing more from the
// server: the command reaches the server and runs, and its reply is lost,
// as when a read times out. It applies once.
func (p *Proxy) SwallowReplyAfter(marker string) {
	p.mu.Lock()
	p.swallow = bytes.ToLower([]byte(marker))
	p.mu.Unlock()
}

// Swallowed is how many replies SwallowReplyAfter has lost.
func (p *Proxy) Swallowed() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.swallows
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.lis.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		cut := p.cut
		if !cut {
			p.conns[c] = struct{}{}
		}
		p.mu.Unlock()
		if cut {
			_ = c.Close()
			continue
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

func (p *Proxy) serve(client net.Conn) {
	defer p.wg.Done()
	defer func() {
		p.mu.Lock()
		delete(p.conns, client)
		p.mu.Unlock()
		_ = client.Close()
	}()
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer server.Close()
	var muted sync.Mutex
	mute := false
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 32<<10)
		for {
			n, err := server.Read(buf)
			if n > 0 {
				muted.Lock()
				m := mute
				muted.Unlock()
				if !m {
					if _, werr := client.Write(buf[:n]); werr != nil {
						return
					}
				}
			}
			if err != nil {
				_ = client.Close()
				return
			}
		}
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := client.Read(buf)
		if n > 0 {
			p.mu.Lock()
			if p.swallow != nil && bytes.Contains(bytes.ToLower(buf[:n]), p.swallow) {
				p.swallow = nil
				p.swallows++
				muted.Lock()
				mute = true
				muted.Unlock()
			}
			p.mu.Unlock()
			if _, werr := server.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	_ = server.Close()
	<-done
}

func (p *Proxy) close() {
	_ = p.lis.Close()
	p.Cut()
	p.wg.Wait()
}
