package test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
	"github.com/tokenbroker/tokenbroker/testkit/brokertest"
	"github.com/tokenbroker/tokenbroker/testkit/redistest"
	"github.com/tokenbroker/tokenbroker/vendorsim"
)

// eventSink is a CloudEvents receiver: it keeps every event's type, id and
// headers, and the raw requests to look for secrets.
type eventSink struct {
	mu     sync.Mutex
	types  []string
	ids    []string
	bodies []string
	auth   []string
}

func (s *eventSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	s.mu.Lock()
	defer s.mu.Unlock()
	s.types = append(s.types, r.Header.Get("Ce-Type"))
	s.ids = append(s.ids, r.Header.Get("Ce-Id"))
	s.bodies = append(s.bodies, string(body))
	s.auth = append(s.auth, r.Header.Get("Authorization"))
	w.WriteHeader(http.StatusAccepted)
}

// count returns how many events of type typ arrived.
func (s *eventSink) count(typ string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, t := range s.types {
		if t == typ {
			n++
		}
	}
	return n
}

func (s *eventSink) all() (types, bodies, auth []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.types...), append([]string(nil), s.bodies...), append([]string(nil), s.auth...)
}

// healthYAML is a replica's config: Redis, an event sink, the simulator's
// smartdocumentor, and one profile.
func healthYAML(sim *vendorsim.Sim, redisAddr, sinkURL, profileExtra, serviceExtra string) string {
	return `grpc_addr: 127.0.0.1:{grpc}
http_addr: 127.0.0.1:{http}
shutdown_delay: 0s
` + redisCacheYAML(cacheKey(), redisAddr) + `vendors:
  smartdocumentor:
    token_url: ` + sim.URL() + `/smartdocumentor/connect/token
    negative_ttl: 1s
profiles:
  acme-sd:
    vendor: smartdocumentor
    credentials: {client_id: demo-client, client_secret: demo-secret}
` + profileExtra + `events:
  sinks:
    - url: ` + sinkURL + `
      headers: {authorization: "Bearer sink-secret-marker"}
service:
  default_min_ttl: 0s
` + serviceExtra
}

// statusOf asks replica r for acme-sd's fleet-wide status over gRPC. A
// loaded machine may time a Redis read out (the replica then answers its
// own records): it asks again, for at most 10 s.
func statusOf(t *testing.T, r *replica) *tokenbrokerv1.CredentialStatus {
	t.Helper()
	var st *tokenbrokerv1.CredentialStatus
	brokertest.Eventually(t, "acme-sd's fleet-wide status", 10*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := r.client.ListCredentialStatus(ctx, &tokenbrokerv1.ListCredentialStatusRequest{})
		if err != nil {
			t.Fatalf("ListCredentialStatus: %v", err)
		}
		if !resp.FleetWide || len(resp.Profiles) != 1 {
			return fmt.Errorf("status = %v; want acme-sd, fleet-wide", resp)
		}
		st = resp.Profiles[0]
		return nil
	})
	return st
}

// TestCredentialHealthFleet: three replicas share one Redis. When the
// vendor starts rejecting the profile's credentials, the sink gets one
// "rejected" event for the fleet and every replica's status says so; when
// it accepts them again, one "recovered" event.
func TestCredentialHealthFleet(t *testing.T) {
	redistest.Binary(t, "redis-server")
	bin := brokertest.ServerBinary(t)
	srv := redistest.Start(t)
	sim := brokertest.StartSim(t, vendorsim.WithTokenTTL(2*time.Second))
	sink := &eventSink{}
	sinkSrv := httptest.NewServer(sink)
	t.Cleanup(sinkSrv.Close)
	f := startFleet(t, bin, sim, fleetReplicas, healthYAML(sim, srv.Addr, sinkSrv.URL, "", ""))

	// Callers over every replica, as a load balancer spreads them, until
	// the test ends.
	var (
		mu        sync.Mutex
		lastToken string
	)
	callers := &callerLoop{}
	callers.start(func(i int) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		resp, err := f.client(i).GetToken(ctx, &tokenbrokerv1.GetTokenRequest{Profile: "acme-sd", MinTtl: durationpb.New(0)})
		if err == nil {
			mu.Lock()
			lastToken = resp.AccessToken
			mu.Unlock()
		}
	})
	t.Cleanup(callers.stop)

	brokertest.Eventually(t, "working", 15*time.Second, brokertest.Holds(func() bool {
		return statusOf(t, f.replicas[0]).State == tokenbrokerv1.CredentialState_CREDENTIAL_STATE_WORKING
	}))

	sim.FailNext("smartdocumentor", 1_000_000, http.StatusUnauthorized, 0)
	// Several rejections recorded (the negative cache lets one through a
	// second, from whichever replica), and the event has arrived.
	brokertest.Eventually(t, "three rejections recorded and an event", 30*time.Second, brokertest.Holds(func() bool {
		return statusOf(t, f.replicas[1]).ConsecutiveFailures >= 3 && sink.count("io.tokenbroker.credential.rejected") >= 1
	}))
	if n := sink.count("io.tokenbroker.credential.rejected"); n != 1 {
		t.Fatalf("rejected events = %d, want 1 for the fleet", n)
	}
	for i, r := range f.replicas {
		st := statusOf(t, r)
		if st.State != tokenbrokerv1.CredentialState_CREDENTIAL_STATE_REJECTED || st.LastRejection.GetOauthError() != "invalid_client" ||
			st.LastRejection.GetHttpStatus() != http.StatusUnauthorized || st.LastRejection.GetRememberedUntil() == nil {
			t.Fatalf("replica %d status = %v; want rejected, invalid_client", i, st)
		}
	}
	// The REST view and the status subcommand say the same, and carry no
	// secret or token.
	mu.Lock()
	token := lastToken
	mu.Unlock()
	rest := getBody(t, "http://"+f.replicas[2].HTTPAddr+"/v1/credentials/status")
	if !strings.Contains(rest, `"CREDENTIAL_STATE_REJECTED"`) || !strings.Contains(rest, `"oauth_error":"invalid_client"`) {
		t.Fatalf("REST status = %s", rest)
	}
	out, err := exec.Command(bin, "status", "--addr", f.replicas[2].GRPCAddr).CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("acme-sd")) || !bytes.Contains(out, []byte("rejected")) || !bytes.Contains(out, []byte("invalid_client")) {
		t.Fatalf("tokenbroker status: %v\n%s", err, out)
	}
	for what, text := range map[string]string{"REST status": rest, "status subcommand": string(out)} {
		for _, secret := range []string{"demo-secret", "sink-secret-marker", token} {
			if secret != "" && strings.Contains(text, secret) {
				t.Fatalf("%s contains a secret or token", what)
			}
		}
	}

	sim.FailNext("smartdocumentor", 0, 0, 0)
	brokertest.Eventually(t, "recovered", 30*time.Second, brokertest.Holds(func() bool {
		return sink.count("io.tokenbroker.credential.recovered") >= 1
	}))
	recovered := statusOf(t, f.replicas[0])
	// Later tokens are recorded without another event.
	brokertest.Eventually(t, "two more fetches recorded", 30*time.Second, brokertest.Holds(func() bool {
		st := statusOf(t, f.replicas[2])
		return st.State == tokenbrokerv1.CredentialState_CREDENTIAL_STATE_WORKING && st.FetchedAt.AsTime().After(recovered.FetchedAt.AsTime().Add(time.Second))
	}))
	types, bodies, auth := sink.all()
	if sink.count("io.tokenbroker.credential.recovered") != 1 || len(types) != 2 {
		t.Fatalf("events = %v; want one rejected, one recovered", types)
	}
	// The replicas counted each event once, as sent.
	sent := 0
	for _, r := range f.replicas {
		for _, line := range strings.Split(getBody(t, "http://"+r.HTTPAddr+"/metrics"), "\n") {
			if v, ok := strings.CutPrefix(line, `tokenbroker_credential_events_total{result="sent"} `); ok {
				n, _ := strconv.Atoi(v)
				sent += n
			}
		}
	}
	if sent != 2 {
		t.Fatalf("tokenbroker_credential_events_total{result=\"sent\"} over the replicas = %d, want 2", sent)
	}
	for i, body := range bodies {
		var data map[string]any
		if err := json.Unmarshal([]byte(body), &data); err != nil || data["profile"] != "acme-sd" || data["vendor"] != "smartdocumentor" {
			t.Fatalf("event %d data = %s (%v)", i, body, err)
		}
		if strings.Contains(body, "demo-secret") || (token != "" && strings.Contains(body, token)) {
			t.Fatalf("event %d carries a secret or token: %s", i, body)
		}
		if auth[i] != "Bearer sink-secret-marker" {
			t.Fatalf("event %d: the sink's configured header is missing", i)
		}
	}
}

// TestKeepWarmFleet: a keep_warm profile with 5 s tokens and no callers
// for 30 s: the first caller gets a cached token that still has at least
// the share of its life left that refresh ahead leaves (0.8 ± 0.05), and
// the vendor saw one request per token, not one per replica.
func TestKeepWarmFleet(t *testing.T) {
	if testing.Short() {
		t.Skip("30 s without callers, skipped in -short mode")
	}
	redistest.Binary(t, "redis-server")
	bin := brokertest.ServerBinary(t)
	srv := redistest.Start(t)
	const life = 5 * time.Second
	sim := brokertest.StartSim(t, vendorsim.WithTokenTTL(life))
	sinkSrv := httptest.NewServer(&eventSink{})
	t.Cleanup(sinkSrv.Close)
	began := time.Now()
	f := startFleet(t, bin, sim, fleetReplicas, healthYAML(sim, srv.Addr, sinkSrv.URL, "    keep_warm: true\n", "  keep_warm_max: 1\n"))

	// No callers: the fleet fetches and refreshes on its own.
	brokertest.Eventually(t, "the quiet spell", 35*time.Second, brokertest.Holds(func() bool { return time.Since(began) >= 30*time.Second }))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := f.client(0).GetToken(ctx, &tokenbrokerv1.GetTokenRequest{Profile: "acme-sd", MinTtl: durationpb.New(0)})
	if err != nil {
		t.Fatal(err)
	}
	left := time.Until(resp.ExpiresAt.AsTime())
	elapsed := time.Since(began)
	times := sim.RequestTimes("smartdocumentor")
	t.Logf("after %v: %d vendor requests; the first caller's token has %v of %v left", elapsed.Round(time.Millisecond), len(times), left.Round(time.Millisecond), life)
	if !resp.CacheHit {
		t.Fatal("the first caller after the quiet spell waited for a fetch")
	}
	// Refreshed at 0.85 of its life at the latest, plus the keep-warm
	// loop's look and a fetch on a loaded machine.
	if minLeft := time.Duration(float64(life)*0.15) - 500*time.Millisecond; left < minLeft {
		t.Fatalf("token has %v left, want at least %v", left, minLeft)
	}
	// One request per token: each token is replaced once it has used 75%
	// of its life at the earliest, by one replica.
	if most := int(elapsed/(life*3/4)) + 1; len(times) > most {
		t.Fatalf("%d vendor requests in %v, want at most %d (one per token)", len(times), elapsed, most)
	}
	if n := sim.MaxRequestsWithin("smartdocumentor", life/2); n > 1 {
		t.Fatalf("%d vendor requests within %v: replicas refreshed the same token", n, life/2)
	}
	if len(times) < int(30*time.Second/life) {
		t.Fatalf("%d vendor requests in 30 s of 5 s tokens: the token was not kept warm", len(times))
	}
}

// callerLoop calls a function over and over, caller i for the i-th call,
// until stopped; each call is bounded by its own deadline.
type callerLoop struct {
	done chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

func (c *callerLoop) start(call func(i int)) {
	c.done = make(chan struct{})
	c.wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-c.done:
				return
			case <-time.After(20 * time.Millisecond):
			}
			call(i)
		}
	})
}

func (c *callerLoop) stop() {
	c.once.Do(func() { close(c.done) })
	c.wg.Wait()
}

// getBody GETs url and returns its body; anything but 200 fails the test.
func getBody(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %s", url, resp.Status, body)
	}
	return string(body)
}
