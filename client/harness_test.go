package client_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tokenbroker/tokenbroker/app"
	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
	"github.com/tokenbroker/tokenbroker/testkit/brokertest"
	"github.com/tokenbroker/tokenbroker/vendorsim"
)

// The examples' broker and vendor API, started by TestMain.
var (
	brokerAddr  string
	documentAPI string
)

func TestMain(m *testing.M) {
	b, err := startBroker()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	api := httptest.NewServer(newVendorAPI(b.sim).handler())
	brokerAddr, documentAPI = b.addr, api.URL
	code := m.Run()
	api.Close()
	if err := b.stop(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
	os.Exit(code)
}

// broker is a tokenbroker started the way cmd/server starts it, with the
// vendor simulator behind it and the profile "demo-smartdocumentor".
type broker struct {
	addr string
	sim  *vendorsim.Sim
	stop func() error
}

// brokerYAML is the broker's profile.
const brokerYAML = `
profiles:
  demo-smartdocumentor:
    vendor: smartdocumentor
    credentials: {client_id: demo-client, client_secret: demo-secret}
`

func startBroker() (*broker, error) {
	sim, err := brokertest.NewSim()
	if err != nil {
		return nil, err
	}
	cfg, err := brokertest.ParseSimConfig(sim, brokerYAML)
	if err != nil {
		sim.Close()
		return nil, err
	}
	b, err := brokertest.Launch(sim, app.Options{Config: cfg})
	if err != nil {
		sim.Close()
		return nil, err
	}
	return &broker{
		addr: b.GRPCAddr,
		sim:  sim,
		stop: func() error {
			defer sim.Close()
			return b.Stop()
		},
	}, nil
}

// newBroker starts a broker for one test.
func newBroker(t *testing.T) *broker {
	t.Helper()
	b, err := startBroker()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.stop(); err != nil {
			t.Error(err)
		}
	})
	return b
}

// recorder counts the RPCs a client connection sends and keeps the access
// tokens named by InvalidateToken.
type recorder struct {
	mu          sync.Mutex
	calls       map[string]int
	invalidated []string
}

func (r *recorder) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	r.mu.Lock()
	if r.calls == nil {
		r.calls = map[string]int{}
	}
	r.calls[method[strings.LastIndexByte(method, '/')+1:]]++
	if inv, ok := req.(*tokenbrokerv1.InvalidateTokenRequest); ok {
		r.invalidated = append(r.invalidated, inv.GetAccessToken())
	}
	r.mu.Unlock()
	return invoker(ctx, method, req, reply, cc, opts...)
}

func (r *recorder) count(rpc string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls[rpc]
}

func (r *recorder) invalidations() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.invalidated...)
}

// dial connects to b, recording what the client sends.
func (b *broker) dial(t *testing.T) (*grpc.ClientConn, *recorder) {
	t.Helper()
	rec := &recorder{}
	conn, err := grpc.NewClient(b.addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUnaryInterceptor(rec.intercept))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, rec
}

// vendorAPI is a vendor's document API: it accepts a bearer token only if
// the simulator issued it for smartdocumentor and it was not revoked, and
// it checks the body a POST carries.
type vendorAPI struct {
	sim *vendorsim.Sim

	mu       sync.Mutex
	seen     []string // tokens presented, in order
	bodies   []string
	revoked  map[string]bool
	revokeAt int // revoke the token of request number revokeAt (1-based), 0: none
	always   bool
}

func newVendorAPI(sim *vendorsim.Sim) *vendorAPI {
	return &vendorAPI{sim: sim, revoked: map[string]bool{}}
}

func (v *vendorAPI) handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		v.mu.Lock()
		v.seen = append(v.seen, token)
		v.bodies = append(v.bodies, string(body))
		if len(v.seen) == v.revokeAt {
			v.revoked[token] = true
		}
		rejected := !ok || v.always || v.revoked[token] || !v.sim.ValidToken("smartdocumentor", token)
		v.mu.Unlock()
		if rejected {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			http.Error(w, "invalid token", http.StatusUnauthorized)
			return
		}
		fmt.Fprintf(w, "documents for a %d-byte request\n", len(body))
	})
}

func (v *vendorAPI) requests() (tokens, bodies []string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]string(nil), v.seen...), append([]string(nil), v.bodies...)
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}
