package version

import (
	"runtime/debug"
	"testing"
)

func TestResolve(t *testing.T) {
	t.Parallel()
	vcs := &debug.BuildInfo{
		GoVersion: "go1.26.8",
		Main:      debug.Module{Path: "github.com/tokenbroker/tokenbroker", Version: "(devel)"},
		Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "0123abcd"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	tests := []struct {
		name              string
		version, revision string
		bi                *debug.BuildInfo
		wantVer, wantRev  string
		wantGo            string
	}{
		{"stamped with -X wins", "v1.2.3", "feedface", vcs, "v1.2.3", "feedface", "go1.26.8"},
		{"VCS stamp fills the revision", "", "", vcs, "devel", "0123abcd-dirty", "go1.26.8"},
		{"module version from go install", "", "", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.4.0"}}, "v1.4.0", "unknown", "go1.26.8"},
		{"nothing known", "", "", nil, "devel", "unknown", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := resolve(tc.version, tc.revision, tc.bi)
			if got.Version != tc.wantVer || got.Revision != tc.wantRev {
				t.Errorf("resolve = %+v, want version %q revision %q", got, tc.wantVer, tc.wantRev)
			}
			if tc.wantGo != "" && got.GoVersion != tc.wantGo {
				t.Errorf("GoVersion = %q, want %q", got.GoVersion, tc.wantGo)
			}
			if got.GoVersion == "" {
				t.Error("GoVersion is empty")
			}
		})
	}
}
