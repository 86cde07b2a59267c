package test

import (
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// l4Balancer is a TCP load balancer on loopback that learns which backends
// are ready the way Kubernetes endpoints do: by polling each backend's
// /readyz once a second, so it lags a replica's state by up to a second.
// A new connection goes to the next ready backend, round robin, and stays
// there; it never retries elsewhere.
type l4Balancer struct {
	lis      net.Listener
	backends []lbBackend
	next     atomic.Uint64
	wg       sync.WaitGroup
	stop     chan struct{}
	refused  atomic.Int64 // connections with no ready backend
}

type lbBackend struct {
	addr     string // where connections go
	readyURL string // polled
	ready    *atomic.Bool
}

// startBalancer listens on loopback and balances over addrs (host:port of
// each backend's traffic), polling readyURLs[i] for addrs[i].
func startBalancer(t *testing.T, addrs, readyURLs []string) *l4Balancer {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &l4Balancer{lis: lis, stop: make(chan struct{})}
	for i := range addrs {
		b.backends = append(b.backends, lbBackend{addr: addrs[i], readyURL: readyURLs[i], ready: new(atomic.Bool)})
	}
	b.pollOnce()
	b.wg.Add(2)
	go b.poll()
	go b.accept()
	t.Cleanup(b.close)
	return b
}

func (b *l4Balancer) addr() string { return b.lis.Addr().String() }

// isReady reports the balancer's view of backend i.
func (b *l4Balancer) isReady(i int) bool { return b.backends[i].ready.Load() }

func (b *l4Balancer) close() {
	close(b.stop)
	b.lis.Close()
	b.wg.Wait()
}

func (b *l4Balancer) poll() {
	defer b.wg.Done()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-tick.C:
			b.pollOnce()
		}
	}
}

var probeClient = &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

func (b *l4Balancer) pollOnce() {
	var wg sync.WaitGroup
	for _, be := range b.backends {
		wg.Go(func() {
			resp, err := probeClient.Get(be.readyURL)
			ok := err == nil && resp.StatusCode == http.StatusOK
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			be.ready.Store(ok)
		})
	}
	wg.Wait()
}

func (b *l4Balancer) accept() {
	defer b.wg.Done()
	for {
		conn, err := b.lis.Accept()
		if err != nil {
			return
		}
		b.wg.Go(func() { b.proxy(conn) })
	}
}

// proxy pipes conn to a ready backend until either side closes.
func (b *l4Balancer) proxy(conn net.Conn) {
	defer conn.Close()
	var target string
	n := len(b.backends)
	start := int(b.next.Add(1))
	for i := range n {
		if be := b.backends[(start+i)%n]; be.ready.Load() {
			target = be.addr
			break
		}
	}
	if target == "" {
		b.refused.Add(1)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	up, err := (&net.Dialer{}).DialContext(ctx, "tcp", target)
	cancel()
	if err != nil {
		b.refused.Add(1)
		return
	}
	defer up.Close()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, conn); _ = up.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
	go func() { _, _ = io.Copy(conn, up); _ = conn.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
	select {
	case <-done:
	case <-b.stop:
	}
	// One side ended: give the other a moment to finish its half.
	select {
	case <-done:
	case <-b.stop:
	case <-time.After(5 * time.Second):
	}
}
