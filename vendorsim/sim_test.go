package vendorsim

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestSaasuRefreshRotates(t *testing.T) {
	t.Parallel()
	sim, srv := newTestServer(t)
	_, body := call{path: saasuToken, contentType: jsonCT, body: saasuJSON}.do(t, srv)
	_, tokens := maskTokens(body)
	if len(tokens) != 2 {
		t.Fatalf("token answer %q", body)
	}
	firstRefresh := tokens[1]

	// Refresh in each accepted body format; each rotates the refresh token.
	refreshes := []struct {
		name        string
		contentType string
		body        func(refresh string) string
		wantLayout  string
	}{
		{"form", formType, func(r string) string { return "grant_type=refresh_token&refresh_token=" + r }, saasuJSONAnswer},
		{"json", "text/json", func(r string) string { return `{"grant_type":"refresh_token","refresh_token":"` + r + `"}` }, saasuJSONAnswer},
		{"xml", "application/xml", func(r string) string {
			return "<OAuthRefreshTokenGrantRequest " + xmlNS + "><grant_type>refresh_token</grant_type><refresh_token>" + r + "</refresh_token></OAuthRefreshTokenGrantRequest>"
		}, saasuXMLAnswer},
	}
	refresh := firstRefresh
	for _, step := range refreshes {
		resp, body := call{path: saasuRefresh, contentType: step.contentType, body: step.body(refresh)}.do(t, srv)
		masked, tokens := maskTokens(body)
		if resp.StatusCode != http.StatusOK || masked != step.wantLayout {
			t.Fatalf("%s refresh: status %d, body\n%s", step.name, resp.StatusCode, body)
		}
		if tokens[1] == refresh || !sim.ValidToken(idSaasu, tokens[0]) {
			t.Fatalf("%s refresh: refresh token not rotated or access token invalid", step.name)
		}
		refresh = tokens[1]
	}
	if got := sim.Issued(idSaasu); got != 4 {
		t.Errorf("Issued = %d, want 4", got)
	}
	// A redeemed refresh token presented again is reuse (RFC 9700 section
	// 4.14.2): refused, and the whole grant revoked, its newest refresh
	// token included.
	for _, rt := range []string{firstRefresh, refresh} {
		resp, body := call{path: saasuRefresh, contentType: formType, body: "grant_type=refresh_token&refresh_token=" + rt}.do(t, srv)
		if resp.StatusCode != http.StatusBadRequest || body != `{"error":"invalid_grant"}` {
			t.Fatalf("refresh after reuse: status %d, body %q", resp.StatusCode, body)
		}
	}
	if got := sim.RefreshTokenReuses(); got != 1 {
		t.Fatalf("RefreshTokenReuses = %d, want 1", got)
	}
}

func TestOAuth2RefreshRotatesAndStaysWithItsClient(t *testing.T) {
	t.Parallel()
	_, srv := newTestServer(t)
	sim2 := func(body string, header map[string]string) (int, string, []string) {
		resp, b := call{path: oauth2Path, contentType: formType, header: header, body: body}.do(t, srv)
		masked, tokens := maskTokens(b)
		return resp.StatusCode, masked, tokens
	}
	status, _, tokens := sim2("grant_type=password&username=demo-user&password=demo-password&scope=a+b&client_id=demo-client&client_secret=demo-secret", nil)
	if status != http.StatusOK || len(tokens) != 2 {
		t.Fatalf("password grant: %d %v", status, tokens)
	}
	// Another client cannot redeem it, and trying does not burn it.
	status, _, _ = sim2("grant_type=refresh_token&refresh_token="+tokens[1], map[string]string{"Authorization": basic("client:1", "s3cr/t+&=%")})
	if status != http.StatusBadRequest {
		t.Fatalf("foreign client refresh: status %d, want 400", status)
	}
	// A wider scope than granted is refused.
	status, _, _ = sim2("grant_type=refresh_token&scope=a+c&refresh_token="+tokens[1]+"&client_id=demo-client&client_secret=demo-secret", nil)
	if status != http.StatusBadRequest {
		t.Fatalf("wider scope refresh: status %d, want 400", status)
	}
	status, body, rotated := sim2("grant_type=refresh_token&scope=a&refresh_token="+tokens[1], map[string]string{"Authorization": basic("demo-client", "demo-secret")})
	if want := `{"access_token":"<token>","token_type":"bearer","expires_in":3600,"refresh_token":"<refresh>","scope":"a"}`; status != http.StatusOK || body != want {
		t.Fatalf("refresh: status %d, body %s; want %s", status, body, want)
	}
	if rotated[1] == tokens[1] {
		t.Fatal("refresh token not rotated")
	}
	status, body, _ = sim2("grant_type=refresh_token&refresh_token="+tokens[1]+"&client_id=demo-client&client_secret=demo-secret", nil)
	if status != http.StatusBadRequest || !strings.Contains(body, `"error":"invalid_grant"`) {
		t.Fatalf("reused refresh token: status %d, body %s", status, body)
	}
}

func TestFailNext(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name           string
		vendor         string
		req            call
		status         int
		retryAfter     time.Duration
		wantRetryAfter string
		wantBody       string
	}{
		{"smartdocumentor throttled", idSmartDocumentor, call{path: smartDocPath, contentType: formType, body: smartDocExample},
			http.StatusTooManyRequests, 1500 * time.Millisecond, "2", "{\n    \"error\": \"temporarily_unavailable\"\n}"},
		{"hotdocs down", idHotDocs, call{path: hotDocsCloud, contentType: jsonCT, body: hotDocsExample},
			http.StatusServiceUnavailable, 0, "", "Service Unavailable"},
		{"brightpattern server error", idBrightPattern, call{path: brightPath, contentType: formType, body: brightExample},
			http.StatusInternalServerError, 0, "", `{"error":"server_error","error_description":"Internal Server Error"}`},
		{"saasu xml throttled", idSaasu, call{path: saasuToken, contentType: "text/xml", body: saasuXML},
			http.StatusTooManyRequests, 3 * time.Second, "3", "<OAuthError " + xmlNS + ">\n  <error>temporarily_unavailable</error>\n</OAuthError>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sim, srv := newTestServer(t)
			sim.FailNext(tt.vendor, 2, tt.status, tt.retryAfter)
			for range 2 {
				resp, body := tt.req.do(t, srv)
				if resp.StatusCode != tt.status || body != tt.wantBody {
					t.Fatalf("status %d, body %q; want %d, %q", resp.StatusCode, body, tt.status, tt.wantBody)
				}
				if got := resp.Header.Get("Retry-After"); got != tt.wantRetryAfter {
					t.Errorf("Retry-After = %q, want %q", got, tt.wantRetryAfter)
				}
			}
			if resp, body := tt.req.do(t, srv); resp.StatusCode != http.StatusOK {
				t.Fatalf("after the failures: status %d, body %q", resp.StatusCode, body)
			}
			if sim.Requests(tt.vendor) != 3 || sim.Issued(tt.vendor) != 1 {
				t.Errorf("Requests, Issued = %d, %d; want 3, 1", sim.Requests(tt.vendor), sim.Issued(tt.vendor))
			}
		})
	}
}

func TestFailNextCancel(t *testing.T) {
	t.Parallel()
	sim, srv := newTestServer(t)
	sim.FailNext(idSmartDocumentor, 5, http.StatusServiceUnavailable, 0)
	sim.FailNext(idSmartDocumentor, 0, 0, 0)
	if resp, _ := (call{path: smartDocPath, contentType: formType, body: smartDocExample}).do(t, srv); resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d after cancelling the failures", resp.StatusCode)
	}
}

func TestCountersAreConcurrentAndReset(t *testing.T) {
	t.Parallel()
	sim, srv := newTestServer(t)
	good := call{path: oauth2Path, contentType: formType, body: "grant_type=client_credentials&client_id=demo-client&client_secret=demo-secret"}
	bad := call{path: oauth2Path, contentType: formType, body: "grant_type=client_credentials&client_id=demo-client&client_secret=wrong"}
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() { good.do(t, srv) })
		wg.Go(func() { bad.do(t, srv) })
	}
	wg.Wait()
	if sim.Requests(idOAuth2) != 20 || sim.Issued(idOAuth2) != 10 {
		t.Errorf("Requests, Issued = %d, %d; want 20, 10", sim.Requests(idOAuth2), sim.Issued(idOAuth2))
	}
	if sim.Requests(idSaasu) != 0 || sim.Requests("nope") != 0 {
		t.Error("requests counted for the wrong vendor")
	}
	_, body := good.do(t, srv)
	_, tokens := maskTokens(body)
	sim.Reset()
	if sim.Requests(idOAuth2) != 0 || sim.Issued(idOAuth2) != 0 {
		t.Error("Reset kept the counters")
	}
	if !sim.ValidToken(idOAuth2, tokens[0]) {
		t.Error("Reset forgot an issued token")
	}
	if resp, _ := good.do(t, srv); resp.StatusCode != http.StatusOK {
		t.Error("Reset forgot the accounts")
	}
}

func TestTokenLifetimes(t *testing.T) {
	t.Parallel()
	// The simulator's clock stands still until the test moves it.
	base := time.Now()
	var skew atomic.Int64
	clock := func(s *Sim) { s.now = func() time.Time { return base.Add(time.Duration(skew.Load())) } }
	sim, srv := newTestServer(t, WithTokenTTL(1500*time.Millisecond), clock)
	bright := call{path: brightPath, contentType: formType, body: brightExample}
	if _, body := bright.do(t, srv); !strings.Contains(body, `"expires_in":"2"`) {
		t.Errorf("WithTokenTTL(1.5s): body %q, want expires_in 2", body)
	}
	sim.SetTokenTTL(idBrightPattern, time.Second)
	_, body := bright.do(t, srv)
	_, tokens := maskTokens(body)
	if !strings.Contains(body, `"expires_in":"1"`) || !sim.ValidToken(idBrightPattern, tokens[0]) {
		t.Fatalf("SetTokenTTL(1s): body %q", body)
	}
	if sim.ValidToken(idSmartDocumentor, tokens[0]) || sim.ValidToken(idBrightPattern, "forged") {
		t.Error("ValidToken accepts a token of another vendor or one never issued")
	}
	skew.Store(int64(1100 * time.Millisecond))
	if sim.ValidToken(idBrightPattern, tokens[0]) {
		t.Error("ValidToken accepts an expired token")
	}
	sim.SetTokenTTL(idBrightPattern, 0)
	if _, body := bright.do(t, srv); !strings.Contains(body, `"expires_in":"3599"`) {
		t.Errorf("SetTokenTTL(0): body %q, want the default 3599", body)
	}
}

func TestLatencyRespectsTheClient(t *testing.T) {
	t.Parallel()
	sim, srv := newTestServer(t, WithLatency(time.Minute))
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+smartDocPath, strings.NewReader(smartDocExample))
	req.Header.Set("Content-Type", formType)
	start := time.Now()
	_, err := srv.Client().Do(req)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Error("the request waited for the whole latency")
	}
	if sim.Requests(idSmartDocumentor) != 1 || sim.Issued(idSmartDocumentor) != 0 {
		t.Errorf("Requests, Issued = %d, %d; want 1, 0", sim.Requests(idSmartDocumentor), sim.Issued(idSmartDocumentor))
	}
}

func TestLatencyDelaysAnswers(t *testing.T) {
	t.Parallel()
	_, srv := newTestServer(t, WithLatency(100*time.Millisecond))
	start := time.Now()
	if resp, _ := (call{path: smartDocPath, contentType: formType, body: smartDocExample}).do(t, srv); resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if elapsed := time.Since(start); elapsed < 100*time.Millisecond {
		t.Errorf("answered after %v, want at least 100ms", elapsed)
	}
}

func TestStartServesUntilClose(t *testing.T) {
	t.Parallel()
	sim, err := Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(sim.URL(), "http://127.0.0.1:") {
		t.Fatalf("URL() = %q", sim.URL())
	}
	sim.AddAccount(idSmartDocumentor, DemoAccounts()[idSmartDocumentor])
	resp, err := http.Post(sim.URL()+smartDocPath, formType,
		strings.NewReader("grant_type=client_credentials&scope=WebAPI&client_id=demo-client&client_secret=demo-secret"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if err := sim.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Post(sim.URL()+smartDocPath, formType, strings.NewReader("")); err == nil {
		t.Error("still serving after Close")
	}
	if New().URL() != "" || New().Close() != nil {
		t.Error("a handler-only simulator has a URL or fails to close")
	}
	if _, err := Start("256.0.0.1:0"); err == nil {
		t.Error("Start on a bad address succeeded")
	}
}

func TestUnknownVendorPanics(t *testing.T) {
	t.Parallel()
	for name, f := range map[string]func(*Sim){
		"AddAccount":  func(s *Sim) { s.AddAccount("acme", nil) },
		"SetTokenTTL": func(s *Sim) { s.SetTokenTTL("acme", time.Second) },
		"FailNext":    func(s *Sim) { s.FailNext("acme", 1, 500, 0) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s with an unknown vendor did not panic", name)
				}
			}()
			f(New())
		}()
	}
}

func TestDemoAccountsCoverEveryVendor(t *testing.T) {
	t.Parallel()
	demo := DemoAccounts()
	for _, v := range vendors {
		if len(demo[v.id]) == 0 {
			t.Errorf("no demo account for %s", v.id)
		}
	}
	demo[idSaasu]["password"] = "changed"
	if DemoAccounts()[idSaasu]["password"] == "changed" {
		t.Error("DemoAccounts shares its maps between calls")
	}
}
