package vendors_test

import (
	"errors"
	"testing"

	"github.com/tokenbroker/tokenbroker/vendors"
	"github.com/tokenbroker/tokenbroker/vendors/budget"
)

func TestVendorProtectionSettings(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		settings vendors.Settings
		want     budget.Limits
	}{
		{"unset: unlimited", vendors.Settings{}, budget.Limits{Burst: 1}},
		{"rate alone: no burst", vendors.Settings{"max_requests_per_second": "20"}, budget.Limits{RatePerSecond: 20, Burst: 1}},
		{"fractional rate", vendors.Settings{"max_requests_per_second": "0.5"}, budget.Limits{RatePerSecond: 0.5, Burst: 1}},
		{"YAML float", vendors.Settings{"max_requests_per_second": "1e+06"}, budget.Limits{RatePerSecond: 1e6, Burst: 1}},
		{"all three", vendors.Settings{"max_requests_per_second": "10", "burst": "5", "max_concurrent_requests": "4"}, budget.Limits{RatePerSecond: 10, Burst: 5, MaxConcurrent: 4}},
		{"burst 0 is 1", vendors.Settings{"max_requests_per_second": "10", "burst": "0"}, budget.Limits{RatePerSecond: 10, Burst: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if err := tc.settings.Validate(); err != nil {
				t.Fatal(err)
			}
			if got := tc.settings.Limits(); got != tc.want {
				t.Fatalf("Limits() = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestVendorProtectionSettingsTypos(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		key, value string
	}{
		{"max_requests_per_second", "ten"},
		{"max_requests_per_second", "-1"},
		{"max_requests_per_second", "Inf"},
		{"max_requests_per_second", "NaN"},
		{"burst", "2.5"},
		{"burst", "-3"},
		{"max_concurrent_requests", "many"},
		{"max_concurrent_requests", "-1"},
	} {
		t.Run(tc.key+"="+tc.value, func(t *testing.T) {
			t.Parallel()
			err := vendors.Settings{tc.key: tc.value}.Validate()
			var cfg *vendors.ConfigError
			if !errors.As(err, &cfg) || cfg.Setting != tc.key {
				t.Fatalf("Validate() = %v, want a ConfigError naming %s", err, tc.key)
			}
		})
	}
}

func TestEveryVendorTakesTheProtectionSettings(t *testing.T) {
	t.Parallel()
	for _, strategy := range vendors.Default().All() {
		info := strategy.Info()
		for _, key := range []string{"max_requests_per_second", "burst", "max_concurrent_requests"} {
			if !info.AllowsSetting(key) {
				t.Errorf("vendor %s does not accept %s", info.ID, key)
			}
		}
	}
}
