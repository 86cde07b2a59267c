package main

import (
	"slices"
	"testing"
)

func TestGODEBUGSets(t *testing.T) {
	t.Parallel()
	tests := []struct {
		godebug string
		want    bool
	}{
		{"", false},
		{"adaptivestackstart=0", true},
		{"adaptivestackstart=1", true},
		{"gctrace=1,adaptivestackstart=0", true},
		{"gctrace=1, adaptivestackstart=1", false}, // the runtime does not trim: " adaptivestackstart" is another key
		{"gctrace=1", false},
		{"adaptivestackstart", false},
		{"xadaptivestackstart=0", false},
		{"adaptivestackstartx=0", false},
	}
	for _, tt := range tests {
		if got := godebugSets(tt.godebug, stackSetting); got != tt.want {
			t.Errorf("godebugSets(%q) = %v, want %v", tt.godebug, got, tt.want)
		}
	}
}

func TestWithGODEBUG(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  []string
		want []string
	}{
		{"none", []string{"A=1"}, []string{"A=1", "GODEBUG=adaptivestackstart=0"}},
		{"empty", []string{"GODEBUG=", "B=2"}, []string{"GODEBUG=adaptivestackstart=0", "B=2"}},
		{"other settings", []string{"A=1", "GODEBUG=gctrace=1"}, []string{"A=1", "GODEBUG=gctrace=1,adaptivestackstart=0"}},
		{"not a prefix", []string{"XGODEBUG=1"}, []string{"XGODEBUG=1", "GODEBUG=adaptivestackstart=0"}},
	}
	for _, tt := range tests {
		env := slices.Clone(tt.env)
		got := withGODEBUG(env, stackSetting+"=0")
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
		if !slices.Equal(env, tt.env) {
			t.Errorf("%s: the environment given was changed: %q", tt.name, env)
		}
	}
}
