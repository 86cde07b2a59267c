package test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/tokenbroker/tokenbroker/config"
	tokenbrokerv1 "github.com/tokenbroker/tokenbroker/gen/tokenbroker/v1"
	"github.com/tokenbroker/tokenbroker/testkit/brokertest"
	"github.com/tokenbroker/tokenbroker/testkit/redistest"
)

// Marker secrets: each is a credential of the flow below, and none may
// appear in anything the broker writes or answers besides the token
// request it belongs in.
const (
	leakSDSecret       = "LKM1sdClientSecret"
	leakOAuthSecret    = "LKM2oauthClientSecret"
	leakOAuthPassword  = "LKM3oauthPassword"
	leakInlineSecret   = "LKM4inlineSecret"
	leakWrongSecret    = "LKM5wrongSecret"
	leakEchoSecret     = "LKM6echo&Secret+/=" // changed by every body encoding
	leakAPIKey         = "LKM7apiKey0123456789"
	leakWrongAPIKey    = "LKM8wrongApiKey0123"
	leakEchoClientID   = "echo-client"
	leakOAuthClientID  = "leak-client"
	leakInlineClientID = "inline-client"
)

// tokenRecorder is a reverse proxy in front of the simulator that keeps
// every access and refresh token the vendors issue, so the test can look
// for them even when the broker never shows them (refresh tokens).
type tokenRecorder struct {
	mu     sync.Mutex
	tokens map[string]bool
}

func (r *tokenRecorder) record(body []byte) {
	var answer map[string]any
	if json.Unmarshal(body, &answer) != nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, field := range []string{"access_token", "refresh_token"} {
		if v, ok := answer[field].(string); ok && v != "" {
			r.tokens[v] = true
		}
	}
}

func (r *tokenRecorder) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.tokens))
	for t := range r.tokens {
		out = append(out, t)
	}
	return out
}

func startTokenRecorder(t *testing.T, target string) (*tokenRecorder, string) {
	t.Helper()
	u, _ := url.Parse(target)
	rec := &tokenRecorder{tokens: map[string]bool{}}
	proxy := httputil.NewSingleHostReverseProxy(u)
	proxy.ModifyResponse = func(resp *http.Response) error {
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		resp.Body.Close()
		rec.record(body)
		resp.Body = io.NopCloser(bytes.NewReader(body))
		return nil
	}
	srv := httptest.NewServer(proxy)
	t.Cleanup(srv.Close)
	return rec, srv.URL
}

// echoVendor answers every token request with an error that repeats the
// whole request: its Authorization header and body, as JSON
// error_description (400) or as a text/plain body (500).
func echoVendor(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		echo := "auth=" + r.Header.Get("Authorization") + " body=" + string(body)
		if strings.HasSuffix(r.URL.Path, "/text") {
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = io.WriteString(w, echo)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": "invalid_request", "error_description": echo})
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// leakHints say where a leak of that kind is to be fixed.
var leakHints = map[string]string{
	"echoed Basic credentials": " (a vendor error that echoes the request's Authorization header; " +
		"vendors must scrub the client_secret_basic header value, as they scrub body encodings)",
}

// TestNoSecretLeaks runs a flow with marker secrets through gRPC and REST,
// with caller authentication, the Redis store (when redis-server is there;
// always under CI), vendor errors that echo the request, and then looks
// for every marker secret and every issued token in every log line (the
// broker's logger and the process default), every error the callers got,
// /metrics, and every raw Redis key and value.
//
// Not parallel: it captures the process-wide default logger, which the
// service uses for unexpected errors.
func TestNoSecretLeaks(t *testing.T) {
	sim := brokertest.StartSim(t)
	sim.AddAccount("smartdocumentor", map[string]string{"client_id": "leak-sd-client", "client_secret": leakSDSecret})
	sim.AddAccount("smartdocumentor", map[string]string{"client_id": leakInlineClientID, "client_secret": leakInlineSecret})
	sim.AddAccount("oauth2", map[string]string{"client_id": leakOAuthClientID, "client_secret": leakOAuthSecret, "username": "leak-user", "password": leakOAuthPassword})
	recorder, proxyURL := startTokenRecorder(t, sim.URL())
	echoURL := echoVendor(t)

	encKey := cacheKey()
	var redisAddr string
	if _, err := exec.LookPath("redis-server"); err == nil || os.Getenv("CI") == "true" {
		redisAddr = redistest.Start(t).Addr
	} else {
		t.Log("redis-server not on PATH: the raw Redis part is skipped (CI always runs it)")
	}
	yaml := fmt.Sprintf(`
grpc_addr: 127.0.0.1:0
http_addr: 127.0.0.1:0
vendors:
  smartdocumentor: {token_url: %[1]s/smartdocumentor/connect/token}
  oauth2: {token_url: %[1]s/oauth2/token}
profiles:
  leak-sd:
    vendor: smartdocumentor
    credentials: {client_id: leak-sd-client, client_secret: "${SD_SECRET}"}
  leak-oauth:
    vendor: oauth2
    credentials: {client_id: %[2]s, client_secret: "${OAUTH_SECRET}", username: leak-user, password: "${OAUTH_PASSWORD}"}
    settings: {grant_type: password}
  echo-json:
    vendor: oauth2
    credentials: {client_id: %[3]s, client_secret: "${ECHO_SECRET}"}
    settings: {token_url: %[4]s/json}
  echo-text:
    vendor: oauth2
    credentials: {client_id: %[3]s, client_secret: "${ECHO_SECRET}"}
    settings: {token_url: %[4]s/text, client_auth: client_secret_post}
clients:
  leak-test:
    api_key_sha256: %[5]s
    allow: [leak-sd, leak-oauth, echo-json, echo-text, "vendor:smartdocumentor", "admin:status"]
`, proxyURL, leakOAuthClientID, leakEchoClientID, echoURL, sha256Hex(leakAPIKey))
	if redisAddr != "" {
		yaml += redisCacheYAML(encKey, redisAddr)
	}
	env := map[string]string{"SD_SECRET": leakSDSecret, "OAUTH_SECRET": leakOAuthSecret, "OAUTH_PASSWORD": leakOAuthPassword, "ECHO_SECRET": leakEchoSecret}
	cfg, err := config.Parse([]byte(yaml), func(name string) (string, bool) { v, ok := env[name]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}

	defaultLogs := &logBuffer{}
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewJSONHandler(defaultLogs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	t.Cleanup(func() { slog.SetDefault(prev) })

	a, logs := startAppWithLogs(t, cfg, false)
	client := grpcClient(t, a, nil)
	restBase := "http://" + a.Server.HTTPAddr().String()
	authed := metadata.AppendToOutgoingContext(ctxT(t), "authorization", "Bearer "+leakAPIKey)

	var answers []string // every error a caller saw, and every REST body
	grpcCall := func(name string, err error) {
		if err != nil {
			st := status.Convert(err)
			detail, _ := protojson.Marshal(st.Proto())
			answers = append(answers, name+": "+st.Message()+" "+string(detail))
		}
	}
	rest := func(path, key, body string) (int, string) {
		req, _ := http.NewRequest("POST", restBase+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			answers = append(answers, "REST "+path+": "+string(b))
		}
		return resp.StatusCode, string(b)
	}

	// The flow.
	var issued []string
	get := func(req *tokenbrokerv1.GetTokenRequest) {
		resp, err := client.GetToken(authed, req)
		grpcCall("GetToken", err)
		if err != nil {
			t.Fatalf("GetToken %v: %v", req, err)
		}
		issued = append(issued, resp.AccessToken)
	}
	get(&tokenbrokerv1.GetTokenRequest{Profile: "leak-sd"})
	get(&tokenbrokerv1.GetTokenRequest{Profile: "leak-sd"})
	get(&tokenbrokerv1.GetTokenRequest{Profile: "leak-oauth"})
	get(&tokenbrokerv1.GetTokenRequest{Profile: "leak-oauth", ForceRefresh: true}) // may redeem the refresh token
	get(&tokenbrokerv1.GetTokenRequest{Vendor: "smartdocumentor", Credentials: map[string]string{"client_id": leakInlineClientID, "client_secret": leakInlineSecret}})
	if code, body := rest("/v1/token", leakAPIKey, `{"profile":"leak-oauth"}`); code != 200 {
		t.Fatalf("REST GetToken: %d %s", code, body)
	}
	inv, err := client.InvalidateToken(authed, &tokenbrokerv1.InvalidateTokenRequest{Profile: "leak-sd", AccessToken: issued[0]})
	grpcCall("InvalidateToken", err)
	if err != nil || !inv.Invalidated {
		t.Fatalf("InvalidateToken: %v, %v", inv, err)
	}
	get(&tokenbrokerv1.GetTokenRequest{Profile: "leak-sd"})
	_, err = client.GetToken(authed, &tokenbrokerv1.GetTokenRequest{Vendor: "smartdocumentor", Credentials: map[string]string{"client_id": leakInlineClientID, "client_secret": leakWrongSecret}})
	grpcCall("GetToken wrong secret", err)
	rest("/v1/token", leakAPIKey, fmt.Sprintf(`{"vendor":"smartdocumentor","credentials":{"client_id":%q,"client_secret":%q}}`, leakInlineClientID, leakWrongSecret+"2"))
	_, err = client.GetToken(authed, &tokenbrokerv1.GetTokenRequest{Profile: "echo-json"})
	grpcCall("GetToken echo-json", err)
	_, err = client.GetToken(authed, &tokenbrokerv1.GetTokenRequest{Profile: "echo-text"})
	grpcCall("GetToken echo-text", err)
	rest("/v1/token", leakAPIKey, `{"profile":"echo-json"}`)
	_, err = client.GetToken(metadata.AppendToOutgoingContext(ctxT(t), "authorization", "Bearer "+leakWrongAPIKey), &tokenbrokerv1.GetTokenRequest{Profile: "leak-sd"})
	grpcCall("GetToken wrong API key", err)
	rest("/v1/token", leakWrongAPIKey, `{"profile":"leak-sd"}`)
	rest("/v1/token", leakAPIKey, `{"profile":"leak-sd","params":{"x":"`+leakWrongSecret+`3"}}`)
	if len(answers) < 8 {
		t.Fatalf("the flow produced only %d errors to inspect: %q", len(answers), answers)
	}

	// What the broker exposes.
	statusViews := map[string]string{}
	for _, path := range []string{"/v1/credentials/status", "/status"} {
		req, _ := http.NewRequest(http.MethodGet, restBase+path, nil)
		req.Header.Set("Authorization", "Bearer "+leakAPIKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), "leak-sd") {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
		}
		statusViews[path] = string(b)
	}
	var metrics string
	if resp, err := http.Get(restBase + "/metrics"); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 {
			metrics = string(b)
		}
	}
	if metrics == "" {
		t.Error("/metrics is not served")
	}
	var redisDump strings.Builder
	if redisAddr != "" {
		rc := redis.NewClient(&redis.Options{Addr: redisAddr})
		defer rc.Close()
		keys, err := rc.Keys(context.Background(), "*").Result()
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) == 0 {
			t.Error("Redis holds no key: the flow did not reach the shared store")
		}
		for _, k := range keys {
			// Values are strings, except the sorted set of rejected
			// tokens' digests (:revoked) and the credential status
			// records (hashes).
			var v string
			switch typ := rc.Type(context.Background(), k).Val(); typ {
			case "hash":
				// Credential status records.
				h, err := rc.HGetAll(context.Background(), k).Result()
				if err != nil {
					t.Fatalf("HGETALL %s: %v", k, err)
				}
				v = fmt.Sprint(h)
			case "zset":
				members, err := rc.ZRange(context.Background(), k, 0, -1).Result()
				if err != nil {
					t.Fatalf("ZRANGE %s: %v", k, err)
				}
				v = strings.Join(members, "\n")
			default:
				b, err := rc.Get(context.Background(), k).Bytes()
				if err != nil && err != redis.Nil {
					t.Fatalf("GET %s (%s): %v", k, typ, err)
				}
				v = string(b)
			}
			redisDump.WriteString(k + "\n" + v + "\n")
		}
	}

	secrets := map[string]string{
		"smartdocumentor profile secret":     leakSDSecret,
		"oauth2 client secret":               leakOAuthSecret,
		"oauth2 password":                    leakOAuthPassword,
		"inline client secret":               leakInlineSecret,
		"wrong inline secret":                leakWrongSecret,
		"echoed client secret":               leakEchoSecret,
		"echoed client secret, form-encoded": url.QueryEscape(leakEchoSecret),
		"echoed Basic credentials": base64.StdEncoding.EncodeToString([]byte(
			url.QueryEscape(leakEchoClientID) + ":" + url.QueryEscape(leakEchoSecret))),
		"API key":        leakAPIKey,
		"wrong API key":  leakWrongAPIKey,
		"encryption key": encKey,
	}
	tokens := recorder.all()
	if len(tokens) < 3 {
		t.Fatalf("the recorder saw %d tokens; the flow did not reach the vendors", len(tokens))
	}
	for i, tok := range append(tokens, issued...) {
		secrets[fmt.Sprintf("token %d", i)] = tok
	}
	places := map[string]string{
		"broker log":          logs.String(),
		"process default log": defaultLogs.String(),
		"caller errors":       strings.Join(answers, "\n"),
		"/metrics":            metrics,
		"raw Redis":           redisDump.String(),
		"credential status":   statusViews["/v1/credentials/status"],
		"status page":         statusViews["/status"],
	}
	for place, text := range places {
		for what, marker := range secrets {
			if strings.Contains(text, marker) {
				t.Errorf("the %s contains the %s%s", place, what, leakHints[what])
			}
		}
	}
	t.Logf("checked %d markers (%d tokens) in %d log bytes, %d caller errors, %d metric bytes, %d Redis bytes",
		len(secrets), len(tokens)+len(issued), len(logs.String())+len(defaultLogs.String()), len(answers), len(metrics), redisDump.Len())
}
