package test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
	"github.com/tokenbroker/tokenbroker/testkit/brokertest"
)

// chromiumFlags are the flags every headless run here uses: no sandbox (a
// container's root), no GPU, no network of its own (QUIC, background
// fetches, updates, sync).
var chromiumFlags = []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
	"--disable-background-networking", "--disable-component-update", "--disable-sync"}

// chromium returns the headless browser's path; without one the test is
// skipped, except under CI, where scripts/deps.sh (WITH_CHROMIUM=1)
// installs it.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is not installed (WITH_CHROMIUM=1 scripts/deps.sh)")
	}
	t.Skip("chromium is not installed (WITH_CHROMIUM=1 scripts/deps.sh)")
	return ""
}

// TestStatusPageInChromium: the status page loads in a headless browser,
// shows each profile's state, and shows no secret or token.
func TestStatusPageInChromium(t *testing.T) {
	t.Parallel()
	browser := chromium(t)
	sim := brokertest.StartSim(t)
	b := brokertest.StartBroker(t, sim, brokertest.SimConfig(t, sim, `
profiles:
  acme-sd:
    vendor: smartdocumentor
    credentials: {client_id: demo-client, client_secret: demo-secret}
  broken-sd:
    vendor: smartdocumentor
    credentials: {client_id: demo-client, client_secret: wrong-secret-marker}
  idle-sd:
    vendor: smartdocumentor
    credentials: {client_id: demo-client, client_secret: demo-secret}
`))
	ctx := ctxT(t)
	good, err := b.Client.GetToken(ctx, &tokenbrokerv1.GetTokenRequest{Profile: "acme-sd", MinTtl: durationpb.New(0)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Client.GetToken(ctx, &tokenbrokerv1.GetTokenRequest{Profile: "broken-sd"}); err == nil {
		t.Fatal("the wrong secret got a token")
	}
	// Outcomes are recorded off the callers' path.
	brokertest.Eventually(t, "both outcomes recorded", 10*time.Second, brokertest.Holds(func() bool {
		resp, err := b.Client.ListCredentialStatus(ctx, &tokenbrokerv1.ListCredentialStatusRequest{})
		return err == nil && len(resp.Profiles) == 3 &&
			resp.Profiles[0].State == tokenbrokerv1.CredentialState_CREDENTIAL_STATE_WORKING &&
			resp.Profiles[1].State == tokenbrokerv1.CredentialState_CREDENTIAL_STATE_REJECTED
	}))

	dctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args := append(append([]string(nil), chromiumFlags...), "--user-data-dir="+t.TempDir(), "--dump-dom", b.HTTP+"/status")
	cmd := exec.CommandContext(dctx, browser, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium: %v\n%s", err, stderr.String())
	}
	dom := string(out)
	for _, want := range []string{
		"<title>tokenbroker: credential status</title>",
		`<tr class="ok" data-profile="acme-sd">`,
		`<tr class="bad" data-profile="broken-sd">`,
		`<tr class="unknown" data-profile="idle-sd">`,
		`<td class="state">working</td>`, `<td class="state">rejected</td>`, `<td class="state">never fetched</td>`,
		"invalid_client (HTTP 400)",
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("the rendered page lacks %q:\n%s", want, dom)
		}
	}
	for _, secret := range []string{"demo-secret", "wrong-secret-marker", good.AccessToken} {
		if strings.Contains(dom, secret) {
			t.Errorf("the rendered page shows a secret or token")
		}
	}
	if strings.Contains(strings.ToLower(dom), "<script") {
		t.Error("the page has a script")
	}
}

// TestStatusPermission: the status RPC, its REST route and the page need
// admin:status; a client allowed a profile but not the permission is
// denied, one with it allowed, and each decision is audited.
func TestStatusPermission(t *testing.T) {
	t.Parallel()
	const opsKey, billingKey = "ops-key-status-test", "billing-key-status-test"
	sim := brokertest.StartSim(t)
	cfg := brokertest.SimConfig(t, sim, sdProfile+fmt.Sprintf(`
clients:
  ops: {api_key_sha256: %s, allow: ["admin:status"]}
  billing: {api_key_sha256: %s, allow: [acme-sd]}
`, sha256Hex(opsKey), sha256Hex(billingKey)))
	a, logs := startAppWithLogs(t, cfg, false)
	base := "http://" + a.Server.HTTPAddr().String()
	for _, path := range []string{"/status", "/v1/credentials/status"} {
		for _, tc := range []struct {
			key  string
			want int
		}{
			{"", http.StatusUnauthorized},
			{billingKey, http.StatusForbidden},
			{opsKey, http.StatusOK},
		} {
			req, _ := http.NewRequest(http.MethodGet, base+path, nil)
			if tc.key != "" {
				req.Header.Set("Authorization", "Bearer "+tc.key)
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != tc.want {
				t.Errorf("GET %s with key %q: %d, want %d", path, tc.key, res.StatusCode, tc.want)
			}
		}
	}
	out := logs.String()
	if !strings.Contains(out, `"principal":"ops"`) || !strings.Contains(out, `"target":"admin:status"`) || !strings.Contains(out, `"decision":"deny"`) {
		t.Errorf("the status decisions are not audited:\n%s", out)
	}
	if strings.Contains(out, opsKey) || strings.Contains(out, billingKey) {
		t.Error("the log contains an API key")
	}
}
