package config

import (
	"strings"
	"testing"
)

// TestEventSinkHeadersAreSecrets: sink header values resolve like every
// secret (${ENV}, file:), and a missing variable is named, not its value.
func TestEventSinkHeadersAreSecrets(t *testing.T) {
	t.Parallel()
	env := func(name string) (string, bool) {
		if name == "SINK_AUTH" {
			return "Bearer sink-token-value", true
		}
		return "", false
	}
	cfg, err := Parse([]byte(`
events:
  sinks:
    - url: https://hooks.example.com/tb
      headers: {authorization: "${SINK_AUTH}", x-team: ops}
`), env)
	if err != nil {
		t.Fatal(err)
	}
	h := cfg.Events.Sinks[0].Headers
	if h["authorization"].Reveal() != "Bearer sink-token-value" || h["x-team"].Reveal() != "ops" {
		t.Fatalf("headers = %v", h)
	}
	_, err = Parse([]byte("events:\n  sinks:\n    - {url: https://h.example/x, headers: {authorization: \"${NOPE}\"}}\n"), env)
	if err == nil || !strings.Contains(err.Error(), "events.sinks[0].headers.authorization: environment variable NOPE is not set") {
		t.Fatalf("err = %v", err)
	}
}
