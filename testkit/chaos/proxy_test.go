package chaos

import (
	"bufio"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// echo serves a line-echo server on loopback.
func echo(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

func roundTrip(c net.Conn, r *bufio.Reader, deadline time.Duration) (string, error) {
	_ = c.SetDeadline(time.Now().Add(deadline))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return "", err
	}
	return r.ReadString('\n')
}

func TestProxyFaults(t *testing.T) {
	t.Parallel()
	p, err := NewProxy("127.0.0.1:0", echo(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	if got, err := roundTrip(c, r, 5*time.Second); err != nil || got != "ping\n" {
		t.Fatalf("through the proxy: %q, %v", got, err)
	}

	p.SetLatency(100 * time.Millisecond)
	start := time.Now()
	if _, err := roundTrip(c, r, 5*time.Second); err != nil || time.Since(start) < 200*time.Millisecond {
		t.Fatalf("with 100ms latency each way: %v after %v", err, time.Since(start))
	}
	p.SetLatency(0)

	// A blackhole holds the bytes; they arrive once it ends.
	p.Blackhole(true)
	if _, err := roundTrip(c, r, 300*time.Millisecond); !isTimeout(err) {
		t.Fatalf("through a blackhole: %v, want a timeout", err)
	}
	p.Blackhole(false)
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if got, err := r.ReadString('\n'); err != nil || got != "ping\n" {
		t.Fatalf("after the blackhole: %q, %v", got, err)
	}

	// A reset ends the connection and refuses new ones until it ends.
	p.Reset(true)
	if _, err := roundTrip(c, r, 5*time.Second); err == nil {
		t.Fatal("a reset connection still answers")
	}
	if c2, err := net.Dial("tcp", p.Addr()); err == nil {
		if _, err := roundTrip(c2, bufio.NewReader(c2), 5*time.Second); err == nil {
			t.Fatal("a new connection during a reset answers")
		}
		c2.Close()
	}
	p.Reset(false)
	c3, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	if got, err := roundTrip(c3, bufio.NewReader(c3), 5*time.Second); err != nil || got != "ping\n" {
		t.Fatalf("after the reset: %q, %v", got, err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
