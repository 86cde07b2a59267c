package client_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/tokenbroker/tokenbroker/client"
	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
)

// The tests in this file run against fakeBroker and fakeAPI inside a
// synctest bubble: time is virtual and synctest.Wait says when every
// goroutine is blocked, so interleavings are chosen, not hoped for.

// roundTrip sends a replayable POST to path through rt.
func roundTrip(t *testing.T, rt http.RoundTripper, path string) (*http.Response, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "https://api.vendor.test"+path, strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := rt.RoundTrip(req)
	if err == nil {
		resp.Body.Close()
	}
	return resp, err
}

func mustStatus(t *testing.T, rt http.RoundTripper, path string, want int) {
	t.Helper()
	resp, err := roundTrip(t, rt, path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if resp.StatusCode != want {
		t.Fatalf("%s: status %d, want %d", path, resp.StatusCode, want)
	}
}

// warmTransport is a Transport through b to a new fake vendor API whose
// first call (with token-1) has been made.
func warmTransport(t *testing.T, b *fakeBroker) (*fakeAPI, http.RoundTripper) {
	t.Helper()
	api := newFakeAPI()
	rt := client.New(b).Transport(&tokenbrokerv1.GetTokenRequest{Profile: "p"}, api)
	mustStatus(t, rt, "/warm", http.StatusOK)
	return api, rt
}

func TestTokenSourceKeepsTokenUntilMinTTLIsLeft(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b := newFakeBroker()
		b.tokenTTL = time.Hour
		minTTL := 10 * time.Minute
		ts := client.New(b).TokenSource(t.Context(), &tokenbrokerv1.GetTokenRequest{Profile: "p", MinTtl: durationpb.New(minTTL)})

		sent := time.Now()
		first, err := ts.Token()
		if err != nil {
			t.Fatal(err)
		}
		if want := sent.Add(time.Hour); !first.Expiry.Equal(want) {
			t.Fatalf("expiry = %v, want %v (expires_in counted from the call)", first.Expiry, want)
		}
		time.Sleep(50*time.Minute - time.Second) // 10m1s left: still served
		if again, err := ts.Token(); err != nil || again.AccessToken != first.AccessToken {
			t.Fatalf("Token() = %v, %v; want the cached token", again, err)
		}
		if n := b.count("GetToken"); n != 1 {
			t.Fatalf("GetToken calls = %d, want 1 while min_ttl is left", n)
		}
		time.Sleep(2 * time.Second) // 9m59s left: ask the broker again
		if _, err := ts.Token(); err != nil {
			t.Fatal(err)
		}
		if n := b.count("GetToken"); n != 2 {
			t.Fatalf("GetToken calls = %d, want 2 once less than min_ttl was left", n)
		}
	})
}

// A caller whose request got a 401 tells the broker. While that call is
// under way, another caller must not re-cache the rejected token from the
// broker (which still holds it): the old client forgot its token before
// InvalidateToken returned, the second caller fetched the rejected token
// again, and the first caller's retry was handed that same token and gave
// up with the 401 (TestTransport401StormCausesOneNewVendorFetch).
func TestTransportRetryIsNeverGivenTheRejectedTokenBack(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b := newFakeBroker()
		api, rt := warmTransport(t, b)
		api.revoke("token-1")

		gate := b.gateInvalidate()
		first := make(chan *http.Response, 1)
		go func() {
			resp, err := roundTrip(t, rt, "/first")
			if err != nil {
				t.Error(err)
			}
			first <- resp
		}()
		synctest.Wait() // the first caller is inside InvalidateToken

		holdSecond := api.hold("/second")
		second := make(chan *http.Response, 1)
		go func() {
			resp, err := roundTrip(t, rt, "/second")
			if err != nil {
				t.Error(err)
			}
			second <- resp
		}()
		synctest.Wait() // the second caller has a token (or waits for one)

		close(gate) // the broker answers InvalidateToken
		synctest.Wait()
		close(holdSecond)
		if resp := <-first; resp == nil || resp.StatusCode != http.StatusOK {
			t.Errorf("first caller: %v, want 200 after one retry with a new token (vendor API saw %q)", resp, api.requests())
		}
		if resp := <-second; resp == nil || resp.StatusCode != http.StatusOK {
			t.Errorf("second caller: %v, want 200", resp)
		}
		for _, r := range api.requests() {
			if r == "/second token-1" {
				t.Errorf("the second caller was handed the rejected token (vendor API saw %q)", api.requests())
			}
		}
		if n := b.tokensIssued(); n != 2 {
			t.Errorf("tokens fetched = %d, want 2 (the rejected one and one replacement)", n)
		}
	})
}

// Concurrent 401s for one token cause one InvalidateToken and one new token.
func TestTransport401sForOneTokenInvalidateOnce(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b := newFakeBroker()
		api, rt := warmTransport(t, b)
		api.revoke("token-1")
		hold := api.hold("/documents")
		done := make(chan int, 20)
		for range cap(done) {
			go func() {
				resp, err := roundTrip(t, rt, "/documents")
				if err != nil {
					t.Error(err)
					done <- 0
					return
				}
				done <- resp.StatusCode
			}()
		}
		synctest.Wait() // all twenty hold token-1
		close(hold)
		for range cap(done) {
			if status := <-done; status != http.StatusOK {
				t.Fatalf("status %d, want 200", status)
			}
		}
		if n := b.count("InvalidateToken"); n != 1 {
			t.Errorf("InvalidateToken calls = %d, want 1", n)
		}
		if n := b.tokensIssued(); n != 2 {
			t.Errorf("tokens fetched = %d, want 2", n)
		}
	})
}

// A broker replica that has not heard of the invalidation yet may answer
// the rejected token: the source asks again with force_refresh.
func TestTokenSourceForceRefreshesWhenTheBrokerAnswersARejectedToken(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b := newFakeBroker()
		b.staleReads = 1
		api, rt := warmTransport(t, b)
		time.Sleep(time.Minute) // older than force_refresh_interval
		api.revoke("token-1")
		mustStatus(t, rt, "/documents", http.StatusOK)
		b.mu.Lock()
		forced := b.forced
		b.mu.Unlock()
		if forced != 1 {
			t.Errorf("force_refresh calls = %d, want 1", forced)
		}
		if got := api.requests(); got[len(got)-1] != "/documents token-2" {
			t.Errorf("vendor API saw %q, want the retry with token-2", got)
		}
	})
}

// When even force_refresh brings the rejected token back (the vendor
// reissues it), the 401 is passed through without a retry and the next
// call fails with ErrRejectedToken, not with the same 401 again.
func TestTransportFailsClearlyWhenOnlyTheRejectedTokenIsAvailable(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b := newFakeBroker()
		b.reissue = true
		api, rt := warmTransport(t, b)
		api.revoke("token-1")
		mustStatus(t, rt, "/documents", http.StatusUnauthorized)
		if got := api.requests(); len(got) != 2 {
			t.Fatalf("vendor API saw %q, want no retry with the rejected token", got)
		}
		_, err := roundTrip(t, rt, "/documents")
		if !errors.Is(err, client.ErrRejectedToken) {
			t.Fatalf("next call: err = %v, want ErrRejectedToken", err)
		}
	})
}

// A caller waiting for another caller's broker call stops at its deadline.
func TestTokenSourceWaitEndsWithTheCallersContext(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b := newFakeBroker()
		api, rt := warmTransport(t, b)
		api.revoke("token-1")
		gate := b.gateInvalidate()
		go func() { _, _ = roundTrip(t, rt, "/first") }()
		synctest.Wait()

		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://api.vendor.test/second", nil)
		_, err := rt.RoundTrip(req)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want DeadlineExceeded while another caller holds the broker call", err)
		}
		close(gate)
	})
}
