package bench

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
	"github.com/tokenbroker/tokenbroker/testkit/testpki"
)

// mtlsCaller is the subject of the bench caller's client certificate.
const mtlsCaller = "bench-caller"

// pki is a throwaway CA with a server certificate for 127.0.0.1 and a
// client certificate for mtlsCaller, as files (for the broker's config)
// and as TLS configurations (for the echo and the callers).
type pki struct {
	dir                       string
	caFile, certFile, keyFile string
	server, client            *tls.Config
}

func newPKI() (*pki, error) {
	dir, err := os.MkdirTemp("", "tokenbroker-bench-pki-")
	if err != nil {
		return nil, err
	}
	p := &pki{dir: dir}
	if err := p.generate(); err != nil {
		p.remove()
		return nil, err
	}
	return p, nil
}

func (p *pki) remove() { _ = os.RemoveAll(p.dir) }

func (p *pki) generate() error {
	ca, err := testpki.NewCA("bench CA")
	if err != nil {
		return err
	}
	server, err := ca.Server("127.0.0.1", net.IPv4(127, 0, 0, 1))
	if err != nil {
		return err
	}
	client, err := ca.Client(mtlsCaller)
	if err != nil {
		return err
	}
	write := func(name string, data []byte) (string, error) {
		path := filepath.Join(p.dir, name)
		return path, os.WriteFile(path, data, 0o600)
	}
	if p.caFile, err = write("ca.pem", ca.PEM); err != nil {
		return err
	}
	if p.certFile, err = write("server.pem", server.CertPEM); err != nil {
		return err
	}
	if p.keyFile, err = write("server-key.pem", server.KeyPEM); err != nil {
		return err
	}
	p.server = &tls.Config{
		MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{server.TLS},
		ClientCAs: ca.Pool(), ClientAuth: tls.RequireAndVerifyClientCert,
	}
	p.client = &tls.Config{
		MinVersion: tls.VersionTLS12, RootCAs: ca.Pool(), ServerName: "127.0.0.1",
		Certificates: []tls.Certificate{client.TLS},
	}
	return nil
}

// MTLSHotPath compares GetToken of a cached token by a caller that
// authenticates with its client certificate (the broker verifies the chain
// once per connection and checks the subject and the profile on every
// call) with the bare echo served over the same mutual TLS, which verifies
// the chain in the handshake.
func (e *Env) MTLSHotPath(ctx context.Context, concurrency, rounds int, roundTime time.Duration) (Comparison, error) {
	p, err := newPKI()
	if err != nil {
		return Comparison{}, err
	}
	defer p.remove()
	cfg, err := brokerConfig(e.Sim, mtlsBrokerYAML(p))
	if err != nil {
		return Comparison{}, err
	}
	b, err := startApp(ctx, cfg, e.log)
	if err != nil {
		return Comparison{}, err
	}
	defer b.stop()
	creds := grpc.WithTransportCredentials(credentials.NewTLS(p.client))
	conn, err := grpc.NewClient(b.app.Server.GRPCAddr().String(), creds)
	if err != nil {
		return Comparison{}, err
	}
	defer conn.Close()
	broker := tokenbrokerv1.NewTokenServiceClient(conn)
	resp, err := warmResponse(ctx, broker)
	if err != nil {
		return Comparison{}, err
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return Comparison{}, err
	}
	s := grpc.NewServer(grpc.Creds(credentials.NewTLS(p.server)))
	tokenbrokerv1.RegisterTokenServiceServer(s, &echoService{resp: resp})
	goAsSide(sideEcho, func() { _ = s.Serve(lis) })
	defer s.Stop()
	econn, err := grpc.NewClient(lis.Addr().String(), creds)
	if err != nil {
		return Comparison{}, err
	}
	defer econn.Close()
	c := Compare(ctx, "gRPC GetToken (cached), mTLS caller vs bare echo over mTLS", concurrency, rounds, roundTime,
		getToken(broker), getToken(tokenbrokerv1.NewTokenServiceClient(econn)))
	c.Goal = "QPS >= 0.9x"
	return c, nil
}

// serverMTLS is pki.server read back from its files: the mTLS echo's
// configuration in a process of its own.
func serverMTLS(certFile, keyFile, caFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("no certificate in %s", caFile)
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert},
		ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert,
	}, nil
}

// mtlsBrokerYAML is the broker's extra config of the mTLS rows: p's
// server certificate and client CA, and the one client, allowed the bench
// profile.
func mtlsBrokerYAML(p *pki) string {
	return fmt.Sprintf(`
clients:
  %s:
    cert_subject: "CN=%s"
    allow: [bench]
tls:
  cert_file: %s
  key_file: %s
  client_ca_file: %s
`, mtlsCaller, mtlsCaller, p.certFile, p.keyFile, p.caFile)
}
