package vendors_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/tokenbroker/tokenbroker/testkit/fakeissuer"
	"github.com/tokenbroker/tokenbroker/vendors"
	"github.com/tokenbroker/tokenbroker/vendorsim"
)

const (
	jwtBearer     = "urn:ietf:params:oauth:grant-type:jwt-bearer"
	tokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
	federatedAud  = "api://AzureADTokenExchange"
)

// federatedSim is a simulator trusting a fake cluster issuer, whose
// service account billing/broker acts as client "fed-client".
type federatedSim struct {
	*simVendor
	issuer *fakeissuer.Issuer
}

func startFederatedSim(t *testing.T, bound bool) *federatedSim {
	t.Helper()
	s := &federatedSim{simVendor: startSim(t), issuer: fakeissuer.Start()}
	t.Cleanup(s.issuer.Close)
	if err := s.sim.TrustIssuer(s.issuer.URL(), s.issuer.JWKS()); err != nil {
		t.Fatal(err)
	}
	s.sim.AddFederatedIdentity(vendorsim.FederatedIdentity{
		ClientID: "fed-client", Issuer: s.issuer.URL(), Subject: "system:serviceaccount:billing:broker",
		Audience: federatedAud, BoundToAssertion: bound,
	})
	return s
}

// projected writes the broker's service-account token (audience aud,
// lifetime life) to a file and returns its path; a second call with the
// same path replaces it as the kubelet would.
func (s *federatedSim) projected(t *testing.T, path, aud string, life time.Duration) string {
	t.Helper()
	tok := s.issuer.Sign(s.issuer.Kubernetes("billing", "broker", aud, time.Now(), life))
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestWorkloadIdentityGrants(t *testing.T) {
	t.Parallel()
	s := startFederatedSim(t, false)
	dir := t.TempDir()
	good := s.projected(t, filepath.Join(dir, "token"), federatedAud, time.Hour)
	wrongAud := s.projected(t, filepath.Join(dir, "wrong-aud"), "tokenbroker", time.Hour)
	expired := filepath.Join(dir, "expired")
	stale := s.issuer.Sign(s.issuer.Kubernetes("billing", "broker", federatedAud, time.Now().Add(-2*time.Hour), time.Hour))
	if err := os.WriteFile(expired, []byte(stale), 0o600); err != nil {
		t.Fatal(err)
	}
	client := map[string]string{"client_id": "fed-client"}
	tests := []struct {
		name     string
		settings vendors.Settings
		wantKind vendors.Kind // 0: success
		wantErr  string       // a ConfigError naming this setting
	}{
		{"RFC 7523 2.1 assertion from a file", vendors.Settings{"grant_type": jwtBearer, "assertion_file": good}, 0, ""},
		{"RFC 7523 2.2 client assertion from a file", vendors.Settings{"client_assertion_file": good}, 0, ""},
		{"RFC 8693 token exchange", vendors.Settings{"grant_type": tokenExchange, "subject_token_file": good, "requested_token_type": "urn:ietf:params:oauth:token-type:access_token", "audience": "https://api.example"}, 0, ""},
		{"token exchange with a client assertion", vendors.Settings{"grant_type": tokenExchange, "subject_token_file": good, "client_assertion_file": good}, 0, ""},
		{"expired assertion", vendors.Settings{"grant_type": jwtBearer, "assertion_file": expired}, vendors.KindRejected, ""},
		{"wrongly audienced assertion", vendors.Settings{"grant_type": jwtBearer, "assertion_file": wrongAud}, vendors.KindRejected, ""},
		{"expired client assertion", vendors.Settings{"client_assertion_file": expired}, vendors.KindRejected, ""},
		{"wrongly audienced subject token", vendors.Settings{"grant_type": tokenExchange, "subject_token_file": wrongAud}, vendors.KindRejected, ""},
		{"unsupported requested token type", vendors.Settings{"grant_type": tokenExchange, "subject_token_file": good, "requested_token_type": "urn:ietf:params:oauth:token-type:saml2"}, vendors.KindBadRequest, ""},
		{"missing file", vendors.Settings{"grant_type": jwtBearer, "assertion_file": filepath.Join(dir, "none")}, 0, "assertion_file"},
		{"jwt-bearer without an assertion", vendors.Settings{"grant_type": jwtBearer}, 0, "assertion_file"},
		{"token exchange without a subject token", vendors.Settings{"grant_type": tokenExchange}, 0, "subject_token_file"},
		{"bad token type", vendors.Settings{"grant_type": tokenExchange, "subject_token_file": good, "subject_token_type": "jwt"}, 0, "subject_token_type"},
		{"client assertion file with basic auth", vendors.Settings{"client_assertion_file": good, "client_auth": "client_secret_basic"}, 0, ""},
		{"assertion claims without a key", vendors.Settings{"grant_type": jwtBearer, "assertion_file": good, "assertion_subject": "x"}, 0, "assertion_subject"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			creds := client
			if tc.name == "client assertion file with basic auth" {
				creds = map[string]string{"client_id": "fed-client", "client_secret": "x"}
			}
			call, err := prepare(t, "oauth2", s.settings("oauth2", tc.settings), creds, nil)
			if tc.name == "client assertion file with basic auth" {
				var ce *vendors.ConfigError
				if !errors.As(err, &ce) || ce.Setting != "client_assertion_file" {
					t.Fatalf("ResolveCall: %v, want a ConfigError on client_assertion_file", err)
				}
				return
			}
			if err == nil {
				var tok *vendors.Token
				tok, err = call.Fetch(t.Context(), "")
				if err == nil && tc.wantKind == 0 && tc.wantErr == "" {
					if !s.sim.ValidToken("oauth2", tok.AccessToken) {
						t.Fatal("the simulator did not issue this token")
					}
					return
				}
			}
			if tc.wantErr != "" {
				var ce *vendors.ConfigError
				if !errors.As(err, &ce) || ce.Setting != tc.wantErr {
					t.Fatalf("%v, want a ConfigError on %s", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "eyJ") {
					t.Fatalf("the error quotes a token: %v", err)
				}
				return
			}
			var ve *vendors.Error
			if !errors.As(err, &ve) || ve.Kind != tc.wantKind {
				t.Fatalf("%v, want kind %v", err, tc.wantKind)
			}
			if strings.Contains(err.Error(), "eyJ") {
				t.Fatalf("the error quotes the assertion: %v", err)
			}
		})
	}
}

// TestAssertionFileRereadAndBound: a renewed assertion file is used at the
// next fetch (the old one expired meanwhile), and with
// expire_with_assertion the token expires with the assertion.
func TestAssertionFileRereadAndBound(t *testing.T) {
	t.Parallel()
	s := startFederatedSim(t, false)
	path := filepath.Join(t.TempDir(), "token")
	s.projected(t, path, federatedAud, 10*time.Minute)
	call, err := prepare(t, "oauth2", s.settings("oauth2", vendors.Settings{"grant_type": jwtBearer, "assertion_file": path, "expire_with_assertion": "true"}), map[string]string{"client_id": "fed-client"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := call.Fetch(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	if left := time.Until(tok.ExpiresAt); left > 10*time.Minute || left < 9*time.Minute || tok.ExpirySource != "assertion_exp" {
		t.Fatalf("token expires in %v (%s); want the assertion's 10 minutes", left, tok.ExpirySource)
	}
	// The kubelet writes an expired token (as if the file were stale),
	// then a fresh one: each fetch reads what is there now.
	stale := s.issuer.Sign(s.issuer.Kubernetes("billing", "broker", federatedAud, time.Now().Add(-2*time.Hour), time.Hour))
	if err := os.WriteFile(path, []byte(stale), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := call.Fetch(t.Context(), ""); err == nil {
		t.Fatal("an expired assertion was accepted")
	}
	s.projected(t, path, federatedAud, time.Hour)
	if tok, err = call.Fetch(t.Context(), ""); err != nil {
		t.Fatalf("after renewal: %v", err)
	}
	if left := time.Until(tok.ExpiresAt); left < 50*time.Minute {
		t.Fatalf("token expires in %v, want about the simulator's hour", left)
	}
}

// TestSignedJWTBearerAssertion: the broker signs the RFC 7523 assertion
// with its private key (iss and sub configured, aud the token URL).
func TestSignedJWTBearerAssertion(t *testing.T) {
	t.Parallel()
	s := startSim(t)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	keyPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	jwks := `{"keys":[` + jwkJSON(t, &key.PublicKey) + `]}`
	if err := s.sim.TrustIssuer("broker.acme.internal", []byte(jwks)); err != nil {
		t.Fatal(err)
	}
	s.sim.AddFederatedIdentity(vendorsim.FederatedIdentity{ClientID: "fed-client", Issuer: "broker.acme.internal", Subject: "tokenbroker", Audience: s.url + "/oauth2/token"})
	set := s.settings("oauth2", vendors.Settings{"grant_type": jwtBearer, "assertion_issuer": "broker.acme.internal", "assertion_subject": "tokenbroker"})
	call, err := prepare(t, "oauth2", set, map[string]string{"client_id": "fed-client", "private_key": keyPEM}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := call.Fetch(t.Context(), ""); err != nil {
		t.Fatal(err)
	}
	// Another audience: the simulator refuses it.
	set["assertion_audience"] = "https://elsewhere.example/token"
	call, err = prepare(t, "oauth2", set, map[string]string{"client_id": "fed-client", "private_key": keyPEM}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var ve *vendors.Error
	if _, err := call.Fetch(t.Context(), ""); !errors.As(err, &ve) || ve.Kind != vendors.KindRejected {
		t.Fatalf("wrong audience: %v, want rejected", err)
	}
	if s.sim.FederatedTokensAccepted() != 1 {
		t.Fatalf("%d assertions accepted, want 1", s.sim.FederatedTokensAccepted())
	}
}

func jwkJSON(t *testing.T, pub any) string {
	t.Helper()
	raw, err := (&jose.JSONWebKey{Key: pub, Algorithm: "ES256", Use: "sig"}).MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}
