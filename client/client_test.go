package client_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tokenbroker/tokenbroker/client"
	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
)

var demo = &tokenbrokerv1.GetTokenRequest{Profile: "demo-smartdocumentor"}

func TestTokenSourceConcurrentCallersShareOneCall(t *testing.T) {
	t.Parallel()
	b := newBroker(t)
	conn, rec := b.dial(t)
	ts := client.New(conn).TokenSource(ctxT(t), demo)
	var wg sync.WaitGroup
	tokens := make([]string, 50)
	for i := range tokens {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if tok, err := ts.Token(); err == nil {
				tokens[i] = tok.AccessToken
			}
		}()
	}
	wg.Wait()
	for i, tok := range tokens {
		if tok == "" || tok != tokens[0] {
			t.Fatalf("caller %d got %q, want the shared token", i, tok)
		}
	}
	if n := rec.count("GetToken"); n != 1 {
		t.Fatalf("GetToken calls = %d, want 1", n)
	}
}

func TestTokenSourceKeepsTheBrokersCode(t *testing.T) {
	t.Parallel()
	b := newBroker(t)
	conn, _ := b.dial(t)
	_, err := client.New(conn).TokenSource(ctxT(t), &tokenbrokerv1.GetTokenRequest{Profile: "no-such-profile"}).Token()
	if status.Code(err) != codes.NotFound {
		t.Fatalf("err = %v, want NotFound", err)
	}
}

// post sends a replayable POST (http.NewRequest sets GetBody for a
// strings.Reader) through rt.
func post(t *testing.T, rt http.RoundTripper, url, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxT(t), http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := (&http.Client{Transport: rt}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func TestTransportRetriesA401OnceWithANewToken(t *testing.T) {
	t.Parallel()
	b := newBroker(t)
	api := newVendorAPI(b.sim)
	api.revokeAt = 1 // the vendor revoked the first token it sees
	srv := httptest.NewServer(api.handler())
	t.Cleanup(srv.Close)
	conn, rec := b.dial(t)

	resp := post(t, client.New(conn).Transport(demo, nil), srv.URL+"/documents", "hello")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status = %d, want 200 after the retry", resp.StatusCode)
	}
	tokens, bodies := api.requests()
	if len(tokens) != 2 || tokens[0] == tokens[1] {
		t.Fatalf("vendor API saw tokens %q, want the rejected one then a new one", tokens)
	}
	if bodies[0] != "hello" || bodies[1] != "hello" {
		t.Fatalf("bodies = %q, want the body sent twice", bodies)
	}
	if inv := rec.invalidations(); len(inv) != 1 || inv[0] != tokens[0] {
		t.Fatalf("InvalidateToken named %q, want only the rejected token", inv)
	}
	if n := b.sim.Requests("smartdocumentor"); n != 2 {
		t.Fatalf("vendor token requests = %d, want 2", n)
	}
}

func TestTransportRetriesOnlyOnce(t *testing.T) {
	t.Parallel()
	b := newBroker(t)
	api := newVendorAPI(b.sim)
	api.always = true // the vendor API rejects every token
	srv := httptest.NewServer(api.handler())
	t.Cleanup(srv.Close)
	conn, rec := b.dial(t)

	resp := post(t, client.New(conn).Transport(demo, nil), srv.URL+"/documents", "hello")
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("status = %d, want the vendor's 401", resp.StatusCode)
	}
	tokens, _ := api.requests()
	if len(tokens) != 2 {
		t.Fatalf("vendor API requests = %d, want 2 (one retry)", len(tokens))
	}
	if inv := rec.invalidations(); len(inv) != 1 || inv[0] != tokens[0] {
		t.Fatalf("InvalidateToken named %q, want the first token once", inv)
	}
}

func TestTransportDoesNotRetryABodyItCannotReplay(t *testing.T) {
	t.Parallel()
	b := newBroker(t)
	api := newVendorAPI(b.sim)
	api.revokeAt = 1
	srv := httptest.NewServer(api.handler())
	t.Cleanup(srv.Close)
	conn, rec := b.dial(t)
	rt := client.New(conn).Transport(demo, nil)

	// An io.NopCloser hides the reader's type: http.NewRequest cannot set
	// GetBody, so the body cannot be sent twice.
	req, _ := http.NewRequestWithContext(ctxT(t), http.MethodPost, srv.URL+"/upload", io.NopCloser(strings.NewReader("stream")))
	resp, err := (&http.Client{Transport: rt}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("status = %d, want the 401 passed through", resp.StatusCode)
	}
	tokens, _ := api.requests()
	if len(tokens) != 1 {
		t.Fatalf("vendor API requests = %d, want 1", len(tokens))
	}
	if inv := rec.invalidations(); len(inv) != 1 || inv[0] != tokens[0] {
		t.Fatalf("InvalidateToken named %q, want the rejected token even without a retry", inv)
	}
	// The next request gets a new token.
	if resp := post(t, rt, srv.URL+"/documents", "next"); resp.StatusCode != http.StatusOK {
		t.Fatalf("next request status = %d, want 200", resp.StatusCode)
	}
}

func TestTransport401StormCausesOneNewVendorFetch(t *testing.T) {
	t.Parallel()
	b := newBroker(t)
	api := newVendorAPI(b.sim)
	srv := httptest.NewServer(api.handler())
	t.Cleanup(srv.Close)
	conn, rec := b.dial(t)
	rt := client.New(conn).Transport(demo, nil)
	if resp := post(t, rt, srv.URL+"/warm", ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("warm-up status = %d", resp.StatusCode)
	}
	tokens, _ := api.requests()
	api.mu.Lock()
	api.revoked[tokens[0]] = true // the vendor revokes the token every caller holds
	api.mu.Unlock()

	var wg sync.WaitGroup
	statuses := make([]int, 20)
	for i := range statuses {
		wg.Add(1)
		req, err := http.NewRequestWithContext(ctxT(t), http.MethodPost, srv.URL+"/documents", strings.NewReader("x"))
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			defer wg.Done()
			resp, err := (&http.Client{Transport: rt}).Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			statuses[i] = resp.StatusCode
		}()
	}
	wg.Wait()
	for i, s := range statuses {
		if s != http.StatusOK {
			t.Fatalf("caller %d: status %d", i, s)
		}
	}
	if n := b.sim.Requests("smartdocumentor"); n != 2 {
		t.Fatalf("vendor token requests = %d, want 2 (the first token and one replacement)", n)
	}
	if n := rec.count("InvalidateToken"); n != 1 {
		t.Fatalf("InvalidateToken calls = %d, want 1 for the one rejected token", n)
	}
}
