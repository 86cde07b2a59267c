package testpki

import (
	"crypto/tls"
	"net"
	"testing"
)

// A client certificate and a server certificate from one CA complete a
// mutual TLS handshake that verifies both.
func TestIssuedCertificatesCompleteMutualTLS(t *testing.T) {
	ca, err := NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	server, err := ca.Server("127.0.0.1", net.IPv4(127, 0, 0, 1))
	if err != nil {
		t.Fatal(err)
	}
	client, err := ca.Client("caller")
	if err != nil {
		t.Fatal(err)
	}
	lis, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{server.TLS}, ClientCAs: ca.Pool(), ClientAuth: tls.RequireAndVerifyClientCert,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	peer := make(chan string, 1)
	go func() {
		c, err := lis.Accept()
		if err != nil {
			peer <- err.Error()
			return
		}
		defer c.Close()
		tc := c.(*tls.Conn)
		if err := tc.Handshake(); err != nil {
			peer <- err.Error()
			return
		}
		peer <- tc.ConnectionState().PeerCertificates[0].Subject.CommonName
	}()
	c, err := tls.Dial("tcp", lis.Addr().String(), &tls.Config{
		RootCAs: ca.Pool(), ServerName: "127.0.0.1", Certificates: []tls.Certificate{client.TLS},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := <-peer; got != "caller" {
		t.Fatalf("server saw %q, want the client certificate's CN", got)
	}
}
