package main

import "testing"

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
		{"gctrace=1, adaptivestackstart=1", true},
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
