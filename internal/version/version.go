// Package version says which build of tokenbroker is running: the release
// version and the source revision, stamped at build time by the Dockerfile
// and the Makefile (docs/operations.md):
//
//	go build -ldflags "-X github.com/tokenbroker/tokenbroker/internal/version.version=v1.2.3 \
//	  -X github.com/tokenbroker/tokenbroker/internal/version.revision=$(git rev-parse HEAD)" ./cmd/server
//
// Without -X, the revision comes from the VCS information the go command
// embeds (runtime/debug.ReadBuildInfo) and the version from the main
// module's version ("(devel)" for a build from a work tree).
package version

import (
	"runtime"
	"runtime/debug"
	"sync"
)

// Set with -ldflags -X; see the package comment.
var (
	version  string
	revision string
)

// Info identifies a build.
type Info struct {
	// Version is the release (a tag such as v1.2.3), or "devel".
	Version string
	// Revision is the source commit, with "-dirty" when the work tree had
	// changes; "unknown" when neither -X nor the VCS stamp says.
	Revision string
	// GoVersion is the toolchain that built the binary.
	GoVersion string
}

// Get returns the running binary's build.
var Get = sync.OnceValue(func() Info {
	bi, _ := debug.ReadBuildInfo()
	return resolve(version, revision, bi)
})

// resolve fills what -X left empty from the build info.
func resolve(stampedVersion, stampedRevision string, bi *debug.BuildInfo) Info {
	info := Info{Version: stampedVersion, Revision: stampedRevision, GoVersion: runtime.Version()}
	if bi != nil {
		if bi.GoVersion != "" {
			info.GoVersion = bi.GoVersion
		}
		if info.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			info.Version = bi.Main.Version
		}
		if info.Revision == "" {
			var rev string
			var dirty bool
			for _, s := range bi.Settings {
				switch s.Key {
				case "vcs.revision":
					rev = s.Value
				case "vcs.modified":
					dirty = s.Value == "true"
				}
			}
			if rev != "" && dirty {
				rev += "-dirty"
			}
			info.Revision = rev
		}
	}
	if info.Version == "" {
		info.Version = "devel"
	}
	if info.Revision == "" {
		info.Revision = "unknown"
	}
	return info
}

// String is the one line --version prints.
func (i Info) String() string {
	return "tokenbroker " + i.Version + " (revision " + i.Revision + ", " + i.GoVersion + ")"
}
