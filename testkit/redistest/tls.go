package redistest

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/testkit/testpki"
)

// StartTLS starts a redis-server that speaks only TLS, with a certificate
// for 127.0.0.1 from a fresh test CA. It returns the server and the CA's
// PEM file (what a client must trust); s.TLS trusts it too.
func StartTLS(t testing.TB) (s *Server, caFile string) {
	t.Helper()
	dir := t.TempDir()
	ca, err := testpki.NewCA("redistest CA")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Server("127.0.0.1", net.IPv4(127, 0, 0, 1))
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	caFile = write("ca.pem", ca.PEM)
	tf := &tlsFiles{cert: write("redis.pem", leaf.CertPEM), key: write("redis-key.pem", leaf.KeyPEM)}
	tf.client = &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	return startServer(t, nil, tf), caFile
}

// pingTLS sends PING over TLS.
func pingTLS(addr string, conf *tls.Config) error {
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: time.Second}, Config: conf}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != "+PONG" {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}
