package vendorsim

import (
	"net/http"
	"testing"
	"time"
)

// TestJournalRecordsIssueRedeemReuseRevoke: the journal names every token
// issued, every refresh token presented, and the revocation a reuse
// causes, which also ends the grant's access tokens.
func TestJournalRecordsIssueRedeemReuseRevoke(t *testing.T) {
	t.Parallel()
	sim, srv := newTestServer(t, WithJournal())
	_, body := call{path: saasuToken, contentType: jsonCT, body: saasuJSON}.do(t, srv)
	_, first := maskTokens(body)
	refresh := func(rt string) (int, []string) {
		resp, body := call{path: saasuRefresh, contentType: formType, body: "grant_type=refresh_token&refresh_token=" + rt}.do(t, srv)
		_, tokens := maskTokens(body)
		return resp.StatusCode, tokens
	}
	status, second := refresh(first[1])
	if status != http.StatusOK || !sim.ValidToken(idSaasu, second[0]) {
		t.Fatalf("refresh: status %d", status)
	}
	if status, _ := refresh(first[1]); status != http.StatusBadRequest {
		t.Fatalf("reuse: status %d, want 400", status)
	}
	if sim.ValidToken(idSaasu, first[0]) || sim.ValidToken(idSaasu, second[0]) {
		t.Error("access tokens of a revoked grant still valid")
	}
	want := []struct {
		kind  EventKind
		token string
	}{
		{EventIssued, first[0]},
		{EventRefreshRedeemed, first[1]},
		{EventIssued, second[0]},
		{EventRefreshReused, first[1]},
		{EventRevoked, ""},
	}
	got := sim.Journal()
	if len(got) != len(want) {
		t.Fatalf("journal has %d events, want %d: %+v", len(got), len(want), got)
	}
	family := got[0].Family
	for i, w := range want {
		e := got[i]
		if e.Kind != w.kind || e.Token != Digest(w.token) || e.Vendor != idSaasu || e.Family != family || e.Time.IsZero() {
			t.Errorf("event %d = %+v, want %s of %q in family %q", i, e, w.kind, Digest(w.token), family)
		}
	}
	if family == "" || got[0].Expires.Before(time.Now()) {
		t.Errorf("issued event %+v: want a family and a future expiry", got[0])
	}
}

// TestSetLatency: answers wait for the latency set while serving.
func TestSetLatency(t *testing.T) {
	t.Parallel()
	sim, srv := newTestServer(t)
	sim.SetLatency(200 * time.Millisecond)
	start := time.Now()
	call{path: saasuToken, contentType: jsonCT, body: saasuJSON}.do(t, srv)
	if took := time.Since(start); took < 200*time.Millisecond {
		t.Fatalf("answered after %v, want at least the 200ms latency", took)
	}
}
