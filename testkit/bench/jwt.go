package bench

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
	"github.com/tokenbroker/tokenbroker/testkit/fakeissuer"
)

// bearer sends a fixed "authorization: Bearer <token>" with every call
// (plaintext on loopback, like the other hot-path rows).
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (bearer) RequireTransportSecurity() bool { return false }

// JWTHotPath compares GetToken of a cached token by a caller that
// authenticates with a Kubernetes service-account JWT (the broker verifies
// its signature once, then finds it by digest until its exp, and matches
// its subject to a client by a namespace wildcard on every call) with the
// bare echo receiving the same bearer metadata (docs/design.md, Security
// model).
func (e *Env) JWTHotPath(ctx context.Context, concurrency, rounds int, roundTime time.Duration) (Comparison, error) {
	is := fakeissuer.Start()
	defer is.Close()
	dir, err := os.MkdirTemp("", "tokenbroker-bench-jwks-")
	if err != nil {
		return Comparison{}, err
	}
	defer os.RemoveAll(dir)
	jwks := filepath.Join(dir, "jwks.json")
	if err := os.WriteFile(jwks, is.JWKS(), 0o600); err != nil {
		return Comparison{}, err
	}
	cfg, err := brokerConfig(e.Sim, fmt.Sprintf(`
auth:
  jwt_issuers:
    - {issuer: %q, audiences: [tokenbroker], jwks_file: %q}
clients:
  bench-caller:
    jwt_subject: "system:serviceaccount:bench:*"
    allow: [bench]
`, is.URL(), jwks))
	if err != nil {
		return Comparison{}, err
	}
	b, err := startApp(ctx, cfg, e.log)
	if err != nil {
		return Comparison{}, err
	}
	defer b.stop()
	token := bearer(is.Sign(is.Kubernetes("bench", "loadgen", "tokenbroker", time.Now(), time.Hour)))
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithPerRPCCredentials(token)}
	conn, err := grpc.NewClient(b.app.Server.GRPCAddr().String(), opts...)
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
	s := grpc.NewServer()
	tokenbrokerv1.RegisterTokenServiceServer(s, &echoService{resp: resp})
	goAsSide(sideEcho, func() { _ = s.Serve(lis) })
	defer s.Stop()
	econn, err := grpc.NewClient(lis.Addr().String(), opts...)
	if err != nil {
		return Comparison{}, err
	}
	defer econn.Close()
	c := Compare(ctx, "gRPC GetToken (cached), JWT caller vs bare echo with the same bearer metadata", concurrency, rounds, roundTime,
		getToken(broker), getToken(tokenbrokerv1.NewTokenServiceClient(econn)))
	c.Goal = "QPS >= 0.9x"
	return c, nil
}
