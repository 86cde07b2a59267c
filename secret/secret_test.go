package secret

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestSecretNeverPrints(t *testing.T) {
	t.Parallel()
	const marker = "hunter2-marker"
	s := New(marker)
	m := Map{"password": s}
	var logBuf bytes.Buffer
	slog.New(slog.NewJSONHandler(&logBuf, nil)).Info("x", "s", s, "m", m)
	js, err := json.Marshal(struct {
		S Secret
		M Map
	}{s, m})
	if err != nil {
		t.Fatal(err)
	}
	outputs := map[string]string{
		"%v":   fmt.Sprintf("%v", s),
		"%s":   fmt.Sprintf("%s", s),
		"%q":   fmt.Sprintf("%q", s),
		"%+v":  fmt.Sprintf("%+v", m),
		"%#v":  fmt.Sprintf("%#v", s),
		"%x":   fmt.Sprintf("%x", s),
		"json": string(js),
		"slog": logBuf.String(),
		"err":  fmt.Errorf("wrapped: %v", s).Error(),
	}
	for name, out := range outputs {
		if strings.Contains(out, marker) {
			t.Errorf("%s leaked the secret: %s", name, out)
		}
		if !strings.Contains(out, Redacted) {
			t.Errorf("%s shows no redaction marker: %s", name, out)
		}
	}
	if s.Reveal() != marker || m.Get("password") != marker {
		t.Fatal("Reveal lost the value")
	}
}
