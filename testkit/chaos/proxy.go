package chaos

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// Proxy forwards TCP connections from a loopback listener to an upstream
// address and injects the network faults of the run: latency on every
// chunk forwarded, resets (every connection reset, new ones refused), and
// a blackhole (nothing forwarded until it ends; then what was held is
// delivered, as TCP retransmission would).
//
// It is written here rather than taken from Toxiproxy: Toxiproxy's
// library is its server's internals (a metrics container and a zerolog
// logger to construct, an API that changed between minor versions) and
// would add several modules to go.mod for these three behaviours.
type Proxy struct {
	ln       net.Listener
	upstream string

	mu        sync.Mutex
	latency   time.Duration
	resetting bool
	hole      chan struct{} // closed while no blackhole is on
	links     map[*link]struct{}
	closed    bool
	wg        sync.WaitGroup
}

type link struct{ client, server net.Conn }

// NewProxy listens on addr (a loopback "127.0.0.1:port", or port 0) and
// forwards to upstream. Close stops it.
func NewProxy(addr, upstream string) (*Proxy, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, upstream: upstream, hole: make(chan struct{}), links: map[*link]struct{}{}}
	close(p.hole)
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the listener's address.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// SetUpstream makes new connections go to upstream.
func (p *Proxy) SetUpstream(upstream string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.upstream = upstream
}

// SetLatency delays every chunk forwarded, both ways, by d (0: none).
func (p *Proxy) SetLatency(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.latency = d
}

// Reset resets every open connection (RST) and, while on, every new one.
func (p *Proxy) Reset(on bool) {
	p.mu.Lock()
	p.resetting = on
	var links []*link
	if on {
		for l := range p.links {
			links = append(links, l)
		}
	}
	p.mu.Unlock()
	for _, l := range links {
		l.reset()
	}
}

// Blackhole holds everything sent either way while on.
func (p *Proxy) Blackhole(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.hole: // open
		if on {
			p.hole = make(chan struct{})
		}
	default:
		if !on {
			close(p.hole)
		}
	}
}

// Close stops the listener and ends every connection.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	links := make([]*link, 0, len(p.links))
	for l := range p.links {
		links = append(links, l)
	}
	select {
	case <-p.hole:
	default:
		close(p.hole)
	}
	p.mu.Unlock()
	err := p.ln.Close()
	for _, l := range links {
		l.reset()
	}
	p.wg.Wait()
	return err
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		resetting, upstream, closed := p.resetting, p.upstream, p.closed
		p.mu.Unlock()
		if resetting || closed {
			resetConn(c)
			continue
		}
		s, err := net.DialTimeout("tcp", upstream, time.Second)
		if err != nil {
			resetConn(c)
			continue
		}
		l := &link{client: c, server: s}
		p.mu.Lock()
		p.links[l] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		done := make(chan struct{}, 2)
		go p.pipe(l, s, c, done)
		go p.pipe(l, c, s, done)
	}
}

// pipe copies from src to dst through the faults until either side ends;
// the second pipe of a link to end removes it.
func (p *Proxy) pipe(l *link, dst, src net.Conn, done chan struct{}) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			latency, hole := p.latency, p.hole
			p.mu.Unlock()
			<-hole
			if latency > 0 {
				time.Sleep(latency)
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				err = werr
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				l.reset()
			} else {
				_ = l.client.Close()
				_ = l.server.Close()
			}
			done <- struct{}{}
			if len(done) == 2 {
				p.mu.Lock()
				delete(p.links, l)
				p.mu.Unlock()
			}
			return
		}
	}
}

func (l *link) reset() {
	resetConn(l.client)
	resetConn(l.server)
}

// resetConn closes c with an RST instead of a FIN.
func resetConn(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}
