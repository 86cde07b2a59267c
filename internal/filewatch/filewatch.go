// Package filewatch tells when files change, for configuration reload and
// certificate renewal without a restart. It polls the files' metadata
// (os.Stat, which follows symlinks), so it sees every way a file can be
// replaced: written in place, renamed over, or swapped by a Kubernetes
// ConfigMap or Secret volume, which updates all its files at once by
// re-pointing the directory's "..data" symlink
// (https://kubernetes.io/docs/concepts/configuration/configmap/#mounted-configmaps-are-updated-automatically).
// Polling a handful of files a few times a second costs nothing measurable
// and needs no platform-specific notification API.
package filewatch

import (
	"context"
	"os"
	"time"
)

// Stamp is what a change of a file is recognised by: its identity (device
// and inode), size, modification time and mode, or that it could not be
// read.
type Stamp struct {
	info os.FileInfo
}

// StampOf stats path.
func StampOf(path string) Stamp {
	info, err := os.Stat(path)
	if err != nil {
		return Stamp{}
	}
	return Stamp{info: info}
}

// Same reports whether a and b describe the same version of a file (two
// failed stats are the same).
func (a Stamp) Same(b Stamp) bool {
	if a.info == nil || b.info == nil {
		return a.info == nil && b.info == nil
	}
	return os.SameFile(a.info, b.info) &&
		a.info.Size() == b.info.Size() &&
		a.info.ModTime().Equal(b.info.ModTime()) &&
		a.info.Mode() == b.info.Mode()
}

// Options configure Run.
type Options struct {
	// Paths returns the files to watch; it is called on every poll, so the
	// set may change (after a reload names other files).
	Paths func() []string
	// Interval is the time between polls (default 250ms).
	Interval time.Duration
	// Settle is how long the files must stay unchanged after a change
	// before it is reported, so that a writer updating several files, or
	// one file in several writes, causes one reload (default 250ms).
	Settle time.Duration
}

// Run polls until ctx is done and calls changed, from its own goroutine,
// once the watched files have changed and then stayed unchanged for
// Settle. A change made while changed runs is reported afterwards.
func Run(ctx context.Context, opts Options, changed func()) {
	if opts.Interval <= 0 {
		opts.Interval = 250 * time.Millisecond
	}
	if opts.Settle <= 0 {
		opts.Settle = 250 * time.Millisecond
	}
	base := stamps(opts.Paths())
	var pending map[string]Stamp
	var pendingSince time.Time
	tick := time.NewTicker(opts.Interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		cur := stamps(opts.Paths())
		switch {
		case same(cur, base):
			pending = nil
		case pending == nil || !same(cur, pending):
			pending, pendingSince = cur, time.Now()
		case time.Since(pendingSince) >= opts.Settle:
			pending = nil
			changed()
			// The set of files may be another one now.
			base = stamps(opts.Paths())
		}
	}
}

func stamps(paths []string) map[string]Stamp {
	out := make(map[string]Stamp, len(paths))
	for _, p := range paths {
		out[p] = StampOf(p)
	}
	return out
}

func same(a, b map[string]Stamp) bool {
	if len(a) != len(b) {
		return false
	}
	for p, sa := range a {
		sb, ok := b[p]
		if !ok || !sa.Same(sb) {
			return false
		}
	}
	return true
}
