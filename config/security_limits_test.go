package config

import (
	"strings"
	"testing"
)

func TestLimitsKeys(t *testing.T) {
	t.Parallel()
	cfg, err := Parse([]byte("limits: {refresh_per_minute: 10, refresh_burst: 3}\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Limits.RefreshPerMinute != 10 || cfg.Limits.RefreshBurst != 3 {
		t.Fatalf("limits = %+v", cfg.Limits)
	}
	for _, bad := range []string{"limits: {refresh_per_minute: -1}\n", "limits: {refresh_burst: -2}\n", "limits: {refresh_rate: 5}\n"} {
		if _, err := Parse([]byte(bad), nil); err == nil || !strings.Contains(err.Error(), "refresh_") {
			t.Errorf("Parse(%q) = %v, want an error naming the key", bad, err)
		}
	}
}
